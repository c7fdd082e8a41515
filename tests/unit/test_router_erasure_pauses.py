"""A writer or a sweeper that read a batch before an erasure and goes on after it (helper 108's review of b214a7b,
session 28): a batch's writer publishes and applies its records' outboxes from memory after `insert_batch` returns,
and a sweeper those it read from an open document. An erasure running whole meanwhile finds the document (its first
read, or its second after the scrub), publishes the outboxes from it, detaches the repeat's record (or scrubs the new
lead), forgets the keys and publishes ContactErased; then the paused one goes on.

What holds (decision 0050, session 28 amendment): the keys it registers naming an erased lead are forgotten by it
(`RouterService._forget_if_erased`: read after the register, so it sees the scrub or the erasure's last forget comes
after), and what it publishes after ContactErased are copies of events published before it, same ids and bytes,
which consumers drop by event id (no Kafka publish can be made conditional on the database).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
from fakes_router import FakeRecords, Published
from test_router_erasure import KEY, Router, after_erasure, erasure, lead, published_after_erasure

from leadflow_router.adapters.codec import decode_record, encode_outbox, encode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.record import Outbox, RoutingRecord
from leadflow_router.handlers import STALE_BATCH_SECONDS
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class PausedAfterStore(FakeRecords):
    """A writer whose records are stored (its check passed, its document open) and that pauses, once `pausing`,
    before it publishes them: `stored` is set there, and it goes on when `go` is."""

    def __init__(self) -> None:
        super().__init__()
        self.stored, self.go = asyncio.Event(), asyncio.Event()
        self.pausing = False

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        result = await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        if self.pausing:
            self.pausing = False
            self.stored.set()
            await self.go.wait()
        return result


async def erased_while_the_writer_is_between_store_and_flush(case: str) -> tuple[Router, str, str]:
    """`repeat`: Pat's lead is routed first and the paused batch holds a repeat (R1) merged into it; the erasure of
    Pat's email runs whole while the writer is paused (its first read of the open documents finds the batch's).
    `repeat-second-read`: the same, but the batch writes its document, checks the lead (not scrubbed yet) and stores
    its records after the erasure's first read and before its scrub, so the erasure's second read (this commit's)
    finds the document. `new-lead`: the paused batch holds Pat's first lead. Then the writer goes on. Returns the
    router, the id of the erased lead and that of the paused batch's lead."""
    records = PausedAfterStore()
    router = Router(records=records)
    first = lead(1)
    if case == "new-lead":
        paused = first
    else:
        assert not await router.service.on_leads_received([first])
        paused = lead(1)
    records.pausing = True
    writer: list[asyncio.Task[object]] = []

    async def the_writer_stores() -> None:
        writer.append(asyncio.create_task(router.service.on_leads_received([paused])))
        await asyncio.wait_for(records.stored.wait(), 5)
        assert records.outboxes, "the batch's document is open while its writer is paused"

    command = erasure(email="pat1@example.com")
    if case == "repeat-second-read":
        forget = router.contacts.forget_leads

        async def then_the_batch_stores(lead_ids: list[str]) -> None:  # after the erasure's first read, before scrub
            router.contacts.forget_leads = forget  # type: ignore[method-assign]
            await the_writer_stores()
            await forget(lead_ids)

        router.contacts.forget_leads = then_the_batch_stores  # type: ignore[method-assign]
        await router.service.on_command(command)
        assert writer, "the batch ran inside the erasure"
    else:
        await the_writer_stores()
        await router.service.on_command(command)  # another replica, run whole
    erased, _ = after_erasure(router.out)
    assert str(first.event_id) in {str(i) for i in erased.payload.lead_ids}
    assert KEY not in router.contacts.leads, "the erasure forgot the key"

    records.go.set()
    assert not await asyncio.wait_for(writer[0], 5)
    return router, str(first.event_id), str(paused.event_id)


CASES = ["repeat", "repeat-second-read", "new-lead"]


@pytest.mark.parametrize("case", CASES)
async def test_what_carries_the_erased_contact_after_contact_erased_is_a_copy_of_an_event_before_it(case: str) -> None:
    """The writer's flush from memory publishes the repeat's ActivityLogged (or the new lead's offer) with Pat's
    email after ContactErased; the erasure published the same event from the document before it, so consumers,
    idempotent by event id, drop the copy. Nothing new about Pat comes after the erasure."""
    router, _, _ = await erased_while_the_writer_is_between_store_and_flush(case)
    assert only_copies_after_the_erasure(router.out)


def only_copies_after_the_erasure(out: Published) -> bool:
    """Whether every body naming Pat published after ContactErased is byte for byte one published before it."""
    after = published_after_erasure(out)
    before = {body for _, body in out.records[: len(out.records) - len(after)]}
    carried = [b for b in after if b"pat1@example.com" in b]
    assert all(b in before for b in carried), "an event about Pat after ContactErased that did not go out before"
    return True


@pytest.mark.parametrize("case", CASES)
async def test_no_key_of_the_erased_contact_is_kept_after_the_erasure(case: str) -> None:
    """The writer's flush registers Pat's email key again, naming the erased lead: the email stays in the contact
    index after the erasure is done (decision 0050: no MongoDB collection holds the person after it)."""
    router, erased, _ = await erased_while_the_writer_is_between_store_and_flush(case)
    assert router.contacts.leads.get(KEY) != erased, "Pat's email key names the erased lead again"
    assert KEY not in router.contacts.leads, "Pat's email key is kept after the erasure"


class DiesThenPausesTheFinisher(FakeRecords):
    """`dying`: the writer writes its batch's document and stores only its records at `survivors` (their indices)
    before it dies, so the document stays open: an unordered `insert_many` interrupted may leave any subset stored,
    and the router treats "a lead of the batch without a record" as a normal crash state (decision 0068). `pausing`:
    whoever finishes a document next (`_finish_batches`: another replica's sweeper) pauses after reading its records,
    before flushing them: `read` is set there, and it goes on at `go`."""

    def __init__(self, survivors: tuple[int, ...]) -> None:
        super().__init__()
        self.survivors = survivors
        self.read, self.go = asyncio.Event(), asyncio.Event()
        self.pausing = self.dying = False

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if not self.dying:
            return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        doc_id = f"{batch_id}/0"
        leads = [{"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records]
        self.outboxes[doc_id] = {"_id": doc_id, "since_ms": now_ms, "leads": leads}
        if before_records is not None:
            await before_records()
        for index in self.survivors:
            self.docs[records[index].lead_id] = encode_record(replace(records[index], outbox=Outbox(batch=doc_id)))
        raise ConnectionError("the writer died with part of its batch stored")

    async def readable_many(self, lead_ids: list[str], read: str = "batch") -> dict[str, RoutingRecord]:
        found = await super().readable_many(lead_ids, read)
        if read == "batch" and self.pausing:
            self.pausing = False
            self.read.set()
            await self.go.wait()
        return found

    async def crashed(self, router: Router, batch: list[LeadReceived]) -> None:
        """`batch` routed by a writer that dies part-stored, a while ago: its document open and stale."""
        self.dying = True
        with pytest.raises(ConnectionError):
            await router.service.on_leads_received(batch)
        self.dying = False
        (doc,) = self.outboxes.values()
        doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000

    async def erased_while_a_sweeper_finishes(self, router: Router, erased: Callable[[], None]) -> None:
        """Another replica's sweeper reads the open document's records, Pat's erasure runs whole (then `erased`
        checks what it left), then the sweeper goes on."""
        self.pausing = True
        sweeper = asyncio.create_task(router.service.republish_stale())
        await asyncio.wait_for(self.read.wait(), 5)
        await router.service.on_command(erasure(email="pat1@example.com"))
        erased()
        assert KEY not in router.contacts.leads, "the erasure forgot the key"
        self.go.set()
        await asyncio.wait_for(sweeper, 5)


async def test_a_sweeper_that_read_the_repeat_before_the_erasure_publishes_nothing_of_it_after() -> None:
    """The same root (a finisher publishing what it read before the erasure, without checking the record is still
    the one it read) through another replica's sweeper: it read the open document and the repeat's record (version
    1, naming it), then the erasure ran whole (published the repeat from the document, detached it, forgot the keys,
    ContactErased); the sweeper then publishes the repeat's ActivityLogged with Pat after ContactErased and
    registers Pat's key naming the erased lead again."""
    records = DiesThenPausesTheFinisher(survivors=(0,))  # the repeat stored, the batch's other lead not
    router, first = Router(records=records), lead(1)
    assert not await router.service.on_leads_received([first])
    repeat, other = lead(1), lead(2)
    await records.crashed(router, [repeat, other])
    assert str(repeat.event_id) in records.docs
    assert str(other.event_id) not in records.docs
    await records.erased_while_a_sweeper_finishes(router, lambda: None)
    assert only_copies_after_the_erasure(router.out)
    assert KEY not in router.contacts.leads, "Pat's email key is kept after the erasure"


async def erased_unstored_while_a_sweeper_holds_the_repeat() -> tuple[Router, str]:
    """Pat's first inquiry and a repeat of Pat (R1, merged into it) in one batch; the repeat stored, the lead not,
    the document stale. Another replica's sweeper reads the document and the repeat's record, then the erasure of
    Pat runs whole (the lead erased unstored: a placeholder; the repeat published from the document and detached;
    the keys forgotten; ContactErased); then the sweeper goes on. Returns the router and the erased lead's id."""
    records = DiesThenPausesTheFinisher(survivors=(1,))  # the repeat stored, the lead it merges into not
    router = Router(records=records)
    first, repeat = lead(1), lead(1)
    await records.crashed(router, [first, repeat])
    assert str(repeat.event_id) in records.docs
    assert str(first.event_id) not in records.docs
    assert decode_record(records.docs[str(repeat.event_id)]).state is None, "the repeat is merged (R1)"

    def erased_unstored() -> None:
        erased, _ = after_erasure(router.out)
        assert erased.payload.lead_ids == [first.event_id]
        assert records.docs[str(first.event_id)].get("erased") is True, "erased unstored: a placeholder"

    await records.erased_while_a_sweeper_finishes(router, erased_unstored)
    assert [b for b in published_after_erasure(router.out) if b"pat1@example.com" in b], (
        "the sweeper published its copy of the repeat's inquiry (on the erased lead) after ContactErased"
    )
    return router, str(first.event_id)


@pytest.mark.asyncio
async def test_no_key_names_a_lead_erased_unstored_after_a_sweeper_flushes_its_repeat() -> None:
    """Helper 110: the sweeper's flush registers Pat's email key naming the placeholder; `_forget_if_erased` read the
    placeholder, whose state is None, and kept the key: Pat's email stayed in router_contacts after the erasure. No key
    may name a record with no state (`RoutingRecord.keys_may_name`)."""
    router, erased = await erased_unstored_while_a_sweeper_holds_the_repeat()
    assert router.contacts.leads.get(KEY) != erased, "Pat's email key names the erased (unstored) lead again"
    assert KEY not in router.contacts.leads, "Pat's email key is kept after the erasure"


@pytest.mark.asyncio
async def test_pats_next_inquiry_after_the_erasure_is_routed_as_a_new_lead() -> None:
    """What the surviving key does (R1, decision 0050: an inquiry after an erasure is a new lead): Pat writes in
    again; the batch found the key naming the placeholder, counted it as a known lead (`_known_contacts` read it,
    `_not_into_erased` did not refuse it: its state is None, not erased) and merged the inquiry into it: nobody was
    offered the lead. A repeat merging into a record keys may not name is refused now, as into an erased lead."""
    router, erased = await erased_unstored_while_a_sweeper_holds_the_repeat()
    again = lead(1)
    assert not await router.service.on_leads_received([again])
    record = decode_record(router.records.docs[str(again.event_id)])
    assert record.is_lead, f"Pat's new inquiry was merged (R1) into the erased placeholder {erased}, not routed"
