"""A due record the sweeper cannot decide, or decides but cannot store because a claim changed its lead meanwhile,
leaves the pass's shared state as it found it (decision 0077): the rotation's turn and the caps it would have
taken are not counted for the pass's later deadlines. On the router's in-memory stores; the pass itself on
nx-27017: integration/test_router_state.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_router import ClaimRacingSweep, FakeRecords, FakeRotations, Published, router_on_fakes, website_lead

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import Usage
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import LeadClaimed, LeadOffered

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


async def _second_lead_after_expiry(*, claim_races_the_sweep: bool) -> tuple[str, dict[str, int]]:
    """Two leads offered to a and b; at the deadline, a claims the first, just before the pass (no race) or
    between the pass's read and its compare-and-set (race). Who the second goes to, and the stored cursors."""
    now = [NOW]
    records, rotations, out = ClaimRacingSweep(), FakeRotations(), Published()
    router = router_on_fakes(ACCOUNT, clock=lambda: now[0], records=records, rotations=rotations, publish=out)
    records.service = router
    first, second = website_lead("acme", NOW, "pat1@example.com"), website_lead("acme", NOW, "pat2@example.com")
    assert not await router.on_leads_received([first, second])
    offers = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert (offers[first.event_id], offers[second.event_id]) == ("a", "b")
    deadline = max(e.payload.deadline for e in out.lead_events() if isinstance(e, LeadOffered))
    claim = LeadActivity.create(
        account_id="acme",
        occurred_at=deadline - timedelta(seconds=1),  # made in time (decision 0087)
        payload=LeadActivityPayload(lead_id=first.event_id, agent_id="a", action=ActivityAction.ACCEPT),
    )
    if claim_races_the_sweep:
        records.claim = claim
    else:
        await router.on_activity(claim)
    now[0] = deadline + timedelta(seconds=1)
    for _ in range(3):  # as the sweeper goes round while deadlines are due
        await router.sweep_once()
    assert [e for e in out.lead_events() if isinstance(e, LeadClaimed)], "a claimed the first lead"
    again = [e for e in out.lead_events() if isinstance(e, LeadOffered) and e.payload.lead_id == second.event_id]
    return again[-1].payload.agent_id, dict(rotations.positions)


async def test_an_expiry_that_loses_its_compare_and_set_to_a_claim_takes_no_turn_from_the_rotation() -> None:
    # The pass decided both leads (the first's expiry took c's turn, the second's then a's) and a claim won the
    # first: the second, decided after a turn that did not happen, is decided again, and goes to c as it would
    # have without the race (helper 63's review).
    alone_agent, alone_cursors = await _second_lead_after_expiry(claim_races_the_sweep=False)
    raced_agent, raced_cursors = await _second_lead_after_expiry(claim_races_the_sweep=True)
    assert raced_agent == alone_agent == "c"
    assert raced_cursors == alone_cursors
