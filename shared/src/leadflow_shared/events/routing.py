"""Contracts of leads.events.v1: every routing decision the router makes (rule R12).

The timeline and the notifications can be rebuilt from these events alone, so each
carries what its readers need (the contact on the events that start a lead's life,
the agent and deadline on offers, the reason and its explanation on assignments).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, TypeAdapter

from leadflow_shared.envelope import Contract, Envelope
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadSource

TOPIC = "leads.events.v1"

AgentId = Annotated[str, Field(min_length=1, max_length=64)]
ANSWERS = (
    "The event id of the LeadActivity (action ask_back, on leads.activity.v1) this event answers: set on the "
    "router's answer to an agent's ask for a missed offer, null on every other event (and on answers written "
    "before the field existed)."
)  # issue 15, decision 0067: the answer names the ask, so crm-api matches them by id, not by two clocks


ROUTER_VERSION = (
    "The lead's routing record version after the router's change that made this event: it grows by one per change "
    "of the record (a compare-and-set), across office moves too, and the events of one change share it (in publish "
    "order). A reader keeps the last it applied and leaves a lead's row alone for an older one (decision 0093). "
    "Null when unknown: events written before the field existed, and those about a lead whose record the change "
    "did not write (a repeat merged into an existing lead, R1)."
)


class LeadPayload(Contract):
    """Base of every lead event's payload: the order the router decided it in (`router_version`)."""

    router_version: int | None = Field(default=None, ge=1, description=ROUTER_VERSION)


class AssignmentReason(StrEnum):
    """Why the lead went to this agent; shown to users who ask 'why this agent?'."""

    ROSTER_POSITION_1 = "roster_position_1"  # R5: round robin off
    SITE_ATTRIBUTION = "site_attribution"  # R2: registered on the agent's subdomain
    DIRECT_TO_USER = "direct_to_user"  # R3: the agent's own site or listing, auto-accept on
    PRE_ASSIGNED = "pre_assigned"  # R4: the lead-generation provider named the agent
    CLAIMED = "claimed"  # R7/R8: the agent claimed an offer
    FALLBACK = "fallback"  # R9: every eligible agent passed; the broker pool has it
    OFFICE_TRANSFER = "office_transfer"  # T2: moved here from another office; the broker pool has it
    LEAD_SHARING = "lead_sharing"  # T1: the brokerage transferred it to a realtor who accepted its invitation
    AGENT_LEFT = "agent_left"  # its holder left the office (deactivated or moved); the broker pool has it
    MANUAL = "manual"  # a broker or admin assigned it by hand
    RETURNED = "returned"  # its holder gave it back to the broker; the broker pool has it


class LeadSummary(Contract):
    """Who the lead is and where it came from: on the events that start a lead's life."""

    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000)
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about (issue 15).")


class LeadAssignedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId
    reason: AssignmentReason
    explanation: str = Field(max_length=1000, description="Human-readable reason for the choice.")
    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000)
    referral_fee_percent: float = Field(default=0, ge=0, le=100, description="R11: general leads only.")
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about (issue 15).")


class LeadAssigned(Envelope):
    """A lead now belongs to an agent, without an offer to accept."""

    type: Literal["LeadAssigned"] = "LeadAssigned"
    payload: LeadAssignedPayload


class LeadOfferedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId
    offer_round: int = Field(ge=1, description="1 for the first offers of a lead, then one more per re-offer.")
    race_size: int = Field(ge=1, description="Agents offered the lead at the same time (R7).")
    deadline: AwareDatetime = Field(description="Claim before this, or the offer expires (R8).")
    explanation: str = Field(max_length=1000)
    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000)
    referral_fee_percent: float = Field(default=0, ge=0, le=100)
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about (issue 15).")
    pond: str | None = Field(
        default=None, max_length=64, description="The pond the lead is in: all its agents are offered it (issue 15)."
    )
    answers_activity_id: uuid.UUID | None = Field(default=None, description=ANSWERS)


class LeadOffered(Envelope):
    type: Literal["LeadOffered"] = "LeadOffered"
    payload: LeadOfferedPayload


class LeadHeldPayload(LeadPayload):
    lead_id: uuid.UUID
    rule_id: str = Field(min_length=1, max_length=64, description="The routing rule whose hours are closed.")
    until: AwareDatetime = Field(description="When its hours open and the lead is offered.")
    explanation: str = Field(max_length=1000)
    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000)
    referral_fee_percent: float = Field(default=0, ge=0, le=100)
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about (issue 15).")


class LeadHeld(Envelope):
    """Nobody is offered the lead until its routing rule's hours open (`when_closed: hold`, issue 15): a new
    lead starts its life here, a lead to be offered again waits here. Its LeadOffered follows at `until`."""

    type: Literal["LeadHeld"] = "LeadHeld"
    payload: LeadHeldPayload


