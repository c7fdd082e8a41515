"""A batch of new leads keeps its outboxes in outbox documents beside the records, dropped once they are
published (decision 0068): nothing is lost or published twice by it, on the router's in-memory stores.

The crash points on the real MongoDB-wire server: integration/test_router_crash_points.py; the SIGKILLed
router: e2e/test_router_crash_repeats.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import FakeContacts, FakeRecords, FakeRotations, Published, router_on_fakes
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_router.adapters.codec import decode_outbox, decode_record, encode_outbox, encode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord
from leadflow_router.handlers import ORPHAN_BATCH_SECONDS, STALE_BATCH_SECONDS, RouterService
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B")), round_robin=True)


@dataclasses.dataclass
class Router:
    records: FakeRecords = dataclasses.field(default_factory=FakeRecords)
    published: Published = dataclasses.field(default_factory=Published)
    contacts: FakeContacts = dataclasses.field(default_factory=FakeContacts)
    now: datetime = NOW
    service: RouterService = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.service = router_on_fakes(
            ACCOUNT, clock=lambda: self.now, records=self.records, contacts=self.contacts, publish=self.published
        )

    def offered(self) -> list[str]:
        return [str(e.event_id) for _, e in self.published.events()]


def lead(n: int) -> LeadReceived:
    return LeadReceived.create(
        account_id="acme",
        occurred_at=NOW,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=f"pat{n}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def age_documents(records: FakeRecords, seconds: int = STALE_BATCH_SECONDS) -> None:
    """As if the outbox documents were written longer ago than `republish_stale` waits for (or `seconds`)."""
    for doc in records.outboxes.values():
        doc["since_ms"] = int((time.time() - seconds - 1) * 1000)


@pytest.mark.asyncio
async def test_a_routed_batch_leaves_no_outbox_document_and_records_without_outboxes() -> None:
    router = Router()
    leads = [lead(n) for n in range(3)]
    assert not await router.service.on_leads_received(leads)
    assert router.records.outboxes == {}, "dropped once published"
    for doc in router.records.docs.values():
        assert (doc["outbox"], doc["effects"], doc["outbox_since_ms"]) == ([], {}, None)
        assert doc["outbox_batch"], "the record names the document its first outbox waited in"
    assert sorted(router.offered()) == sorted(str(derived_event_id(e.event_id, "0")) for e in leads)


@pytest.mark.asyncio
async def test_a_document_a_crash_left_is_published_once_by_republish_stale_when_no_redelivery_comes() -> None:
    router = Router()
    router.published.failing = True
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([lead(1), lead(2)])
    assert len(router.records.outboxes) == 1
    assert router.published.records == []
    router.published.failing = False

    assert await router.service.republish_stale() == 0, "too recent: a redelivery finishes it"
    age_documents(router.records)
    assert await router.service.republish_stale() == 1
    assert len(router.offered()) == 2
    assert router.records.outboxes == {}
    assert await router.service.republish_stale() == 0
    assert len(router.offered()) == 2, "published once"


@pytest.mark.asyncio
async def test_a_record_changed_since_or_never_stored_is_not_published_from_the_document() -> None:
    router = Router()
    router.published.failing = True
    first, second = lead(1), lead(2)
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([first, second])
    router.published.failing = False
    # The first lead's record changed since (it carries its own outbox now); the second's is gone, as
    # if only a prefix of the insert had been stored.
    changed = decode_record(router.records.docs[str(first.event_id)])
    newer = dataclasses.replace(changed, version=2, outbox=Outbox(events=(), effects=Effects()))
    assert await router.records.compare_and_set(newer, expected_version=1)
    del router.records.docs[str(second.event_id)]

    age_documents(router.records, ORPHAN_BATCH_SECONDS)  # kept until then while a lead it lists has no record
    assert await router.service.republish_stale() == 1
    assert router.published.records == [], "neither is the document's to publish"
    assert router.records.outboxes == {}


async def crashed_after_store(router: Router, *leads: LeadReceived) -> None:
    """The router dies with the batch's records and outbox document stored, nothing published."""
    router.published.failing = True
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received(list(leads))
    router.published.failing = False


@pytest.mark.asyncio
async def test_an_offer_expiring_before_the_redelivery_publishes_the_first_events_and_keys_first() -> None:
    router, first = Router(), lead(1)
    await crashed_after_store(router, first)
    router.now = NOW + timedelta(hours=1)  # past the claim window, no redelivery yet
    assert await router.service.sweep_once() == 1
    events = router.published.lead_events()
    assert [type(e).__name__ for e in events] == ["LeadOffered", "OfferExpired", "LeadOffered"]
    assert events[0].event_id == derived_event_id(first.event_id, "0"), "the first offer is not lost"
    assert router.contacts.leads == {"acme:email:pat1@example.com": str(first.event_id)}, "R1 keys registered"
    assert router.records.outboxes == {}
    # The redelivery now changes nothing, and a repeat of the contact is R1 on the first lead.
    repeat = lead(1)
    assert not await router.service.on_leads_received([first, repeat])
    later = router.published.lead_events()[3:]
    assert [type(e).__name__ for e in later] == ["ActivityLogged"]
    assert later[0].payload.lead_id == first.event_id


