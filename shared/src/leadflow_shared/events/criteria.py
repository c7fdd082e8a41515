"""What a lead is about, for routing rules to match on (issue 15): every field optional.

Carried by `LeadReceived` (intake -> router) and accepted from partners in `LeadSubmitted` and from
website forms. Added within v1: optional, so a sender without it and a reader a version behind
(decision 0056) both keep working. Whether the lead has a phone is not a field: the contact says so.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from leadflow_shared.envelope import Contract

MAX_PRICE = 10_000_000_000  # whole currency units: above any listing, below float trouble
MAX_TAGS = 20
MAX_TAG_LENGTH = 50


class LeadIntent(StrEnum):
    BUY = "buy"
    SELL = "sell"
    RENT = "rent"


class PropertyType(StrEnum):
    SINGLE_FAMILY = "single_family"
    CONDO = "condo"
    TOWNHOUSE = "townhouse"
    MULTI_FAMILY = "multi_family"
    MANUFACTURED = "manufactured"
    LAND = "land"
    COMMERCIAL = "commercial"
    OTHER = "other"


Price = Annotated[int, Field(ge=0, le=MAX_PRICE)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG_LENGTH)]


def normalize_postal_code(code: str) -> str:
    """A postal code as a lead's and a routing rule's are kept, so they compare (decision 0090): upper case,
    one space between its parts (" sw1a  1aa" -> "SW1A 1AA")."""
    return " ".join(code.upper().split())


class PriceRange(Contract):
    """In whole units of the account's currency. One price: `min` equal to `max`; an open end: left out."""

    min: Price | None = Field(default=None, examples=[400_000])
    max: Price | None = Field(default=None, examples=[550_000])

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class LeadPlace(Contract):
    """Where the property is (or is wanted)."""

    city: str | None = Field(default=None, min_length=1, max_length=100, examples=["Austin"])
    postal_code: str | None = Field(
        default=None, min_length=1, max_length=16, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$", examples=["78701"]
    )
    county: str | None = Field(default=None, min_length=1, max_length=100, examples=["Travis"])
    state: str | None = Field(default=None, min_length=1, max_length=100, description="Code or name.", examples=["TX"])


class LeadCriteria(Contract):
    """What routing rules match on; intake normalizes it (tags lower-cased and deduplicated, codes upper-cased)."""

    intent: LeadIntent | None = Field(default=None, description="Buyer, seller or renter.")
    property_type: PropertyType | None = None
    price: PriceRange | None = None
    place: LeadPlace | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS, examples=[["first-time buyer"]])
    mls_number: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:#-]+$", description="MLS listing number."
    )

    def normalized(self) -> LeadCriteria | None:
        """Tags lower-cased once each, postal code and a two-letter state upper-cased; None when empty.

        Validated again, so what it gives is a LeadCriteria every reader takes (LeadReceived). Lower-casing can
        lengthen a tag ("ß" is "ss", "ﬃ" is "ffi"): one longer than a tag may be once lower-cased is left out, as
        intake leaves out a value that does not fit (intake/domain/criteria.py): the criteria help routing, the lead
        itself is what must arrive."""
        place = self.place
        if place is not None:
            state = place.state.upper() if place.state and len(place.state) == 2 else place.state
            postal = normalize_postal_code(place.postal_code) if place.postal_code else None
            place = place.model_copy(update={"state": state, "postal_code": postal})
            if place == LeadPlace():
                place = None
        price = None if self.price == PriceRange() else self.price
        tags = [tag for tag in dict.fromkeys(tag.casefold() for tag in self.tags) if len(tag) <= MAX_TAG_LENGTH]
        data = self.model_dump() | {
            "place": place.model_dump() if place is not None else None,
            "price": price.model_dump() if price is not None else None,
            "tags": tags,
        }
        criteria = LeadCriteria.model_validate(data)
        return None if criteria == LeadCriteria() else criteria
