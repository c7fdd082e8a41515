"""Leads distributed by hand: a broker or admin assigns or offers a lead to an agent; the agent
who holds a lead gives it back to the broker (RealHub: "the broker or admin distributes those
leads"; ClientBAY: "return lead to broker").

The router stays the only writer of who holds a lead: crm-api checks and sends a command, and
these transitions decide, with the events and an explanation naming who did it and why.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from leadflow_router.domain.decisions import (
    Emit,
    Outcome,
    assigned_event,
    fit_explanation,
    offered_event,
    withdraw_open_offers,
)
from leadflow_router.domain.model import AccountSnapshot, Agent, LeadState, LeadStatus, Offer, RoutingRejected
from leadflow_router.domain.schedule import claim_deadline
from leadflow_shared.events.commands import DistributionMode
from leadflow_shared.events.routing import AssignmentReason, LeadReleased, LeadReleasedPayload, WithdrawalReason


@dataclass(frozen=True, slots=True)
class Distribution:
    agent_id: str
    mode: DistributionMode
    claim_window: timedelta | None  # offers only; None: the lead source's window
    note: str
    by_user_id: str


def on_distributed(state: LeadState, d: Distribution, account: AccountSnapshot, now: datetime) -> Outcome:
    """Assign the lead to `d.agent_id`, or offer it with a claim window; open offers are withdrawn."""
    if state.share_id is not None:
        raise RoutingRejected(f"lead {state.lead_id} is shared with a realtor (T1); it cannot be distributed")
    agent = account.agent(d.agent_id)
    if agent is None or not agent.active:
        raise RoutingRejected(f"{d.agent_id} is not an active agent of {account.account_id}")
    why = f"by {d.by_user_id}" + (f": {d.note}" if d.note else "")
    if d.mode is DistributionMode.ASSIGN and state.holder == agent.agent_id and not state.open_offers:
        return Outcome(state, (), f"{agent.agent_id} already holds the lead")
    offers, events = withdraw_open_offers(state, WithdrawalReason.REASSIGNED)
    # A hand offer is no pond offer: it counts against the agent's caps and is claimed as any offer (helper 128).
    base = state.evolve(offers=offers, next_deadline=None, direct_phase=False, pond=None)
    if d.mode is DistributionMode.ASSIGN:
        explanation = fit_explanation(f"Assigned by hand to {agent.agent_id} {why}.")
        assigned = base.evolve(status=LeadStatus.ASSIGNED, holder=agent.agent_id, reason=AssignmentReason.MANUAL)
        return Outcome(assigned, (*events, assigned_event(assigned, explanation)), explanation)
    window = d.claim_window or account.source(state.source_name).claim_window
    deadline = claim_deadline(now, window, account.pause, account.time_zone)
    offer = Offer(agent.agent_id, state.round + 1, deadline)
    explanation = fit_explanation(f"Offered by hand to {agent.agent_id} until {deadline.isoformat()} {why}.")
    offered = base.evolve(
        status=LeadStatus.OFFERED,
        holder=None,
        reason=None,
        offers=(*offers, offer),
        round=offer.round,
        next_deadline=deadline,
    )
    return Outcome(offered, (*events, offered_event(offered, offer, 1, explanation)), explanation)


def on_returned(state: LeadState, agent_id: str, note: str, account: AccountSnapshot) -> Outcome:
    """The holder gives the lead back: the broker pool (the first active roster agent but the holder)
    holds it; with nobody else in the office, it is unassigned. Anyone else's return changes nothing."""
    if state.holder != agent_id or state.share_id is not None:
        return Outcome(state, (), f"{agent_id} does not hold the lead; nothing to return")
    why = f" ({note})" if note else ""
    pool: Agent | None = next((a for a in account.roster if a.active and a.agent_id != agent_id), None)
    if pool is None:
        explanation = fit_explanation(
            f"{agent_id} gave the lead back{why}; nobody else can hold it, so it is unassigned."
        )
        # No deadline left: an idle clock of the holder would else hand it back to roster position 1 (helper 128).
        released = state.evolve(status=LeadStatus.UNASSIGNED, holder=None, reason=None, next_deadline=None, pond=None)
        payload = LeadReleasedPayload(
            lead_id=uuid.UUID(state.lead_id),
            agent_id=agent_id,
            broker_agent_id=agent_id,
            explanation=explanation,
            reason="returned",
        )
        return Outcome(released, (Emit(LeadReleased, payload),), explanation)
    explanation = fit_explanation(f"{agent_id} gave the lead back to the broker{why}; {pool.agent_id} holds it now.")
    returned = state.evolve(
        status=LeadStatus.ASSIGNED,
        holder=pool.agent_id,
        reason=AssignmentReason.RETURNED,
        next_deadline=None,
        pond=None,
    )
    return Outcome(returned, (assigned_event(returned, explanation),), explanation)
