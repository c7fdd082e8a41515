"""Whatever a field holds, intake refuses it by field or publishes a `LeadReceived` the router reads (helper 136's
review of 588ab39, session 30): a property test over every field on forms, listing inquiries, fub-events webhooks and
partner records; and a provider's price of more digits than `int()` reads is left out, never a 500 (a value that does
not fit the criteria is dropped, never the lead: docs/rules.md, intake/domain/criteria.py `_whole`)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes_intake import FakeAccounts, FakeStore
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from leadflow_intake.domain import keys
from leadflow_intake.domain.body import parse_model
from leadflow_intake.domain.errors import IntakeError
from leadflow_intake.domain.forms import ListingInquiryIn, WebsiteLeadIn
from leadflow_intake.domain.providers import FORMATS
from leadflow_intake.domain.signature import SignedRequest, sign, webhook_path
from leadflow_intake.entrypoints import http
from leadflow_intake.handlers import Intake, Webhook, accept_form, accept_lead, accept_partner_lead
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared.consumers import check_storable
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadReceived

pytestmark = pytest.mark.unit

SECRET = b"review-intake2-secret-of-32-bytes!"
NOW = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "partner-contract" / "examples" / "lead-submitted.json"
HUGE_PRICE = "1" * 4301  # one digit past Python's int() limit for a string (sys.get_int_max_str_digits)


class _Bytes(list[bytes]):
    async def __call__(self, account_id: str, event_json: bytes) -> None:
        assert account_id == "acme-realty"
        self.append(event_json)


async def _post_webhook(provider: str, fmt: str, body: dict[str, Any]) -> tuple[int, list[LeadReceived]]:
    published = _Bytes()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=published)
    app = FastAPI()
    http.install(
        app,
        intake=lambda: intake,
        webhooks={provider: Webhook(provider, fmt, [SECRET], "IDX", frozenset())},
        metrics=IntakeMetrics(CollectorRegistry()),
        max_body_bytes=64 * 1024,
        tolerance_seconds=300,
    )
    raw = json.dumps(body).encode()
    ts = int(time.time())
    signature = sign(SECRET, ts, SignedRequest("POST", webhook_path("acme-realty", provider), None, raw))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # an unhandled error is the 500 it sends
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        response = await client.post(
            f"/v1/accounts/acme-realty/webhooks/{provider}",
            content=raw,
            headers={"X-Leadflow-Timestamp": str(ts), "X-Leadflow-Signature": signature},
        )
    return response.status_code, [LeadReceived.model_validate_json(b) for b in published]


PERSON = {"firstName": "Jane", "emails": [{"value": "jane@example.com"}]}


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("fub-events", {"person": PERSON, "property": {"price": HUGE_PRICE}}),
        ("fub-events", {"person": PERSON, "propertySearch": {"minPrice": "$" + HUGE_PRICE}}),
        ("fub-events", {"person": PERSON, "property": {"price": "1" + ",000" * 1434}}),  # "1,000,000,..." 4303 digits
        (
            "portal-push",
            {
                "people": [{"first_name": "Jane", "email": "jane@example.com"}],
                "listings": [{"listing_id": "MLS-1", "price": HUGE_PRICE}],
            },
        ),
    ],
    ids=["fub-property-price", "fub-search-min-price", "fub-price-with-commas", "portal-listing-price"],
)
def test_a_providers_price_of_more_digits_than_int_reads_is_left_out_never_a_500(
    fmt: str, body: dict[str, Any]
) -> None:
    """criteria.py `_whole` matches a price string of digits and calls int() on it: past 4300 digits int() raises
    ValueError ("Exceeds the limit (4300 digits) for integer string conversion"), nothing maps it, the signed webhook
    gets a 500 and the provider retries it for ever: the lead never arrives. A price that does not fit is left out."""
    status, leads = asyncio.run(_post_webhook("idx", fmt, body))
    assert status == 202
    assert len(leads) == 1
    criteria = leads[0].payload.criteria
    assert criteria is None or criteria.price is None


# -- every field on the three ways in: refused (a 4xx, a dead letter) or published as bytes the router reads ------

_AWKWARD = "ßﬃİŉΣςaA1\x1c\x1f \t\n\u3000\u2003\u200b\ufeff\u202e\u2066\u00ad\u0301\x00\x7f\x85\u2028ǅ\U000e0041"


def _text(limit: int) -> st.SearchStrategy[str]:
    """Text around `limit`: awkward characters (case mapping that lengthens, separators Python trims and pydantic
    keeps, format and bidi controls), long runs of them, any UTF-8 text, and ordinary values."""
    return (
        st.text(st.sampled_from(_AWKWARD), max_size=limit + 2)
        | st.builds(
            lambda unit, times: (unit * times)[: limit + 2],
            st.text(st.sampled_from(_AWKWARD), min_size=1, max_size=3),
            st.integers(1, limit + 2),
        )
        | st.text(st.characters(codec="utf-8"), max_size=limit + 2)
        | st.sampled_from(["Jane", "jane@example.com", "(415) 555-0123", "+49 1641", "www.acme.example", "MLS-1"])
    )


_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "first_name": _text(100),
        "last_name": _text(100),
        "email": _text(254),
        "phone": _text(40),
        "message": _text(5000),
        "site_host": _text(253),
        "source_name": _text(100),
        "listing_id": _text(64),
        "utm": st.dictionaries(_text(50), _text(200), max_size=11),
    },
)


def _send(way: str, fields: dict[str, Any], intake: Intake) -> Any:
    fields = {"first_name": "Jane", "email": "jane@example.com", **fields}
    if way in {"form", "listing"}:
        body = {"account_id": "acme-realty", **fields}
        body = body | {"listing_id": body.get("listing_id", "MLS-1")} if way == "listing" else body
        body.pop("listing_id", None) if way == "form" else None
        form = WebsiteLeadIn if way == "form" else ListingInquiryIn
        return accept_form(
            form, json.dumps(body).encode(), space=keys.WEBSITE, idempotency_key="k1", intake=intake, now=NOW
        )
    if way == "fub":
        body = {
            "source": fields.get("source_name", ""),
            "message": fields.get("message", ""),
            "person": {
                "firstName": fields["first_name"],
                "lastName": fields.get("last_name"),
                "emails": [{"value": fields["email"]}],
                "phones": [{"value": fields.get("phone")}],
            },
            "property": {
                "street": fields.get("site_host", ""),
                "mlsNumber": fields.get("listing_id"),
                "price": fields.get("phone"),
            },
            "campaign": dict(zip(["source", "medium", "term"], fields.get("utm", {}).values(), strict=False)),
        }

        async def webhook() -> None:
            lead = parse_model(FORMATS["fub-events"], json.dumps(body).encode())
            sub = lead.to_submission(account_id="acme-realty", provider="idx", source_name="IDX")
            await accept_lead(
                sub, intake=intake, space=keys.webhook("idx"), idempotency_key="k", now=NOW, paths=lead.paths()
            )

        return webhook()
    message = json.loads(EXAMPLE.read_text())
    message["payload"]["source"].pop("assigned_agent_id", None)
    contact, source = message["payload"]["contact"], message["payload"]["source"]
    contact.update({k: fields[k] for k in ("first_name", "last_name", "email", "phone") if k in fields})
    source.update(
        {
            to: fields[k]
            for k, to in (
                ("site_host", "site_host"),
                ("source_name", "name"),
                ("listing_id", "listing_id"),
                ("utm", "utm"),
            )
            if k in fields
        }
    )
    message["payload"]["message"] = fields.get("message", "")
    raw = json.dumps(message).encode()

    async def partner() -> None:  # as the consumer's edge reads the record, then the handler
        check_storable(raw)
        await accept_partner_lead(LeadSubmitted.model_validate_json(raw), intake=intake)

    return partner()


@settings(database=None, deadline=None, max_examples=200, suppress_health_check=list(HealthCheck))
@given(way=st.sampled_from(["form", "listing", "fub", "partner"]), fields=_FIELDS)
def test_whatever_any_field_holds_intake_refuses_it_or_publishes_a_lead_received_the_router_reads(
    way: str, fields: dict[str, Any]
) -> None:
    published = _Bytes()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=published)
    try:
        asyncio.run(_send(way, fields, intake))
    except (IntakeError, PoisonMessage, ValidationError):  # a 4xx, or a dead letter (the record's decoding)
        assert not published
    for raw in published:  # as the router's consumer reads leads.intake.v1
        check_storable(raw)
        LeadReceived.model_validate_json(raw)


# -- one definition of whitespace for every field (helper 139) ------------------------------------------------------


def _outcome(way: str, fields: dict[str, Any]) -> list[LeadReceived] | None:
    """The leads published for `fields` sent `way`, or None if refused (a 4xx or a dead letter)."""
    published = _Bytes()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=published)
    try:
        asyncio.run(_send(way, fields, intake))
    except (IntakeError, PoisonMessage, ValidationError):
        assert not published
        return None
    return [LeadReceived.model_validate_json(raw) for raw in published]


@pytest.mark.parametrize("way", ["form", "listing", "partner"])
@pytest.mark.parametrize("name", ["\x1c", " \x1c\x1f ", "\x1d\t\x1e"], ids=["fs", "fs-us-spaced", "gs-tab-rs"])
def test_a_source_name_of_only_separators_python_trims_is_refused_like_a_blank_one(way: str, name: str) -> None:
    """U+001C-U+001F are not whitespace to the models (a required source name of one is not too short), but Python's
    `str.strip()`, which intake trimmed the source name with, removes them: a website form with source_name "\\x1c"
    was published with source name "", a lead the router rotates in a source nobody configured. A source name holds
    no control characters (dropped, as from names and messages) and one left blank is refused, as a blank one is."""
    assert _outcome(way, {"source_name": " "}) is None  # blank: refused (the models' min_length, after their trim)
    assert _outcome(way, {"source_name": name}) is None


@pytest.mark.parametrize("way", ["form", "listing", "partner"])
def test_control_characters_are_dropped_from_a_source_name_and_campaign_fields(way: str) -> None:
    utm = {"utm_source": " goo\x1cgle\x1f", "utm_medium": "\x1c", "\x1futm_term\x1e": "open\x1d house", "\x1c": "x"}
    leads = _outcome(way, {"source_name": "\x1fWeb\x1csite\x1c ", "utm": utm})
    assert leads is not None
    assert [(lead.payload.source.name, lead.payload.source.utm) for lead in leads] == [
        ("Website", {"utm_source": "google", "utm_term": "open house"})
    ]


def test_a_generic_webhooks_source_name_of_only_separators_is_refused_like_a_blank_one() -> None:
    body = {"first_name": "Jane", "email": "jane@example.com"}
    assert asyncio.run(_post_webhook("idx", "generic", body | {"source_name": " "}))[0] == 422
    assert asyncio.run(_post_webhook("idx", "generic", body | {"source_name": "\x1c\x1f"})) == (422, [])


@pytest.mark.parametrize("way", ["form", "listing", "partner"])
@pytest.mark.parametrize(
    "fields",
    [{"email": "\x1c", "phone": "(415) 555-0123"}, {"site_host": "\x1f"}],
    ids=["email", "site_host"],
)
def test_an_email_or_host_of_only_separators_is_not_blank_on_any_way_in(way: str, fields: dict[str, Any]) -> None:
    """Blank is what the models trim (normalize.WHITESPACE): an email or host of U+001C is not a blank one left out
    on a form (`str.strip()` in fields.py) and a refused one from a partner, but refused by field on every way in."""
    assert _outcome(way, fields) is None
