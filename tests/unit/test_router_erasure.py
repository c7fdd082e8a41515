"""Erasing a contact in the router (decision 0050) when a crash left a lead's first outbox in its batch's
outbox document (decision 0068), on the router's in-memory stores (tests/unit/fakes_router.py): the erasure
finds the lead, sends its first events before ContactErased, and forgets its contact keys for good.

The same on the real MongoDB-wire server: integration/test_erasure_stores.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import pytest
from fakes_router import FakeContacts, FakeErasures, FakeRecords, Published, router_on_fakes

from leadflow_router.adapters.codec import decode_record, encode_outbox
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.erasure import PendingContacts
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.domain.record import RoutingRecord
from leadflow_router.handlers import (
    ORPHAN_BATCH_SECONDS,
    STALE_BATCH_SECONDS,
    ContactErasedMeanwhileError,
    LeadsBeingStoredError,
    RouterService,
)
from leadflow_shared.events.commands import EraseContact, EraseContactPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ActivityLogged, ContactErased, LeadOffered, RoutingEvent

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B"), Agent("c", "C")), round_robin=True
)
KEY = "acme:email:pat1@example.com"


def lead(n: int, phone: str | None = None) -> LeadReceived:
    return LeadReceived.create(
        account_id="acme",
        occurred_at=NOW,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=f"pat{n}@example.com", phone=phone),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


class Contacts(FakeContacts):
    """The fake contact index with the calls erasure and transfers make; unreachable while `down` (the
    process dies before a batch's effects are applied)."""

    down = False

    async def register(self, lead_by_key: dict[str, str]) -> None:
        if self.down:
            raise ConnectionError("mongo down")
        await super().register(lead_by_key)


@dataclasses.dataclass
class Router:
    records: FakeRecords = dataclasses.field(default_factory=FakeRecords)
    contacts: Contacts = dataclasses.field(default_factory=Contacts)
    out: Published = dataclasses.field(default_factory=Published)
    others: tuple[AccountSnapshot, ...] = ()  # offices beside acme
    service: RouterService = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.service = router_on_fakes(
            ACCOUNT, *self.others, clock=lambda: NOW, records=self.records, contacts=self.contacts, publish=self.out,
            erasures=FakeErasures(),
        )  # fmt: skip

    async def crashed(self, *leads: LeadReceived, before_effects: bool = False) -> None:
        """The batch is stored with its outbox document; nothing published (the broker refused: it rewinds),
        and with `before_effects` no contact key written either (the process died first)."""
        self.out.failing, self.contacts.down = True, before_effects
        with pytest.raises(ConnectionError):
            await self.service.on_leads_received(list(leads))
        self.out.failing = self.contacts.down = False
        assert self.records.outboxes, "its outbox document waits"


def erasure(**who: str) -> EraseContact:
    payload = EraseContactPayload(by_user_id="broker", reason="ticket 7", **who)
    return EraseContact.create(account_id="acme", occurred_at=NOW, payload=payload)


def after_erasure(out: Published) -> tuple[ContactErased, list[RoutingEvent]]:
    """The ContactErased published, and every event after it."""
    events = [e for _, e in out.events()]
    at = next(i for i, e in enumerate(events) if isinstance(e, ContactErased))
    erased = events[at]
    assert isinstance(erased, ContactErased)
    return erased, events[at + 1 :]


async def test_an_erased_contacts_key_stays_forgotten_when_its_lead_had_a_crash_left_document() -> None:
    """Helper 63's review: the erasure forgot the keys, then its scrub finished the lead's outbox document and
    applied its effects again, registering the key once more: the contact's next inquiry merged into the
    erased lead (R1). Now the document is finished before the keys are forgotten, and not again by the scrub."""
    router, first = Router(), lead(1)
    await router.crashed(first)  # stored, effects applied, nothing published
    assert router.contacts.leads == {KEY: str(first.event_id)}

    await router.service.on_command(erasure(email="pat1@example.com"))
    assert KEY not in router.contacts.leads, "the erased contact's key is registered again"
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later
    assert isinstance(router.out.events()[0][1], LeadOffered), "its first offer went out before"
    assert router.records.outboxes == {}

    again = lead(1)  # the contact writes in again after the erasure; the crashed batch is redelivered with it
    assert not await router.service.on_leads_received([first, again])
    assert decode_record(router.records.docs[str(again.event_id)]).is_lead, "merged into the erased lead (R1)"
    assert router.contacts.leads == {KEY: str(again.event_id)}


async def test_an_erasure_by_email_finds_a_lead_whose_first_outbox_still_waits_in_its_document() -> None:
    """Helper 63's review: the erasure resolved its leads through the contact index alone; a lead whose process
    died between storing its records and applying their effects has no key, so it was missed and its
    LeadOffered, with the erased email, went out after ContactErased. Now the outboxes that will register the
    request's keys are searched too (`registering`)."""
    router, first = Router(), lead(1)
    await router.crashed(first, before_effects=True)
    assert not router.contacts.leads

    await router.service.on_command(erasure(email="pat1@example.com"))
    assert not await router.service.on_leads_received([first])  # the redelivery of the crashed batch
    await router.service.republish_stale()

    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id], "the stored lead of this contact was not erased"
    assert not [e for e in later if isinstance(e, LeadOffered)], "a LeadOffered with the erased contact came after"
    assert [type(e) for _, e in router.out.events()] == [LeadOffered, ContactErased], "its first offer, before"
    assert not router.contacts.leads
    assert decode_record(router.records.docs[str(first.event_id)]).state.erased  # type: ignore[union-attr]


