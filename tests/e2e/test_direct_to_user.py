"""ClientBAY's direct-to-user switch (issue 11.9), through crm-api's settings, intake and the router:
an agent-site lead goes to that agent, and once the account allows no direct-to-user leads, the
next one is routed as a general lead."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "direct-realty"


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("direct") / "accounts.json"
    account = {
        "account_id": OFFICE,
        "name": "Direct Realty",
        "round_robin": False,
        "time_zone": "UTC",
        "agents": [
            {"agent_id": "direct-broker", "name": "Dee Broker", "email": "broker@direct.example"},
            {
                "agent_id": "direct-sam",
                "name": "Sam Site",
                "email": "sam@direct.example",
                "site_hosts": ["sam.direct.example"],
            },
        ],
        "roster": ["direct-broker", "direct-sam"],
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def site_lead(stack: Stack) -> str:
    body = {
        "account_id": OFFICE,
        "first_name": "Ada",
        "email": f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "site_host": "sam.direct.example",
        "site_kind": "agent",
    }
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


async def test_direct_to_user_leads_can_be_switched_off(stack: Stack, client: httpx.AsyncClient) -> None:
    broker = stack.auth("direct-admin", "admin", OFFICE)

    async def holder_of(lead_id: str) -> tuple[str, str] | None:
        """(holder, the first timeline entry's summary) once the lead is held and its entry written (crm-api
        writes the row first, the entry last)."""
        response = await client.get(f"/v1/accounts/{OFFICE}/leads/{lead_id}", headers=broker)
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        held = body.get("owner_agent_id") and body["timeline"]
        return (body["owner_agent_id"], body["timeline"][0]["summary"]) if held else None

    direct = await site_lead(stack)
    held = await eventually(lambda: holder_of(direct), what="the agent-site lead held, on the timeline too")
    assert held is not None
    assert held[0] == "direct-sam"
    assert "direct-to-user" in held[1]

    url = f"/v1/accounts/{OFFICE}/settings/routing"
    settings = (await client.get(url, headers=broker)).json()
    off = await client.put(url, headers=broker, json=settings | {"allow_direct_to_user": False})
    assert off.status_code == 200, off.text

    async def next_lead_is_general() -> bool:
        # The router caches account settings for up to 5 s: a lead posted within that time may
        # still go direct, so leads are posted until one is routed under the new setting.
        lead_id = await site_lead(stack)
        routed = await eventually(lambda: holder_of(lead_id), what="the next agent-site lead")
        assert routed is not None
        return routed[0] == "direct-broker" and routed[1].startswith("Assigned to direct-broker (roster_position_1)")

    assert await eventually(next_lead_is_general, timeout=30, what="an agent-site lead routed as a general lead")
