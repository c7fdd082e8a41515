"""Contracts of leads.commands.v1: what crm-api asks the router to do (T1 lead sharing, T2 office
transfers, releasing the leads of an agent who left an office, distributing leads by hand and
giving one back, erasing a contact: decision 0050).

A command is keyed by the account it is sent from. Its event id is the transfer's id, so
a command published twice (a client retry) is one transfer.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from leadflow_shared.envelope import Contract, Envelope

TOPIC = "leads.commands.v1"

AccountId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
UserId = Annotated[str, Field(min_length=1, max_length=64)]


class TransferLeadPayload(Contract):
    lead_id: uuid.UUID
    to_account_id: AccountId = Field(description="Another office account of the same organisation.")
    by_user_id: UserId = Field(description="The broker or admin who asked for it.")


class TransferLead(Envelope):
    """Move a lead from `account_id` to another office: it becomes a new lead there (T2)."""

    type: Literal["TransferLead"] = "TransferLead"
    payload: TransferLeadPayload


class TransferTeamMemberPayload(Contract):
    agent_id: UserId
    agent_name: str = Field(max_length=200)
    to_account_id: AccountId
    by_user_id: UserId


class TransferTeamMember(Envelope):
    """A team member moved from `account_id` to another office (crm-api moved its settings): tell the target."""

    type: Literal["TransferTeamMember"] = "TransferTeamMember"
    payload: TransferTeamMemberPayload


class ShareLeadPayload(Contract):
    lead_id: uuid.UUID
    share_id: uuid.UUID = Field(description="crm-api's lead transfer (T1); one command per lead of it.")
    realtor_id: UserId = Field(description="A realtor who accepted the brokerage's invitation.")
    realtor_name: str = Field(max_length=200)
    assigned_by: str = Field(max_length=200, description='The brokerage\'s name for the "Assigned By" label.')
    by_user_id: UserId


class ShareLead(Envelope):
    """T1: the brokerage (`account_id`) transferred the lead to a realtor; the realtor holds it from now on."""

    type: Literal["ShareLead"] = "ShareLead"
    payload: ShareLeadPayload


class AgentDeparture(StrEnum):
    DEACTIVATED = "deactivated"  # its status is no longer active in this office
    MOVED = "moved"  # it moved to another office (T2)


class DepartedLeads(StrEnum):
    """The account's `departed_agent_leads` setting: where the leads an agent held go when it leaves."""

    UNASSIGNED = "unassigned"  # nobody holds them until a broker or admin distributes them by hand
    BROKER_POOL = "broker_pool"  # roster position 1 holds them
    REROUTE = "reroute"  # offered again by the routing rules (R6/R7), to agents who have not had them


class ReleaseAgentLeadsPayload(Contract):
    agent_id: UserId
    reason: AgentDeparture
    by_user_id: UserId


class ReleaseAgentLeads(Envelope):
    """An agent left `account_id`: withdraw its open offers (the leads go on) and release the leads it
    holds as the account's `departed_agent_leads` setting says."""

    type: Literal["ReleaseAgentLeads"] = "ReleaseAgentLeads"
    payload: ReleaseAgentLeadsPayload


INVITATION_VALID_DAYS = 30  # an invitation not answered within them can no longer be accepted (decision 0108)


class InviteRealtorPayload(Contract):
    invitation_id: str = Field(min_length=1, max_length=64)
    realtor_id: UserId
    email: str = Field(min_length=3, max_length=254)
    name: str | None = Field(default=None, max_length=200)
    brokerage_name: str = Field(max_length=200)
    by_user_id: UserId


class InviteRealtor(Envelope):
    """T1: the brokerage (`account_id`) invited a realtor; the router relays it for the notifier to email."""

    type: Literal["InviteRealtor"] = "InviteRealtor"
    payload: InviteRealtorPayload


class DistributionMode(StrEnum):
    ASSIGN = "assign"  # the agent holds the lead at once
    OFFER = "offer"  # the agent is offered the lead with a claim window (R8); unclaimed, it goes on (R9)


class DistributeLeadPayload(Contract):
    lead_id: uuid.UUID
    distribution_id: uuid.UUID = Field(description="crm-api's distribution (one per request); one command per lead.")
    agent_id: UserId
    mode: DistributionMode
    claim_window_seconds: int | None = Field(
        default=None, ge=10, le=7 * 86_400, description="For offers; default: the lead source's window."
    )
    note: str = Field(default="", max_length=500, description="Why, shown on the timeline.")
    by_user_id: UserId


class DistributeLead(Envelope):
    """A broker or admin hands the lead to an agent by hand: assigned, or offered with a claim window."""

    type: Literal["DistributeLead"] = "DistributeLead"
    payload: DistributeLeadPayload


class ReturnLeadPayload(Contract):
    lead_id: uuid.UUID
    agent_id: UserId = Field(description="The agent who holds the lead and gives it back.")
    note: str = Field(default="", max_length=500)


class ReturnLead(Envelope):
    """The agent who holds the lead gives it back to the broker (the broker pool holds it)."""

    type: Literal["ReturnLead"] = "ReturnLead"
    payload: ReturnLeadPayload


MAX_ERASED_LEAD_IDS = 100  # explicit lead ids per erasure request


class EraseContactPayload(Contract):
    """Who to forget: the contact's email and/or phone, normalized as intake normalizes them, and/or
    explicit lead ids of the account. At least one of the three."""

    email: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Normalized and lower-cased, as intake stores it.",
        examples=["jane@example.com"],
    )
    phone: str | None = Field(
        default=None, pattern=r"^\+[1-9]\d{6,14}$", description="E.164.", examples=["+14155550123"]
    )
    lead_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=MAX_ERASED_LEAD_IDS, description="Leads of `account_id` to erase as well."
    )
    by_user_id: UserId = Field(description="The broker, admin or operator who asked for it.")
    reason: str = Field(
        min_length=1, max_length=200, description="A ticket or reference for the request; never personal data."
    )

    @field_validator("email")
    @classmethod
    def _lower_case(cls, value: str | None) -> str | None:
        # A key of the router's contact index is the address as intake stored it: lower-cased.
        if value is not None and value != value.lower():
            raise ValueError("must be normalized (lower-cased)")
        return value

    @model_validator(mode="after")
    def _someone(self) -> EraseContactPayload:
        if self.email is None and self.phone is None and not self.lead_ids:
            raise ValueError("name the contact: an email, a phone or lead ids")
        return self


class EraseContact(Envelope):
    """Forget a contact of `account_id` (decision 0050): the router resolves its leads, scrubs them and
    tells the other services with one `ContactErased`. Its event id is the erasure's id."""

    type: Literal["EraseContact"] = "EraseContact"
    payload: EraseContactPayload


LeadCommand = Annotated[
    TransferLead
    | TransferTeamMember
    | ShareLead
    | ReleaseAgentLeads
    | DistributeLead
    | ReturnLead
    | InviteRealtor
    | EraseContact,
    Field(discriminator="type"),
]
LEAD_COMMAND: TypeAdapter[LeadCommand] = TypeAdapter(LeadCommand)