async def test_an_erasure_by_a_repeats_new_phone_finds_the_lead_the_repeat_merges_into() -> None:
    """R1: a repeat with a new phone merges into the first lead; its document registers the phone for that
    lead. A crash before that, then an erasure by the phone alone: the first lead is the contact's."""
    router, first = Router(), lead(1)
    assert not await router.service.on_leads_received([first])
    repeat = lead(1, phone="+14155550142")
    await router.crashed(repeat, before_effects=True)
    assert "acme:phone:+14155550142" not in router.contacts.leads

    await router.service.on_command(erasure(phone="+14155550142"))
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later
    assert [type(e) for _, e in router.out.events()] == [LeadOffered, ActivityLogged, ContactErased]
    assert not router.contacts.leads, "neither the email nor the new phone points at the erased lead"


async def test_keys_another_replica_registers_again_before_the_scrub_are_forgotten_too() -> None:
    """Helper 70's review: between the erasure forgetting a lead's keys and scrubbing its record, another
    replica's sweeper may finish a batch document still naming the lead (kept while another lead it lists has
    no record) and register its keys anew; the erased contact's next inquiry would then merge into the erased
    lead. The keys are forgotten again once the leads are scrubbed (and no longer name any document)."""
    router, first = Router(), lead(1)
    assert not await router.service.on_leads_received([first])
    assert router.contacts.leads == {KEY: str(first.event_id)}
    forget = router.contacts.forget_leads

    async def then_a_sweeper_registers_again(lead_ids: list[str]) -> None:
        await forget(lead_ids)
        router.contacts.forget_leads = forget  # type: ignore[method-assign]
        await router.contacts.register({KEY: str(first.event_id)})  # the other replica, from the document

    router.contacts.forget_leads = then_a_sweeper_registers_again  # type: ignore[method-assign]
    await router.service.on_command(erasure(email="pat1@example.com"))
    assert KEY not in router.contacts.leads, "the erased contact's key was registered again and kept"


