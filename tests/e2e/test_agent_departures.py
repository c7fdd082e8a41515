"""An agent leaves the office (issue 11.3): deactivated through crm-api, its offers are withdrawn
and the race goes on, the lead it held is unassigned and the broker is emailed; it can no longer
claim. Moving to another office does the same in the office it left."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "leave-realty"
AGENTS = {"leave-broker": "Lena Broker", "leave-ann": "Ann Lee", "leave-bo": "Bo Park", "leave-cy": "Cy Diaz"}


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("leave") / "accounts.json"
    account = {
        "account_id": OFFICE,
        "name": "Leave Realty",
        "round_robin": True,
        "time_zone": "UTC",
        "agents": [{"agent_id": a, "name": n, "email": f"{a}@leave.example"} for a, n in AGENTS.items()],
        "roster": list(AGENTS),
        "sources": [{"name": "Website", "race_count": 2, "claim_window_seconds": 600}],
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def new_lead(stack: Stack, tag: str) -> str:
    body = {"account_id": OFFICE, "first_name": "Dana", "last_name": f"Q{tag}", "email": f"dana.{tag}@example.com"}
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def mails_to(stack: Stack, address: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return stack.mail.received_by(address)


async def test_a_deactivated_agent_loses_its_offers_and_its_lead_waits_for_the_broker(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    broker = stack.auth("leave-broker", "broker", OFFICE)

    async def lead(lead_id: str) -> dict[str, Any]:
        response = await client.get(f"/v1/accounts/{OFFICE}/leads/{lead_id}", headers=broker)
        return dict(response.json()) if response.status_code == 200 else {}

    async def when(lead_id: str, what: str, ready: Any) -> dict[str, Any]:
        async def poll() -> dict[str, Any] | None:
            found = await lead(lead_id)
            return found if found and ready(found) else None

        found = await eventually(poll, what=what)
        assert found is not None
        return dict(found)

    # Two leads, each raced by two agents; whoever is offered the first claims it, so it holds one.
    held_id = await new_lead(stack, uuid.uuid4().hex[:8])
    held = await when(held_id, "the first race", lambda d: len(d["open_offers"]) == 2)
    leaver = held["open_offers"][0]["agent_id"]
    claimed = await client.post(
        f"/v1/accounts/{OFFICE}/leads/{held_id}/activities",
        headers=stack.auth(leaver, "realtor", OFFICE),
        json={"action": "accept"},
    )
    assert claimed.status_code == 202, claimed.text
    await when(held_id, "the claim", lambda d: d["owner_agent_id"] == leaver)
    raced_id = ""
    for _ in range(4):  # rotation: a later lead is raced by the leaver again
        candidate = await new_lead(stack, uuid.uuid4().hex[:8])
        raced = await when(candidate, "a race", lambda d: len(d["open_offers"]) == 2)
        if leaver in {o["agent_id"] for o in raced["open_offers"]}:
            raced_id = candidate
            break
    assert raced_id, f"{leaver} was not offered another lead"

    deactivated = await client.put(
        f"/v1/accounts/{OFFICE}/agents/{leaver}/status", headers=broker, json={"status": "inactive"}
    )
    assert deactivated.status_code == 200, deactivated.text

    # crm-api writes an event's row change before its timeline entry (the entry marks the event projected,
    # so it goes last): the row can show the change a moment before the timeline does. Wait for both.
    withdrawn = f"Offer to {leaver} withdrawn: the agent left the office"

    def offer_withdrawn(d: dict[str, Any]) -> bool:
        shown = leaver not in {o["agent_id"] for o in d["open_offers"]}
        return shown and any(e["summary"] == withdrawn for e in d["timeline"])

    def lead_released(d: dict[str, Any]) -> bool:
        return d["status"] == "unassigned" and any(e["type"] == "LeadReleased" for e in d["timeline"])

    # The race goes on without the leaver: its offer is withdrawn, the other one stays open.
    raced = await when(raced_id, "the leaver's offer withdrawn, on the timeline too", offer_withdrawn)
    assert len(raced["open_offers"]) == 1
    # The lead it held waits for a broker or admin to distribute it by hand (the default setting).
    released = await when(held_id, "the held lead released, on the timeline too", lead_released)
    assert released["owner_agent_id"] is None
    mails = await eventually(
        lambda: [
            m for m in mails_to(stack, "leave-broker@leave.example") if str(m["Subject"]) == "A lead needs a new agent"
        ],
        what="the broker's email about the released lead",
    )
    assert len(mails) == 1
    assert not [m for m in mails_to(stack, f"{leaver}@leave.example") if "withdrawn" in str(m["Subject"]).lower()]

    # The leaver can no longer claim what it was offered: its token no longer opens the office (decision 0079;
    # the router's own refusal of a withdrawn offer is in unit/test_router_departures.py).
    refused = await client.post(
        f"/v1/accounts/{OFFICE}/leads/{raced_id}/activities",
        headers=stack.auth(leaver, "realtor", OFFICE),
        json={"action": "accept"},
    )
    assert refused.status_code == 401, refused.text