@pytest.mark.asyncio
async def test_a_change_before_the_redelivery_publishes_the_first_events_before_its_own() -> None:
    router, first = Router(), lead(1)
    await crashed_after_store(router, first)
    offered_to = decode_record(router.records.docs[str(first.event_id)]).state
    assert offered_to is not None
    claim = LeadActivity.create(
        account_id="acme",
        occurred_at=NOW,
        payload=LeadActivityPayload(
            lead_id=first.event_id, agent_id=offered_to.offers[0].agent_id, action=ActivityAction.ACCEPT
        ),
    )
    await router.service.on_activity(claim)
    assert [type(e).__name__ for e in router.published.lead_events()] == ["LeadOffered", "LeadClaimed"]
    assert router.contacts.leads, "the first outbox's effects applied"
    assert router.records.outboxes == {}


@pytest.mark.asyncio
async def test_a_document_listing_a_lead_not_stored_yet_is_kept_until_it_is_an_orphan() -> None:
    router, first, second = Router(), lead(1), lead(2)
    await crashed_after_store(router, first, second)
    del router.records.docs[str(second.event_id)]  # its writer has not stored it yet (or died first)
    await router.service.on_leads_received([first])  # another replica's redelivery of the first alone
    assert len(router.records.outboxes) == 1, "kept: the second lead may still be stored by its writer"
    assert len(router.offered()) == 1
    age_documents(router.records)
    assert await router.service.republish_stale() == 1
    assert len(router.records.outboxes) == 1, "stale, still kept: its writer may be stalled before storing it"
    assert len(router.offered()) == 2, "the stored lead's outbox published again (duplicates are dropped)"
    age_documents(router.records, ORPHAN_BATCH_SECONDS)
    assert await router.service.republish_stale() == 1
    assert router.records.outboxes == {}


@pytest.mark.asyncio
async def test_a_redelivered_batch_finishes_its_documents_before_deciding_what_is_new() -> None:
    router = Router()
    router.published.failing = True
    first, repeat = lead(1), lead(1)  # the same contact: the repeat is R1 on the first lead
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([first])
    router.published.failing = False

    assert not await router.service.on_leads_received([first, repeat])
    events = router.published.lead_events()
    assert [type(e).__name__ for e in events] == ["LeadOffered", "ActivityLogged"]
    assert events[1].payload.lead_id == first.event_id, "the repeat found the first lead's contact keys"
    assert router.records.outboxes == {}


@pytest.mark.asyncio
async def test_a_batch_in_flight_is_not_stale_to_its_own_sweeper() -> None:
    router = Router()
    started, go_on = asyncio.Event(), asyncio.Event()
    publish = router.published

    async def slow(key: str, body: bytes) -> None:
        started.set()
        await go_on.wait()
        await publish(key, body)

    router.service.publish = slow
    routing = asyncio.create_task(router.service.on_leads_received([lead(1)]))
    await started.wait()
    age_documents(router.records)
    assert await router.service.republish_stale() == 0, "its own batch, still being published"
    go_on.set()
    assert not await routing
    assert len(router.offered()) == 1
    assert router.records.outboxes == {}


class StallingRecords(FakeRecords):
    """`insert_batch` writes the batch's outbox document, then stalls (`go_on`) before the records are stored:
    a slow MongoDB, a GC pause or a network partition between the two inserts."""

    def __init__(self) -> None:
        super().__init__()
        self.document_written = asyncio.Event()
        self.go_on = asyncio.Event()
        self.stall = True

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        before = set(self.docs)
        result = await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        if not self.stall:
            return result
        written = {i: self.docs.pop(i) for i in set(self.docs) - before}  # not stored yet: only the document is
        self.document_written.set()
        await self.go_on.wait()
        self.docs.update(written)
        return result


