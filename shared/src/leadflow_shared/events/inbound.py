"""Contract of leads.inbound.v1: leads that partners publish straight to Kafka for intake.

This is a published contract (docs/partner-contract/): within v1 only additive changes are
allowed (a new optional field, a looser limit); anything else is leads.inbound.v2. Intake
normalizes what partners send (names, E.164 phones, lower-cased emails) and publishes a
LeadReceived on leads.intake.v1; an invalid message goes to leads.inbound.v1.dlq.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from leadflow_shared.envelope import Contract, Envelope, derived_event_id
from leadflow_shared.events.criteria import LeadCriteria

TOPIC = "leads.inbound.v1"

_ID = r"^[A-Za-z0-9_.-]+$"
UtmKey = Annotated[str, StringConstraints(min_length=1, max_length=50)]
UtmValue = Annotated[str, StringConstraints(max_length=200)]


class InboundContact(Contract):
    """The person behind the lead, as the partner has it; intake normalizes every field."""

    first_name: str = Field(min_length=1, max_length=100, examples=["JANE"])
    last_name: str = Field(default="", max_length=100, examples=["doe"])
    email: str | None = Field(
        default=None, max_length=254, description="Any case; intake validates and lower-cases it.",
        examples=["Jane.Doe@Example.com"],
    )  # fmt: skip
    phone: str | None = Field(
        default=None, max_length=40,
        description="Any common format. Without a country code it is read in the account's default region.",
        examples=["(415) 555-0123", "+44 20 7946 0958"],
    )  # fmt: skip

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not self.email and not self.phone:
            raise ValueError("give an email or a phone number")
        return self


class InboundSource(Contract):
    """Who sent the lead and what it is about; the router reads site_host (R2) and assigned_agent_id (R4)."""

    partner: str = Field(
        min_length=1, max_length=100, pattern=_ID, description="The partner's name, as agreed with leadflow.",
        examples=["homefinder"],
    )  # fmt: skip
    name: str = Field(
        min_length=1, max_length=100, description="Lead source name as configured in the account.",
        examples=["HomeFinder"],
    )  # fmt: skip
    site_host: str | None = Field(
        default=None, max_length=253, description="Host of the site the lead registered on, if any (R2).",
        examples=["alex.acme-realty.com"],
    )  # fmt: skip
    listing_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:#-]+$")
    assigned_agent_id: str | None = Field(
        default=None, max_length=64, pattern=_ID,
        description="leadflow agent id the partner already assigned the lead to; round robin leaves it (R4).",
    )  # fmt: skip
    utm: dict[UtmKey, UtmValue] = Field(default_factory=dict, max_length=10, examples=[{"utm_source": "homefinder"}])


class LeadSubmittedPayload(Contract):
    contact: InboundContact
    source: InboundSource
    message: str = Field(default="", max_length=5000, description="Free text the lead wrote.")
    criteria: LeadCriteria | None = Field(
        default=None, description="What the lead is about, for the account's routing rules (since 1.1.0)."
    )


class LeadSubmitted(Envelope):
    """A lead a partner submits. Key the Kafka message with account_id; reuse event_id when resending."""

    type: Literal["LeadSubmitted"] = "LeadSubmitted"
    payload: LeadSubmittedPayload


def received_event_id(event_id: uuid.UUID, account_id: str) -> uuid.UUID:
    """The id of the lead (LeadReceived) that intake makes of a partner's LeadSubmitted.

    The same event id resent for the same account is the same lead. The account is part of it:
    two accounts' partners may pick the same event id, and neither lead may stand for the other.
    """
    return derived_event_id(event_id, f"received:{account_id}")
