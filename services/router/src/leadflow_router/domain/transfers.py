"""Office-to-office transfers (DESIGN T2) as pure functions: state and snapshots in, outcome out.

A lead moved to another office of the organisation leaves its first account and is a new
lead there, held by the target's roster position 1 (the broker pool, who distributes it).
Open offers in the first office are withdrawn first, then `LeadTransferred` tells both
offices' readers (it names the previous owner and account for the timeline).

A moved team member has no routing state: the router relays crm-api's command as one
`TeamMemberTransferred` to the target office, whose staff are told.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from leadflow_router.domain.decisions import Emit, Outcome, withdraw_open_offers
from leadflow_router.domain.model import AccountSnapshot, LeadState, LeadStatus, RoutingRejected
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadTransferred,
    LeadTransferredPayload,
    TeamMemberTransferred,
    TeamMemberTransferredPayload,
    WithdrawalReason,
)


@dataclass(frozen=True, slots=True)
class OfficeTransfer:
    """What crm-api asked for (a TransferLead command): its event id is the transfer's id."""

    transfer_id: uuid.UUID
    lead_id: str
    by_user_id: str


def on_office_transfer(
    state: LeadState, source: AccountSnapshot, target: AccountSnapshot, transfer: OfficeTransfer
) -> Outcome:
    """T2: the lead leaves `source` for `target`, where roster position 1 holds it as a new lead.

    A lead already in `target` (the transfer was applied before) is left alone. Rejected:
    the same office twice, a lead of neither office, a target with an empty roster.
    """
    if source.account_id == target.account_id:
        raise RoutingRejected(f"lead {transfer.lead_id}: cannot transfer to its own office {source.account_id}")
    if state.lead_id != transfer.lead_id:
        raise RoutingRejected(f"transfer of lead {transfer.lead_id} applied to lead {state.lead_id}")
    if state.account_id == target.account_id:
        return Outcome(state, (), f"T2: lead {state.lead_id} is already in {target.account_id}.")
    if state.account_id != source.account_id:
        raise RoutingRejected(f"unknown lead {state.lead_id} in account {source.account_id}")
    broker = target.pool_holder  # RoutingRejected on an empty roster
    offers, events = withdraw_open_offers(state, WithdrawalReason.OFFICE_TRANSFER)
    previous = source.agent(state.holder) if state.holder is not None else None
    moved = state.evolve(
        account_id=target.account_id,
        status=LeadStatus.ASSIGNED,
        holder=broker.agent_id,
        reason=AssignmentReason.OFFICE_TRANSFER,
        offers=offers,
        next_deadline=None,
        direct_phase=False,
        share_id=None,  # the first office's sharing (T1) ends with the move
        # Nor is it routed on by the first office's rule, fallbacks or pond (decision 0020; helper 128): the target's
        # rotation (R6) takes it on if it is offered again.
        rule_id=None,
        fallback_step=0,
        idle_reassigned=0,
        pond=None,
    )
    payload = LeadTransferredPayload(
        lead_id=uuid.UUID(state.lead_id),
        transfer_id=transfer.transfer_id,
        from_account_id=source.account_id,
        from_account_name=source.name,
        previous_owner_agent_id=state.holder,
        previous_owner_name=previous.name if previous is not None else None,
        to_account_id=target.account_id,
        to_account_name=target.name,
        agent_id=broker.agent_id,
        by_user_id=transfer.by_user_id,
        contact=state.summary.contact,
        source=state.summary.source,
    )
    events.append(Emit(LeadTransferred, payload))
    withdrawn = f"; {len(events) - 1} open offer(s) withdrawn" if len(events) > 1 else ""
    explanation = (
        f"T2: moved from {source.account_id} (held by {state.holder or 'nobody'}) to {target.account_id}, "
        f"roster position 1 ({broker.agent_id}) holds it{withdrawn}."
    )
    return Outcome(moved, tuple(events), explanation)


def team_member_transferred(
    source: AccountSnapshot,
    target: AccountSnapshot,
    *,
    transfer_id: uuid.UUID,
    agent_id: str,
    agent_name: str,
    by_user_id: str,
) -> Emit:
    """T2: tell the target office a team member joined it (its envelope belongs to the target)."""
    if source.account_id == target.account_id:
        raise RoutingRejected(f"team member {agent_id}: cannot transfer to its own office {source.account_id}")
    return Emit(
        TeamMemberTransferred,
        TeamMemberTransferredPayload(
            agent_id=agent_id,
            agent_name=agent_name,
            transfer_id=transfer_id,
            from_account_id=source.account_id,
            from_account_name=source.name,
            to_account_name=target.name,
            by_user_id=by_user_id,
        ),
    )
