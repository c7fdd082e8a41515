"""Office-to-office transfers (T2) through the running system: crm-api -> leads.commands.v1 -> router
-> leads.events.v1 -> crm-api views and notifier. Leads arrive as new leads with their profile and
timeline; team members arrive as Onboarding and the target's staff are emailed."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from typing import Any, cast

import httpx
import pytest
from pymongo import AsyncMongoClient

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

NORTH, SOUTH, ZETA = "move-north", "move-south", "move-zeta"
GROUP = "move-group"
PROFILE = {
    "company": "Harbor Lofts LLC",
    "office_address": "1 Main St, Brooklyn",
    "home_address": "22 Oak Ave",
    "rating": 4,
    "production_value": "$5M+",
    "labels": ["Hot", "Relocating"],
    "campaigns": ["Spring buyers"],
    "campaign_subscriptions": ["Market report"],
    "campaign_triggers": ["Price drop alert"],
}


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def agent(agent_id: str) -> dict[str, Any]:
        return {"agent_id": agent_id, "name": agent_id.replace("-", " ").title(), "email": f"{agent_id}@move.example"}

    def account(account_id: str, name: str, org: str, agents: list[str]) -> dict[str, Any]:
        return {
            "account_id": account_id,
            "name": name,
            "organisation_id": org,
            "round_robin": False,
            "agents": [agent(a) for a in agents],
            "roster": agents,
        }

    path = tmp_path_factory.mktemp("offices") / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    account(NORTH, "North Office", GROUP, ["north-nia", "north-ned", "north-max", "north-kit"]),
                    account(SOUTH, "South Office", GROUP, ["south-sol", "south-sue"]),
                    account(ZETA, "Zeta Realty", "zeta-group", ["zeta-zoe"]),
                ]
            }
        )
    )
    stack.seed(path)


def broker(stack: Stack, account_id: str, org: str | None = GROUP) -> dict[str, str]:
    return bearer(stack.token(f"{account_id}-broker", "broker", account_id, organisation_id=org))


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["detail"])


def mails_to(stack: Stack, address: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return stack.mail.received_by(address)


async def new_lead(stack: Stack, client: httpx.AsyncClient, email: str) -> str:
    body = {"account_id": NORTH, "first_name": "Morgan", "last_name": "Mover", "email": email}
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    lead_id = str(response.json()["event_id"])

    async def held() -> bool:
        got = await client.get(f"/v1/accounts/{NORTH}/leads/{lead_id}", headers=broker(stack, NORTH))
        return got.status_code == 200 and got.json()["owner_agent_id"] == "north-nia"

    await eventually(held, what="the lead held by north-nia (R5) in crm-api")
    return lead_id


async def done(client: httpx.AsyncClient, headers: dict[str, str], transfer: dict[str, Any]) -> dict[str, Any]:
    url = f"/v1/accounts/{transfer['from_account_id']}/office-transfers/{transfer['transfer_id']}"

    async def finished() -> dict[str, Any] | None:
        got = await client.get(url, headers=headers)
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        return body if body["status"] == "done" else None

    return cast(dict[str, Any], await eventually(finished, what="the office transfer done"))


async def test_a_lead_moves_to_another_office_as_a_new_lead_with_its_profile_and_timeline(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    email = f"morgan.{uuid.uuid4().hex[:8]}@example.com"
    lead_id = await new_lead(stack, client, email)
    north, south = broker(stack, NORTH), broker(stack, SOUTH)
    saved = await client.put(f"/v1/accounts/{NORTH}/leads/{lead_id}/profile", headers=north, json=PROFILE)
    assert saved.status_code == 200, saved.text
    offices = (await client.get(f"/v1/accounts/{NORTH}/offices", headers=north)).json()
    assert offices["organisation_id"] == GROUP
    assert [(o["account_id"], o["current"]) for o in offices["items"]] == [(NORTH, True), (SOUTH, False)]

    url, body = f"/v1/accounts/{NORTH}/office-transfers", {"lead_id": lead_id, "to_account_id": SOUTH}
    # Refusals change nothing.
    assert "not an office of this account's organisation" in problem(
        await client.post(url, headers=north, json={**body, "to_account_id": ZETA}), 422
    )
    assert "token's organisation" in problem(
        await client.post(url, headers=broker(stack, NORTH, org="zeta-group"), json=body), 422
    )
    problem(await client.post(url, headers=stack.auth("north-nia", "realtor", NORTH), json=body), 403)
    problem(await client.post(url, headers=south, json=body), 403)
    assert "lead_id" in problem(await client.post(url, headers=north, json={**body, "lead_id": str(uuid.uuid4())}), 422)
    assert (await client.get(f"/v1/accounts/{NORTH}/leads/{lead_id}", headers=north)).status_code == 200

    key = {"Idempotency-Key": uuid.uuid4().hex}
    accepted = await client.post(url, headers={**north, **key}, json=body)
    assert accepted.status_code == 202, accepted.text
    transfer = accepted.json()
    assert (transfer["kind"], transfer["lead_id"], transfer["to_account_name"]) == ("lead", lead_id, "South Office")
    again = await client.post(url, headers={**north, **key}, json=body)
    assert (again.status_code, again.json()["transfer_id"]) == (202, transfer["transfer_id"]), "a retry is one transfer"
    await done(client, north, transfer)

    problem(await client.get(f"/v1/accounts/{NORTH}/leads/{lead_id}", headers=north), 404)
    assert lead_id not in (await client.get(f"/v1/accounts/{NORTH}/leads", headers=north)).text, "it left North"
    listed = (await client.get(f"/v1/accounts/{SOUTH}/leads", headers=south, params={"label": "hot"})).json()
    assert [row["lead_id"] for row in listed["items"]] == [lead_id], "a new lead in South, found by its label"

    async def moved_on_the_timeline() -> dict[str, Any] | None:
        # crm-api marks the transfer done and moves the row before it writes LeadTransferred's timeline entry
        # (the entry goes last; the first office's LeadAssigned, too, was waited for only on the row).
        got: dict[str, Any] = (await client.get(f"/v1/accounts/{SOUTH}/leads/{lead_id}", headers=south)).json()
        types = {entry["type"] for entry in got.get("timeline", [])}
        return got if {"LeadAssigned", "LeadTransferred"} <= types else None

    detail = await eventually(moved_on_the_timeline, what="LeadAssigned and LeadTransferred on the lead's timeline")
    assert detail is not None
    assert {
        k: detail[k] for k in ("company", "office_address", "home_address", "rating", "production_value", "labels")
    } == {k: v for k, v in PROFILE.items() if not k.startswith("campaign")}
    assert detail["source"] == "Website"
    assert (detail["campaigns"], detail["campaign_subscriptions"], detail["campaign_triggers"]) == ([], [], [])
    assert (detail["owner_agent_id"], detail["moved_from_account_id"], detail["moved_from_owner"]) == (
        "south-sol",
        NORTH,
        "North Nia",
    )
    types = [entry["type"] for entry in detail["timeline"]]
    assert types[0] == "LeadAssigned", "the first office's timeline stays"
    moved = [entry for entry in detail["timeline"] if entry["type"] == "LeadTransferred"]
    assert len(moved) == 1
    assert moved[0]["summary"] == (
        f"Transferred from North Office ({NORTH}), owned there by North Nia, to South Office by {NORTH}-broker"
    )
    labels = (await client.get(f"/v1/accounts/{SOUTH}/labels", headers=south)).json()["items"]
    assert {"Hot", "Relocating"} <= {label["name"] for label in labels}, "created in the target"

    # The router moved the contact: the same person asking again in South is R1 on this lead.
    async with httpx.AsyncClient() as intake:
        returned = await intake.post(
            f"{stack.url('intake')}/v1/leads", json={"account_id": SOUTH, "first_name": "Morgan", "email": email}
        )
    assert returned.status_code == 202, returned.text

    async def inquiry_on_the_moved_lead() -> bool:
        got = (await client.get(f"/v1/accounts/{SOUTH}/leads/{lead_id}", headers=south)).json()
        return any("new inquiry" in entry["summary"] for entry in got["timeline"])

    await eventually(inquiry_on_the_moved_lead, what="R1 on the moved lead in South")

    # The new-lead notice goes to South's next daily digest, not out at once.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    try:
        items = [d async for d in mongo["leadflow"]["notifier_digest_items"].find({"account_id": SOUTH})]
    finally:
        await mongo.close()
    assert [d.get("lead_id", d["_id"]) for d in items if lead_id in str(d)] != [], "queued for South's digest"
    # South's holder hears of the lead only through R1's notice (sent after the digest item was queued).
    about = await eventually(
        lambda: [m for m in mails_to(stack, "south-sol@move.example") if m["X-Leadflow-Lead-Id"] == lead_id],
        what="R1's notice to South's holder",
    )
    assert [str(m["Subject"]) for m in about] == ["Your lead Morgan is back"], "no new-lead email at once"


async def test_a_team_member_moves_as_onboarding_and_the_target_staff_are_told(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    north, south = broker(stack, NORTH), broker(stack, SOUTH)
    subscribed = await client.put(
        f"/v1/accounts/{SOUTH}/settings/notifications/south-sue",
        headers=south,
        json={"channels": ["email"], "team_updates": True},
    )
    assert subscribed.status_code == 200, subscribed.text
    url = f"/v1/accounts/{NORTH}/office-transfers"
    assert "not a team member" in problem(
        await client.post(url, headers=north, json={"agent_id": "south-sue", "to_account_id": SOUTH}), 422
    )

    accepted = await client.post(url, headers=north, json={"agent_id": "north-max", "to_account_id": SOUTH})
    assert accepted.status_code == 202, accepted.text
    await done(client, north, accepted.json())

    roster = (await client.get(f"/v1/accounts/{SOUTH}/settings/routing", headers=south)).json()["roster"]
    assert roster[-1] == "north-max"
    assert (
        "north-max" not in (await client.get(f"/v1/accounts/{NORTH}/settings/routing", headers=north)).json()["roster"]
    )
    status = await client.get(f"/v1/accounts/{SOUTH}/agents/north-max/status", headers=south)
    assert status.json() == {"status": "onboarding"}
    problem(await client.get(f"/v1/accounts/{NORTH}/agents/north-max/status", headers=north), 404)

    def told(address: str) -> list[EmailMessage]:
        return [m for m in mails_to(stack, address) if "North Max" in str(m["Subject"])]

    await eventually(
        lambda: told("south-sol@move.example") and told("south-sue@move.example"),
        what="South's broker and subscribed staff told",
    )
    assert len(told("south-sol@move.example")) == len(told("south-sue@move.example")) == 1
    assert not told("north-nia@move.example"), "the first office's staff are not the target's"
    assert not [m for m in mails_to(stack, "north-max@move.example") if "lead" in str(m["Subject"]).lower()], (
        "no new-lead notification for a team member"
    )

    activated = await client.put(
        f"/v1/accounts/{SOUTH}/agents/north-max/status", headers=south, json={"status": "active"}
    )
    assert (activated.status_code, activated.json()) == (200, {"status": "active"})


async def test_many_leads_move_at_once_by_selection_or_filter(stack: Stack, client: httpx.AsyncClient) -> None:
    north, south = broker(stack, NORTH), broker(stack, SOUTH)
    marker = uuid.uuid4().hex[:8]
    picked = [await new_lead(stack, client, f"bulk{i}.{marker}@example.com") for i in range(2)]
    by_filter = await new_lead(stack, client, f"bulkf.{marker}@example.com")
    url = f"/v1/accounts/{NORTH}/office-transfers/bulk"

    unknown = {"lead_ids": [*picked, "no-such-lead"], "to_account_id": SOUTH}
    refused = await client.post(url, headers=north, json=unknown)
    assert refused.status_code == 422
    assert refused.json()["invalid_params"] == [{"name": "body.lead_ids.2", "reason": "not a lead of this account"}]
    key = {"Idempotency-Key": f"bulk-{marker}"}
    moved = await client.post(url, headers=north | key, json={"lead_ids": picked, "to_account_id": SOUTH})
    assert moved.status_code == 202, moved.text
    transfers = moved.json()["transfers"]
    assert sorted(t["lead_id"] for t in transfers) == sorted(picked)
    again = await client.post(url, headers=north | key, json={"lead_ids": picked, "to_account_id": SOUTH})
    assert [t["transfer_id"] for t in again.json()["transfers"]] == [t["transfer_id"] for t in transfers]
    for transfer in transfers:
        await done(client, north, transfer)
        assert (await client.get(f"/v1/accounts/{SOUTH}/leads/{transfer['lead_id']}", headers=south)).status_code == 200
    finished = await client.post(url, headers=north | key, json={"lead_ids": picked, "to_account_id": SOUTH})
    assert [(t["transfer_id"], t["status"]) for t in finished.json()["transfers"]] == [
        (t["transfer_id"], "done") for t in transfers
    ], "a retry after the moves answers the same transfers"

    # All that a filter matches: the two moved ones are no longer North's, so only the third goes.
    query = {"filter": {"q": f"bulkf.{marker}"}, "to_account_id": SOUTH}
    filtered = await client.post(url, headers=north, json=query)
    assert filtered.status_code == 202, filtered.text
    [only] = filtered.json()["transfers"]
    assert only["lead_id"] == by_filter
    await done(client, north, only)
