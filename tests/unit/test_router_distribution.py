"""Leads distributed by hand and given back: the router's transitions."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from test_router_rules import NOW, account, agents, new_lead, route

from leadflow_router.domain.distribution import Distribution, on_distributed, on_returned
from leadflow_router.domain.model import LeadSourceConfig, LeadState, LeadStatus, OfferStatus, RoutingRejected
from leadflow_shared.events.commands import DistributionMode
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadOffered,
    LeadReleased,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

RACE = account(sources={"Race": LeadSourceConfig(name="Race", race_count=2)})


def raced() -> LeadState:
    state = route(new_lead(name="Race"), RACE, rotation=1).state
    assert state is not None
    assert len(state.open_offers) == 2
    return state


def by_hand(agent: str, mode: DistributionMode = DistributionMode.ASSIGN, window: int | None = None) -> Distribution:
    return Distribution(agent, mode, None if window is None else timedelta(seconds=window), "VIP", "boss")


def test_an_assignment_by_hand_ends_the_race_and_names_who_and_why() -> None:
    outcome = on_distributed(raced(), by_hand("c"), RACE, NOW)
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, OfferWithdrawn, LeadAssigned]
    assert {e.payload.reason for e in outcome.events[:2]} == {WithdrawalReason.REASSIGNED}  # type: ignore[attr-defined]
    assert outcome.state is not None
    assert (outcome.state.holder, outcome.state.reason, outcome.state.status) == (
        "c",
        AssignmentReason.MANUAL,
        LeadStatus.ASSIGNED,
    )
    assert outcome.state.next_deadline is None
    assert outcome.explanation == "Assigned by hand to c by boss: VIP."


def test_an_offer_by_hand_has_its_own_claim_window_and_leaves_the_holder() -> None:
    held = on_distributed(raced(), by_hand("c"), RACE, NOW).state
    assert held is not None
    outcome = on_distributed(held, by_hand("b", DistributionMode.OFFER, window=120), RACE, NOW)
    assert [e.kind for e in outcome.events] == [LeadOffered]
    assert outcome.state is not None
    assert (outcome.state.status, outcome.state.holder) == (LeadStatus.OFFERED, None)
    [offer] = outcome.state.open_offers
    assert (offer.agent_id, offer.deadline, offer.round) == ("b", NOW + timedelta(seconds=120), held.round + 1)
    assert outcome.state.next_deadline == offer.deadline


def test_assigning_again_to_the_holder_changes_nothing() -> None:
    held = on_distributed(raced(), by_hand("c"), RACE, NOW).state
    assert held is not None
    again = on_distributed(held, by_hand("c"), RACE, NOW)
    assert (again.state, again.events) == (held, ())


@pytest.mark.parametrize("agent", ["nobody", "gone"])
def test_only_an_active_agent_of_the_office_gets_a_lead_by_hand(agent: str) -> None:
    office = account(*agents("broker", "a"), *agents("gone", active=False))
    state = route(new_lead(), office).state
    assert state is not None
    with pytest.raises(RoutingRejected, match="not an active agent"):
        on_distributed(state, by_hand(agent), office, NOW)


def test_a_lead_shared_with_a_realtor_is_not_distributed() -> None:
    shared = dataclasses.replace(raced(), share_id="share-1")
    with pytest.raises(RoutingRejected, match="shared with a realtor"):
        on_distributed(shared, by_hand("c"), RACE, NOW)


def test_the_holder_gives_a_lead_back_to_the_broker_pool_and_nobody_else_can() -> None:
    held = on_distributed(raced(), by_hand("c"), RACE, NOW).state
    assert held is not None
    assert on_returned(held, "b", "", RACE).events == ()
    back = on_returned(held, "c", "too far", RACE)
    assert back.state is not None
    assert (back.state.holder, back.state.reason) == ("broker", AssignmentReason.RETURNED)
    assert [e.kind for e in back.events] == [LeadAssigned]
    assert back.explanation == "c gave the lead back to the broker (too far); broker holds it now."
    assert all(o.status is not OfferStatus.OPEN for o in back.state.offers)


def test_the_broker_giving_back_its_lead_passes_it_to_the_next_active_agent_or_leaves_it_unassigned() -> None:
    office = account(*agents("broker", "a"))
    state = route(new_lead(), office).state  # round robin on: offered; assign it to the broker by hand
    assert state is not None
    held = on_distributed(state, by_hand("broker"), office, NOW).state
    assert held is not None
    assert on_returned(held, "broker", "", office).state.holder == "a"  # type: ignore[union-attr]
    alone = account(*agents("broker"))
    alone_held = on_distributed(route(new_lead(), alone).state, by_hand("broker"), alone, NOW).state  # type: ignore[arg-type]
    assert alone_held is not None
    released = on_returned(alone_held, "broker", "", alone)
    assert [e.kind for e in released.events] == [LeadReleased]
    assert released.events[0].payload.reason == "returned", "given back, not left the office"  # type: ignore[attr-defined]
    assert released.state is not None
    assert released.state.status is LeadStatus.UNASSIGNED
