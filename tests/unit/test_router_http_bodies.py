"""The router's internal HTTP API as its bootstrap builds it (the runtime's app: `BodyGuard` and the 422 that
never repeats the input, decision 0083; the service-token gate), fed what crm-api never sends: NaN, Infinity,
numbers beyond doubles and 64 bits, lone surrogates, NUL in member names, deep nesting, huge bodies, arbitrary
bytes and query strings. Every answer is a 4xx naming the place and the reason, or the route's answer; never a
500, and a refused body never reaches the service (in-memory fakes: only the HTTP edge is under test).

Before 0083 the dry-run answered NaN, Infinity, 1e999 and "\\ud800" with a 500 (FastAPI's own 422 repeats the
input, which JSON cannot encode), deep nesting with a 400 that named nothing, and read a body of any size."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fakes_router import FakeAccounts, FakeContacts, FakeRecords, FakeRotations, Published
from fastapi import FastAPI
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from leadflow_router.bootstrap import BODY_LIMITS, create_app
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.entrypoints.http import ServiceTokens, install
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_router.settings import RouterSettings
from leadflow_shared.service import ServiceRuntime

pytestmark = pytest.mark.unit

TOKEN = secrets.token_urlsafe(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DRY_RUN = "/internal/v1/accounts/acme/routing/dry-run"
LEAD = {
    "contact": {"first_name": "Jo", "email": "jo@example.com"},
    "source": {"channel": "brokerage_site", "name": "W"},
}
FUZZ = settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))


class Counted:
    """The app's service, counting the requests that reached it, over fakes that record what is stored."""

    def __init__(self) -> None:
        self.records, self.published, self.calls = FakeRecords(), Published(), 0
        self.service = RouterService(
            records=self.records,
            accounts=FakeAccounts(AccountSnapshot("acme", "Acme", (Agent("a", "A"), Agent("b", "B")))),
            contacts=FakeContacts(),
            rotations=FakeRotations(),
            publish=self.published,
            metrics=RouterMetrics(CollectorRegistry()),
        )

    def __call__(self) -> RouterService:
        self.calls += 1
        return self.service


def built(service: Counted) -> FastAPI:
    """As router/bootstrap.py builds it: the runtime's app with the router's body limits, then its routes."""
    settings = RouterSettings.model_validate({"api_token": TOKEN})
    app = ServiceRuntime(settings, service="router").app(title="router", body_limits=BODY_LIMITS)
    install(app, service, tokens=ServiceTokens(settings.api_tokens))
    return app


SERVICE = Counted()
APP = built(SERVICE)


def send(
    app: FastAPI, method: str, path: str, content: bytes | None = None, *, auth: bool = True, content_type: str = ""
) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}

    async def call() -> httpx.Response:
        # raise_app_exceptions=False: an unhandled error is the 500 a real server sends, not a test crash.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.request(method, path, content=content, headers=(AUTH if auth else {}) | headers)

    return asyncio.run(call())


def dry_run(body: bytes, content_type: str = "application/json") -> httpx.Response:
    return send(APP, "POST", DRY_RUN, body, content_type=content_type)


def raw(value: str, field: str = "lead") -> bytes:
    """A dry-run body whose `field` is the raw JSON text `value` (NaN is not JSON: not json.dumps)."""
    return ('{"%s": %s}' % (field, value)).encode()  # noqa: UP031 (raw JSON text, not a format of values)


@pytest.mark.parametrize(
    ("body", "loc", "reason"),
    [
        (raw("NaN"), ["body", "lead"], "must be a finite number: NaN and Infinity are not JSON"),
        (raw("-Infinity", "lead_id"), ["body", "lead_id"], "must be a finite number: NaN and Infinity are not JSON"),
        (raw("1e999"), ["body", "lead"], "must be a finite number: beyond the range of 64-bit doubles"),
        (raw(str(2**64)), ["body", "lead"], "an integer beyond the 64-bit range"),
        (raw('"A\\ud800"'), ["body", "lead"], "lone surrogate"),
        (b'{"x\\udc00": 1}', ["body"], "lone surrogate"),
        (b'{"lead": {"a\\u0000": 1}}', ["body", "lead"], "NUL character"),
        (raw("[" * 40 + "]" * 40, "rules"), ["body", "rules", *[0] * 31], "nested deeper than 32 levels"),
        (b"[" * 100_000 + b"]" * 100_000, ["body"], "nested deeper than 32 levels"),
        (b"\xff\xfe{}", ["body"], "not valid JSON: not UTF-8 text"),
    ],
)
def test_a_body_json_does_not_allow_is_a_422_naming_the_place_and_reaches_no_route(
    body: bytes, loc: list[Any], reason: str
) -> None:
    before = SERVICE.calls
    answer = dry_run(body)
    assert answer.status_code == 422, answer.text
    [refusal] = answer.json()["detail"]
    assert refusal["loc"] == loc
    assert reason in refusal["msg"]
    assert set(refusal) == {"type", "loc", "msg"}, "never the input"
    assert SERVICE.calls == before, "the route ran"


