"""crm-api's edges through the running process (issue 10, item 10; decision 0023): list cursors are
checked before any query, request bodies are bounded and strict JSON, people's names are names, and
422s say where and why without repeating what was sent."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_crm_api.domain.views import lead_row_from_assigned
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import insert_rows
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "crm-edges-realty"
AGENT = "edges-ana"
MAX_BODY = 1024 * 1024  # CrmApiSettings.max_body_bytes' default, which the stack's crm-api runs with


@pytest.fixture(scope="module", autouse=True)
def account(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("edges") / "accounts.json"
    agents = [{"agent_id": AGENT, "name": "Ana Edge", "email": f"{AGENT}@edges.example"}]
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "account_id": ACCOUNT,
                        "name": "Edges Realty",
                        "round_robin": False,
                        "agents": agents,
                        "roster": [AGENT],
                        "sources": [{"name": "Website"}],
                    },
                ]
            }
        )
    )
    stack.seed(path)


@pytest.fixture(scope="module")
def lead_ids(stack: Stack) -> list[str]:
    """Seven rows of ACCOUNT, four of them in one millisecond (ties the cursor must page through)."""
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for n in range(7):
        event = LeadAssigned.create(
            account_id=ACCOUNT,
            occurred_at=now - timedelta(milliseconds=max(n - 3, 0)),
            payload=LeadAssignedPayload(
                lead_id=uuid.uuid4(),
                agent_id=AGENT,
                reason=AssignmentReason.ROSTER_POSITION_1,
                explanation="edges",
                contact=Contact(first_name="Edge", last_name=f"Lead{n}"),
                source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            ),
        )
        rows.append({"_id": str(event.payload.lead_id), **lead_row_from_assigned(event)})
    return insert_rows(stack.mongo_url, CRM_LEADS, rows)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://leadflow.dev/problems/")
    return body


def invalid(response: httpx.Response) -> dict[str, str]:
    """The 422's invalid_params as {name: reason}."""
    return {p["name"]: p["reason"] for p in problem(response, 422)["invalid_params"]}


