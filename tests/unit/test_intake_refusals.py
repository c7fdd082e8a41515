"""Intake's HTTP edge fed any request (hypothesis) over in-memory ports: a refused request claims no key and
publishes nothing, an accepted one publishes exactly once (a retry of an accepted key: nothing more); every
answer is a 202 or a 4xx naming the place. And what no store can hold is refused here, not after the 202
(decision 0083). Beside test_intake_http.py (fixed cases) and e2e/test_intake_attacks.py (the real process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fakes_intake import FakeAccounts, FakeStore, Published
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from test_intake_http import FORM, LISTING, ROUTES, SECRET, signed

from leadflow_intake.entrypoints import http
from leadflow_intake.handlers import Intake, Webhook
from leadflow_intake.metrics import IntakeMetrics

pytestmark = pytest.mark.unit


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "form"), ROUTES)
async def test_a_nul_in_a_campaign_field_s_name_is_a_422_naming_utm_and_nothing_is_claimed_or_published(
    path: str, form: dict[str, Any]
) -> None:
    """Such a lead was accepted (202), and the router could never store it (BSON ends a key at NUL): it was
    dead-lettered there, lost after intake had said yes. Decision 0083."""
    intake, store, published = _ports()
    async with _client(intake) as client:
        body = json.dumps(form | {"utm": {"utm_source": "google", "utm\u0000medium": "cpc"}}).encode()
        response = await client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == [{"type": "unicode", "loc": ["body", "utm"], "msg": NUL_IN_NAME}]
        hook = json.dumps({"first_name": "Jane", "email": "jane@example.com", "utm": {"\u0000": "x"}}).encode()
        refused = await client.post("/v1/accounts/acme-realty/webhooks/homefinder", content=hook, headers=signed(hook))
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "utm"]
        assert (store.claims, published) == ({}, [])
        assert (await client.post(path, json=form)).status_code == 202
        assert len(published) == 1


NUL_IN_NAME = "a member name holds a NUL character (\\u0000), which no stored document can hold"


def _ports() -> tuple[Intake, FakeStore, Published]:
    store, published = FakeStore(), Published()
    accounts = FakeAccounts({"acme-realty": "US"}, {"acme-realty": {"blair-chen"}})
    return Intake(accounts=accounts, store=store, publish=published), store, published


def _client(intake: Intake) -> httpx.AsyncClient:
    hooks = {"homefinder": Webhook("homefinder", "generic", [SECRET], "HomeFinder", frozenset())}
    app = FastAPI()
    http.install(app, intake=lambda: intake, webhooks=hooks, metrics=IntakeMetrics(CollectorRegistry()),
                 max_body_bytes=64 * 1024, tolerance_seconds=300)  # fmt: skip
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://intake")


# -- any request: refused, it claims and publishes nothing; accepted, it publishes once ------------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from([2**64, -(2**70), 10**400])
    | st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=20)
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
HOOK = "/v1/accounts/acme-realty/webhooks/homefinder"
_FORMS = {"/v1/leads": FORM, "/v1/listing-inquiries": LISTING, HOOK: {"first_name": "Jane", "email": "j@example.com"}}


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    path = draw(st.sampled_from(sorted(_FORMS)))
    kind = draw(st.sampled_from(["field", "field", "valid", "json", "bytes", "deep"]))
    if kind in {"field", "valid"}:
        document = json.loads(json.dumps(_FORMS[path]))
        if kind == "field":
            document[draw(st.sampled_from([*document, "utm", "unknown"]))] = draw(_json)
        body = json.dumps(document, allow_nan=True).encode()  # NaN, Infinity, "\udXXX" escapes: what is tested
    elif kind == "json":
        body = json.dumps(draw(_json), allow_nan=True).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    else:
        depth = draw(st.integers(1, 3000))
        body = b'{"first_name": ' + b"[" * depth + b"]" * depth + b"}"
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/plain", "application/x+json"]))}
    if (key := draw(st.none() | st.sampled_from(["k-1", "k-2", " bad", "é"]))) is not None:
        headers["Idempotency-Key"] = key
    if path == HOOK:
        good_signature = draw(st.booleans())
        signable = key if key is not None and key.isascii() else None  # the key as signed; "é" cannot be
        signature = signed(body, signable) if good_signature else signed(b"another body", signable)
        headers |= signature
    return path, body, headers


FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
Request = tuple[str, bytes, dict[str, str]]


async def _check(client: httpx.AsyncClient, store: FakeStore, published: Published, request: Request) -> int:
    path, body, headers = request
    claims, sent = dict(store.claims), len(published)
    encoded = [(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers.items()]
    response = await client.post(path, content=body, headers=encoded)
    label = f"{path} {headers} {body[:200]!r} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code in {202, 401, 409, 413, 415, 422}, label
    if response.status_code != 202:
        assert (store.claims, len(published)) == (claims, sent), f"a refusal stored or sent; {label}"
        if response.status_code == 422:
            assert all(e["loc"][0] in {"body", "header", "path"} and e["msg"]
                       for e in response.json()["detail"]), label  # fmt: skip
        return response.status_code
    # Without a key a form is one lead; with one (a webhook's is its body's hash), a lead the first time only.
    keyed, claimed = "Idempotency-Key" in headers or path == HOOK, len(store.claims) - len(claims)
    assert claimed in ({0, 1} if keyed else {0}), label
    assert len(published) - sent == (claimed if keyed else 1), f"published {len(published) - sent}; {label}"
    return response.status_code


def test_a_refused_request_claims_and_publishes_nothing_and_an_accepted_one_publishes_once() -> None:
    seen: set[int] = set()

    @FUZZ
    @given(requests=st.lists(_requests(), min_size=1, max_size=4))
    def fuzz(requests: list[Request]) -> None:
        intake, store, published = _ports()

        async def run() -> None:
            async with _client(intake) as client:
                for request in requests:
                    seen.add(await _check(client, store, published, request))

        asyncio.run(run())

    fuzz()
    assert {202, 401, 415, 422} <= seen, seen  # refused every way, and accepted: the fuzz reached the use case
