"""The router's internal API takes only crm-api's service token (decision 0082): no token, a wrong one, one of
another length, another scheme, two headers, the token retired by a rotation: a 401 with the reason and no
account data, on every route but the probes and /metrics; the current and the next token: the answer.

Two apps: the router's own (`create_app`, built as it runs, not started: the gate answers before any route), for
every route it has; and its HTTP edge (`install`) on the service with in-memory fakes, where the right token
gets the account's data, so a test can see that a wrong one gets none. Settings: the token's form, and crm-api's
required in production. The real processes: tests/e2e/test_router_service_token_process.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fakes_router import FakeAccounts, FakeContacts, FakeRecords, FakeRotations, Published
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_router.bootstrap import create_app
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.entrypoints.http import MISSING, OPEN_PATHS, WRONG, ServiceTokens, install
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_router.settings import MissingApiTokenError, RouterSettings
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

pytestmark = pytest.mark.unit

CURRENT, NEXT = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
LEAD = {
    "contact": {"first_name": "Jo", "email": "jo@example.com"},
    "source": {"channel": "brokerage_site", "name": "Website"},
}
Headers = Sequence[tuple[bytes, bytes]]


def bearer(token: str) -> Headers:
    return [(b"Authorization", f"Bearer {token}".encode())]


def refused_headers() -> dict[str, Headers]:
    """Every way to call without the token, by name."""
    other = secrets.token_urlsafe(32)
    return {
        "none": [],
        "another token of the same length": bearer(other),
        "the token cut short": bearer(CURRENT[:-1]),
        "the token and one more character": bearer(CURRENT + "A"),
        "a much longer token": bearer(CURRENT * 8),
        "a short token": bearer("x"),
        "the token's first half": bearer(CURRENT[:20]),
        "another scheme": [(b"Authorization", f"Basic {CURRENT}".encode())],
        "no scheme": [(b"Authorization", CURRENT.encode())],
        "the scheme alone": [(b"Authorization", b"Bearer")],
        "the scheme and spaces": [(b"Authorization", b"Bearer    ")],
        "the token twice": [(b"Authorization", f"Bearer {CURRENT} {CURRENT}".encode())],
        "two Authorization headers": [*bearer(CURRENT), *bearer(other)],
        "the right one twice": [*bearer(CURRENT), *bearer(CURRENT)],
        "another header": [(b"X-Api-Token", CURRENT.encode())],
    }


def send(app: FastAPI, method: str, path: str, headers: Headers, body: Any = None) -> httpx.Response:
    """One request to `app`, in a loop of its own (hypothesis runs plain functions)."""

    async def request() -> httpx.Response:
        # raise_app_exceptions=False: an unhandled error is the 500 a real server sends, not a test crash.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.request(method, path, headers=list(headers), json=body)

    return asyncio.run(request())


def assert_refused(answer: httpx.Response, why: str) -> None:
    assert answer.status_code == 401, f"{why}: {answer.status_code} {answer.text[:300]}"
    assert answer.json() in ({"detail": MISSING}, {"detail": WRONG}), f"{why}: {answer.text[:300]}"
    assert answer.headers["www-authenticate"].startswith('Bearer realm="leadflow-router"'), why


# --- the router's own app: every route it has --------------------------------------------------------------------


def router_app(*tokens: str) -> FastAPI:
    fields = dict(zip(("api_token", "api_token_next"), tokens, strict=False))
    return create_app(RouterSettings.model_validate(fields))


def example_path(path: str) -> str:
    """A route's path with each parameter filled in (ids as the routes take them)."""
    return path.format(account_id="acme", lead_id=uuid.uuid4(), rule_id="default", agent_id="a")


def internal_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = [r for r in app.routes if isinstance(r, APIRoute) and r.path.startswith("/internal/")]
    return sorted((method, example_path(r.path)) for r in routes for method in r.methods or ())


def test_every_internal_route_of_the_router_refuses_a_call_without_the_token() -> None:
    app = router_app(CURRENT, NEXT)
    routes = internal_routes(app)
    assert len(routes) == 5, f"the checker found no routes (or new ones: look at them): {routes}"
    others = [("GET", "/internal/v1/nothing"), ("GET", "/"), ("GET", "/docs"), ("GET", "/openapi.json"),
              ("GET", "/health/live/"), ("GET", "/HEALTH/live"), ("DELETE", "/internal/v1")]  # fmt: skip
    for method, path in [*routes, *others]:
        for why, headers in refused_headers().items():
            assert_refused(send(app, method, path, headers, body={"lead": LEAD}), f"{method} {path}, {why}")


