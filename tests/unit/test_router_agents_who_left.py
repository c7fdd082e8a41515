"""An agent who left the office (T3: status not `active`, still on the roster until taken off it) takes nothing
(decision 0030), helper 180's review (session 38): it got new leads at once.

- R4: a lead a provider pre-assigned to it was assigned to it (and its contact emailed to one who can no longer sign
  in); now routed as a general lead, saying why, as for an agent the account does not have.
- R2/R3 with auto-accept on (the default): its own site's or listing's lead was assigned before anything asked
  whether it was active; now routed as a general lead, as with auto-accept off (decision 0101).
- R5/R9/T2: roster position 1 made inactive held every new general lead and fallback of the office; now the next
  active agent holds the broker pool (`AccountSnapshot.pool_holder`), as T3's departures already did.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from leadflow_router.domain.decisions import NewLead, RoutingContext, route_new_lead
from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _account(*roster: Agent) -> AccountSnapshot:
    return AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=roster,
        round_robin=True,
        time_zone="America/New_York",
        sources={"Zillow": LeadSourceConfig(name="Zillow", referral_fee_percent=25.0, race_count=1)},
        default_source=LeadSourceConfig(name="default", referral_fee_percent=10.0),
    )


def _lead(**source: object) -> NewLead:
    fields: dict[str, object] = {"channel": LeadChannel.BROKERAGE_SITE, "name": "Website", **source}
    summary = LeadSummary(
        contact=Contact(first_name="Jane", email="jane@example.com"), source=LeadSource.model_validate(fields)
    )
    return NewLead(lead_id=str(uuid.uuid4()), account_id="acme", summary=summary)


def _holders(outcome: object) -> set[str]:
    state = outcome.state  # type: ignore[attr-defined]
    assert state is not None
    return {state.holder} if state.holder else {o.agent_id for o in state.open_offers}


GONE = Agent("gone", "Gone", active=False, site_hosts=frozenset({"gone.acme.com"}))
ROSTER = (Agent("broker", "Broker"), Agent("a", "A"), Agent("b", "B"), GONE)


def test_a_lead_pre_assigned_to_an_agent_who_left_the_office_is_not_given_to_that_agent() -> None:
    lead = _lead(channel="lead_gen", assigned_agent_id="gone", provider="Zillow", name="Zillow")
    outcome = route_new_lead(lead, _account(*ROSTER), RoutingContext(rotation=0), NOW)
    assert "gone" not in _holders(outcome), f"an inactive (departed) agent got the lead: {outcome.explanation}"


@pytest.mark.parametrize("how", ["site", "listing"])
def test_an_auto_accepted_direct_lead_of_an_agent_who_left_is_not_given_to_that_agent(how: str) -> None:
    fields = (
        {"site_host": "gone.acme.com"}
        if how == "site"
        else {"channel": "listing_inquiry", "listing_id": "MLS-1", "listing_agent_id": "gone"}
    )
    outcome = route_new_lead(_lead(**fields), _account(*ROSTER), RoutingContext(rotation=0), NOW)
    assert "gone" not in _holders(outcome), f"an inactive (departed) agent got the lead: {outcome.explanation}"


def test_the_agent_who_left_still_gets_nothing_by_rotation() -> None:
    """Control: round robin (R6) does skip it, so only R2-R4 hand it leads."""
    outcome = route_new_lead(_lead(), dataclasses.replace(_account(*ROSTER)), RoutingContext(rotation=3), NOW)
    assert "gone" not in _holders(outcome)


def test_with_round_robin_off_a_new_lead_does_not_go_to_a_position_1_who_left() -> None:
    """R5 took `account.broker` (roster[0]) whatever its `active`, where T3's broker pool (`departures.py`) takes
    "roster position 1, or the next active agent": a position 1 made inactive held every new general lead of the
    office, and could not sign in to distribute them."""
    roster = (Agent("broker", "Broker", active=False), Agent("a", "A"), Agent("b", "B"))
    snapshot = dataclasses.replace(_account(*roster), round_robin=False)
    outcome = route_new_lead(_lead(), snapshot, RoutingContext(rotation=0), NOW)
    assert "broker" not in _holders(outcome), f"an inactive position 1 got the lead: {outcome.explanation}"


def test_the_broker_pool_is_held_by_position_1_or_the_next_active_agent() -> None:
    a, b = Agent("a", "A"), Agent("b", "B")
    off = Agent("off", "Off", active=False)
    assert _account(a, b).pool_holder is a
    assert _account(off, a, b).pool_holder is a
    assert _account(off, Agent("off2", "Off 2", active=False), b).pool_holder is b
    assert _account(off).pool_holder is off, "nobody active: position 1 (an office of one who left)"
