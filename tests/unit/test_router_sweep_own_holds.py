"""A lead's own hold, written by a sweeper's `_reserve` that never stored (a crash), does not make the agent it was
decided to look full to the lead's next decision: a pass reads usage without its own leads' holds (helper 160,
session 32)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes_router import FakeCapacity, FakeContacts, FakeRotations, Published, router_on_fakes
from test_router_deciders_contended import START, HookedRecords, account_of, lead, offers_of

from leadflow_router.domain.model import Agent
from leadflow_shared.availability import AgentAvailability

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

CAPPED = AgentAvailability.model_validate({"caps": {"day": 1}})


class CrashError(Exception):
    """The sweeper's process dies here."""


async def test_a_sweep_after_a_crash_does_not_count_the_lead_s_own_stale_hold_against_its_next_agent() -> None:
    """X is offered to a; the offer runs out. The sweeper decides X on to b (day cap 1, no lead yet), `_reserve`
    writes X's joined hold {a, b} and takes the turn, and the process dies before the compare-and-set. The next
    pass (another replica) fires X again: b's usage now counts X itself (its stale hold), so b looks full and X
    falls back to the boss, although b has its slot and X was never stored as b's. A new lead's batch leaves out the
    holds of its own leads ("a crash may have left them", 0061); a sweep does not. Expected: X re-offered to b."""
    acme = account_of("acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED))
    now = [START]
    records, out, capacity = HookedRecords(), Published(), FakeCapacity()
    shared = {"records": records, "publish": out, "rotations": FakeRotations(), "contacts": FakeContacts(),
              "capacity": capacity}  # fmt: skip
    crashing = router_on_fakes(acme, clock=lambda: now[0], **shared)
    x = lead("acme", START, 1)
    assert not await crashing.on_leads_received([x])
    assert offers_of(out, x) == ["a"]
    now[0] = START + timedelta(minutes=16)

    async def dies() -> None:
        raise CrashError

    records.before_cas = dies
    with pytest.raises(CrashError):
        await crashing.sweep_once()
    assert "b" in capacity.counting(str(x.event_id)), "the (pending) hold the crash left"
    survivor = router_on_fakes(acme, clock=lambda: now[0], **shared)
    await survivor.sweep_once()
    events = [type(e).__name__ + ":" + str(getattr(e.payload, "agent_id", "")) for e in out.lead_events()]
    assert offers_of(out, x) == ["a", "b"], f"X after the crash: {events}; held {capacity.held}"
