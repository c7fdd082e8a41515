"""Normalization of a whole lead, and properties of the host, free-text, utm and name normalizers."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_intake.domain.errors import InvalidLead
from leadflow_intake.domain.forms import ListingInquiryIn, WebsiteLeadIn
from leadflow_intake.domain.lead import MESSAGE_LIMIT, Submission, normalize_submission, refusals
from leadflow_intake.domain.normalize import normalize_free_text, normalize_host, normalize_name, normalize_utm
from leadflow_intake.domain.partner import PATHS
from leadflow_shared.events.intake import LeadChannel, LeadReceivedPayload

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None, max_examples=300)


# -- names: every letter, including those whose case mapping is several letters ------------------


@PROPERTY
@given(st.text(max_size=60))
def test_normalize_name_is_idempotent_tidy_and_never_longer(raw: str) -> None:
    once = normalize_name(raw)
    assert normalize_name(once) == once
    assert len(once) <= len(raw)
    assert once == once.strip()
    assert "  " not in once
    assert not any(c in once for c in "\x00\n\t\r")


# -- hosts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alex.Acme-Realty.com", "alex.acme-realty.com"),
        ("alex.acme-realty.com.", "alex.acme-realty.com"),
        ("alex.acme-realty.com:8443", "alex.acme-realty.com"),
        ("https://Alex.Acme-Realty.com/contact?x=1", "alex.acme-realty.com"),
        ("www.acme-realty.com/listings/12", "www.acme-realty.com"),
        ("localhost", "localhost"),
    ],
)
def test_normalize_host_examples(raw: str, expected: str) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "a b.com", "-bad.com", "bad-.com", "x..com", "http://", "[::1]:80", "a" * 64 + ".com"]
)
def test_normalize_host_rejects_non_hosts(raw: str) -> None:
    with pytest.raises(ValueError, match="host"):
        normalize_host(raw)


_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@PROPERTY
@given(st.lists(_labels, min_size=1, max_size=4), st.sampled_from(["", "https://", "http://"]), st.booleans())
def test_normalize_host_of_urls_and_hosts_is_idempotent(labels: list[str], scheme: str, upper: bool) -> None:
    host = ".".join(labels)
    raw = scheme + (host.upper() if upper else host) + ("/path" if scheme else "")
    once = normalize_host(raw)
    assert once == host
    assert normalize_host(once) == once


# -- free text and utm -------------------------------------------------------------------------


@PROPERTY
@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_normalize_free_text_is_bounded_idempotent_and_clean(raw: str, limit: int) -> None:
    once = normalize_free_text(raw, limit)
    assert len(once) <= limit
    assert normalize_free_text(once, limit) == once
    assert "\r" not in once
    assert "\n\n\n" not in once
    assert all(c in "\n\t" or (ord(c) >= 32 and not 0x7F <= ord(c) <= 0x9F) for c in once)


def test_normalize_free_text_keeps_paragraphs_and_marks_a_cut() -> None:
    assert normalize_free_text("  Hi,\r\n\r\n\r\n\r\nsee you\x00 soon  ", 100) == "Hi,\n\nsee you soon"
    assert normalize_free_text("abcdef", 4) == "abc…"


@PROPERTY
@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=10))
def test_normalize_utm_is_idempotent_and_never_grows(raw: dict[str, str]) -> None:
    once = normalize_utm(raw)
    assert normalize_utm(once) == once
    assert len(once) <= len(raw)
    assert all(k and v and k == k.strip().lower() and v == v.strip() for k, v in once.items())


# -- a whole lead ------------------------------------------------------------------------------


def test_every_field_is_normalized() -> None:
    sub = Submission(
        account_id="acme-realty", channel=LeadChannel.LISTING_INQUIRY, source_name=" Listing inquiry ",
        first_name="  JANE ", last_name="van der BERG", email=" Jane@Example.COM", phone="415.555.0123",
        message=" Hello\r\n", site_host="HTTPS://Alex.Acme-Realty.com/x", listing_id="MLS-1",
        listing_agent_id="alex-rivera", utm={" UTM_Source ": " google ", "empty": " "},
    )  # fmt: skip
    payload = normalize_submission(sub, default_region="US")
    assert payload.model_dump(mode="json") == {
        "contact": {"first_name": "Jane", "last_name": "van der BERG", "email": "jane@example.com",
                    "phone": "+14155550123"},
        "source": {"channel": "listing_inquiry", "name": "Listing inquiry", "site_host": "alex.acme-realty.com",
                   "listing_id": "MLS-1", "listing_agent_id": "alex-rivera", "assigned_agent_id": None,
                   "provider": None, "utm": {"utm_source": "google"}},
        "message": "Hello",
        "criteria": None,  # none given (issue 15's routing criteria: tests/unit/test_intake_criteria.py)
    }  # fmt: skip


def test_a_lead_needs_an_email_or_a_phone() -> None:
    with pytest.raises(InvalidLead, match="give an email or a phone number"):
        normalize_submission(
            Submission("acme-realty", LeadChannel.PARTNER, "P", "Jane", email=" ", phone=""), default_region="US"
        )


# "+49 1641": valid to phonenumbers, too short for LeadReceived's E.164 (helper 127's review).
_contact_text = st.one_of(
    st.none(), st.text(max_size=40), st.emails(), st.sampled_from(["(415) 555-0123", "+44 20", "+49 1641"])
)


@PROPERTY
@given(
    first_name=st.text(max_size=100),
    last_name=st.text(max_size=100),
    email=_contact_text,
    phone=_contact_text,
    message=st.text(max_size=200),
    site_host=st.one_of(st.none(), st.text(max_size=30), st.just("Alex.Example.com")),
    region=st.sampled_from(["US", "GB", "DE", "ZZ"]),
)
def test_any_bounded_submission_is_a_valid_payload_or_names_its_bad_fields(**fields: Any) -> None:
    region = fields.pop("region")
    sub = Submission(account_id="acme-realty", channel=LeadChannel.BROKERAGE_SITE, source_name="Website", **fields)
    try:
        payload = normalize_submission(sub, default_region=region)
    except InvalidLead as exc:
        named = {e.field for e in exc.errors}
        assert named
        assert named <= {"first_name", "last_name", "email", "phone", "site_host", "<lead>"}
        return
    # What comes out satisfies the contract the router validates, and normalizing again changes nothing.
    assert LeadReceivedPayload.model_validate_json(payload.model_dump_json()) == payload
    again = Submission(
        account_id="acme-realty", channel=LeadChannel.BROKERAGE_SITE, source_name="Website",
        first_name=payload.contact.first_name, last_name=payload.contact.last_name, email=payload.contact.email,
        phone=payload.contact.phone, message=payload.message, site_host=payload.source.site_host,
    )  # fmt: skip
    assert normalize_submission(again, default_region=region) == payload
    assert len(payload.message) <= MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("paths", "field"),
    [({}, "source_name"), (PATHS, "payload.source.name")],
    ids=["form", "partner"],
)
def test_a_value_lead_received_cannot_carry_is_refused_naming_its_field_never_a_validation_error(
    paths: dict[str, str], field: str
) -> None:
    """Whatever a normalizer lets through that the event's rules refuse (here a source name of 101 characters) is
    an InvalidLead naming the field as the sender wrote it, with the rule and not the value: a 422 or a dead letter
    with the reason, never pydantic's ValidationError (a 500, its text holding the value, logged)."""
    sub = Submission("acme-realty", LeadChannel.PARTNER, "S" * 101, "Jane", email="jane@example.com")
    with pytest.raises(InvalidLead) as info:
        normalize_submission(sub, default_region="US", paths=paths)
    assert str(info.value) == f"{field}: String should have at most 100 characters"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # the ValidationError, which holds the value, is not logged with it