class Stalling(FakeRecords):
    """A writer that has written its batch's outbox document and not yet its records (it stores them when `go`
    is set); counts the reads of the outbox documents an erasure makes."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.go = asyncio.Event(), asyncio.Event()
        self.outbox_reads = 0

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        leads = [{"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records]
        self.outboxes[f"{batch_id}/0"] = {"_id": f"{batch_id}/0", "since_ms": now_ms, "leads": leads}
        self.written.set()
        await self.go.wait()
        return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)

    async def pending_contacts(self) -> PendingContacts:
        self.outbox_reads += 1
        return await super().pending_contacts()


async def test_an_erasure_waits_for_a_lead_whose_document_is_written_and_whose_record_is_not_yet() -> None:
    """Helper 88: an erasure running while a batch's writer has written its outbox document and not yet its
    records found the lead in the document, found no record, and left it out: ContactErased went out without it,
    and the writer then stored and published the lead with the erased contact, its key registered. Now a lead an
    open document lists without a record is being stored: the erasure fails (retried with backoff by the
    consumer) until it is, then erases it; the outbox documents are read once per attempt, and again after the
    scrub (`test_an_erasure_looks_for_open_documents_again_after_its_scrub`)."""
    records = Stalling()
    router, first = Router(records=records), lead(1)
    writer = asyncio.create_task(router.service.on_leads_received([first]))
    await asyncio.wait_for(records.written.wait(), 5)

    command = erasure(email="pat1@example.com")
    with pytest.raises(LeadsBeingStoredError):
        await router.service.on_command(command)
    assert not [e for _, e in router.out.events() if isinstance(e, ContactErased)], "erased without the lead"
    assert records.outbox_reads == 1

    records.go.set()
    assert not await asyncio.wait_for(writer, 5)
    await router.service.on_command(command)  # the consumer's retry
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later
    assert KEY not in router.contacts.leads
    assert decode_record(router.records.docs[str(first.event_id)]).state.erased  # type: ignore[union-attr]
    assert records.outbox_reads == 3, "one read in the first attempt, two in the second (before and after the scrub)"


class CrashingWriter(FakeRecords):
    """A writer that dies after its batch's outbox document, before its records."""

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        leads = [{"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records]
        self.outboxes[f"{batch_id}/0"] = {"_id": f"{batch_id}/0", "since_ms": now_ms, "leads": leads}
        del before_records  # dies before it
        raise ConnectionError("the writer died after its outbox document")


def carrying(out: Published, *contacts: str) -> list[bytes]:
    """The published bodies that name any of `contacts` (an email, a name), as bytes."""
    return [body for _, body in out.records if any(c.encode() in body for c in contacts)]


async def test_an_erasure_is_not_held_up_by_a_document_a_crash_left_half_an_hour_ago() -> None:
    """Review of helper 92 (moved from test_review_s26_router_erasure.py): a writer crashed after its outbox
    document and before its records, and nothing ever stores that lead (its LeadReceived dead-lettered). The
    sweeper keeps the document up to ORPHAN_BATCH_SECONDS; the erasure waited for it on every attempt, then was
    dead-lettered. Now an erasure waits only for a document younger than STALE_BATCH_SECONDS."""
    records = CrashingWriter()
    router = Router(records=records)
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([lead(1)])
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= 30 * 60 * 1000  # no writer is storing it: it crashed half an hour ago
    assert ORPHAN_BATCH_SECONDS * 1000 > 30 * 60 * 1000, "the sweeper still keeps the document"
    await router.service.republish_stale()  # the sweeper's pass keeps it (its lead has no record, not an orphan yet)
    assert records.outboxes, "kept by the sweeper"

    command = erasure(email="pat1@example.com")
    try:
        await router.service.on_command(command)
    except LeadsBeingStoredError as exc:
        pytest.fail(f"the erasure fails on every attempt for up to an hour, then is dead-lettered: {exc}")
    assert [e for _, e in router.out.events() if isinstance(e, ContactErased)]


async def test_an_erasure_waits_for_a_document_younger_than_the_stale_bound_and_not_for_an_older_one() -> None:
    """Helper 94: the bound is the one the sweeper calls a batch stale by (STALE_BATCH_SECONDS): younger, its
    writer may still store the lead (wait); older, it crashed or keeps its outboxes in its records (`_store`)."""
    records = CrashingWriter()
    router, first = Router(records=records), lead(1)
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([first])
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= (STALE_BATCH_SECONDS - 5) * 1000
    command = erasure(email="pat1@example.com")
    with pytest.raises(LeadsBeingStoredError):
        await router.service.on_command(command)
    assert not router.out.records, "erased without the lead, or published it"
    assert str(first.event_id) not in records.docs

    doc["since_ms"] -= 10 * 1000  # now older than the bound
    await router.service.on_command(command)  # the consumer's retry
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later
    assert not carrying(router.out, "pat1@example.com", "Pat")


async def test_an_erased_lead_of_a_crash_left_document_never_comes_out_of_it_later() -> None:
    """Helper 94: the erasure stores an erased placeholder under the unstored lead and takes its outbox out of the
    document; the sweeper's passes (stale, then orphan), a redelivery of its LeadReceived and the document's other
    lead publish nothing carrying the contact, and register none of its keys."""
    records = CrashingWriter()
    router = Router(records=records)
    first, other = lead(1), lead(2)
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([first, other])
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000

    await router.service.on_command(erasure(email="pat1@example.com"))
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later
    assert not carrying(router.out, "pat1@example.com", "Pat"), "the erasure published the contact"
    assert [item["lead_id"] for item in doc["leads"]] == [str(other.event_id)], "its outbox is out of the document"
    placeholder = decode_record(records.docs[str(first.event_id)])
    assert not placeholder.is_lead
    assert placeholder.outbox.batch is None
    assert records.docs[str(first.event_id)]["erased"] is True

    await router.service.republish_stale()  # stale: kept (the other lead has no record), nothing published
    assert records.outboxes
    router.service.wall_clock = lambda: time.time() + ORPHAN_BATCH_SECONDS + 1
    await router.service.republish_stale()  # an orphan: dropped
    assert not records.outboxes
    plain = FakeRecords()
    plain.docs, plain.outboxes = records.docs, records.outboxes
    router.service.records = plain  # the crashed batch redelivered, to a writer that does not crash
    assert not await router.service.on_leads_received([first, other])
    assert not carrying(router.out, "pat1@example.com"), "the erased contact came out later"
    assert carrying(router.out, "pat2@example.com"), "the other lead is routed"
    assert KEY not in router.contacts.leads


async def test_a_writer_stalled_past_the_bound_stores_and_publishes_nothing_of_a_lead_erased_meanwhile() -> None:
    """Helper 94: a writer stalled between its document and its records (not dead) finds the erased placeholder
    stored under its lead: it stores and publishes nothing of it, from its document or its memory."""
    records = Stalling()
    router, first = Router(records=records), lead(1)
    writer = asyncio.create_task(router.service.on_leads_received([first]))
    await asyncio.wait_for(records.written.wait(), 5)
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000  # stalled past the bound (as its wall clock says)
    router.service._batches_in_flight.clear()  # another replica's writer

    await router.service.on_command(erasure(email="pat1@example.com"))
    records.go.set()
    assert not await asyncio.wait_for(writer, 5)
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later, "the stalled writer published after the erasure"
    assert not carrying(router.out, "pat1@example.com", "Pat"), "the stalled writer published the erased contact"
    assert not decode_record(records.docs[str(first.event_id)]).is_lead
    assert KEY not in router.contacts.leads
    assert not records.outboxes


async def test_a_repeat_in_the_crashed_batch_of_an_erased_unstored_lead_comes_out_with_the_contact() -> None:
    """Review of 3c0317b (helper 96; moved from test_review_s26b_router_placeholder.py): a crashed batch holds Pat's
    inquiry and an R1 repeat of Pat merged into it. Past the stale bound the erasure placed the placeholder only
    for the lead the contact keys point at; on redelivery the repeat found no known contact and was routed as a new
    lead: a LeadOffered with Pat's email went out after ContactErased. Now every lead of the document whose outbox
    registers the contact gets a placeholder (helper 98)."""
    records = CrashingWriter()
    router = Router(records=records)
    first, repeat = lead(1), lead(1)  # Pat twice, same email
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([first, repeat])
    (doc,) = records.outboxes.values()
    assert {item["lead_id"] for item in doc["leads"]} == {str(first.event_id), str(repeat.event_id)}
    doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000  # its writer crashed

    await router.service.on_command(erasure(email="pat1@example.com"))
    erased, later = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id]
    assert not later

    plain = FakeRecords()
    plain.docs, plain.outboxes = records.docs, records.outboxes
    router.service.records = plain  # the crashed batch redelivered, to a writer that does not crash
    await router.service.on_leads_received([first, repeat])
    events = [e for _, e in router.out.events()]
    at = next(i for i, e in enumerate(events) if isinstance(e, ContactErased))
    after = [body for _, body in router.out.records[at + 1 :]]
    assert not [b for b in after if b"pat1@example.com" in b], (
        "the repeat of the erased contact was routed as a new lead after the erasure, carrying its email"
    )


async def redelivered(router: Router, records: FakeRecords, *leads: LeadReceived) -> None:
    """The crashed batch redelivered, to a writer that does not crash."""
    plain = FakeRecords()
    plain.docs, plain.outboxes = records.docs, records.outboxes
    router.service.records = plain
    assert not await router.service.on_leads_received(list(leads))


def published_after_erasure(out: Published) -> list[bytes]:
    """The bodies published after ContactErased."""
    at = next(i for i, (_, e) in enumerate(out.events()) if isinstance(e, ContactErased))
    return [body for _, body in out.records[at + 1 :]]


@pytest.mark.parametrize("age", [2 * STALE_BATCH_SECONDS, STALE_BATCH_SECONDS - 5], ids=["stale", "young"])
async def test_a_repeat_of_the_erased_contact_in_a_crashed_later_batch_is_erased_with_it(age: int) -> None:
    """Helper 98: the repeat is in a later batch than its lead's (stored and routed before); that batch's writer
    crashed between its document and its records. The erasure found the lead by the index and left the repeat's
    outbox in the document: its redelivery, with the keys forgotten, routed it as a new lead carrying the contact.
    Past the stale bound it gets an erased placeholder too, and its outbox leaves the document; younger, the erasure
    waits for it (its redelivery stores it, merged into the lead), then erases both."""
    records = CrashingWriter()
    router = Router(records=records)
    first, repeat, other = lead(1), lead(1, phone="+14155550142"), lead(2)
    await redelivered(router, records, first)  # routed, its keys registered
    router.service.records = records
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([repeat, other])
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= age * 1000
    command = erasure(email="pat1@example.com")
    if age < STALE_BATCH_SECONDS:
        with pytest.raises(LeadsBeingStoredError):
            await router.service.on_command(command)
        assert not [e for _, e in router.out.events() if isinstance(e, ContactErased)], "erased without the repeat"
        await redelivered(router, records, repeat, other)
        await router.service.on_command(command)  # the consumer's retry
    else:
        await router.service.on_command(command)
        assert [item["lead_id"] for item in doc["leads"]] == [str(other.event_id)], "its outbox left the document"
        assert not decode_record(records.docs[str(repeat.event_id)]).is_lead
        await redelivered(router, records, repeat, other)
    erased, _ = after_erasure(router.out)
    assert erased.payload.lead_ids == [first.event_id], "a repeat is not one of the erasure's leads"
    after = published_after_erasure(router.out)
    assert not [b for b in after if b"pat1@example.com" in b or b"+14155550142" in b], "the contact came out after"
    assert not router.contacts.leads.keys() & {KEY, "acme:phone:+14155550142"}, "a key of the contact is kept"
    assert str(other.event_id) in router.contacts.leads.values(), "the batch's other lead is routed"


BOLT = AccountSnapshot(account_id="bolt", name="Bolt", roster=(Agent("z", "Z"),), round_robin=True)


def bolts_erasure_of(*leads: LeadReceived) -> EraseContact:
    """Bolt's erasure naming these (acme's) leads by id, and no email or phone."""
    payload = EraseContactPayload(by_user_id="bolt-admin", reason="ticket 9", lead_ids=[e.event_id for e in leads])
    return EraseContact.create(account_id="bolt", occurred_at=NOW, payload=payload)


async def test_an_erasure_naming_another_accounts_lead_id_is_not_held_up_by_that_accounts_batch() -> None:
    """Review of 4f3a084 (helper 99; moved from test_review_s26c_router_other_account.py): acme's lead (Pat) is
    routed and stored; a repeat of Pat is in acme's later batch, whose document is young (its writer is storing it).
    Bolt's erasure names acme's lead by id (an id of another account: left out, tenant isolation). `_leads_of` took
    the repeats of every lead the request named before dropping other accounts' ids: acme's repeat was "unstored"
    and young, so bolt's erasure raised LeadsBeingStoredError and waited on acme's traffic. Now an id's account is
    settled first (helper 101)."""
    office = Router(records=CrashingWriter(), others=(BOLT,))
    records = office.records
    first, repeat = lead(1), lead(1, phone="+14155550142")
    await redelivered(office, records, first)  # routed, stored, its keys registered
    office.service.records = records
    with pytest.raises(ConnectionError):
        await office.service.on_leads_received([repeat])  # acme's writer is between its document and records
    (doc,) = records.outboxes.values()
    assert doc["since_ms"] > (time.time() - STALE_BATCH_SECONDS) * 1000, "young"
    await office.service.on_command(bolts_erasure_of(first))  # raised LeadsBeingStoredError before
    erased, _ = after_erasure(office.out)
    assert erased.account_id == "bolt"
    assert erased.payload.lead_ids == [], "acme's lead is not bolt's"


@pytest.mark.parametrize("age", [2 * STALE_BATCH_SECONDS, STALE_BATCH_SECONDS - 5], ids=["stale", "young"])
async def test_an_erasure_naming_another_accounts_unstored_lead_neither_waits_nor_touches_its_document(
    age: int,
) -> None:
    """Helper 101: acme's lead and its repeat are listed in acme's document with no record yet (its writer is
    storing them, or crashed). Bolt's erasure naming them by id does not wait for them (young), stores no
    placeholder under them and leaves acme's document as it is (stale); acme's redelivery then routes Pat."""
    office = Router(records=CrashingWriter(), others=(BOLT,))
    records = office.records
    first, repeat = lead(1), lead(1, phone="+14155550142")
    with pytest.raises(ConnectionError):
        await office.service.on_leads_received([first, repeat])
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= age * 1000
    before = copy.deepcopy(doc)
    await office.service.on_command(bolts_erasure_of(first, repeat))
    erased, _ = after_erasure(office.out)
    assert erased.payload.lead_ids == [], "acme's leads are not bolt's"
    assert not records.docs, "a placeholder stored under acme's lead"
    assert records.outboxes == {before["_id"]: before}, "acme's document changed"
    await redelivered(office, records, first, repeat)
    assert office.contacts.leads[KEY] == str(first.event_id), "acme's lead is routed and keeps its contact"


@pytest.mark.asyncio
async def test_a_repeat_of_an_earlier_batchs_lead_erased_meanwhile_is_routed_again_as_a_new_lead() -> None:
    """The batch read the contact's keys, then an erasure (another replica) completed before the batch was stored
    (a review, session 27): the repeat, decided from the keys read, must not be merged into the erased lead (its
    `ActivityLogged` would carry the contact after `ContactErased`, its keys point at the erased lead again). The
    batch is refused before anything of it is stored and, tried again, routes the repeat as a new lead."""
    router = Router()
    first = lead(1)
    assert not await router.service.on_leads_received([first])
    repeat = lead(1)
    decide = router.service._decide_new

    async def deciding(lead_id: str, event: LeadReceived, new: object) -> object:
        await router.service.on_command(erasure(email="pat1@example.com"))  # the keys were read already
        return await decide(lead_id, event, new)  # type: ignore[arg-type]

    router.service._decide_new = deciding  # type: ignore[method-assign,assignment]
    with pytest.raises(ContactErasedMeanwhileError):
        await router.service.on_leads_received([repeat])
    assert str(repeat.event_id) not in router.records.docs, "nothing stored"
    assert not router.records.outboxes
    assert not await router.service.on_leads_received([repeat])  # the consumer tries the batch again

    _, after = after_erasure(router.out)
    onto_erased = [e for e in after if isinstance(e, ActivityLogged) and str(e.payload.lead_id) == str(first.event_id)]
    assert not onto_erased, "the erased contact's repeat was logged on the erased lead after ContactErased"
    assert router.contacts.leads.get(KEY) == str(repeat.event_id), "the contact's key names the new lead"
    assert [str(e.payload.lead_id) for e in after if isinstance(e, LeadOffered)] == [str(repeat.event_id)]


@pytest.mark.asyncio
async def test_a_key_left_naming_an_erased_lead_refuses_one_batch_only_and_is_forgotten() -> None:
    """A key a batch registered again after an erasure's last pass (the window decision 0050 leaves open) names the
    erased lead: the next repeat is refused once, the key forgotten with it, and the batch tried again routes the
    repeat as a new lead; it is never refused again (which would have dead-lettered it)."""
    router = Router()
    first = lead(1)
    assert not await router.service.on_leads_received([first])
    await router.service.on_command(erasure(email="pat1@example.com"))
    router.contacts.leads[KEY] = str(first.event_id)  # registered again after the erasure's last pass
    repeat = lead(1)

    with pytest.raises(ContactErasedMeanwhileError):
        await router.service.on_leads_received([repeat])
    assert KEY not in router.contacts.leads, "the key naming the erased lead is forgotten"
    assert not await router.service.on_leads_received([repeat])

    _, after = after_erasure(router.out)
    assert [str(e.payload.lead_id) for e in after if isinstance(e, LeadOffered)] == [str(repeat.event_id)]
    assert router.contacts.leads.get(KEY) == str(repeat.event_id)


class ErasedBeforeStored(FakeRecords):
    """A writer that has read the leads its batch's repeats merge into and not stored anything yet: an erasure
    (another replica) runs whole before its `insert_batch` writes a thing."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)


@pytest.mark.asyncio
async def test_an_erasure_completing_between_the_batchs_check_and_its_store_refuses_the_repeat() -> None:
    """The window session 27 left open: the batch read the lead its repeat merges into (not erased yet), then an
    erasure scrubbed it and completed, then the batch stored the repeat merged into the erased lead: its inquiry
    went out with the contact after ContactErased and its key named the erased lead again. The lead is read after
    the batch's outbox document is written (and before its records), so the batch is refused here; tried again,
    the repeat is a new lead."""
    records = ErasedBeforeStored()
    router, first = Router(records=records), lead(1)
    assert not await router.service.on_leads_received([first])
    repeat = lead(1)
    records.meanwhile = partial(router.service.on_command, erasure(email="pat1@example.com"))

    with pytest.raises(ContactErasedMeanwhileError):
        await router.service.on_leads_received([repeat])
    assert str(repeat.event_id) not in records.docs, "nothing stored"
    assert not records.outboxes, "the batch's document is dropped"
    assert not await router.service.on_leads_received([repeat])  # the consumer tries the batch again

    _, after = after_erasure(router.out)
    assert not carrying_events(after, "pat1@example.com", onto=str(first.event_id))
    assert router.contacts.leads.get(KEY) == str(repeat.event_id), "the contact's key names the new lead"


class PausedAfterCheck(FakeRecords):
    """A writer paused after its check (the lead its repeat merges into read, not erased) and before its records,
    once `pausing`: `checked` is set there, and it goes on when `go` is."""

    def __init__(self) -> None:
        super().__init__()
        self.checked, self.go = asyncio.Event(), asyncio.Event()
        self.pausing = False

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        async def checked_then_paused() -> None:
            if before_records is not None:
                await before_records()
            if self.pausing:
                self.checked.set()
                await self.go.wait()

        return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=checked_then_paused)


@pytest.mark.asyncio
async def test_an_erasure_looks_for_open_documents_again_after_its_scrub() -> None:
    """The other half of the window: the erasure read the open outbox documents (none), then a batch wrote its
    document and read the lead its repeat merges into (not scrubbed yet), then the erasure scrubbed the lead. Its
    ContactErased went out, and the batch then stored and published the repeat merged into the erased lead. The
    erasure now looks for open documents again after its scrub: it waits while the repeat is being stored, and its
    retry publishes the repeat's events before ContactErased and forgets the key the repeat registered."""
    records = PausedAfterCheck()
    router, first = Router(records=records), lead(1)
    assert not await router.service.on_leads_received([first])
    records.pausing, repeat = True, lead(1)
    writer: list[asyncio.Task[object]] = []
    forget = router.contacts.forget_leads

    async def then_the_batch_checks(lead_ids: list[str]) -> None:  # after the erasure's read, before its scrub
        router.contacts.forget_leads = forget  # type: ignore[method-assign]
        writer.append(asyncio.create_task(router.service.on_leads_received([repeat])))
        await asyncio.wait_for(records.checked.wait(), 5)
        await forget(lead_ids)

    router.contacts.forget_leads = then_the_batch_checks  # type: ignore[method-assign]
    command = erasure(email="pat1@example.com")
    with contextlib.suppress(LeadsBeingStoredError):  # the consumer tries it again below
        await router.service.on_command(command)
    records.go.set()
    assert not await asyncio.wait_for(writer[0], 5)
    await router.service.on_command(command)  # the consumer's retry (nothing to do if it was done)

    _, after = after_erasure(router.out)
    assert not carrying_events(after, "pat1@example.com", onto=str(first.event_id)), "the repeat after the erasure"
    assert router.contacts.leads.get(KEY) != str(first.event_id), "the contact's key names the erased lead"
    logged = [e for _, e in router.out.events() if isinstance(e, ActivityLogged)]
    assert [str(e.payload.lead_id) for e in logged] == [str(first.event_id)], "the repeat's inquiry, before"


def carrying_events(events: list[RoutingEvent], contact: str, *, onto: str) -> list[RoutingEvent]:
    """The events of lead `onto` whose JSON names `contact`."""
    return [e for e in events if str(e.payload.lead_id) == onto and contact in e.model_dump_json()]  # type: ignore[union-attr]


# Decision 0106: an inquiry made before its contact's erasure, delivered after it, is not routed.


def made_at(n: int, at: datetime, phone: str | None = None) -> LeadReceived:
    return lead(n, phone).model_copy(update={"occurred_at": at})


async def test_an_inquiry_made_before_the_erasure_and_delivered_after_it_is_taken_unrouted() -> None:
    """Helper 172's review: a dead letter of the contact's inquiry from before the erasure (the router failed on it,
    so it had no record and no key for the erasure to find), replayed after the erasure by the runbook, was routed as
    a new lead: the person back in the router's records and keys, crm-api's rows and the notifier's digest."""
    router, first = Router(), lead(1)
    assert not await router.service.on_leads_received([first])
    dead_lettered = made_at(1, datetime(2026, 5, 4, 14, 59, tzinfo=UTC))  # made a minute before the erasure
    await router.service.on_command(erasure(email="pat1@example.com"))
    published = len(router.out.events())

    assert not await router.service.on_leads_received([dead_lettered])  # replayed: taken, no dead letter
    assert str(dead_lettered.event_id) not in router.records.docs, "no record holds the person again"
    assert KEY not in router.contacts.leads, "no key names the person again"
    assert len(router.out.events()) == published, "no event carries the person"
    assert router.service.metrics.erased_inquiries._value.get() == 1

    later = made_at(1, datetime(2026, 5, 4, 15, 1, tzinfo=UTC))  # the person writes in again after the erasure
    assert not await router.service.on_leads_received([later])
    assert decode_record(router.records.docs[str(later.event_id)]).is_lead, "a new inquiry is a new lead (0050)"


async def test_an_erasure_by_lead_id_marks_every_key_the_index_has_for_the_lead_and_its_repeats() -> None:
    """Asked by lead id alone, the erasure knows no email or phone: it marks those the index has for the lead,
    a repeat's other phone included, read before it forgets them, and keeps only their hashes."""
    router, first = Router(), lead(1)
    repeat = made_at(1, NOW, phone="+15555550111")  # the same email, another phone: merged into the first (R1)
    assert not await router.service.on_leads_received([first])
    assert not await router.service.on_leads_received([repeat])
    await router.service.on_command(erasure(lead_ids=[str(first.event_id)]))  # type: ignore[arg-type]

    before = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
    by_phone = LeadReceived.create(
        account_id="acme", occurred_at=before,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", phone="+15555550111"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )  # fmt: skip
    assert not await router.service.on_leads_received([by_phone, made_at(1, before)])
    assert router.service.metrics.erased_inquiries._value.get() == 2
    marks = sorted(router.contacts.erased)
    assert len(marks) == 2, "the email's and the repeat's phone's"
    assert all(i.startswith("erased:") and "@" not in i and "+1" not in i for i in marks), "hashes"
    stored = router.service.erasures
    assert stored is not None
    request = await stored.get(str(erasure_id_of(router)))
    assert request is not None
    assert request.contact_ids == (), "done: the audit record keeps no hash of the person (helper 173)"


def erasure_id_of(router: Router) -> str:
    erased = next(e for _, e in router.out.events() if isinstance(e, ContactErased))
    assert isinstance(erased, ContactErased)
    return str(erased.payload.erasure_id)