class WithdrawalReason(StrEnum):
    CLAIMED_BY_ANOTHER = "claimed_by_another"  # R7: another agent of the race claimed it
    OFFICE_TRANSFER = "office_transfer"  # T2: the lead moved to another office
    LEAD_SHARING = "lead_sharing"  # T1: the brokerage gave the lead to a realtor
    AGENT_LEFT = "agent_left"  # the offered agent left the office (deactivated or moved)
    REASSIGNED = "reassigned"  # a broker or admin distributed the lead by hand
    DECLINED = "declined"  # the offered agent passed on it; the lead goes on (R9)


class OfferClosedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId
    offer_round: int = Field(ge=1)
    reason: WithdrawalReason | None = Field(
        default=None, description="Why an offer was withdrawn; null on expiries, and on withdrawals: claimed."
    )


class OfferExpired(Envelope):
    """The claim window passed with no claim (R9)."""

    type: Literal["OfferExpired"] = "OfferExpired"
    payload: OfferClosedPayload


class OfferWithdrawn(Envelope):
    """Another agent won the lead race (R7)."""

    type: Literal["OfferWithdrawn"] = "OfferWithdrawn"
    payload: OfferClosedPayload


class LeadClaimedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId
    action: ActivityAction = Field(description="What the agent did that claimed the lead (R8).")
    offer_round: int = Field(ge=1)
    referral_fee_percent: float = Field(default=0, ge=0, le=100)


class LeadClaimed(Envelope):
    type: Literal["LeadClaimed"] = "LeadClaimed"
    payload: LeadClaimedPayload


class LeadFellBackPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId = Field(description="Roster position 1: the broker pool's holder.")
    explanation: str = Field(max_length=1000)


class LeadFellBack(Envelope):
    """Every eligible agent passed; the lead is the account's again and the broker is told (R9)."""

    type: Literal["LeadFellBack"] = "LeadFellBack"
    payload: LeadFellBackPayload


class ActivityLoggedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId | None = Field(description="The lead's holder, who is told.")
    action: ActivityAction
    by_agent_id: AgentId | None = Field(default=None, description="Agent who acted; null for the contact.")
    summary: LeadSummary | None = Field(default=None, description="The new inquiry, for R1.")
    claim_refused: str | None = Field(
        default=None,
        max_length=500,
        description="Why this action, by an agent the lead had been offered to, claimed nothing (R8): "
        "the offer ended, and who holds the lead. Null for everyone else.",
    )
    answers_activity_id: uuid.UUID | None = Field(default=None, description=ANSWERS)


class ActivityLogged(Envelope):
    """Activity on an existing lead's timeline (R1: the contact came back; or an agent's action)."""

    type: Literal["ActivityLogged"] = "ActivityLogged"
    payload: ActivityLoggedPayload


class LeadTransferredPayload(LeadPayload):
    lead_id: uuid.UUID
    transfer_id: uuid.UUID = Field(description="The office transfer (crm-api's command id) that moved the lead.")
    from_account_id: str = Field(min_length=1, max_length=64)
    from_account_name: str = Field(max_length=200)
    previous_owner_agent_id: AgentId | None = Field(description="Who held the lead in the first office, if anyone.")
    previous_owner_name: str | None = Field(default=None, max_length=200)
    to_account_id: str = Field(min_length=1, max_length=64)
    to_account_name: str = Field(max_length=200)
    agent_id: AgentId = Field(description="Holder in the new office: its roster position 1 (the broker pool).")
    by_user_id: str = Field(min_length=1, max_length=64, description="Broker or admin who transferred it.")
    contact: Contact
    source: LeadSource


class LeadTransferred(Envelope):
    """T2: the lead left `account_id` for another office of the organisation, where it is a new lead.

    Keyed by the office it left, after that office's events for the lead (open offers are
    withdrawn first); the lead's later events carry the new office's id.
    """

    type: Literal["LeadTransferred"] = "LeadTransferred"
    payload: LeadTransferredPayload


class LeadSharedPayload(LeadPayload):
    lead_id: uuid.UUID
    share_id: uuid.UUID = Field(description="The lead transfer (T1) in crm-api that shared it.")
    agent_id: AgentId = Field(description="The realtor who holds the lead now.")
    realtor_name: str = Field(max_length=200)
    assigned_by: str = Field(max_length=200, description='The brokerage, as the "Assigned By" label names it.')
    previous_owner_agent_id: AgentId | None = None
    by_user_id: str = Field(min_length=1, max_length=64, description="The broker or admin who shared it.")


class LeadShared(Envelope):
    """T1: the brokerage transferred the lead to a realtor, who holds it now; open offers were withdrawn."""

    type: Literal["LeadShared"] = "LeadShared"
    payload: LeadSharedPayload


class ContactMessagedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId = Field(description="The agent who wrote it (it holds the lead).")
    channel: Literal["email", "sms"]
    to: str = Field(min_length=3, max_length=254, description="The contact's email address or phone (E.164).")
    subject: str = Field(default="", max_length=200)
    body: str = Field(min_length=1, max_length=5000)


class ContactMessaged(Envelope):
    """The lead's holder wrote to the contact through leadflow; the notifier sends it (RealHub's
    qualifying actions: the email or text also claimed the lead, R8)."""

    type: Literal["ContactMessaged"] = "ContactMessaged"
    payload: ContactMessagedPayload


class LeadReleasedPayload(LeadPayload):
    lead_id: uuid.UUID
    agent_id: AgentId = Field(description="The agent who held the lead (and left the office, or left it idle).")
    broker_agent_id: AgentId = Field(description="Roster position 1, who is told.")
    explanation: str = Field(max_length=1000)
    reason: Literal["agent_left", "idle", "returned"] = Field(
        default="agent_left",
        description=(
            "agent_left: nobody holds it until distributed; idle: no activity in time, offered on (issue 15); "
            "returned: its holder gave it back and nobody else in the office can hold it, so nobody holds it until "
            "distributed (agent_id and broker_agent_id are then both the holder)."
        ),
    )


class LeadReleased(Envelope):
    """Its holder left the office (deactivated or moved): nobody holds the lead until a broker or admin
    distributes it by hand (the account's `departed_agent_leads` setting is `unassigned`)."""

    type: Literal["LeadReleased"] = "LeadReleased"
    payload: LeadReleasedPayload


class TeamMemberTransferredPayload(Contract):
    agent_id: AgentId = Field(description="The team member who moved; it arrives with status Onboarding.")
    agent_name: str = Field(max_length=200)
    transfer_id: uuid.UUID
    from_account_id: str = Field(min_length=1, max_length=64)
    from_account_name: str = Field(max_length=200)
    to_account_name: str = Field(max_length=200)
    by_user_id: str = Field(min_length=1, max_length=64)


class TeamMemberTransferred(Envelope):
    """T2: a team member joined `account_id` from another office; its staff are told (no new-lead notice)."""

    type: Literal["TeamMemberTransferred"] = "TeamMemberTransferred"
    payload: TeamMemberTransferredPayload


class RealtorInvitedPayload(Contract):
    invitation_id: str = Field(min_length=1, max_length=64)
    realtor_id: AgentId
    email: str = Field(min_length=3, max_length=254, description="Where the invitation goes.")
    name: str | None = Field(default=None, max_length=200)
    brokerage_name: str = Field(max_length=200)
    by_user_id: str = Field(min_length=1, max_length=64)


class RealtorInvited(Envelope):
    """T1: `account_id` invited a realtor to receive its leads; the notifier emails the invitation."""

    type: Literal["RealtorInvited"] = "RealtorInvited"
    payload: RealtorInvitedPayload


class ContactErasedPayload(Contract):
    erasure_id: uuid.UUID = Field(description="The EraseContact command's event id.")
    lead_ids: list[uuid.UUID] = Field(
        max_length=1000, description="The account's leads whose contact was erased; empty when none matched."
    )
    by_user_id: str = Field(min_length=1, max_length=64, description="Who asked for it.")
    reason: str = Field(max_length=200, description="The request's ticket or reference (no personal data).")


class ContactErased(Envelope):
    """The router forgot a contact of `account_id` (decision 0050): its leads keep their ids, status,
    holder and history, without the person. Each service erases what it keeps of these leads."""

    type: Literal["ContactErased"] = "ContactErased"
    payload: ContactErasedPayload


# The message types on leads.events.v1 about one lead (each payload has a lead_id). A consumer
# of the topic parses with ROUTING_EVENT below: the topic also carries account events.
LeadEvent = Annotated[
    LeadAssigned
    | LeadOffered
    | LeadHeld
    | OfferExpired
    | OfferWithdrawn
    | LeadClaimed
    | LeadFellBack
    | ActivityLogged
    | LeadTransferred
    | LeadShared
    | LeadReleased
    | ContactMessaged,
    Field(discriminator="type"),
]
LEAD_EVENT: TypeAdapter[LeadEvent] = TypeAdapter(LeadEvent)

# Every message type on leads.events.v1: lead events, and account events without a lead.
RoutingEvent = Annotated[
    LeadAssigned
    | LeadOffered
    | LeadHeld
    | OfferExpired
    | OfferWithdrawn
    | LeadClaimed
    | LeadFellBack
    | ActivityLogged
    | LeadTransferred
    | LeadShared
    | LeadReleased
    | ContactMessaged
    | TeamMemberTransferred
    | RealtorInvited
    | ContactErased,
    Field(discriminator="type"),
]
ROUTING_EVENT: TypeAdapter[RoutingEvent] = TypeAdapter(RoutingEvent)