def test_an_error_of_building_lead_received_names_the_submitted_field() -> None:
    """The places of LeadReceived (its payload's contact and source) as the Submission's names, mapped by `paths`."""
    cases = {
        ("payload", "contact", "phone"): "payload.contact.phone",
        ("contact",): "payload.contact",
        ("source", "utm", "utm_source"): "payload.source.utm.utm_source",
        ("criteria", "tags", 0): "payload.criteria.tags.0",
        ("message",): "payload.message",
        ("account_id",): "account_id",
    }
    for loc, path in cases.items():
        error = ValidationError.from_exception_data(
            "LeadReceived", [{"type": "missing", "loc": loc, "input": "jane@example.com"}]
        )
        assert [(e.field, e.reason) for e in refusals(error, PATHS)] == [(path, "Field required")]


# -- the HTTP input models ---------------------------------------------------------------------


def test_agent_site_form_is_an_agent_site_lead_and_needs_its_host() -> None:
    form = WebsiteLeadIn.model_validate(
        {
            "account_id": "acme-realty",
            "first_name": "Al",
            "email": "al@example.com",
            "site_kind": "agent",
            "site_host": "Alex.Acme-Realty.com",
        }
    )
    sub = form.to_submission()
    assert (sub.channel, sub.site_host) == (LeadChannel.AGENT_SITE, "alex.acme-realty.com")
    with pytest.raises(ValidationError, match="needs site_host"):
        WebsiteLeadIn.model_validate(
            {"account_id": "acme-realty", "first_name": "Al", "email": "al@example.com", "site_kind": "agent"}
        )


