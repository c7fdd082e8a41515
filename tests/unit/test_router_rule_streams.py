"""Issue 15 item 8: properties over random rule sets, rosters and lead streams (pure decisions, the
router's bookkeeping of who a lead counts against simulated beside them): no cap is ever exceeded, no
lead goes to a paused or unapproved agent, every lead has exactly one holder or open offers (a pond's
included), and the decision names the rule that decided."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_router.domain.availability import Gate, Usage, counted
from leadflow_router.domain.decisions import (
    NewLead,
    RoutingContext,
    Standing,
    on_activity,
    on_deadline,
    route_new_lead,
    rule_for,
)
from leadflow_router.domain.model import AccountSnapshot, Activity, Agent, LeadState, LeadStatus
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import DEFAULT_RULE_ID, RuleSet

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
NAMES = ["a", "b", "c", "d", "e"]
INTENTS = ["buy", "sell", "rent"]

agents = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(0, 3))),  # paused, approved, day cap
    min_size=len(NAMES),
    max_size=len(NAMES),
)
actions = st.one_of(
    st.builds(lambda a: {"kind": "agent", "agent_id": a}, st.sampled_from(NAMES)),
    st.builds(
        lambda agents, mode, race: {"kind": "rotation", "agents": agents, "mode": mode, "race": race},
        st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True),
        st.sampled_from(["round_robin", "weighted", "balanced", "random"]),
        st.integers(1, 3),
    ),
    st.just({"kind": "pond", "pond": "all"}),
)
rule_sets = st.lists(st.tuples(st.lists(st.sampled_from(INTENTS), max_size=2, unique=True), actions), max_size=3).map(
    lambda rules: RuleSet.model_validate(
        {
            "ponds": [{"id": "all", "name": "All", "hold_seconds": 3600}],
            "rules": [
                {"id": f"r{i}", "name": f"R{i}", "criteria": {"intents": intents}, "action": action}
                for i, (intents, action) in enumerate(rules)
            ],
        }
    )
)
steps = st.lists(
    st.tuples(st.sampled_from([*INTENTS, None]), st.sampled_from(["claim", "expire", "leave"])), max_size=25
)


def roster(flags: list[tuple[bool, bool, int | None]]) -> tuple[Agent, ...]:
    made = [Agent("broker", "Broker", round_robin=False)]
    for name, (paused, approved, cap) in zip(NAMES, flags, strict=True):
        caps = {"caps": {"day": cap}} if cap is not None else {}
        made.append(
            Agent(
                name,
                name,
                round_robin=approved,
                availability=AgentAvailability.model_validate({"paused": paused, **caps}),
            )
        )
    return tuple(made)


def summary(intent: str | None) -> LeadSummary:
    return LeadSummary(
        contact=Contact(first_name="Jo", email=f"{uuid.uuid4().hex[:8]}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        criteria=LeadCriteria.model_validate({"intent": intent}) if intent else None,
    )


def usage(leads: dict[str, LeadState]) -> dict[str, Usage]:
    held = Counter(agent for state in leads.values() for agent in counted(state))
    return {agent: Usage(n, n, n) for agent, n in held.items()}


def check(state: LeadState, snapshot: AccountSnapshot, leads: dict[str, LeadState]) -> None:
    open_to = [o.agent_id for o in state.open_offers]
    assert (state.holder is None) == bool(open_to) or state.status is LeadStatus.WAITING, state
    for agent_id in open_to:
        agent = snapshot.agent(agent_id)
        assert agent is not None
        assert agent.round_robin
        assert agent.availability is not None
        assert not agent.availability.paused
    held = usage(leads)
    for agent in snapshot.roster:
        caps = agent.availability.caps if agent.availability else None
        if caps is not None and caps.day is not None:
            assert held.get(agent.agent_id, Usage()).day <= caps.day, (agent.agent_id, held)


@settings(max_examples=150, deadline=None)
@given(flags=agents, rules=rule_sets, stream=steps, round_robin=st.booleans())
def test_random_rules_rosters_and_streams_keep_every_promise(
    flags: list[tuple[bool, bool, int | None]], rules: RuleSet, stream: list[tuple[str | None, str]], round_robin: bool
) -> None:
    snapshot = AccountSnapshot("acme", "Acme", roster(flags), round_robin=round_robin, rules=rules)
    leads: dict[str, LeadState] = {}
    cursor, now = 0, NOW
    for intent, then in stream:
        lead = NewLead(str(uuid.uuid4()), "acme", summary(intent))
        choice = rule_for(lead, snapshot, now)
        outcome = route_new_lead(
            lead, snapshot, RoutingContext(rotation=cursor, usage=usage(leads), choice=choice), now
        )
        cursor = outcome.rotation if outcome.rotation is not None else cursor
        decision = outcome.decision()
        assert decision is not None
        assert decision.rule_id in {choice.rule_id, None}
        if choice.rule_id != DEFAULT_RULE_ID:
            assert f"rule {choice.name!r}" in outcome.explanation or "R5" in outcome.explanation
        state = outcome.state
        assert state is not None
        leads[lead.lead_id] = state
        check(state, snapshot, leads)
        state = _then(then, state, snapshot, leads, now)
        leads[lead.lead_id] = state
        check(state, snapshot, leads)
        now += timedelta(minutes=1)


def _then(
    what: str, state: LeadState, snapshot: AccountSnapshot, leads: dict[str, LeadState], now: datetime
) -> LeadState:
    """What the router does next with the lead, as its handlers call the decisions (usage as they read it)."""
    others = {k: v for k, v in leads.items() if k != state.lead_id}
    if what == "claim" and state.open_offers:
        claimer = snapshot.agent(state.open_offers[-1].agent_id)
        assert claimer is not None
        # A pond's offers are not counted: the handler asks the gate at the claim (`_cannot_take`).
        refused = Gate(now, frozenset(), usage(others)).refuses(claimer) if state.pond else None
        after = on_activity(state, Activity(claimer.agent_id, ActivityAction.ACCEPT), now, can_claim=refused is None)
        assert after.state is not None
        return after.state
    if what == "expire" and state.next_deadline is not None:
        expired = on_deadline(state, snapshot, Standing(0, {}, usage(others)), state.next_deadline)
        assert expired.state is not None
        return expired.state
    return state
