"""A due record the sweeper cannot decide leaves the pass's shared state as it found it (decision 0077): the
rotation's turn and the caps it would have taken are not counted for the pass's later deadlines. On the
router's in-memory stores; the pass itself on nx-27017: integration/test_router_state.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_router import FakeRecords, router_on_fakes, website_lead

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import Usage
from leadflow_router.domain.model import AccountSnapshot, Agent

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B"), Agent("c", "C")), round_robin=True
)


async def test_a_record_that_fails_to_be_decided_takes_no_turn_from_the_rotation() -> None:
    records = FakeRecords()
    service = router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records)
    lead = website_lead("acme", NOW)
    assert not await service.on_leads_received([lead])
    record = decode_record(records.docs[str(lead.event_id)])
    due = NOW + timedelta(hours=1)  # past its claim window

    untouched = await service._fired(record, due, {}, {})  # what deciding it from the stored state makes

    cursors: dict[str, int] = {}
    usage: dict[str, dict[str, Usage]] = {}

    def fails(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("a fault in this record alone")

    decide = service._next_record
    service._next_record = fails  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="this record alone"):
        await service._fired(record, due, cursors, usage)
    service._next_record = decide  # type: ignore[method-assign]
    again = await service._fired(record, due, cursors, usage)
    assert again.state == untouched.state, "the failed attempt moved the rotation the next decision sees"