def test_a_flood_of_refused_calls_is_one_log_line_that_counts_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    app = router_app(CURRENT)
    with caplog.at_level(logging.WARNING, logger="leadflow_router.entrypoints.http"):
        for _ in range(20):
            assert send(app, "GET", "/internal/v1/nothing", []).status_code == 401
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["internal API call refused: no token (0 more refused since the last line)"]


def test_the_probes_and_metrics_stay_open() -> None:
    app = router_app(CURRENT)
    assert {"/health/live", "/health/ready", "/metrics"} == OPEN_PATHS
    assert send(app, "GET", "/health/live", []).status_code == 200
    assert send(app, "GET", "/metrics", []).status_code == 200
    ready = send(app, "GET", "/health/ready", [])
    assert ready.status_code == 503, "answered by the probe (not started: not ready), not refused"


def test_the_token_passes_the_gate_and_a_route_the_router_lacks_is_then_a_404() -> None:
    app = router_app(CURRENT, NEXT)
    for token in (CURRENT, NEXT):
        assert send(app, "GET", "/internal/v1/nothing", bearer(token)).status_code == 404
        lowercase = [(b"authorization", f"bearer  {token}".encode())]  # the scheme's case and spaces do not matter
        assert send(app, "GET", "/internal/v1/nothing", lowercase).status_code == 404


def test_a_router_built_without_a_token_refuses_everything_and_will_not_start() -> None:
    app = router_app()
    for why, headers in {**refused_headers(), "any token": bearer(CURRENT)}.items():
        assert_refused(send(app, "GET", "/internal/v1/nothing", headers), why)
    with pytest.raises(MissingApiTokenError, match="ROUTER_API_TOKEN is not set"):
        RouterSettings().require_api_token()
    RouterSettings(api_token=SecretStr(CURRENT)).require_api_token()


# --- the HTTP edge on fakes: the right token gets the account's data, nothing else does -------------------------


def edge(*tokens: str) -> FastAPI:
    agents = (Agent("a", "A"), Agent("b", "B"))
    service = RouterService(
        records=FakeRecords(),
        accounts=FakeAccounts(AccountSnapshot("acme", "Acme", agents, round_robin=True)),
        contacts=FakeContacts(),
        rotations=FakeRotations(),
        publish=Published(),
        metrics=RouterMetrics(CollectorRegistry()),
    )
    received = LeadReceived.create(
        account_id="acme",
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Jo", email="jo@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
        occurred_at=datetime.now(UTC),
    )
    asyncio.run(service.on_leads_received([received]))
    app = FastAPI()
    install(app, lambda: service, tokens=ServiceTokens(tokens))
    app.state.lead_id = str(received.event_id)
    return app


def calls(app: FastAPI) -> list[tuple[str, str, Any]]:
    """Each internal route once, as crm-api calls it, with what the account's data looks like in its answer."""
    base = "/internal/v1/accounts/acme"
    return [
        ("GET", f"{base}/next-up?source=Website", None),
        ("GET", f"{base}/routing/rules/default/next?source=Website", None),
        ("GET", f"{base}/agents/a/can-take", None),
        ("GET", f"{base}/leads/{app.state.lead_id}/routing", None),
        ("POST", f"{base}/routing/dry-run", {"lead": LEAD}),
    ]


def test_the_current_and_the_next_token_get_the_answer_and_nothing_else_does() -> None:
    app = edge(CURRENT, NEXT)
    for method, path, body in calls(app):
        for token in (CURRENT, NEXT):
            answer = send(app, method, path, bearer(token), body)
            assert answer.status_code == 200, f"{method} {path}: {answer.text}"
            assert "detail" not in answer.json()
        for why, headers in refused_headers().items():
            assert_refused(send(app, method, path, headers, body), f"{method} {path}, {why}")


def test_once_the_rotation_is_done_the_previous_token_is_refused() -> None:
    """docs/operations.md: CURRENT, then CURRENT and NEXT (crm-api moves to NEXT), then NEXT alone."""
    before, during, after = edge(CURRENT), edge(CURRENT, NEXT), edge(NEXT)
    path = "/internal/v1/accounts/acme/agents/a/can-take"
    assert [send(before, "GET", path, bearer(t)).status_code for t in (CURRENT, NEXT)] == [200, 401]
    assert [send(during, "GET", path, bearer(t)).status_code for t in (CURRENT, NEXT)] == [200, 200]
    assert [send(after, "GET", path, bearer(t)).status_code for t in (CURRENT, NEXT)] == [401, 200]
    assert_refused(send(after, "GET", path, bearer(CURRENT)), "the retired token")