def test_listing_inquiry_carries_the_listing_and_its_agent() -> None:
    inquiry = ListingInquiryIn.model_validate(
        {
            "account_id": "acme-realty",
            "first_name": "Al",
            "phone": "2125550101",
            "listing_id": "MLS-4471",
            "listing_agent_id": "blair-chen",
        }
    )
    sub = inquiry.to_submission()
    assert (sub.channel, sub.listing_id, sub.listing_agent_id, sub.source_name) == (
        LeadChannel.LISTING_INQUIRY,
        "MLS-4471",
        "blair-chen",
        "Listing inquiry",
    )


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"listing_id": None}, ("listing_id",)),
        ({"listing_id": "x" * 65}, ("listing_id",)),
        ({"listing_id": "a b"}, ("listing_id",)),
        ({"listing_agent_id": "x" * 65}, ("listing_agent_id",)),
        ({"site_host": "not a host"}, ("site_host",)),
    ],
)
def test_listing_inquiry_limits_name_the_field(overrides: dict[str, Any], loc: tuple[str, ...]) -> None:
    body = {"account_id": "acme-realty", "first_name": "Al", "email": "al@example.com", "listing_id": "L1"}
    with pytest.raises(ValidationError) as info:
        ListingInquiryIn.model_validate(body | overrides)
    assert info.value.errors()[0]["loc"] == loc


# -- fields a form normalized already -----------------------------------------------------------

_form_text = st.one_of(
    st.text(max_size=40),
    st.emails(),
    st.sampled_from(
        ["  JANE ", "o'neil-smith", "Ja\u200bne", "ß", " Jane@Example.COM", "HTTPS://Alex.Acme-Realty.com/x"]
    ),
)


def _outcome(sub: Submission) -> LeadReceivedPayload | list[tuple[str, str]]:
    try:
        return normalize_submission(sub, default_region="US")
    except InvalidLead as exc:
        return [(e.field, e.reason) for e in exc.errors]


@PROPERTY
@given(
    first_name=_form_text,
    last_name=_form_text,
    email=st.one_of(st.none(), _form_text),
    phone=st.one_of(st.none(), st.sampled_from(["(415) 555-0123", "+44 20 7946 0958", "12"])),
    site_host=st.one_of(st.none(), _form_text),
    listing=st.booleans(),
)
def test_a_forms_lead_is_what_normalizing_every_field_again_makes(listing: bool, **fields: Any) -> None:
    """The fields a form's types normalized are not normalized again (normalizers are idempotent): the
    lead, or its refusal, is the same as when every field is."""
    model: type[WebsiteLeadIn | ListingInquiryIn] = ListingInquiryIn if listing else WebsiteLeadIn
    extra = {"listing_id": "MLS-1"} if listing else {}
    try:
        form = model.model_validate({"account_id": "acme-realty", **fields, **extra})
    except ValidationError:
        return
    sub = form.to_submission()
    assert sub.normalized
    assert _outcome(sub) == _outcome(dataclasses.replace(sub, normalized=frozenset()))
