"""An agent leaves the office (deactivated or moved): its offers are withdrawn, its leads go on."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from test_router_rules import NOW, account, agents, new_lead, route

from leadflow_router.domain.decisions import on_activity
from leadflow_router.domain.departures import Departure, on_agent_left
from leadflow_router.domain.model import (
    Activity,
    DepartedLeads,
    LeadSourceConfig,
    LeadState,
    LeadStatus,
    OfferStatus,
    PauseWindow,
)
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.commands import AgentDeparture
from leadflow_shared.events.routing import (
    ActivityLogged,
    AssignmentReason,
    LeadAssigned,
    LeadOffered,
    LeadReleased,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

LEFT = Departure("a", AgentDeparture.DEACTIVATED)
RACE = {"Race": LeadSourceConfig(name="Race", race_count=2)}


def offered(race: int = 1) -> LeadState:
    """A lead offered to `a` (and `b` in a race of two): rotation from position 1 skips the broker."""
    snapshot = account(sources=RACE) if race == 2 else account()
    state = route(new_lead(name="Race") if race == 2 else new_lead(), snapshot, rotation=1).state
    assert state is not None
    assert {o.agent_id for o in state.open_offers} == ({"a", "b"} if race == 2 else {"a"})
    return state


def held_by_a(policy: DepartedLeads) -> tuple[LeadState, object]:
    """A lead `a` holds without ever having been offered it (R5: roster position 1 is `a`, so the
    broker pool is the next active agent)."""
    snapshot = account(*agents("a", "broker", "b", "c"), round_robin=False, departed_agent_leads=policy)
    won = route(new_lead(), snapshot).state
    assert won is not None
    assert (won.holder, won.offers) == ("a", ())
    return won, snapshot


def test_a_race_goes_on_without_the_agent_who_left() -> None:
    state = offered(race=2)
    outcome = on_agent_left(state, LEFT, account(sources=RACE), 0, NOW)
    assert [e.kind for e in outcome.events] == [OfferWithdrawn]
    assert outcome.events[0].payload.reason is WithdrawalReason.AGENT_LEFT  # type: ignore[attr-defined]
    assert outcome.state is not None
    assert [o.agent_id for o in outcome.state.open_offers] == ["b"]
    assert outcome.state.status is LeadStatus.OFFERED


def test_the_last_open_offer_withdrawn_offers_the_lead_to_the_next_agent_at_once() -> None:
    state = offered()
    snapshot = account(*agents("broker", "a", "b", "c"))
    outcome = on_agent_left(state, LEFT, snapshot, 2, NOW)
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, LeadOffered]
    assert outcome.state is not None
    assert [o.agent_id for o in outcome.state.open_offers] == ["b"]
    assert outcome.state.round == 2
    assert outcome.explanation.startswith("a was deactivated, so its offer was withdrawn; R6: offered to b")


def test_inside_a_pause_the_lead_waits_like_an_expiry() -> None:
    state = offered()
    always = PauseWindow(frozenset(range(7)), NOW.time().replace(hour=0), NOW.time().replace(hour=23, minute=59))
    outcome = on_agent_left(state, LEFT, account(pause=(always,)), 2, NOW)
    assert outcome.state is not None
    assert outcome.state.status is LeadStatus.WAITING
    assert [e.kind for e in outcome.events] == [OfferWithdrawn]


@pytest.mark.parametrize(
    ("policy", "status", "holder", "kinds"),
    [
        (DepartedLeads.UNASSIGNED, LeadStatus.UNASSIGNED, None, [LeadReleased]),
        (DepartedLeads.BROKER_POOL, LeadStatus.ASSIGNED, "broker", [LeadAssigned]),
        (DepartedLeads.REROUTE, LeadStatus.OFFERED, None, [LeadOffered]),
    ],
)
def test_a_held_lead_goes_where_the_account_says(
    policy: DepartedLeads, status: LeadStatus, holder: str | None, kinds: list[type]
) -> None:
    won, snapshot = held_by_a(policy)
    outcome = on_agent_left(won, LEFT, snapshot, 2, NOW)  # type: ignore[arg-type]
    assert outcome.state is not None
    assert (outcome.state.status, outcome.state.holder) == (status, holder)
    assert [e.kind for e in outcome.events] == kinds
    if policy is DepartedLeads.UNASSIGNED:
        released = outcome.events[0].payload
        assert (released.agent_id, released.broker_agent_id) == ("a", "broker")  # type: ignore[attr-defined]
        assert outcome.state.next_deadline is None
    if policy is DepartedLeads.BROKER_POOL:
        assert outcome.events[0].payload.reason is AssignmentReason.AGENT_LEFT  # type: ignore[attr-defined]
    if policy is DepartedLeads.REROUTE:
        assert "a" not in {o.agent_id for o in outcome.state.open_offers}, "the agent who left is not offered it"


def test_leads_of_others_and_shared_leads_are_untouched() -> None:
    state = offered()
    outcome = on_agent_left(state, Departure("c", AgentDeparture.MOVED), account(), 0, NOW)
    assert (outcome.state, outcome.events) == (state, ())
    won, snapshot = held_by_a(DepartedLeads.UNASSIGNED)
    shared = dataclasses.replace(won, share_id="share-1")  # T1: a realtor holds it for the brokerage
    kept = on_agent_left(shared, LEFT, snapshot, 0, NOW)  # type: ignore[arg-type]
    assert (kept.state, kept.events) == (shared, ())


def test_an_agent_no_longer_active_cannot_claim_the_offer_it_still_holds() -> None:
    state = offered()
    late = on_activity(state, Activity("a", ActivityAction.ACCEPT), NOW + timedelta(minutes=1), can_claim=False)
    assert late.state == state
    [logged] = late.events
    assert logged.kind is ActivityLogged
    assert logged.payload.claim_refused == "a is no longer an active agent of this office"  # type: ignore[attr-defined]
    assert all(o.status is OfferStatus.OPEN for o in state.offers)