LATIN_1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80)
EDGE_APP = edge(CURRENT, NEXT)


def mutated(token: str) -> st.SearchStrategy[str]:
    """The token with one character changed, dropped or added, or cut: close to it, never it."""
    at = st.integers(0, len(token) - 1)
    char = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
    return st.one_of(
        st.tuples(at, char).map(lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]),
        at.map(lambda i: token[:i] + token[i + 1 :]),
        st.tuples(at, char).map(lambda p: token[: p[0]] + p[1] + token[p[0] :]),
        at.map(lambda i: token[:i]),
    ).filter(lambda t: t not in {CURRENT, NEXT})


AUTHORIZATION = st.one_of(
    LATIN_1,
    LATIN_1.map(lambda t: f"Bearer {t}"),
    st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token"]).flatmap(
        lambda scheme: st.tuples(st.sampled_from([" ", "  ", "\t", ""]), mutated(CURRENT) | mutated(NEXT)).map(
            lambda p: f"{scheme}{p[0]}{p[1]}"
        )
    ),
)


@settings(max_examples=300, deadline=None)
@given(value=AUTHORIZATION, call=st.sampled_from(calls(EDGE_APP)))
def test_no_authorization_header_but_the_token_gets_account_data(value: str, call: tuple[str, str, Any]) -> None:
    method, path, body = call
    raw = value.encode("latin-1")  # any byte a header can carry; a lone surrogate cannot be sent at all
    answer = send(EDGE_APP, method, path, [(b"Authorization", raw)], body)
    assert_refused(answer, repr(value))  # its body is the reason alone: nothing of the account


# --- settings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token", ["changeme", "x" * 31, "x" * 513, "é" * 40, "has spaces in it, and it is long enough", "a=b" * 12]
)
def test_a_token_unfit_to_be_one_is_refused_naming_the_setting_not_the_value(token: str) -> None:
    with pytest.raises(ValidationError, match="ROUTER_API_TOKEN") as router:
        RouterSettings(api_token=SecretStr(token))
    with pytest.raises(ValidationError, match="ROUTER_API_TOKEN_NEXT"):
        RouterSettings(api_token=SecretStr(CURRENT), api_token_next=SecretStr(token))
    with pytest.raises(ValidationError, match="CRM_API_ROUTER_TOKEN") as crm:
        CrmApiSettings(router_token=SecretStr(token))
    assert token not in str(router.value) + str(crm.value)


def test_the_next_token_goes_with_a_current_one_and_both_are_taken() -> None:
    with pytest.raises(ValidationError, match="ROUTER_API_TOKEN_NEXT is the token rotated to"):
        RouterSettings(api_token_next=SecretStr(NEXT))
    assert RouterSettings(api_token=SecretStr(CURRENT), api_token_next=SecretStr(NEXT)).api_tokens == (CURRENT, NEXT)
    assert RouterSettings(api_token=SecretStr(CURRENT)).api_tokens == (CURRENT,)
    assert RouterSettings().api_tokens == ()


def test_the_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_API_TOKEN", CURRENT)
    monkeypatch.setenv("ROUTER_API_TOKEN_NEXT", NEXT)
    monkeypatch.setenv("CRM_API_ROUTER_TOKEN", NEXT)
    assert RouterSettings().api_tokens == (CURRENT, NEXT)
    router_token = CrmApiSettings().router_token
    assert router_token is not None
    assert router_token.get_secret_value() == NEXT
    assert NEXT not in repr(CrmApiSettings()) + repr(RouterSettings())


def test_crm_api_needs_the_router_s_token_in_production() -> None:
    production = {"environment": "production", "kafka": {"bootstrap_servers": "kafka:9092"},
                  "mongo": {"url": "mongodb://mongo"}, "auth": {"key": "k" * 32, "algorithm": "HS256"},
                  "offer_link_key": "o" * 32, "web": {"session_key": "s" * 32}}  # fmt: skip
    with pytest.raises(ValidationError, match=r"router_token \(CRM_API_ROUTER_TOKEN\) must be set in production"):
        CrmApiSettings.model_validate(production)
    assert CrmApiSettings.model_validate({**production, "router_token": CURRENT}).router_token is not None
    assert CrmApiSettings().router_token is None, "development and test may go without (their router calls: 503)"
