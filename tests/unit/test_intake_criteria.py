"""What a lead is about (issue 15, item 1): the optional criteria routing rules will match on,
validated at every way in and normalized once by intake (shared/events/criteria.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes_intake import FakeAccounts, FakeStore
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_intake.domain import keys
from leadflow_intake.domain.criteria import criteria_from, property_type
from leadflow_intake.domain.errors import InvalidBody, InvalidLead
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.domain.lead import normalize_submission
from leadflow_intake.domain.partner import submission
from leadflow_intake.domain.providers import FubEventIn, GenericLeadIn, PortalLeadIn
from leadflow_intake.handlers import Intake, accept_form, accept_lead, accept_partner_lead
from leadflow_shared.events.criteria import MAX_TAGS, LeadCriteria, LeadIntent, PropertyType
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadReceived

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
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


# -- what is published is a LeadReceived its readers take (helper 127's review) -------------------------------------


def test_a_tag_too_long_once_lower_cased_is_left_out_and_what_is_left_validates() -> None:
    """normalized() lower-cased with model_copy, no validation: 50 "ß" became 100 characters (the limit is 50), and
    the router dead-lettered the lead intake had taken. Such a tag is left out; the result is validated again."""
    criteria = LeadCriteria(tags=["ß" * 50, "ß" * 25, "ﬃ" * 17, "ﬃ" * 16, "Buyer"]).normalized()
    assert criteria == LeadCriteria(tags=["ss" * 25, "ffi" * 16, "buyer"])
    assert LeadCriteria.model_validate_json(criteria.model_dump_json()) == criteria
    assert LeadCriteria(tags=["ß" * 50]).normalized() is None  # nothing left: no criteria


def test_a_providers_tag_is_kept_exactly_when_it_is_a_tag_to_the_models() -> None:
    """The models trim Unicode's White_Space only; Python's str.strip() also trims U+001C-U+001F, so "a" * 50 + U+001C
    was kept by intake's check and 51 characters to LeadCriteria: a ValidationError, a 500 (criteria.py: a value
    that does not fit is left out, never a refused lead)."""
    tags = ["a" * 50 + "\x1c", "\x1f" + "b" * 50, " " + "c" * 50 + "\u3000", "\x1c", "\u2003", "VIP"]
    assert criteria_from(tags=tags) == LeadCriteria(tags=["c" * 50, "\x1c", "vip"])


# Letters that lower-case longer ("ß" is "ss"), separators Python's strip() trims and the models keep, Unicode spaces.
_AWKWARD = "ßﬃİŉΣςa\x1c\x1d\x1e\x1f \t\u3000\u2003\u200b\x85"
_tag_text = (
    st.builds(lambda unit, times: (unit * times)[:55], st.text(st.sampled_from(_AWKWARD), min_size=1, max_size=4),
              st.integers(1, 55))  # long runs: what lower-casing lengthens past the limit
    | st.text(st.sampled_from(_AWKWARD), max_size=55)
    | st.text(st.characters(codec="utf-8"), max_size=55)
)  # fmt: skip
_PUBLISHING = settings(database=None, deadline=None, max_examples=150)


class _Bytes(list[bytes]):
    """The publisher: the bytes as Kafka would keep them, unread (the test reads them as the router does)."""

    async def __call__(self, account_id: str, event_json: bytes) -> None:
        assert account_id == "acme-realty"
        self.append(event_json)


def _published_as_read(ways: str, tags: list[str], state: str, city: str) -> list[bytes]:
    """What intake publishes of a lead with these criteria, coming in `ways`; refusals (4xx, dead letters) publish
    nothing. Any other exception fails the test (a 500)."""
    published = _Bytes()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=published)
    criteria = {"tags": tags, "place": {"state": state, "city": city}}
    contact = {"first_name": "Jane", "email": "jane@example.com"}

    async def send() -> None:
        if ways == "form":
            body = json.dumps({"account_id": "acme-realty", **contact, "criteria": criteria}).encode()
            await accept_form(WebsiteLeadIn, body, space=keys.WEBSITE, idempotency_key=None, intake=intake, now=NOW)
        elif ways == "partner":
            message = json.loads(EXAMPLE.read_text())
            message["payload"]["criteria"] = criteria
            message["payload"]["source"].pop("assigned_agent_id", None)
            await accept_partner_lead(LeadSubmitted.model_validate(message), intake=intake)
        else:  # a Follow Up Boss-style provider: its own fields, read loosely
            fub_event = {"person": {"firstName": "Jane", "emails": [{"value": "jane@example.com"}], "tags": tags},
                         "property": {"state": state, "city": city}}  # fmt: skip
            sub = FubEventIn.model_validate(fub_event).to_submission(account_id="acme-realty", provider="idx",
                                                                     source_name="IDX")  # fmt: skip
            await accept_lead(sub, intake=intake, space=keys.webhook("idx"), idempotency_key=None, now=NOW)

    try:
        asyncio.run(send())
    except (InvalidLead, InvalidBody, ValidationError):  # a 422, a dead letter: the sender hears of it
        assert ways != "provider", "a provider's criteria refused the lead"
        assert not published
    return published


@_PUBLISHING
@given(
    ways=st.sampled_from(["form", "partner", "provider"]),
    tags=st.lists(_tag_text, max_size=MAX_TAGS + 2),
    state=st.text(st.sampled_from(_AWKWARD + "tx"), min_size=1, max_size=3),
    city=_tag_text,
)
def test_whatever_criteria_intake_takes_it_publishes_as_a_lead_received_its_readers_take(
    ways: str, tags: list[str], state: str, city: str
) -> None:
    """Any tag and place text on every way in: intake refuses it naming the field, or publishes bytes the router
    validates as LeadReceived (I1: nothing accepted is lost after the 202 or the partner's offset)."""
    for raw in _published_as_read(ways, tags, state, city):
        LeadReceived.model_validate_json(raw)
