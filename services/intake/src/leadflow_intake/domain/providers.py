"""Payload shapes of lead-generation providers' webhooks, each mapped onto a Submission.

Three formats (docs/decisions/0007-lead-gen-webhook-formats.md):
- "generic": leadflow's own flat shape, for providers that integrate with us directly.
- "fub-events": the shape of Follow Up Boss's `POST /v1/events` (source, system, type, person with
  lists of emails and phones, property, campaign), which IDX sites and portals already send.
- "portal-push": a listing portal's lead push (lists of people, listings, messages and agents).

Each maps what it says about the lead onto routing criteria (decision 0057); the provider formats drop
a value that does not fit rather than refuse the lead (domain/criteria.py).

Provider shapes ignore fields they do not know (providers add fields without notice) and read a
null as a field left out (providers send null for what they do not have), but bound every list and
string they read; a body is at most INTAKE_MAX_BODY_BYTES anyway.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from leadflow_intake.domain.criteria import criteria_from
from leadflow_intake.domain.fields import AgentId, Email, FirstName, Host, ListingId, Message, OptionalName, Phone, Utm
from leadflow_intake.domain.lead import MESSAGE_LIMIT, Submission
from leadflow_intake.domain.normalize import normalize_free_text, strip
from leadflow_shared.events.criteria import LeadCriteria, LeadIntent
from leadflow_shared.events.intake import LeadChannel

Format = Literal["generic", "fub-events", "portal-push"]
Text = Annotated[str, Field(max_length=MESSAGE_LIMIT)]
Short = Annotated[str, Field(max_length=200)]


def _scalar(value: Any) -> Any:
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else None


def _words(value: Any) -> list[str]:
    return [v for v in value[:50] if isinstance(v, str)] if isinstance(value, list) else []


# Criteria a provider sends in its own way: what does not fit is dropped, never a refused lead (criteria.py).
Loose = Annotated[int | float | str | None, BeforeValidator(_scalar)]
Words = Annotated[list[str], BeforeValidator(_words)]
Flag = Annotated[bool | None, BeforeValidator(lambda value: value if isinstance(value, bool) else None)]
Word = Annotated[str, BeforeValidator(lambda value: value if isinstance(value, str) and len(value) <= 200 else "")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # Providers send null for what they do not have: read as left out (the field's default), so a
        # lead is never refused for it, a null item of a list too; a required part (the person) that is
        # null is still missing.
        if not isinstance(data, dict):
            return data
        kept = {k: v for k, v in data.items() if v is not None}
        return {k: [i for i in v if i is not None] if isinstance(v, list) else v for k, v in kept.items()}


class GenericLeadIn(_Strict):
    """leadflow's own webhook shape: one lead, flat."""

    first_name: FirstName
    last_name: OptionalName = ""
    email: Email = None
    phone: Phone = None
    message: Message = ""
    listing_id: ListingId | None = None
    assigned_agent_id: AgentId | None = Field(default=None, description="An agent the provider already assigned (R4).")
    site_host: Host = None
    source_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    utm: Utm = Field(default_factory=dict)
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about (routing rules).")

    def paths(self) -> dict[str, str]:
        """Where the Submission's fields sit in this body (the same names: a flat shape)."""
        return {}

    def to_submission(self, *, account_id: str, provider: str, source_name: str) -> Submission:
        return Submission(
            account_id=account_id, channel=LeadChannel.LEAD_GEN, source_name=self.source_name or source_name,
            first_name=self.first_name, last_name=self.last_name, email=self.email, phone=self.phone,
            message=self.message, site_host=self.site_host, listing_id=self.listing_id,
            assigned_agent_id=self.assigned_agent_id, provider=provider, utm=self.utm, criteria=self.criteria,
        )  # fmt: skip


class FubEmail(_Lenient):
    value: Email = None  # a null or blank entry is no email, as if left out


class FubPhone(_Lenient):
    value: Phone = None