@pytest.mark.asyncio
@pytest.mark.parametrize("stall", [STALE_BATCH_SECONDS + 1, ORPHAN_BATCH_SECONDS + 1])
async def test_a_writer_stalled_between_its_document_and_its_records_loses_no_first_offer(stall: int) -> None:
    """Helper 63's review: another replica's sweeper dropped a stale document though the lead it lists had no
    record yet (its writer alive but stalled, or its clock behind); the writer then stored the record naming the
    dropped document, its publish failed (a broker blip: the batch rewinds), and the redelivery found nothing to
    publish: no LeadOffered, no contact key (R1). Now such a document is kept until ORPHAN_BATCH_SECONDS, and a
    writer storing its records later than STALE_BATCH_SECONDS after its document keeps their outboxes in them."""
    wall = [time.time()]
    records, contacts, rotations = StallingRecords(), FakeContacts(), FakeRotations()
    writer_out, other_out = Published(failing=True), Published()
    writer, other = (
        router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records, contacts=contacts, rotations=rotations,
                        publish=out, wall_clock=lambda: wall[0])
        for out in (writer_out, other_out)
    )  # fmt: skip
    first = lead(1)

    writing = asyncio.create_task(writer.on_leads_received([first]))
    await records.document_written.wait()
    wall[0] += stall  # the writer has been stalled longer than the sweeper waits
    await other.republish_stale()  # another replica's sweeper, every 5 s
    assert bool(records.outboxes) is (stall < ORPHAN_BATCH_SECONDS), "kept while its lead has no record"
    records.go_on.set()
    with pytest.raises(ConnectionError):
        await writing  # stored, then the broker refused: the batch rewinds
    records.stall = False
    stored = decode_record(records.docs[str(first.event_id)])
    assert stored.outbox.events, "stored that late, the record keeps its own outbox"

    assert not await other.on_leads_received([first])  # the redelivery, on whichever replica
    await other.republish_stale()

    offers = [e for _, e in other_out.events() if isinstance(e, LeadOffered)]
    assert stored.state is not None
    assert [(o.payload.lead_id, o.payload.agent_id) for o in offers] == [
        (first.event_id, stored.state.open_offers[0].agent_id)
    ], "the first offer goes out once, to the agent the record says"
    assert contacts.leads == {"acme:email:pat1@example.com": str(first.event_id)}, "R1 key registered"
    assert records.outboxes == {}
    assert not decode_record(records.docs[str(first.event_id)]).outbox, "published and cleared"


outboxes = st.builds(
    Outbox,
    events=st.lists(st.text(max_size=20), max_size=3).map(tuple),
    keys=st.none() | st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3).map(tuple),
    effects=st.builds(
        Effects,
        rotation=st.none() | st.tuples(st.text(min_size=1, max_size=5), st.integers(0, 10**6)),
        contacts=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
        capacity=st.none() | st.lists(st.text(min_size=1, max_size=5), max_size=2).map(tuple),
    ),
    since_ms=st.none() | st.integers(0, 2**45),
    trace=st.none() | st.text(min_size=1, max_size=10),
)


@settings(max_examples=100, deadline=None)
@given(outbox=outboxes, batch=st.none() | st.text(min_size=1, max_size=12))
def test_an_outbox_reads_back_as_written_in_a_document_and_in_its_record(outbox: Outbox, batch: str | None) -> None:
    assert decode_outbox(encode_outbox(outbox)) == outbox
    kept = dataclasses.replace(outbox, batch=batch)
    record = RoutingRecord(lead_id="l", account_id="acme", version=1, state=None, correlation_id="l", outbox=kept)
    assert decode_record(encode_record(record)).outbox == kept


class SlowAfterStoring(FakeRecords):
    """Stores the batch in time, then (before `_store` measures its lateness: other replicas' records flushed
    first, a slow broker) the wall clock passes STALE_BATCH_SECONDS and another replica's sweeper finishes the
    batch's document from the records it names."""

    def __init__(self, wall: list[float], sweeper: list[RouterService]) -> None:
        super().__init__()
        self.wall, self.sweeper = wall, sweeper

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        result = await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        self.wall[0] += STALE_BATCH_SECONDS + 1
        await self.sweeper[0].republish_stale()
        return result


@pytest.mark.asyncio
async def test_a_batch_measured_late_after_its_records_are_stored_republishes_the_same_events_only() -> None:
    """Helper 88 (decision 0068): `_store` measures lateness after the batch's records are stored and after other
    replicas' records are flushed, so a batch stored in time can take the late path (its outboxes moved into its
    records) after another replica's sweeper published them from its document. The events then go out twice, with
    the same ids and the same bytes (consumers drop the copy), never with different content; the records end
    flushed and the document dropped."""
    wall = [time.time()]
    sweeper: list[RouterService] = []
    records, contacts = SlowAfterStoring(wall, sweeper), FakeContacts()
    out = Published()
    writer, other = (
        router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records, contacts=contacts, publish=out,
                        wall_clock=lambda: wall[0])
        for _ in range(2)
    )  # fmt: skip
    sweeper.append(other)
    leads = [lead(1), lead(2)]
    assert not await writer.on_leads_received(leads)

    bodies: dict[str, set[bytes]] = {}
    for _, body in out.records:
        bodies.setdefault(str(ROUTING_EVENT.validate_json(body).event_id), set()).add(body)
    assert all(len(copies) == 1 for copies in bodies.values()), "an event id published with different content"
    copies = Counter(str(e.event_id) for _, e in out.events())
    assert set(copies.values()) == {2}, "published by the sweeper from the document, and again from the records"
    offered = {e.payload.lead_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert offered == {le.event_id for le in leads}
    assert records.outboxes == {}
    assert all(not decode_record(records.docs[str(le.event_id)]).outbox for le in leads), "flushed and cleared"
