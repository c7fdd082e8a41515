"""What a lead is about (issue 15, item 1): the optional criteria routing rules will match on,
validated at every way in and normalized once by intake (shared/events/criteria.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_intake.domain.criteria import property_type
from leadflow_intake.domain.lead import normalize_submission
from leadflow_intake.domain.partner import submission
from leadflow_intake.domain.providers import FubEventIn, GenericLeadIn, PortalLeadIn
from leadflow_shared.events.criteria import MAX_TAGS, LeadCriteria, LeadIntent, PropertyType
from leadflow_shared.events.inbound import LeadSubmitted

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "partner-contract" / "examples" / "lead-submitted.json"


def test_criteria_are_normalized_once() -> None:
    criteria = LeadCriteria.model_validate(
        {
            "intent": "sell",
            "property_type": "single_family",
            "price": {"min": 300_000, "max": 300_000},  # one price
            "place": {"city": " Round Rock ", "postal_code": "sw1a  1aa", "county": "Williamson", "state": "Texas"},
            "tags": [" Investor", "INVESTOR", "cash buyer"],
        }
    ).normalized()
    assert criteria is not None
    assert (criteria.intent, criteria.property_type) == (LeadIntent.SELL, PropertyType.SINGLE_FAMILY)
    place = criteria.place
    assert place is not None
    assert (place.city, place.postal_code, place.state) == ("Round Rock", "SW1A 1AA", "Texas")
    assert criteria.tags == ["investor", "cash buyer"]
    assert LeadCriteria.model_validate({"price": {}, "place": {}, "tags": []}).normalized() is None


@pytest.mark.parametrize(
    ("criteria", "where"),
    [
        ({"price": {"min": 600_000, "max": 500_000}}, "price"),
        ({"price": {"min": -1}}, "price.min"),
        ({"price": {"max": 10**12}}, "price.max"),
        ({"price": {"min": 1.5}}, "price.min"),
        ({"intent": "lease-to-own"}, "intent"),
        ({"property_type": "castle"}, "property_type"),
        ({"place": {"postal_code": "787<01>"}}, "place.postal_code"),
        ({"place": {"city": ""}}, "place.city"),
        ({"tags": ["x"] * (MAX_TAGS + 1)}, "tags"),
        ({"tags": ["   "]}, "tags.0"),
        ({"mls_number": "MLS 44"}, "mls_number"),
        ({"bedrooms": 3}, "bedrooms"),
    ],
)
def test_criteria_that_cannot_be_routed_on_are_refused_naming_the_field(criteria: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as refused:
        LeadCriteria.model_validate(criteria)
    assert {".".join(str(part) for part in error["loc"]) for error in refused.value.errors()} == {where}


def test_a_partner_s_criteria_reach_the_normalized_lead() -> None:
    message = json.loads(EXAMPLE.read_text())
    message["payload"]["criteria"] = {"intent": "buy", "tags": ["Relocation"], "place": {"postal_code": "10001"}}
    payload = normalize_submission(submission(LeadSubmitted.model_validate(message)), default_region="US")
    assert payload.criteria is not None
    assert (payload.criteria.intent, payload.criteria.tags) == (LeadIntent.BUY, ["relocation"])
    del message["payload"]["criteria"]  # a partner on contract 1.0.0
    assert normalize_submission(submission(LeadSubmitted.model_validate(message)), default_region="US").criteria is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Single Family", PropertyType.SINGLE_FAMILY),
        ("Multi-Family", PropertyType.MULTI_FAMILY),
        ("CONDO", PropertyType.CONDO),
        ("Mobile/Manufactured", PropertyType.MANUFACTURED),
        ("Lots & Land", PropertyType.LAND),
        ("Castle", PropertyType.OTHER),  # a type, just not one of ours
        ("  ", None),
        (None, None),
    ],
)
def test_a_provider_s_property_type_is_read_by_name(name: str | None, kind: PropertyType | None) -> None:
    assert property_type(name) is kind


def fub(**event: Any) -> FubEventIn:
    return FubEventIn.model_validate({"person": {"firstName": "Pat", "emails": [{"value": "pat@example.com"}]}} | event)


def test_a_fub_event_gives_what_it_says_and_drops_what_does_not_fit() -> None:
    seller = fub(type="Seller Inquiry", property={"type": "Condo", "price": 725000.0, "city": "Austin", "state": "TX"})
    assert seller.criteria() == LeadCriteria.model_validate(
        {"intent": "sell", "property_type": "condo", "price": {"min": 725_000, "max": 725_000},
         "place": {"city": "Austin", "state": "TX"}}
    )  # fmt: skip
    search = fub(type="Property Search", propertySearch={"minPrice": "300,000", "maxPrice": 450000, "code": "78701"})
    assert search.criteria() == LeadCriteria.model_validate(
        {"intent": "buy", "price": {"min": 300_000, "max": 450_000}, "place": {"postal_code": "78701"}}
    )
    renter = fub(type="Property Inquiry", property={"forRent": True, "price": {"monthly": 2100}})
    assert renter.criteria() == LeadCriteria(intent=LeadIntent.RENT)
    odd = fub(
        type="General Inquiry",
        person={"firstName": "Pat", "emails": [{"value": "pat@example.com"}], "tags": ["a"] * 60},
        property={"price": "call me", "forRent": "yes", "state": "x" * 150},
        propertySearch={"minPrice": 900_000, "maxPrice": 100_000},  # not used: the property comes first
    )
    assert odd.criteria() == LeadCriteria(tags=["a"])
    assert fub().criteria() is None  # nothing said: no criteria


def test_leadflow_s_own_webhook_shape_refuses_criteria_that_do_not_fit() -> None:
    body = {"first_name": "Kim", "email": "kim@example.org"}
    assert GenericLeadIn.model_validate(body | {"criteria": {"intent": "buy"}}).criteria == LeadCriteria(
        intent=LeadIntent.BUY
    )
    with pytest.raises(ValidationError) as refused:
        GenericLeadIn.model_validate(body | {"criteria": {"price": {"min": "cheap"}}})
    assert [e["loc"] for e in refused.value.errors()] == [("criteria", "price", "min")]


def test_a_portal_push_gives_its_lead_type_and_first_listing() -> None:
    body: dict[str, Any] = {"people": [{"first_name": "Ana", "email": "ana@example.com"}], "lead_type": "Seller"}
    body["listings"] = [{"listing_id": "SE-9", "property_type": "Duplex", "price": "n/a", "zip": "10009"}, {}]
    assert PortalLeadIn.model_validate(body).criteria() == LeadCriteria.model_validate(
        {"intent": "sell", "property_type": "multi_family", "place": {"postal_code": "10009"}}
    )
    assert PortalLeadIn.model_validate(body | {"lead_type": "browsing", "listings": []}).criteria() is None


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
_CRITERIA_FIELDS = ("type", "price", "forRent", "city", "state", "code", "minPrice", "maxPrice", "zip", "property_type")


@given(
    event_type=_ANY_JSON,
    lead_type=_ANY_JSON,
    about=st.dictionaries(st.sampled_from(_CRITERIA_FIELDS), _ANY_JSON, max_size=6),
    tags=_ANY_JSON,
)
def test_whatever_a_provider_says_about_a_lead_never_refuses_it(
    event_type: object, lead_type: object, about: dict[str, object], tags: object
) -> None:
    """A provider's criteria fields, whatever their values: the lead is read, its criteria valid or none."""
    person = {"firstName": "Pat", "emails": [{"value": "pat@example.com"}], "tags": tags}
    fub_event: dict[str, object] = {"person": person, "property": about, "propertySearch": about}
    if isinstance(event_type, str) and len(event_type) <= 50:
        fub_event["type"] = event_type
    portal: dict[str, object] = {"people": [{"first_name": "Ana", "email": "ana@example.com"}], "listings": [about]}
    if isinstance(lead_type, str) and len(lead_type) <= 200:
        portal["lead_type"] = lead_type
    for criteria in (FubEventIn.model_validate(fub_event).criteria(), PortalLeadIn.model_validate(portal).criteria()):
        assert criteria is None or LeadCriteria.model_validate(criteria.model_dump()) == criteria
