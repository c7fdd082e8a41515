"""A batch's new records are stored a chunk at a time while the batch's next leads are decided, each chunk after
the one before it, and published while the next is stored (decision 0095), on the router's in-memory stores.

What this buys (the database and the router working at once) is measured by bench/router_bench.py, not here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_router import FakeRecords, Published, router_on_fakes, website_lead

from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.domain.record import RoutingRecord
from leadflow_router.handlers import STORE_CHUNK, RouterService
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import LeadOffered

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B")), round_robin=True)
LEADS = 2 * STORE_CHUNK + STORE_CHUNK // 2  # three chunks, the last one short


class ChunkedRecords(FakeRecords):
    """Records each store's lead ids in call order; `fail_call` (1-based) raises there; `hold_first`, awaited by
    the first store before it stores anything."""

    def __init__(self) -> None:
        super().__init__()
        self.stores: list[list[str]] = []
        self.fail_call: int | None = None
        self.hold_first: asyncio.Event | None = None
        self.storing = 0
        self.on_store: list[int] = []  # how many leads were decided when each store began (see the test)
        self.decided = 0

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int
    ) -> tuple[list[RoutingRecord], list[str]]:
        self.stores.append([r.lead_id for r in records])
        self.on_store.append(self.decided)
        assert self.storing == 0, "a chunk's store began before the one before it ended"
        self.storing += 1
        try:
            if len(self.stores) == 1 and self.hold_first is not None:
                await asyncio.wait_for(self.hold_first.wait(), timeout=10)
            await asyncio.sleep(0)  # a real store yields: the next chunk's task may run meanwhile
            if len(self.stores) == self.fail_call:
                raise ConnectionError("database down")
            return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms)
        finally:
            self.storing -= 1


def leads(count: int = LEADS) -> list[LeadReceived]:
    return [website_lead("acme", NOW, email=f"pat{n}@example.com") for n in range(count)]


def service(records: ChunkedRecords, published: Published) -> RouterService:
    return router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records, publish=published)


def offers(published: Published) -> dict[str, str]:
    """Lead id -> the agent of its (only) offer, checking each lead was offered once."""
    offered = [e for _, e in published.events() if isinstance(e, LeadOffered)]
    counts = Counter(str(e.payload.lead_id) for e in offered)
    assert set(counts.values()) <= {1}, "a lead offered twice"
    return {str(e.payload.lead_id): e.payload.agent_id for e in offered}


@pytest.mark.asyncio
async def test_a_batch_larger_than_a_chunk_is_stored_in_chunks_in_the_order_decided_and_routed_as_one() -> None:
    records, published = ChunkedRecords(), Published()
    batch = leads()
    assert not await service(records, published).on_leads_received(batch)

    ids = [str(e.event_id) for e in batch]
    assert records.stores == [ids[:STORE_CHUNK], ids[STORE_CHUNK : 2 * STORE_CHUNK], ids[2 * STORE_CHUNK :]]
    offered = offers(published)
    assert [offered[i] for i in ids] == ["a", "b"] * (LEADS // 2), "one rotation across the chunks (R6)"
    assert records.outboxes == {}, "every chunk's outbox document dropped once published"


@pytest.mark.asyncio
async def test_the_next_chunk_is_decided_while_the_one_before_is_stored() -> None:
    records, published = ChunkedRecords(), Published()
    records.hold_first = asyncio.Event()
    router = service(records, published)
    new_record = router._new_record

    def counting(*args: Any, **kwargs: Any) -> RoutingRecord:
        records.decided += 1
        if records.decided == 2 * STORE_CHUNK:
            assert records.hold_first is not None
            records.hold_first.set()  # the first store goes on only once the second chunk is decided
        return new_record(*args, **kwargs)

    router._new_record = counting  # type: ignore[method-assign]
    assert not await router.on_leads_received(leads())
    # The first chunk's store began with only its own leads decided, and was still going on (held) while the
    # second chunk was decided: the database and the decisions at once. The second waited for the first.
    assert records.on_store[0] == STORE_CHUNK
    assert records.on_store[1] >= 2 * STORE_CHUNK
    assert len(offers(published)) == LEADS


@pytest.mark.asyncio
@pytest.mark.parametrize("failing", [1, 2])
async def test_a_chunk_whose_store_fails_stores_nothing_after_it_and_the_redelivery_routes_each_lead_once(
    failing: int,
) -> None:
    records, published = ChunkedRecords(), Published()
    records.fail_call = failing
    router = service(records, published)
    batch = leads()
    with pytest.raises(ConnectionError):
        await router.on_leads_received(batch)

    ids = [str(e.event_id) for e in batch]
    stored_before = ids[: STORE_CHUNK * (failing - 1)]
    assert sorted(records.docs) == sorted(stored_before), "nothing stored after the chunk that failed"
    assert len(records.stores) == failing, "the chunks after it were not tried"
    assert sorted(offers(published)) == sorted(stored_before), "only what was stored is published"

    records.fail_call = None
    assert not await router.on_leads_received(batch)  # the redelivery
    offered = offers(published)
    assert sorted(records.docs) == sorted(ids)
    assert [offered[i] for i in ids] == ["a", "b"] * (LEADS // 2), "the rotation as if nothing had failed"
    assert records.outboxes == {}
