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

import pytest
from fakes_router import FakeRecords, Published
from test_router_erasure import KEY, Router, after_erasure, erasure, lead, published_after_erasure

from leadflow_router.adapters.codec import encode_outbox
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.record import RoutingRecord
from leadflow_router.handlers import STALE_BATCH_SECONDS

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


class SweeperPausedAfterRead(FakeRecords):
    """The writer of the repeat's batch dies after its document and its first record (the repeat), so the document
    stays open; once `pausing`, whoever finishes a document (`_finish_batches`: another replica's sweeper) pauses
    after it read the document's records and before it publishes them: `read` is set there, it goes on at `go`."""

    def __init__(self) -> None:
        super().__init__()
        self.read, self.go = asyncio.Event(), asyncio.Event()
        self.pausing = self.dying = False

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if not self.dying:
            return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        await super().insert_batch(records[:1], batch_id=batch_id, now_ms=now_ms, before_records=before_records)
        self.outboxes[f"{batch_id}/0"]["leads"].extend(
            {"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records[1:]
        )
        raise ConnectionError("the writer died after its first record")

    async def readable_many(self, lead_ids: list[str], read: str = "batch") -> dict[str, RoutingRecord]:
        found = await super().readable_many(lead_ids, read)
        if read == "batch" and self.pausing:
            self.pausing = False
            self.read.set()
            await self.go.wait()
        return found


async def test_a_sweeper_that_read_the_repeat_before_the_erasure_publishes_nothing_of_it_after() -> None:
    """The same root (a finisher publishing what it read before the erasure, without checking the record is still
    the one it read) through another replica's sweeper: it read the open document and the repeat's record (version
    1, naming it), then the erasure ran whole (published the repeat from the document, detached it, forgot the keys,
    ContactErased); the sweeper then publishes the repeat's ActivityLogged with Pat after ContactErased and
    registers Pat's key naming the erased lead again."""
    records = SweeperPausedAfterRead()
    router, first = Router(records=records), lead(1)
    assert not await router.service.on_leads_received([first])
    repeat, other = lead(1), lead(2)
    records.dying = True
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([repeat, other])
    records.dying = False
    assert str(repeat.event_id) in records.docs
    assert str(other.event_id) not in records.docs
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000

    records.pausing = True
    sweeper = asyncio.create_task(router.service.republish_stale())
    await asyncio.wait_for(records.read.wait(), 5)
    await router.service.on_command(erasure(email="pat1@example.com"))
    assert KEY not in router.contacts.leads, "the erasure forgot the key"
    records.go.set()
    await asyncio.wait_for(sweeper, 5)

    assert only_copies_after_the_erasure(router.out)
    assert KEY not in router.contacts.leads, "Pat's email key is kept after the erasure"
