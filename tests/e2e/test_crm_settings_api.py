"""crm-api settings (V4) through the running system: who may read and change them, the 422s
naming field and reason, what is stored, and a roster change reaching the router."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "set-realty"  # settings are changed here
EFFECT = "set-effect-realty"  # round robin off; its roster is reordered while leads come in
OTHER = "summit-homes"  # seeded by the stack; only read here, never changed
AGENTS = ("set-ana", "set-ben", "set-cy")


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def account(account_id: str, agents: tuple[str, ...]) -> dict[str, Any]:
        return {
            "account_id": account_id,
            "name": account_id,
            "round_robin": False,
            "time_zone": "UTC",
            "agents": [{"agent_id": a, "name": a, "email": f"{a}@settings.example"} for a in agents],
            "roster": list(agents),
        }

    path = tmp_path_factory.mktemp("settings") / "accounts.json"
    config = {"accounts": [account(ACCOUNT, AGENTS), account(EFFECT, ("eff-ana", "eff-ben"))]}
    path.write_text(json.dumps(config))
    stack.seed(path)


def invalid(response: httpx.Response) -> dict[str, str]:
    """A 422 problem's invalid params as {name: reason}."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {p["name"]: p["reason"] for p in response.json()["invalid_params"]}


def refused(response: httpx.Response, status: int) -> str:
    """The problem's detail, after checking the status and the media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["detail"])


async def test_routing_roster_and_round_robin_approval(stack: Stack, client: httpx.AsyncClient) -> None:
    broker = stack.auth("set-boss", "broker", ACCOUNT)
    url = f"/v1/accounts/{ACCOUNT}/settings/routing"
    unassigned = {"departed_agent_leads": "unassigned", "allow_direct_to_user": True}  # the defaults (T3, R2/R3)
    assert (await client.get(url, headers=broker)).json() == {"round_robin": False, "roster": list(AGENTS)} | unassigned

    changed = {
        "round_robin": True,
        "roster": ["set-cy", "set-ana"],
        "departed_agent_leads": "broker_pool",
        "allow_direct_to_user": False,
    }
    put = await client.put(url, headers=broker, json=changed)
    assert put.status_code == 200, put.text
    assert (await client.get(url, headers=broker)).json() == changed
    bad_policy = await client.put(url, headers=broker, json=changed | {"departed_agent_leads": "keep"})
    assert "body.departed_agent_leads" in invalid(bad_policy)

    # Another account's agent, duplicates, an empty roster: refused, naming the field; nothing changes.
    foreign_roster = {"round_robin": False, "roster": ["set-ana", "dana-whitehorse"]}
    foreign = await client.put(url, headers=broker, json=foreign_roster)
    assert invalid(foreign) == {"body.roster.1": "not an agent of this account"}
    assert "body.roster" in invalid(await client.put(url, headers=broker, json={"round_robin": False, "roster": []}))
    dupes = await client.put(url, headers=broker, json={"round_robin": False, "roster": ["set-ana", "set-ana"]})
    assert "body.roster" in invalid(dupes)
    assert (await client.get(url, headers=broker)).json() == changed

    approval = f"/v1/accounts/{ACCOUNT}/agents/set-ben/round-robin"
    assert (await client.get(approval, headers=broker)).json() == {"agent_id": "set-ben", "approved": True}
    assert (await client.put(approval, headers=broker, json={"approved": False})).status_code == 200
    assert (await client.get(approval, headers=broker)).json() == {"agent_id": "set-ben", "approved": False}
    other_agent = f"/v1/accounts/{ACCOUNT}/agents/dana-whitehorse/round-robin"
    refused(await client.put(other_agent, headers=broker, json={"approved": False}), 404)


async def test_lead_groups_and_sources(stack: Stack, client: httpx.AsyncClient) -> None:
    admin = stack.auth("set-admin", "admin", ACCOUNT)
    groups_url, sources_url = (f"/v1/accounts/{ACCOUNT}/settings/{s}" for s in ("lead-groups", "lead-sources"))
    zillow = {
        "name": "Zillow",
        "lead_group": "luxury",
        "offices": ["downtown"],
        "race_count": 2,
        "claim_window_seconds": 600,
        "referral_fee_percent": 25,
    }

    # The group does not exist yet.
    assert invalid(await client.put(sources_url, headers=admin, json={"sources": [zillow]})) == {
        "body.sources.0.lead_group": "not a lead group of this account"
    }
    groups = {
        "groups": [{"name": "luxury", "agent_ids": ["set-ana", "set-cy"]}, {"name": "condos", "agent_ids": ["set-cy"]}]
    }
    assert (await client.put(groups_url, headers=admin, json=groups)).status_code == 200
    assert (await client.get(groups_url, headers=admin)).json() == groups

    put = await client.put(sources_url, headers=admin, json={"sources": [zillow, {"name": "Web", "kind": "direct"}]})
    assert put.status_code == 200, put.text
    stored = (await client.get(sources_url, headers=admin)).json()["sources"]
    assert [s["name"] for s in stored] == ["Zillow", "Web"]
    assert stored[0] | zillow == stored[0]
    assert stored[1]["kind"] == "direct"
    assert stored[1]["race_count"] == 1  # defaults filled in as the router would

    bad = [{**zillow, "race_count": 0}, {"name": "Zillow", "claim_window_seconds": 5, "referral_fee_percent": 101}]
    reasons = invalid(await client.put(sources_url, headers=admin, json={"sources": bad}))
    assert set(reasons) == {
        "body.sources.0.race_count",
        "body.sources.1.claim_window_seconds",
        "body.sources.1.referral_fee_percent",
    }
    dupes = invalid(await client.put(sources_url, headers=admin, json={"sources": [zillow, zillow]}))
    assert dupes == {f"body.sources.{i}.name": "another source has this name" for i in (0, 1)}

    # "luxury" is still used by Zillow; an unknown agent is named by position.
    reasons = invalid(
        await client.put(
            groups_url, headers=admin, json={"groups": [{"name": "condos", "agent_ids": ["set-ben", "alex-rivera"]}]}
        )
    )
    assert reasons["body.groups.0.agent_ids.1"] == "not an agent of this account"
    assert "Zillow" in reasons["body.groups"]
    assert (await client.get(groups_url, headers=admin)).json() == groups

    # Membership is moved on the agents: set-cy leaves both groups, set-ben joins condos.
    moved = {"groups": [{"name": "luxury", "agent_ids": ["set-ana"]}, {"name": "condos", "agent_ids": ["set-ben"]}]}
    assert (await client.put(groups_url, headers=admin, json=moved)).status_code == 200
    assert (await client.get(groups_url, headers=admin)).json() == moved


async def test_pause_schedule(stack: Stack, client: httpx.AsyncClient) -> None:
    broker = stack.auth("set-boss", "broker", ACCOUNT)
    url = f"/v1/accounts/{ACCOUNT}/settings/pause-schedule"
    assert (await client.get(url, headers=broker)).json() == {"time_zone": "UTC", "windows": []}
    night = {"weekdays": [0, 1, 2, 3, 4], "start": "20:00", "end": "08:00"}
    put = await client.put(url, headers=broker, json={"time_zone": "Europe/Berlin", "windows": [night]})
    assert put.status_code == 200, put.text
    assert (await client.get(url, headers=broker)).json() == {"time_zone": "Europe/Berlin", "windows": [night]}
    # Without a zone only the windows change.
    put = await client.put(url, headers=broker, json={"windows": []})
    assert put.json() == {"time_zone": "Europe/Berlin", "windows": []}

    bad = {"time_zone": "Mars/Olympus", "windows": [{"weekdays": [7], "start": "25:00", "end": "08:00"}]}
    assert set(invalid(await client.put(url, headers=broker, json=bad))) == {
        "body.time_zone",
        "body.windows.0.weekdays.0",
        "body.windows.0.start",
    }
    assert (await client.get(url, headers=broker)).json() == {"time_zone": "Europe/Berlin", "windows": []}


async def test_notification_preferences_own_and_by_the_broker(stack: Stack, client: httpx.AsyncClient) -> None:
    ana, broker = stack.auth("set-ana", "realtor", ACCOUNT), stack.auth("set-boss", "broker", ACCOUNT)
    own = f"/v1/accounts/{ACCOUNT}/settings/notifications/set-ana"
    assert (await client.get(own, headers=ana)).json() == {
        "channels": ["email", "sms", "push"],
        "quiet_hours": None,
        "digest": False,
        "team_updates": False,
        "new_lead_notices": False,
    }
    prefs = {
        "channels": ["email", "push"],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "digest": False,
        "team_updates": True,
        "new_lead_notices": True,
    }
    assert (await client.put(own, headers=ana, json=prefs)).status_code == 200
    assert (await client.get(own, headers=broker)).json() == prefs
    assert "body.channels" in invalid(await client.put(own, headers=ana, json={"channels": ["sms", "sms"]}))

    # A realtor only its own; the broker any user of the account (and itself), no one else's.
    ben = f"/v1/accounts/{ACCOUNT}/settings/notifications/set-ben"
    refused(await client.get(ben, headers=ana), 403)
    refused(await client.put(ben, headers=ana, json=prefs), 403)
    assert (await client.put(ben, headers=broker, json={"channels": ["email"], "digest": True})).status_code == 200
    assert (await client.get(ben, headers=stack.auth("set-ben", "realtor", ACCOUNT))).json()["digest"] is True
    boss = f"/v1/accounts/{ACCOUNT}/settings/notifications/set-boss"
    # The broker is no agent: until it has a staff record, nothing could reach it, so preferences are refused.
    digest = {"channels": ["email"], "digest": True}
    assert "staff" in refused(await client.put(boss, headers=broker, json=digest), 404)
    staff = {"name": "Set Boss", "email": "boss@set.example", "time_zone": "Europe/Berlin", "role": "admin"}
    assert (await client.put(f"/v1/accounts/{ACCOUNT}/staff/set-boss", headers=broker, json=staff)).status_code == 200
    assert (await client.put(boss, headers=broker, json={"channels": ["email"], "digest": True})).status_code == 200
    refused(await client.get(f"/v1/accounts/{ACCOUNT}/settings/notifications/dana-whitehorse", headers=broker), 404)
    refused(await client.put(f"/v1/accounts/{ACCOUNT}/settings/notifications/nobody", headers=broker, json=prefs), 404)


SETTINGS_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "settings/routing", None),
    ("PUT", "settings/routing", {"round_robin": False, "roster": ["dana-whitehorse"]}),
    ("GET", "agents/dana-whitehorse/round-robin", None),
    ("PUT", "agents/dana-whitehorse/round-robin", {"approved": False}),
    ("GET", "agents/dana-whitehorse/status", None),
    ("PUT", "agents/dana-whitehorse/status", {"status": "inactive"}),
    ("GET", "settings/lead-sources", None),
    ("PUT", "settings/lead-sources", {"sources": []}),
    ("GET", "settings/lead-groups", None),
    ("PUT", "settings/lead-groups", {"groups": []}),
    ("GET", "settings/pause-schedule", None),
    ("PUT", "settings/pause-schedule", {"windows": []}),
    ("GET", "settings/notifications/dana-whitehorse", None),
    ("PUT", "settings/notifications/dana-whitehorse", {"channels": []}),
]


async def snapshot(client: httpx.AsyncClient, stack: Stack) -> list[Any]:
    """Everything the calls above could change in OTHER, read as its own broker."""
    owner = stack.auth("summit-boss", "broker", OTHER)
    return [
        (await client.get(f"/v1/accounts/{OTHER}/{path}", headers=owner)).json()
        for method, path, _ in SETTINGS_CALLS
        if method == "GET"
    ]


@pytest.mark.parametrize("role", ["broker", "admin", "realtor"])
async def test_another_account_and_realtors_are_refused(stack: Stack, client: httpx.AsyncClient, role: str) -> None:
    before = await snapshot(client, stack)
    assert before[0]["roster"], "the seeded account has a roster to protect"
    # A user of ACCOUNT that no other module seeds as an agent elsewhere: agent ids are global, and a token naming
    # another office's agent is refused before any scope (401, decision 0079; `set-broker` is test_web_browser's).
    outsider = stack.auth(f"set-outsider-{role}", role, ACCOUNT)
    for method, path, body in SETTINGS_CALLS:
        response = await client.request(method, f"/v1/accounts/{OTHER}/{path}", headers=outsider, json=body)
        refused(response, 403)
        assert "dana" not in response.text
    # A realtor of the account itself: its own notifications only.
    realtor = stack.auth("dana-whitehorse", "realtor", OTHER)
    for method, path, body in SETTINGS_CALLS[:-2]:
        refused(await client.request(method, f"/v1/accounts/{OTHER}/{path}", headers=realtor, json=body), 403)
    assert await snapshot(client, stack) == before


async def test_an_account_without_a_document_is_not_created(stack: Stack, client: httpx.AsyncClient) -> None:
    ghost = stack.auth("ghost-boss", "broker", "ghost-realty")
    for method, path, body in SETTINGS_CALLS:
        response = await client.request(method, f"/v1/accounts/ghost-realty/{path}", headers=ghost, json=body)
        refused(response, 404)


async def test_a_roster_change_reaches_the_router(stack: Stack, client: httpx.AsyncClient) -> None:
    """R5: new general leads go to roster position 1; after the PUT, to the new position 1."""
    broker = stack.auth("eff-boss", "broker", EFFECT)

    async def owner_of_new_lead() -> str:
        body = {"account_id": EFFECT, "first_name": "Effie", "email": f"effie-{uuid.uuid4().hex[:8]}@example.com"}
        async with httpx.AsyncClient() as intake:
            response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
        assert response.status_code == 202, response.text
        url = f"/v1/accounts/{EFFECT}/leads/{response.json()['event_id']}"

        async def owner() -> str:
            detail = await client.get(url, headers=broker)
            return str(detail.json()["owner_agent_id"] or "") if detail.status_code == 200 else ""

        return await eventually(owner, what="the lead's owner in crm-api")

    assert await owner_of_new_lead() == "eff-ana"
    put = await client.put(
        f"/v1/accounts/{EFFECT}/settings/routing",
        headers=broker,
        json={"round_robin": False, "roster": ["eff-ben", "eff-ana"]},
    )
    assert put.status_code == 200, put.text

    # The router may keep its snapshot for up to 5 s, so leads are posted until one lands on eff-ben.
    owners: list[str] = []

    async def moved() -> bool:
        owners.append(await owner_of_new_lead())
        return owners[-1] == "eff-ben"

    await eventually(moved, timeout=30.0, what="a new lead owned by the new roster position 1")
    assert set(owners) <= {"eff-ana", "eff-ben"}
    # Once moved it stays: the next lead goes to eff-ben too.
    assert await owner_of_new_lead() == "eff-ben"