class FubPerson(_Lenient):
    firstName: OptionalName = ""  # noqa: N815 (the provider's field names)
    lastName: OptionalName = ""  # noqa: N815
    emails: list[FubEmail] = Field(default_factory=list, max_length=10)
    phones: list[FubPhone] = Field(default_factory=list, max_length=10)
    assignedTo: AgentId | None = Field(  # noqa: N815
        default=None, description="leadflow agent id of the agent the provider assigned (R4)."
    )
    tags: Words = Field(default_factory=list)


class _FubPlace(_Lenient):
    """What a property and a property search both say: its type and where it is."""

    type: Word = ""
    city: Word = ""
    state: Word = ""
    code: Word = ""


class FubProperty(_FubPlace):
    street: Short = ""
    mlsNumber: ListingId | None = None  # noqa: N815
    url: Annotated[str, Field(max_length=2000)] = ""
    price: Loose = None
    forRent: Flag = None  # noqa: N815


class FubPropertySearch(_FubPlace):
    """What a person searched for (a saved search, a registration with criteria)."""

    minPrice: Loose = None  # noqa: N815
    maxPrice: Loose = None  # noqa: N815


class FubCampaign(_Lenient):
    source: Short = ""
    medium: Short = ""
    term: Short = ""
    content: Short = ""
    campaign: Short = ""


class FubEventIn(_Lenient):
    """A Follow Up Boss-style event: a registration or inquiry with the person behind it."""

    source: Annotated[str, Field(max_length=100)] = ""
    system: Short = ""
    type: Annotated[str, Field(max_length=50)] = "General Inquiry"
    message: Text = ""
    description: Text = ""
    person: FubPerson
    property: FubProperty | None = None
    propertySearch: FubPropertySearch | None = None  # noqa: N815
    campaign: FubCampaign | None = None

    def paths(self) -> dict[str, str]:
        """Where the Submission's fields sit in this body, so a refusal names the provider's field."""
        person = self.person
        email = next((i for i, e in enumerate(person.emails) if e.value), 0)
        phone = next((i for i, p in enumerate(person.phones) if p.value), 0)
        return {
            "first_name": "person.firstName", "last_name": "person.lastName",
            "email": f"person.emails.{email}.value", "phone": f"person.phones.{phone}.value",
            "assigned_agent_id": "person.assignedTo", "<lead>": "person",
        }  # fmt: skip

    def to_submission(self, *, account_id: str, provider: str, source_name: str) -> Submission:
        person, prop = self.person, self.property
        about = ", ".join(p for p in (prop.street, prop.city, prop.state, prop.code) if p) if prop else ""
        message = "\n\n".join(p for p in (self.message, self.description, about and f"Property: {about}") if p)
        utm = {f"utm_{k}": v for k, v in self.campaign.model_dump().items() if v} if self.campaign is not None else {}
        return Submission(
            account_id=account_id, channel=LeadChannel.LEAD_GEN, source_name=source_name,
            first_name=person.firstName, last_name=person.lastName,
            email=next((e.value for e in person.emails if e.value), None),
            phone=next((p.value for p in person.phones if p.value), None),
            message=normalize_free_text(message, MESSAGE_LIMIT),
            listing_id=prop.mlsNumber if prop else None, assigned_agent_id=person.assignedTo,
            provider=provider, utm=utm, criteria=self.criteria(),
        )  # fmt: skip

    def criteria(self) -> LeadCriteria | None:
        """The property asked about, else the search; the event type says buyer or seller."""
        prop, search = self.property, self.propertySearch
        about = prop or search
        intent = _FUB_INTENTS.get(self.type.casefold())
        if prop is not None and prop.forRent:
            intent = LeadIntent.RENT
        return criteria_from(
            intent=intent,
            kind=about.type if about else None,
            price_min=prop.price if prop else search.minPrice if search else None,
            price_max=prop.price if prop else search.maxPrice if search else None,
            place={"city": about.city, "state": about.state, "postal_code": about.code} if about else None,
            tags=self.person.tags,
            mls_number=prop.mlsNumber if prop else None,
        )


# Follow Up Boss event types that say what the person wants; the others ("General Inquiry") do not.
_FUB_INTENTS = {
    "seller inquiry": LeadIntent.SELL,
    "property inquiry": LeadIntent.BUY,
    "property search": LeadIntent.BUY,
    "saved property search": LeadIntent.BUY,
    "visited open house": LeadIntent.BUY,
    "registration": LeadIntent.BUY,
}


