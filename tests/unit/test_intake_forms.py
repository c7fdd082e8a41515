"""WebsiteLeadIn: what intake accepts over HTTP and the payload it builds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_shared.events.intake import LeadChannel, LeadReceivedPayload

pytestmark = pytest.mark.unit


def _form(**overrides: Any) -> dict[str, Any]:
    return {"account_id": "acme-realty", "first_name": "Jane", "email": "jane@example.com"} | overrides


def _error_loc(data: dict[str, Any]) -> tuple[int | str, ...]:
    with pytest.raises(ValidationError) as info:
        WebsiteLeadIn.model_validate(data)
    return info.value.errors()[0]["loc"]


def test_email_alone_is_enough() -> None:
    form = WebsiteLeadIn.model_validate(_form())
    assert form.email == "jane@example.com"
    assert form.phone is None


def test_phone_alone_is_enough() -> None:
    form = WebsiteLeadIn.model_validate(_form(email=None, phone="(415) 555-0123"))
    assert form.email is None
    assert form.phone == "(415) 555-0123"  # normalized later, with the account's region


@pytest.mark.parametrize(("email", "phone"), [(None, None), ("", ""), ("   ", None)])
def test_email_or_phone_is_required(email: str | None, phone: str | None) -> None:
    with pytest.raises(ValidationError, match="give an email or a phone number") as info:
        WebsiteLeadIn.model_validate(_form(email=email, phone=phone))
    assert info.value.errors()[0]["loc"] == ()


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        WebsiteLeadIn.model_validate(_form(referrer="google"))
    error = info.value.errors()[0]
    assert error["loc"] == ("referrer",)
    assert error["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"message": "x" * 5001}, "message"),
        ({"utm": {f"k{i}": "v" for i in range(11)}}, "utm"),
        ({"utm": {"utm_source": "v" * 201}}, "utm"),
        ({"utm": {"k" * 51: "v"}}, "utm"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"first_name": "   "}, "first_name"),
        ({"last_name": "x" * 101}, "last_name"),
        ({"account_id": "acme realty"}, "account_id"),
        ({"account_id": ""}, "account_id"),
        ({"email": "not-an-email"}, "email"),
        ({"phone": "1" * 41}, "phone"),
        ({"site_host": "h" * 254}, "site_host"),
        ({"source_name": ""}, "source_name"),
    ],
)
def test_bounds_name_the_field(overrides: dict[str, Any], field: str) -> None:
    assert _error_loc(_form(**overrides)) == (field,)


def test_bounds_are_inclusive() -> None:
    form = WebsiteLeadIn.model_validate(
        _form(message="x" * 5000, utm={f"k{i:02d}" + "k" * 47: "v" * 200 for i in range(10)})
    )
    assert len(form.message) == 5000
    assert len(form.utm) == 10


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("😀😀", "must contain letters"),
        ("\u200b\u200b", "must contain letters"),  # zero-width spaces only
        ("\u200d", "must contain letters"),
        ("🏠 123", "must contain letters"),
        ("\u3164\u3164", "must contain letters"),  # Hangul fillers: letters that draw nothing
        ("Jane\u202eeoD", "bidirectional control"),  # shows as "JaneDoe" reversed
        ("\u2066Jane\u2069", "bidirectional control"),
        ("Jane\u200f", "bidirectional control"),
    ],
)
@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_names_without_letters_or_with_bidi_controls_are_refused(field: str, name: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as info:
        WebsiteLeadIn.model_validate(_form(**{field: name}))
    assert info.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("name", "normalized"),
    [("Ja\u200bne", "Jane"), ("\u00adJane\ufeff", "Jane"), ("Jane 😀", "Jane 😀"), ("مهر\u200cناز", "مهر\u200cناز")],
)
def test_names_keep_letters_and_joiners_and_lose_invisible_characters(name: str, normalized: str) -> None:
    assert WebsiteLeadIn.model_validate(_form(first_name=name)).first_name == normalized


def test_names_and_email_are_normalized() -> None:
    form = WebsiteLeadIn.model_validate(
        _form(first_name="  JANE  ", last_name="o'neil-smith", email="  Jane.Doe@Example.COM ")
    )
    assert (form.first_name, form.last_name, form.email) == ("Jane", "O'Neil-Smith", "jane.doe@example.com")


def test_to_payload_builds_a_brokerage_site_lead() -> None:
    form = WebsiteLeadIn.model_validate(
        _form(
            first_name="jane",
            last_name="DOE",
            phone="(415) 555-0123",
            message="Is the house on Elm St still available?",
            site_host="www.acme-realty.com",
            source_name="Zillow Redirect",
            utm={"utm_source": "google"},
        )
    )
    payload = form.to_payload("+14155550123")
    assert isinstance(payload, LeadReceivedPayload)
    assert payload.contact.first_name == "Jane"
    assert payload.contact.last_name == "Doe"
    assert payload.contact.email == "jane@example.com"
    assert payload.contact.phone == "+14155550123"
    assert payload.source.channel is LeadChannel.BROKERAGE_SITE
    assert payload.source.name == "Zillow Redirect"
    assert payload.source.site_host == "www.acme-realty.com"
    assert payload.source.utm == {"utm_source": "google"}
    assert payload.message == "Is the house on Elm St still available?"


def test_to_payload_defaults() -> None:
    payload = WebsiteLeadIn.model_validate(_form()).to_payload(None)
    assert payload.contact.phone is None
    assert payload.contact.last_name == ""
    assert payload.source.name == "Website"
    assert payload.source.site_host is None
    assert payload.source.utm == {}
    assert payload.message == ""


# normalize_name never lengthens a name ('ß' keeps its case), so the limit checked before it still holds.
def test_every_accepted_form_builds_a_payload() -> None:
    form = WebsiteLeadIn.model_validate(_form(first_name="ß" * 100))
    assert len(form.to_payload(None).contact.first_name) <= 100
