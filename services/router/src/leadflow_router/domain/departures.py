"""An agent leaves an office (deactivated, or moved to another office): its leads go on.

Its open offers are withdrawn; a race that loses its last open offer goes on as if its
deadline had passed (R9, R10). The leads it holds go where the account's
`departed_agent_leads` setting says: unassigned (nobody holds them until a broker or admin
distributes them by hand), to the broker pool (roster position 1), or offered again by the
routing rules to agents who have not had them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from leadflow_router.domain.decisions import (
    Emit,
    Outcome,
    Standing,
    assigned_event,
    fit_explanation,
    offer_next,
    on_deadline,
)
from leadflow_router.domain.model import AccountSnapshot, DepartedLeads, LeadState, LeadStatus, Offer, OfferStatus
from leadflow_shared.events.commands import AgentDeparture
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadReleased,
    LeadReleasedPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    WithdrawalReason,
)


@dataclass(frozen=True, slots=True)
class Departure:
    agent_id: str
    reason: AgentDeparture

    def describe(self) -> str:
        left = "was deactivated" if self.reason is AgentDeparture.DEACTIVATED else "moved to another office"
        return f"{self.agent_id} {left}"

    def holds_in(self, account: AccountSnapshot) -> bool:
        """Whether the agent is still gone from the office as the account is now: inactive there, or its record in
        another office. A departure read after the agent came back (a dead letter replayed days later, a command read
        after a mistaken deactivation was undone) releases nothing: the leads it holds now are its own (helper 192)."""
        agent = account.agent(self.agent_id)
        return agent is None or not agent.active


def on_agent_left(
    state: LeadState, departure: Departure, account: AccountSnapshot, rotation: int | Standing, now: datetime
) -> Outcome:
    """The lead after `departure`: the agent's open offers withdrawn, its hold released."""
    offers: list[Offer] = []
    events: list[Emit] = []
    for offer in state.offers:
        if offer.status is OfferStatus.OPEN and offer.agent_id == departure.agent_id:
            offer = Offer(offer.agent_id, offer.round, offer.deadline, OfferStatus.WITHDRAWN)
            closed = OfferClosedPayload(
                lead_id=uuid.UUID(state.lead_id),
                agent_id=offer.agent_id,
                offer_round=offer.round,
                reason=WithdrawalReason.AGENT_LEFT,
            )
            events.append(Emit(OfferWithdrawn, closed))
        offers.append(offer)
    withdrawn = state.evolve(offers=tuple(offers))
    if state.holder == departure.agent_id and state.share_id is None:
        return _release(withdrawn, departure, (account, rotation), now, tuple(events))
    if not events:
        return Outcome(state, (), f"{departure.describe()}; it had nothing of this lead's")
    if withdrawn.open_offers or state.status is not LeadStatus.OFFERED:
        return Outcome(withdrawn, tuple(events), f"{departure.describe()}; the race goes on without it")
    # The race lost its last open offer: on as if its deadline had passed (R9, R10, R3 then R5).
    after = on_deadline(withdrawn.evolve(next_deadline=now), account, rotation, now)
    explanation = fit_explanation(f"{departure.describe()}, so its offer was withdrawn; {after.explanation}")
    return replace(after, events=(*events, *after.events), explanation=explanation)


def _release(
    state: LeadState,
    departure: Departure,
    routing: tuple[AccountSnapshot, int | Standing],  # the account, and where its rotation stands
    now: datetime,
    events: tuple[Emit, ...],
) -> Outcome:
    account, rotation = routing
    policy = account.departed_agent_leads
    cleared = state.evolve(holder=None, reason=None, next_deadline=None, direct_phase=False)
    if policy is DepartedLeads.REROUTE:
        gone = frozenset({departure.agent_id})
        after = offer_next(cleared, account, rotation, now, exclude=gone)
        explanation = fit_explanation(f"{departure.describe()}; its lead is routed again. {after.explanation}")
        return replace(after, events=(*events, *after.events), explanation=explanation)
    # The broker pool: roster position 1, or the next active agent when position 1 is the one leaving.
    broker = next((a for a in account.roster if a.active and a.agent_id != departure.agent_id), account.broker)
    if policy is DepartedLeads.BROKER_POOL and broker.agent_id != departure.agent_id:
        explanation = fit_explanation(
            f"{departure.describe()}; roster position 1 ({broker.agent_id}) holds its lead now."
        )
        assigned = cleared.evolve(
            status=LeadStatus.ASSIGNED, holder=broker.agent_id, reason=AssignmentReason.AGENT_LEFT
        )
        return Outcome(assigned, (*events, assigned_event(assigned, explanation)), explanation)
    # Unassigned (also when nobody else is left to hold it).
    explanation = fit_explanation(
        f"{departure.describe()}; the lead is unassigned until a broker or admin distributes it "
        f"({broker.agent_id} is told)."
    )
    released = cleared.evolve(status=LeadStatus.UNASSIGNED)
    payload = LeadReleasedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=departure.agent_id,
        broker_agent_id=broker.agent_id,
        explanation=explanation,
    )
    return Outcome(released, (*events, Emit(LeadReleased, payload)), explanation)