class PortalPerson(_Lenient):
    first_name: OptionalName = ""
    last_name: OptionalName = ""
    email: Email = None
    phone_1: Phone = None
    phone_2: Phone = None


class PortalListing(_Lenient):
    listing_id: ListingId | None = None
    property_address: Short = ""
    unit_number: Annotated[str, Field(max_length=20)] = ""
    city: Word = ""
    state: Word = ""
    zip: Word = ""
    property_type: Word = ""
    price: Loose = None


class PortalMessage(_Lenient):
    message: Text = ""


class PortalAgent(_Lenient):
    agent_id: AgentId | None = Field(default=None, description="leadflow agent id, as configured in the portal.")


class PortalLeadIn(_Lenient):
    """A listing portal's lead push: the people, the listings they asked about, their messages, the agents."""

    lead_id: Annotated[str, Field(max_length=100)] = ""
    lead_source: Annotated[str, Field(max_length=100)] = ""
    lead_type: Word = Field(default="", description="buyer, seller or renter (rental).")
    people: list[PortalPerson] = Field(min_length=1, max_length=10)
    listings: list[PortalListing] = Field(default_factory=list, max_length=20)
    messages: list[PortalMessage] = Field(default_factory=list, max_length=20)
    agents: list[PortalAgent] = Field(default_factory=list, max_length=5)

    def paths(self) -> dict[str, str]:
        """Where the Submission's fields sit in this body, so a refusal names the provider's field."""
        person = self.people[0]
        agent = next((i for i, a in enumerate(self.agents) if a.agent_id), 0)
        return {
            "first_name": "people.0.first_name", "last_name": "people.0.last_name", "email": "people.0.email",
            "phone": "people.0.phone_1" if person.phone_1 else "people.0.phone_2",
            "assigned_agent_id": f"agents.{agent}.agent_id", "<lead>": "people.0",
        }  # fmt: skip

    def to_submission(self, *, account_id: str, provider: str, source_name: str) -> Submission:
        person = self.people[0]  # the first person is the lead; co-buyers follow
        listing = next((item for item in self.listings if item.listing_id), None)
        address = strip(f"{listing.property_address} {listing.unit_number}") if listing else ""
        about = f"Listing: {address}" if address else ""
        message = "\n\n".join([*(m.message for m in self.messages if m.message), *([about] if about else [])])
        return Submission(
            account_id=account_id, channel=LeadChannel.LEAD_GEN, source_name=source_name,
            first_name=person.first_name, last_name=person.last_name, email=person.email,
            phone=person.phone_1 or person.phone_2 or None,
            message=normalize_free_text(message, MESSAGE_LIMIT),
            listing_id=listing.listing_id if listing else None,
            assigned_agent_id=next((a.agent_id for a in self.agents if a.agent_id), None),
            provider=provider, utm={"utm_source": self.lead_source} if self.lead_source else {},
            criteria=self.criteria(),
        )  # fmt: skip

    def criteria(self) -> LeadCriteria | None:
        """The lead type, and the first listing asked about: its type, price and place."""
        listing = self.listings[0] if self.listings else None
        return criteria_from(
            intent=_PORTAL_INTENTS.get(strip(self.lead_type).casefold()),
            kind=listing.property_type if listing else None,
            price_min=listing.price if listing else None,
            price_max=listing.price if listing else None,
            place={"city": listing.city, "state": listing.state, "postal_code": listing.zip} if listing else None,
        )


_PORTAL_INTENTS = {
    "buyer": LeadIntent.BUY,
    "seller": LeadIntent.SELL,
    "renter": LeadIntent.RENT,
    "rental": LeadIntent.RENT,
}


ProviderPayload = GenericLeadIn | FubEventIn | PortalLeadIn
FORMATS: dict[str, type[GenericLeadIn] | type[FubEventIn] | type[PortalLeadIn]] = {
    "generic": GenericLeadIn,
    "fub-events": FubEventIn,
    "portal-push": PortalLeadIn,
}