def b64(fields: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


async def test_a_cursor_holding_a_huge_integer_or_a_bad_id_is_a_422_naming_cursor_and_real_ones_page(
    stack: Stack, client: httpx.AsyncClient, lead_ids: list[str]
) -> None:
    broker = stack.auth("edges-broker", "broker", ACCOUNT)
    realtor = stack.auth(AGENT, "realtor", ACCOUNT)
    cursors = {
        "issue 10": b64([10**30, "x"]),
        "below int64": b64([-(10**30), "x"]),
        "just beyond int64": b64([2**63, "x"]),
        "lone surrogate id": b64([1, "\ud800"]),
        "operator id": b64([1, {"$gt": ""}]),
        "of another order": b64([1, "x", "created_asc"]),
        "digits beyond int()": base64.urlsafe_b64encode(b"[" + b"9" * 140 + b', "x"]').decode().rstrip("="),
        "too long": "A" * 201,
        "not base64url": "a+b/c=",
    }
    for url, headers in ((f"/v1/accounts/{ACCOUNT}/leads", broker), ("/v1/realtors/me/leads", realtor)):
        for why, cursor in cursors.items():
            response = await client.get(url, headers=headers, params={"cursor": cursor})
            assert list(invalid(response)) == ["query.cursor"], f"{url} {why}: {response.text}"
    # The checks refuse no cursor the API hands out: every order still pages through every row.
    for sort in ("created_desc", "created_asc", "last_activity_desc", "last_activity_asc"):
        seen: list[str] = []
        params: dict[str, str] = {"limit": "2", "sort": sort}
        while True:
            response = await client.get(f"/v1/accounts/{ACCOUNT}/leads", headers=broker, params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [row["lead_id"] for row in page["items"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert sorted(seen) == sorted(lead_ids), sort


async def test_a_body_beyond_the_limit_is_a_413_announced_or_streamed(stack: Stack, client: httpx.AsyncClient) -> None:
    url = f"/v1/accounts/{ACCOUNT}/settings/routing"
    broker = {**stack.auth("edges-broker", "broker", ACCOUNT), "content-type": "application/json"}
    roster = json.dumps({"round_robin": False, "roster": [AGENT] * 100_000}).encode()  # about 1.2 MB
    assert len(roster) > MAX_BODY

    async def streamed() -> AsyncIterator[bytes]:
        for start in range(0, len(roster), 64 * 1024):
            yield roster[start : start + 64 * 1024]  # no Content-Length: chunked

    for why, content, headers in (
        ("announced", roster, broker),
        ("streamed", streamed(), broker),
        ("without a token", roster, {"content-type": "application/json"}),  # refused before any work
    ):
        body = problem(await client.put(url, content=content, headers=headers), 413)
        assert body["type"].endswith("/content-too-large"), why
        assert str(MAX_BODY) in body["detail"], why
    # Just under the limit the body reaches the route, whose own list bound (10,000) answers.
    under = json.dumps({"round_robin": False, "roster": [AGENT] * 20_000}).encode()
    assert len(under) < MAX_BODY
    assert list(invalid(await client.put(url, content=under, headers=broker))) == ["body.roster"]


async def test_nan_infinity_surrogates_huge_numbers_and_deep_nesting_are_422s_naming_the_field(
    stack: Stack, client: httpx.AsyncClient, lead_ids: list[str]
) -> None:
    broker = {**stack.auth("edges-broker", "broker", ACCOUNT), "content-type": "application/json"}
    base = f"/v1/accounts/{ACCOUNT}"
    cases = [
        (
            "PUT",
            f"{base}/settings/lead-sources",
            b'{"sources": [{"name": "Web", "referral_fee_percent": NaN}]}',
            "body.sources.0.referral_fee_percent",
            "NaN",
        ),
        ("PUT", f"{base}/leads/{lead_ids[0]}/profile", b'{"rating": Infinity}', "body.rating", "NaN and Infinity"),
        ("PUT", f"{base}/leads/{lead_ids[0]}/profile", b'{"rating": -Infinity}', "body.rating", "NaN and Infinity"),
        ("PUT", f"{base}/leads/{lead_ids[0]}/profile", b'{"rating": 1e400}', "body.rating", "64-bit"),
        (
            "PUT",
            f"{base}/leads/{lead_ids[0]}/profile",
            b'{"rating": 100000000000000000000000000000}',
            "body.rating",
            "64-bit",
        ),
        ("PUT", f"{base}/leads/{lead_ids[0]}/profile", b'{"company": "A\\ud800b"}', "body.company", "surrogate"),
        (
            "POST",
            f"{base}/invitations",
            b'{"realtor_id": "r1", "email": "r1@example.com", "name": "A\\udfffb"}',
            "body.name",
            "surrogate",
        ),
        ("POST", f"{base}/leads/{lead_ids[0]}/activities", b'{"action": "note", "\\ud800": 1}', "body", "surrogate"),
        (
            "PUT",
            f"{base}/settings/pause-schedule",
            b'{"windows": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
            "body",
            "nested deeper",
        ),
        ("POST", f"{base}/lead-transfers", b'{"lead_ids": ["a"], "realtor_id": "r1"', "body", "not valid JSON"),
    ]
    for method, url, content, name, reason in cases:
        response = await client.request(method, url, content=content, headers=broker)
        found = invalid(response)
        assert list(found) == [name], f"{method} {url} {content[:60]!r}: {response.text}"
        assert reason in found[name], f"{method} {url} {content[:60]!r}: {response.text}"


async def test_realtor_names_must_be_names(stack: Stack, client: httpx.AsyncClient) -> None:
    broker = stack.auth("edges-broker", "broker", ACCOUNT)
    url = f"/v1/accounts/{ACCOUNT}/invitations"
    refused = {
        "emoji only": "😀🎉",
        "zero-width only": "\u200b\u200b\u200b",
        "right-to-left override": "Riley \u202ekraP",
        "isolate": "Riley \u2067Park",
        "Hangul filler": "\u3164",
    }
    for why, name in refused.items():
        body = {"realtor_id": f"edges-r{uuid.uuid4().hex[:6]}", "email": "edges-r@example.com", "name": name}
        response = await client.post(url, headers=broker, json=body)
        assert list(invalid(response)) == ["body.name"], f"{why}: {response.text}"
        assert name not in response.text
    realtor_id = f"edges-r{uuid.uuid4().hex[:6]}"
    body = {"realtor_id": realtor_id, "email": "edges-r@example.com", "name": "  José  María O'Neil-Núñez "}
    created = await client.post(url, headers=broker, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "José María O'Neil-Núñez"


async def test_422s_do_not_repeat_what_was_sent(stack: Stack, client: httpx.AsyncClient) -> None:
    broker = stack.auth("edges-broker", "broker", ACCOUNT)
    url = f"/v1/accounts/{ACCOUNT}/invitations"
    secret = "jane.secret"
    for body in (
        {"realtor_id": "edges-r1", "email": f"{secret}<@example.com"},  # the email library quoted '<' back
        {"realtor_id": "edges-r1", "email": f"{secret}@@example.com"},
        {"realtor_id": "edges-r1", "email": "r@example.com", f"{secret}@example.com": "x"},  # an unknown key
        {"realtor_id": "edges-r1", "email": "r@example.com", "name": f"{secret} 😀"},
    ):
        response = await client.post(url, headers=broker, json=body)
        problem(response, 422)
        assert secret not in response.text, response.text
        assert "<" not in response.text, response.text
    transfer = await client.post(
        f"/v1/accounts/{ACCOUNT}/office-transfers",
        headers=broker,
        json={"lead_id": f"{secret}-not-a-uuid", "to_account_id": "x"},
    )
    assert list(invalid(transfer)) == ["body.lead_id"]
    assert secret not in transfer.text
