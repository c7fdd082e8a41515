"""Lead sharing (DESIGN T1) as a pure function: state and the share in, outcome out.

A broker transfers a lead to a realtor who accepted the brokerage's invitation (crm-api
checks that); the realtor holds it from then on and manages it like any other lead. The
lead stays in the brokerage's account (its events keep the account's envelope and key),
so the realtor's later actions are logged as the holder's, an inquiry of the same contact
(R1) tells the realtor, and the sweeper has nothing left to fire: open offers of a lead
race are withdrawn first, then `LeadShared` names the new and the previous holder.

The realtor need not be on the account's roster (realtors can be outside agents), so no
snapshot is consulted. Sharing again to another realtor moves the holder again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from leadflow_router.domain.decisions import Emit, Outcome, withdraw_open_offers
from leadflow_router.domain.model import LeadState, LeadStatus, RoutingRejected
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadShared,
    LeadSharedPayload,
    WithdrawalReason,
)


@dataclass(frozen=True, slots=True)
class LeadShare:
    """What crm-api asked for (a ShareLead command) for one lead of a lead transfer."""

    account_id: str  # the brokerage that shares it
    lead_id: str
    share_id: uuid.UUID
    realtor_id: str
    realtor_name: str
    assigned_by: str  # the brokerage's name, for the "Assigned By" label
    by_user_id: str


def on_lead_shared(state: LeadState, share: LeadShare) -> Outcome:
    """T1: the realtor holds the lead (reason lead_sharing); open offers are withdrawn first.

    The same share applied again to the realtor who holds it by that share changes nothing.
    A share of another account's lead, or applied to another lead, is rejected.
    """
    if state.lead_id != share.lead_id:
        raise RoutingRejected(f"share of lead {share.lead_id} applied to lead {state.lead_id}")
    if state.account_id != share.account_id:
        raise RoutingRejected(f"unknown lead {state.lead_id} in account {share.account_id}")
    if state.holder == share.realtor_id and state.share_id == str(share.share_id):
        return Outcome(state, (), f"T1: lead {state.lead_id} is already shared with {share.realtor_id}.")
    offers, events = withdraw_open_offers(state, WithdrawalReason.LEAD_SHARING)
    shared = state.evolve(
        status=LeadStatus.ASSIGNED,
        holder=share.realtor_id,
        reason=AssignmentReason.LEAD_SHARING,
        offers=offers,
        next_deadline=None,
        direct_phase=False,
        share_id=str(share.share_id),
    )
    payload = LeadSharedPayload(
        lead_id=uuid.UUID(state.lead_id),
        share_id=share.share_id,
        agent_id=share.realtor_id,
        realtor_name=share.realtor_name,
        assigned_by=share.assigned_by,
        previous_owner_agent_id=state.holder,
        by_user_id=share.by_user_id,
    )
    events.append(Emit(LeadShared, payload))
    withdrawn = f"; {len(events) - 1} open offer(s) withdrawn" if len(events) > 1 else ""
    explanation = (
        f"T1: {state.account_id} shared the lead (held by {state.holder or 'nobody'}) "
        f"with realtor {share.realtor_id}, who holds it{withdrawn}."
    )
    return Outcome(shared, tuple(events), explanation)