def test_a_body_beyond_the_limit_is_a_413_read_no_further() -> None:
    huge = b'{"lead_id": "' + b"x" * BODY_LIMITS.max_bytes + b'"}'
    answer = dry_run(huge)
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"detail": f"The request body is larger than {BODY_LIMITS.max_bytes} bytes."}
    assert answer.headers["connection"] == "close"


def test_fastapi_s_validation_names_the_place_without_the_input() -> None:
    answer = dry_run(json.dumps({"lead": {"contact": {"first_name": "Secret Name"}}, "extra": "secret"}).encode())
    assert answer.status_code == 422, answer.text
    assert "secret" not in answer.text.lower()
    assert {tuple(e["loc"][:2]) for e in answer.json()["detail"]} >= {("body", "extra"), ("body", "lead")}


def test_the_bootstrap_builds_the_router_with_the_guard() -> None:
    app = create_app(RouterSettings.model_validate({"api_token": TOKEN}))  # not started: the guard answers alone
    answer = send(app, "POST", DRY_RUN, raw("NaN"), content_type="application/json")
    assert (answer.status_code, answer.json()["detail"][0]["loc"]) == (422, ["body", "lead"])
    # The token is checked first: a caller without it has its body refused unread, whatever it holds.
    assert send(app, "POST", DRY_RUN, raw("NaN"), auth=False, content_type="application/json").status_code == 401


# -- properties -----------------------------------------------------------------------------------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from([math.nan, math.inf, 2**64, -(2**70)])
    | st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=20)
)  # fmt: skip
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _rendered(document: Any) -> bytes:
    """As Python writes it: NaN and Infinity as such, lone surrogates as "\\udXXX" escapes."""
    return json.dumps(document, allow_nan=True).encode()


_bodies = st.one_of(
    _json.map(_rendered),
    st.fixed_dictionaries({"lead": st.just(LEAD)}, optional={"rules": _json, "lead_id": _json}).map(_rendered),
    st.binary(max_size=300),
    st.integers(1, 5000).map(lambda depth: b'{"rules": ' + b"[" * depth + b"]" * depth + b"}"),
)


@FUZZ
@example(body=_rendered({"lead": LEAD}), content_type="application/json")
@given(body=_bodies, content_type=st.sampled_from(["application/json", "application/x+json", "text/plain", ""]))
def test_any_dry_run_body_is_answered_and_only_a_dry_run_reaches_the_service(body: bytes, content_type: str) -> None:
    before = SERVICE.calls
    answer = dry_run(body, content_type)
    assert answer.status_code in {200, 404, 422}, (body[:200], answer.status_code, answer.text[:300])
    if answer.status_code == 422:
        assert all(set(e) == {"type", "loc", "msg"} for e in answer.json()["detail"]), answer.text[:300]
        assert SERVICE.calls in {before, before + 1}
    assert (SERVICE.records.docs, SERVICE.published.records) == ({}, []), "a dry-run stored or published"


@FUZZ
@given(
    account=st.text(max_size=70),
    pairs=st.lists(st.tuples(st.sampled_from(["source", "x", ""]), st.text(max_size=120)), max_size=3),
)
def test_any_next_up_query_is_answered_never_with_a_500(account: str, pairs: list[tuple[str, str]]) -> None:
    def enc(text: str) -> str:
        return quote(text.encode("utf-8", "surrogatepass"), safe="")

    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in pairs)
    answer = send(APP, "GET", f"/internal/v1/accounts/{enc(account)}/next-up?{query}")
    assert answer.status_code in {200, 404, 422}, answer.text[:300]
    if answer.status_code == 422:
        assert all(set(e) == {"type", "loc", "msg"} for e in answer.json()["detail"]), answer.text[:300]
