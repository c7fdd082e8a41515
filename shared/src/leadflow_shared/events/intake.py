"""Contracts of leads.intake.v1: the normalized lead intake publishes for the router."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from leadflow_shared.envelope import Contract, Envelope
from leadflow_shared.events.criteria import LeadCriteria

TOPIC = "leads.intake.v1"


class LeadChannel(StrEnum):
    """Where a lead came in; the router's rules R2-R4 read it."""

    BROKERAGE_SITE = "brokerage_site"  # main site registration or contact-us form
    AGENT_SITE = "agent_site"  # an agent's own site or subdomain (R2, R3)
    LISTING_INQUIRY = "listing_inquiry"  # a question about a listing (R3 when it is our agent's)
    LEAD_GEN = "lead_gen"  # a lead-generation provider's webhook (R4 when pre-assigned)
    PARTNER = "partner"  # a partner publishing to leads.inbound.v1


class Contact(Contract):
    """The person behind the lead, normalized by intake."""

    first_name: str = Field(max_length=100, examples=["Jane"])
    last_name: str = Field(default="", max_length=100, examples=["Doe"])
    # Intake validated and normalized the address (email-validator); downstream of it a
    # shape check is enough, and re-running the full validation on every event is costly.
    email: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Normalized and lower-cased by intake.",
        examples=["jane@example.com"],
    )
    phone: str | None = Field(
        default=None, pattern=r"^\+[1-9]\d{6,14}$", description="E.164.", examples=["+14155550123"]
    )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class LeadSource(Contract):
    """Attribution of a lead: channel, the source's name, site and campaign fields."""

    channel: LeadChannel = Field(examples=["brokerage_site"])
    name: str = Field(max_length=100, description="Lead source name as configured.", examples=["Website"])
    site_host: str | None = Field(
        default=None, max_length=253, description="Host the form was sent from (R2).", examples=["alex.acme-realty.com"]
    )
    listing_id: str | None = Field(default=None, max_length=64, description="Listing asked about.")
    listing_agent_id: str | None = Field(default=None, max_length=64, description="Agent of that listing (R3).")
    assigned_agent_id: str | None = Field(
        default=None, max_length=64, description="Agent a lead-generation provider already assigned (R4)."
    )
    provider: str | None = Field(default=None, max_length=100, description="Lead-generation provider or partner.")
    utm: dict[str, str] = Field(default_factory=dict, max_length=10)


class LeadReceivedPayload(Contract):
    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000, description="Free text the lead wrote.")
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about, normalized (issue 15).")


class LeadReceived(Envelope):
    """A lead intake accepted and normalized."""

    type: Literal["LeadReceived"] = "LeadReceived"
    payload: LeadReceivedPayload
