"""Helper 188's review of T3 (session 38): the departing agent is roster position 1 and the account it is read in
still has it active (crm-api sends `ReleaseAgentLeads` before it saves the status; the router reads the account on
the command).

`broker_pool` hands its lead to the next active agent *but the one leaving* (`_release`). `reroute` offers it again
to everyone but the one leaving (`exclude`), and when nobody is left R9 falls back to `pool_holder`, which is the
one leaving: the lead comes straight back to the agent who left, held for good by someone who has no access.
"""

from __future__ import annotations

import pytest
from test_router_rules import NOW, account, agents, new_lead, route

from leadflow_router.domain.departures import Departure, on_agent_left
from leadflow_router.domain.model import DepartedLeads, LeadStatus
from leadflow_shared.events.commands import AgentDeparture
from leadflow_shared.events.routing import AssignmentReason

pytestmark = pytest.mark.unit


def test_a_rerouted_lead_of_a_departing_position_1_does_not_fall_back_to_it() -> None:
    # Position 1 ("boss") and one other agent; the other agent is not approved for round robin, so R6 has nobody
    # but the boss, and the lead falls back (R9). The boss claims nothing: it holds its lead.
    snapshot = account(
        *agents("boss"), *agents("c", round_robin=False), round_robin=True, departed_agent_leads=DepartedLeads.REROUTE
    )
    state = route(new_lead(), snapshot).state
    assert state is not None
    state = state.evolve(
        offers=(), holder="boss", status=LeadStatus.ASSIGNED, reason=AssignmentReason.MANUAL, next_deadline=None
    )

    outcome = on_agent_left(state, Departure("boss", AgentDeparture.DEACTIVATED), snapshot, 0, NOW)

    assert outcome.state is not None
    assert outcome.state.holder != "boss", f"the lead went back to the agent who left: {outcome.explanation}"
