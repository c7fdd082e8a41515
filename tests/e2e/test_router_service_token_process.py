"""The router's internal API takes crm-api's service token alone (decision 0082), through the real processes: the
stack's router answers each internal route to the stack's token (which crm-api is given too) and refuses any
other call with a 401 and no account data; its probes and /metrics stay open; a router rotated to new tokens
refuses the retired one; a router without ROUTER_API_TOKEN does not start, in development as in production.
crm-api's pages and API that ask the router (who is next, a lead's routing, the dry-run, ponds) are the e2e tests
of those features (test_who_is_next.py, test_crm_routing_info_process.py, test_web_browser_routing.py, ...):
they pass only if crm-api sends the token."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from leadflow_devstack.processes import ManagedProcess, free_port
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e]

ACCOUNT = "summit-homes"  # a sample account (devstack/sample_accounts.json) with the source "Website"
LEAD = {
    "contact": {"first_name": "Tia", "email": "tia@example.com"},
    "source": {"channel": "brokerage_site", "name": "Website"},
}
ROUTER = str(Path(sys.executable).parent / "leadflow-router")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def calls(lead_id: str) -> list[tuple[str, str, Any]]:
    """Every internal route of the router, as crm-api calls it."""
    base = f"/internal/v1/accounts/{ACCOUNT}"
    return [
        ("GET", f"{base}/next-up?source=Website", None),
        ("GET", f"{base}/routing/rules/default/next?source=Website", None),
        ("GET", f"{base}/agents/dana-whitehorse/can-take", None),
        ("GET", f"{base}/leads/{lead_id}/routing", None),
        ("POST", f"{base}/routing/dry-run", {"lead": LEAD}),
    ]


def refused(token: str) -> dict[str, dict[str, str]]:
    """Ways to call without `token`, by name."""
    return {
        "no token": {},
        "another token": bearer(secrets.token_urlsafe(32)),
        "a token of another length": bearer(token[:-3]),
        "the token and more": bearer(token + "xyz"),
        "another scheme": {"Authorization": f"Basic {token}"},
    }


async def assert_answers_only(router: str, lead_id: str, token: str, *, also: Mapping[str, dict[str, str]]) -> None:
    """Each internal route of `router` answers `token` (200) and refuses the others and `also` (401, the reason
    as JSON and nothing else)."""
    async with httpx.AsyncClient(base_url=router, timeout=10) as client:
        for method, path, body in calls(lead_id):
            answer = await client.request(method, path, json=body, headers=bearer(token))
            assert answer.status_code == 200, f"{method} {path}: {answer.text}"
            for why, headers in {**refused(token), **also}.items():
                no = await client.request(method, path, json=body, headers=headers)
                assert no.status_code == 401, f"{method} {path}, {why}: {no.status_code} {no.text[:300]}"
                assert list(no.json()) == ["detail"], f"{method} {path}, {why}: {no.text[:300]}"
                assert no.headers["www-authenticate"].startswith("Bearer"), why


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def lead_id(stack: Stack) -> str:
    """A lead of ACCOUNT, posted to intake and routed: its routing decisions are account data."""
    body = {"account_id": ACCOUNT, "first_name": "Ray", "email": f"ray-{uuid.uuid4().hex[:8]}@example.com"}
    async with httpx.AsyncClient(timeout=10) as client:
        posted = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
        assert posted.status_code == 202, posted.text
        lead = str(posted.json()["event_id"])
        routing = f"{stack.url('router')}/internal/v1/accounts/{ACCOUNT}/leads/{lead}/routing"

        async def routed() -> bool:
            return (await client.get(routing, headers=stack.router_auth())).status_code == 200

        await eventually(routed, timeout=60, what="the router to route the lead")
    return lead


@pytest.mark.asyncio
async def test_the_router_answers_its_internal_api_to_the_service_token_alone(stack: Stack, lead_id: str) -> None:
    await assert_answers_only(stack.url("router"), lead_id, stack.router_token, also={})


@pytest.mark.asyncio
async def test_the_probes_and_metrics_need_no_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("router"), timeout=10) as client:
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/docs")).status_code == 401, "every other path needs the token"


@pytest_asyncio.fixture(loop_scope="session")
async def rotated(stack: Stack) -> AsyncIterator[tuple[str, str, str]]:
    """A second router replica (sweeper off) rotated on from the stack's token: ROUTER_API_TOKEN a new token,
    ROUTER_API_TOKEN_NEXT the one after it. Yields its URL and the two tokens."""
    port, current, upcoming = free_port(), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    env = stack.service_env("router") | {
        "ROUTER_HTTP__PORT": str(port), "ROUTER_SWEEPER": "false",
        "ROUTER_API_TOKEN": current, "ROUTER_API_TOKEN_NEXT": upcoming,
    }  # fmt: skip
    replica = ManagedProcess("router-rotated", [ROUTER], log_dir=stack.log_dir, env=env)
    replica.start()
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{url}/health/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(ready, timeout=90, what="the rotated router replica")
        yield url, current, upcoming
    finally:
        replica.stop()


@pytest.mark.asyncio
async def test_a_router_rotated_to_new_tokens_takes_both_and_refuses_the_retired_one(
    stack: Stack, lead_id: str, rotated: tuple[str, str, str]
) -> None:
    url, current, upcoming = rotated
    retired = {"the retired token": stack.router_auth()}
    await assert_answers_only(url, lead_id, current, also=retired)
    await assert_answers_only(url, lead_id, upcoming, also=retired)


@pytest.mark.parametrize("environment", ["development", "production"])
def test_a_router_without_its_token_does_not_start_and_says_which_variable(stack: Stack, environment: str) -> None:
    env = stack.service_env("router") | {"ROUTER_ENVIRONMENT": environment, "ROUTER_HTTP__PORT": str(free_port())}
    del env["ROUTER_API_TOKEN"]
    ran = subprocess.run(
        [ROUTER], env={**_without_router_settings(), **env}, capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 2, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "ROUTER_API_TOKEN is not set" in ran.stderr, ran.stderr[-2000:]


def _without_router_settings() -> dict[str, str]:
    """This process's environment without any ROUTER_ variable (one set outside the test would be read)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("ROUTER_")}
