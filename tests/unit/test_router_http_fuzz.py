"""The router's internal HTTP routes (dry-run, routing info, who is next, can an agent take a lead) answer any
body or path with a 200, 404 or 422, never a 500 (issue 15; the service on in-memory fakes: only the HTTP edge
is under test)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fakes_router import FakeAccounts, FakeContacts, FakeRecords, FakeRotations, Published
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.entrypoints.http import ServiceTokens, install
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.availability import AgentAvailability

pytestmark = pytest.mark.unit

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
LEAD = {
    "contact": {"first_name": "Jo", "email": "jo@example.com"},
    "source": {"channel": "brokerage_site", "name": "Website"},
}
DRAFTS = st.fixed_dictionaries(
    {"lead": st.just(LEAD)}, optional={"rules": JSON | st.fixed_dictionaries({"rules": st.lists(JSON, max_size=3)})}
)


AGENTS = (
    Agent("a", "A"),
    Agent("b", "B"),
    Agent("paused", "P", availability=AgentAvailability(paused=True)),
    Agent("gone", "G", active=False),
)


def app() -> FastAPI:
    service = RouterService(
        records=FakeRecords(),
        accounts=FakeAccounts(AccountSnapshot("acme", "Acme", AGENTS, round_robin=True)),
        contacts=FakeContacts(),
        rotations=FakeRotations(),
        publish=Published(),
        metrics=RouterMetrics(CollectorRegistry()),
    )
    router = FastAPI()
    install(router, lambda: service, tokens=ServiceTokens([TOKEN]))
    return router


TOKEN = secrets.token_urlsafe(32)  # the service token crm-api sends (decision 0082)
APP = app()


def call(method: str, path: str, body: Any = None) -> httpx.Response:
    """One request to the router's routes, in a loop of its own (hypothesis runs plain functions)."""

    async def send() -> httpx.Response:
        # raise_app_exceptions=False: an unhandled error is the 500 a real server sends, not a test crash.
        transport = httpx.ASGITransport(app=APP, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    return asyncio.run(send())


def test_a_lead_is_dry_run_by_the_account_s_rules() -> None:
    answer = call("POST", "/internal/v1/accounts/acme/routing/dry-run", {"lead": LEAD})
    assert answer.status_code == 200, answer.text
    assert answer.json()["offered_to"] == ["a"]


@settings(max_examples=150, deadline=None)
@given(body=JSON | DRAFTS)
def test_any_dry_run_body_is_answered_never_with_a_500(body: Any) -> None:
    answer = call("POST", "/internal/v1/accounts/acme/routing/dry-run", body)
    assert answer.status_code in {200, 422}, answer.text


@settings(max_examples=60, deadline=None)
@given(account=st.text(max_size=70), lead=st.text(max_size=40))
def test_any_routing_info_path_is_answered_never_with_a_500(account: str, lead: str) -> None:
    answer = call("GET", f"/internal/v1/accounts/{quote(account, safe='')}/leads/{quote(lead, safe='')}/routing")
    assert answer.status_code in {404, 422}


@settings(max_examples=60, deadline=None)
@given(account=st.text(max_size=70), rule=st.text(max_size=70), source=st.text(max_size=120))
def test_any_who_is_next_by_rule_path_is_answered_never_with_a_500(account: str, rule: str, source: str) -> None:
    path = f"/internal/v1/accounts/{quote(account, safe='')}/routing/rules/{quote(rule, safe='')}/next"
    answer = call("GET", f"{path}?source={quote(source, safe='')}")
    assert answer.status_code in {200, 404, 422}, answer.text


def test_can_take_says_whether_an_agent_could_claim_a_pond_lead_now_and_why_not() -> None:
    base = "/internal/v1/accounts/acme/agents"
    answers = {agent: call("GET", f"{base}/{agent}/can-take") for agent in ("a", "paused", "gone", "nobody")}
    assert {a: (r.status_code, r.json()) for a, r in answers.items()} == {
        "a": (200, {"can_take": True, "reason": None}),
        "paused": (200, {"can_take": False, "reason": "paused"}),
        "gone": (200, {"can_take": False, "reason": "not an active agent of this office"}),
        "nobody": (200, {"can_take": False, "reason": "not an active agent of this office"}),
    }
    assert call("GET", "/internal/v1/accounts/elm/agents/a/can-take").status_code == 404, "an unknown account"


@settings(max_examples=60, deadline=None)
@given(account=st.text(max_size=70), agent=st.text(max_size=70))
def test_any_can_take_path_is_answered_never_with_a_500(account: str, agent: str) -> None:
    answer = call("GET", f"/internal/v1/accounts/{quote(account, safe='')}/agents/{quote(agent, safe='')}/can-take")
    assert answer.status_code in {200, 404, 422}, answer.text
