"""Intake's HTTP edge over in-memory ports (issue 10, item 6): bad bodies get a 4xx naming the place, never a 5xx,
and no error answer repeats what was sent. The real process is fuzzed in tests/e2e/test_intake_attacks.py."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes_intake import FakeAccounts, FakeStore, Published
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from leadflow_intake.domain.signature import SignedRequest, sign, webhook_path
from leadflow_intake.entrypoints import http
from leadflow_intake.handlers import Intake, Webhook
from leadflow_intake.metrics import IntakeMetrics

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

SECRET = secrets.token_bytes(32)
FORM = {"account_id": "acme-realty", "first_name": "Jane", "last_name": "Doe", "email": "jane@example.com",
        "message": "Hello", "utm": {"utm_source": "google"}}  # fmt: skip
LISTING = FORM | {"listing_id": "MLS-1", "listing_agent_id": "blair-chen", "site_host": "www.acme.example"}


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    intake = Intake(
        accounts=FakeAccounts({"acme-realty": "US"}, {"acme-realty": {"blair-chen"}}),
        store=FakeStore(),
        publish=Published(),
    )
    hooks = {"homefinder": Webhook("homefinder", "generic", [SECRET], "HomeFinder", frozenset())}
    app = FastAPI()
    http.install(app, intake=lambda: intake, webhooks=hooks, metrics=IntakeMetrics(CollectorRegistry()),
                 max_body_bytes=64 * 1024, tolerance_seconds=300)  # fmt: skip
    # raise_app_exceptions=False: an unhandled error is the 500 a real server sends, not a test crash.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http_client:
        yield http_client


def signed(body: bytes, key: str | None = None) -> dict[str, str]:
    ts = int(time.time())
    request = SignedRequest("POST", webhook_path("acme-realty", "homefinder"), key, body)
    return {"X-Leadflow-Timestamp": str(ts), "X-Leadflow-Signature": sign(SECRET, ts, request)}


def with_value(body: dict[str, Any], field: str, raw: str) -> bytes:
    """`body` as JSON with `field` (dotted) replaced by the raw JSON text `raw` (NaN is not JSON, so not dumps)."""
    *parents, last = field.split(".")
    target = body = json.loads(json.dumps(body))
    for name in parents:
        target = target.setdefault(name, {})
    target[last] = "@@RAW@@"
    return json.dumps(body).replace('"@@RAW@@"', raw).encode()


ROUTES = [("/v1/leads", FORM), ("/v1/listing-inquiries", LISTING)]
POISON = ["NaN", "Infinity", "-Infinity", '"A\\ud800b"', '"\\udfffB"']


@pytest.mark.parametrize("poison", POISON)
@pytest.mark.parametrize(
    ("path", "form", "field"),
    [(path, form, field) for path, form in ROUTES for field in [*form, "utm.utm_source", "extra"]],
)
async def test_nan_infinity_and_lone_surrogates_are_a_422_naming_the_field(
    client: httpx.AsyncClient, path: str, form: dict[str, Any], field: str, poison: str
) -> None:
    response = await client.post(
        path, content=with_value(form, field, poison), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert ["body", *field.split(".")] in [e["loc"] for e in errors], errors
    assert "jane" not in response.text.lower()
    again = await client.post(path, json=form)  # the same connection serves the next lead
    assert again.status_code == 202, again.text


@pytest.mark.parametrize("poison", POISON)
async def test_a_signed_webhook_with_nan_or_a_lone_surrogate_is_a_422_naming_the_field(
    client: httpx.AsyncClient, poison: str
) -> None:
    body = with_value({"first_name": "Jane", "email": "jane@example.com"}, "message", poison)
    response = await client.post("/v1/accounts/acme-realty/webhooks/homefinder", content=body, headers=signed(body))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "message"]


async def test_deep_nesting_is_a_422(client: httpx.AsyncClient) -> None:
    body = b'{"account_id": "acme-realty", "first_name": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    response = await client.post("/v1/leads", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"type": "json_too_deep", "loc": ["body"], "msg": "nested deeper than 32 levels"}
    ]


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"first_name": "jane.secret.value@example.com" * 4}, ["body", "first_name"]),
        ({"email": "jane.secret.value@exa$mple.com"}, ["body", "email"]),
        ({"phone": ["jane.secret.value"]}, ["body", "phone"]),
        ({"account_id": "jane.secret.value "}, ["body", "account_id"]),
        ({"site_kind": "jane.secret.value"}, ["body", "site_kind"]),
        ({"utm": {"k": 5, "jane.secret.value": []}}, ["body", "utm", "k"]),
    ],
)
async def test_422_answers_never_repeat_the_submitted_values(
    client: httpx.AsyncClient, change: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post("/v1/leads", json=FORM | change)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert "jane.secret.value" not in response.text.replace('"jane.secret.value"]', "")  # a key may be named
    assert all(set(e) == {"type", "loc", "msg"} for e in response.json()["detail"])


async def test_header_and_path_errors_do_not_repeat_the_values_either(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/leads", json=FORM, headers={"Idempotency-Key": "secret-key-" * 30})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert "secret-key" not in response.text
    response = await client.post("/v1/accounts/secret%20account/webhooks/homefinder", content=b"{}")
    assert response.status_code == 422
    assert "secret" not in response.text


@pytest.mark.parametrize("key", ["a\tb", " padded", "padded ", "é", "k" * 201])
async def test_idempotency_keys_are_printable_ascii(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/v1/leads", json=FORM, headers=[(b"Idempotency-Key", key.encode("utf-8"))])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("text/plain", 415), ("application/x-www-form-urlencoded", 415), ("multipart/form-data; boundary=x", 415),
     ("application/json; charset=utf-8", 202), ("application/vnd.lead+json", 202), (None, 202)],
)  # fmt: skip
async def test_forms_are_json(client: httpx.AsyncClient, content_type: str | None, expected: int) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/leads", content=json.dumps(FORM).encode(), headers=headers)
    assert response.status_code == expected, response.text
    if expected == 415:
        assert response.json() == {"detail": "Content-Type must be application/json"}


@pytest.mark.parametrize("body", [b"\xff\xfe\x00", b"", b"[]", b"null", b'"x"', b"{", b"\xed\xa0\x80"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_bytes_that_are_not_a_form_are_a_4xx(client: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    for path in ("/v1/leads", "/v1/listing-inquiries"):
        response = await client.post(path, content=body, headers={"content-type": content_type})
        assert response.status_code in {415, 422}, response.text
        assert response.json()["detail"]
    hook = await client.post("/v1/accounts/acme-realty/webhooks/homefinder", content=body,
                             headers={**signed(body), "content-type": content_type})  # fmt: skip
    assert hook.status_code == 422, hook.text
