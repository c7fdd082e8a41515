"""What intake accepts from websites over HTTP: forms and listing inquiries, bounded and normalized."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadflow_intake.domain.fields import (
    AccountId,
    AgentId,
    Email,
    FirstName,
    Host,
    LastName,
    ListingId,
    Message,
    Phone,
    SourceName,
    Utm,
)
from leadflow_intake.domain.lead import Submission
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceivedPayload, LeadSource

# The fields whose types normalize them (fields.py) as normalize_submission would.
NORMALIZED = frozenset({"first_name", "last_name", "email", "site_host"})


class _ContactForm(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    account_id: AccountId
    first_name: FirstName
    last_name: LastName = ""
    email: Email = None
    phone: Phone = None
    message: Message = ""
    utm: Utm = Field(default_factory=dict)
    criteria: LeadCriteria | None = Field(
        default=None, description="What the lead is about, for the account's routing rules: all optional."
    )

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if not self.email and not self.phone:
            raise ValueError("give an email or a phone number")
        return self


class WebsiteLeadIn(_ContactForm):
    """A registration or contact-us form from the brokerage's main site or an agent's subdomain."""

    site_host: Host = None
    site_kind: Literal["brokerage", "agent"] = Field(
        default="brokerage",
        description="Whether site_host is the brokerage's own site or an agent's subdomain or own site. "
        "The router gives a lead from an agent's site to that agent (R2), matching site_host.",
    )
    source_name: SourceName = "Website"

    @model_validator(mode="after")
    def _agent_site_has_host(self) -> Self:
        if self.site_kind == "agent" and not self.site_host:
            raise ValueError("a form from an agent's site needs site_host")
        return self

    def to_submission(self) -> Submission:
        channel = LeadChannel.AGENT_SITE if self.site_kind == "agent" else LeadChannel.BROKERAGE_SITE
        return Submission(
            account_id=self.account_id, channel=channel, source_name=self.source_name,
            first_name=self.first_name, last_name=self.last_name, email=self.email, phone=self.phone,
            message=self.message, site_host=self.site_host, utm=self.utm, criteria=self.criteria,
            normalized=NORMALIZED,
        )  # fmt: skip

    def to_payload(self, phone_e164: str | None) -> LeadReceivedPayload:
        """The payload with the phone already in E.164 (fields here are normalized by validation)."""
        sub = self.to_submission()
        return LeadReceivedPayload(
            contact=Contact(first_name=sub.first_name, last_name=sub.last_name, email=sub.email, phone=phone_e164),
            source=LeadSource(channel=sub.channel, name=sub.source_name, site_host=sub.site_host, utm=sub.utm),
            message=sub.message,
            criteria=sub.criteria.normalized() if sub.criteria is not None else None,
        )


class ListingInquiryIn(_ContactForm):
    """A question about a listing on the brokerage's site; a listing of our agent's goes to that agent (R3)."""

    listing_id: ListingId
    listing_agent_id: AgentId | None = Field(
        default=None,
        description="The listing's agent, when the listing is one of the brokerage's own. Not checked here: an agent "
        "not of the account (another brokerage's listing, an agent who left) makes the inquiry a general lead.",
    )
    site_host: Host = None
    source_name: SourceName = "Listing inquiry"

    def to_submission(self) -> Submission:
        return Submission(
            account_id=self.account_id, channel=LeadChannel.LISTING_INQUIRY, source_name=self.source_name,
            first_name=self.first_name, last_name=self.last_name, email=self.email, phone=self.phone,
            message=self.message, site_host=self.site_host, listing_id=self.listing_id,
            listing_agent_id=self.listing_agent_id, utm=self.utm, criteria=self.criteria,
            normalized=NORMALIZED,
        )  # fmt: skip
