"""crm-api's ponds and the outcome of an ask for a missed offer (issue 15, item 5), against a real router
(routing_world.py: the router's use cases on nx-27017 behind its internal HTTP app) and crm-api's whole app
in-process on the session's Tansu.

Ponds: a rule puts a tagged lead in a pond; the router offers it to the pond's agents at once and its events are
projected as crm-api's consumer projects them. `GET .../ponds` and `.../ponds/{pond}/leads` list it (an agent:
what it can claim; brokers: all, with who can claim), the web app's Ponds page shows it with the Claim button,
and a claim goes the ordinary way: crm-api publishes the `accept` (read back from leads.activity.v1), the router
takes that very record, and the lead leaves the pond.

Ask-back outcome: `GET .../ask-back` says pending until the router has answered the ask crm-api published, then
offered or refused with the reason, as the lost offer's web page says.

The router's clock starts at the real time, so crm-api (on the real clock) sees its offers as open.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from routing_world import ACCOUNT, BROKER, NAMES, OTHER, RULES, Site, config, csrf_of, received, site_on, text_of

from leadflow_devstack.testing import records_until
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

VILLAS = {"villa1", "villa2"}  # the Villas rule's rotation: 300 s to claim
POND_AGENTS = ["villa1", "villa2", "let1"]
OPEN_HOUSE = {"id": "open-house", "name": "Open house", "agents": POND_AGENTS, "hold_seconds": 3600}
QUIET = {"id": "quiet", "name": "Quiet pond", "agents": ["villa1"]}  # declared, never used
PONDED = {"id": "ponded", "name": "Pond leads", "criteria": {"tags": ["pond"]},
          "action": {"kind": "pond", "pond": "open-house"}}  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    rules = {"rules": [*RULES["rules"], PONDED], "ponds": [OPEN_HOUSE, QUIET]}
    async with site_on(mongo_url, kafka_bootstrap, config(rules), now=datetime.now(UTC)) as site:
        yield site


async def pond_lead(site: Site, n: int) -> str:
    """A lead of the pond rule, routed a second after the previous one (the router's clock stands still)."""
    site.world.router.clock.advance(1000)
    lead = received(n, tags=["pond"])
    await site.world.route(lead)
    return str(lead.event_id)


async def get(site: Site, url: str, sub: str, role: Any, account_id: str = ACCOUNT) -> httpx.Response:
    return await site.web.get(url, headers=site.auth(sub, role, account_id))


async def ponds(site: Site, sub: str, role: Any) -> dict[str, int]:
    """Pond id -> open leads, as `GET .../ponds` tells the caller."""
    answer = await get(site, f"/v1/accounts/{ACCOUNT}/ponds", sub, role)
    assert answer.status_code == 200, answer.text
    return {p["pond_id"]: p["open_leads"] for p in answer.json()["ponds"]}


async def in_pond(site: Site, sub: str, role: Any, pond: str = "open-house", **params: Any) -> dict[str, Any]:
    answer = await site.web.get(
        f"/v1/accounts/{ACCOUNT}/ponds/{pond}/leads", params=params, headers=site.auth(sub, role)
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def ours(lead_id: str, agent_id: str, action: str) -> Any:
    def match(record: ConsumerRecord[bytes, bytes]) -> bool:
        payload = json.loads(record.value or b"{}").get("payload", {})
        return (payload.get("lead_id"), payload.get("agent_id"), payload.get("action")) == (lead_id, agent_id, action)

    return match


async def routed_from_the_broker(site: Site, kafka_bootstrap: str, lead_id: str, agent_id: str, action: str) -> None:
    """The router takes crm-api's activity record for the lead from leads.activity.v1; its answer projected."""
    match = ours(lead_id, agent_id, action)
    record = next(r for r in await records_until(kafka_bootstrap, topics.LEADS_ACTIVITY, match) if match(r))
    await site.world.router.service.on_activity(LeadActivity.model_validate_json(record.value or b""))
    await site.world.project()


# Ponds


async def test_a_pond_lead_is_listed_for_its_agents_and_brokers_and_claimed_by_the_ordinary_claim(
    site: Site, kafka_bootstrap: str
) -> None:
    before = await ponds(site, BROKER.sub, "broker")
    lead_id = await pond_lead(site, 201)
    assert await ponds(site, BROKER.sub, "broker") == before | {"open-house": before["open-house"] + 1}
    assert before["quiet"] == 0, "a declared pond nobody used is listed, empty"

    seen = await in_pond(site, BROKER.sub, "broker")
    assert (seen["pond_id"], seen["name"]) == ("open-house", "Open house")
    [item] = [i for i in seen["items"] if i["lead_id"] == lead_id]
    assert (item["pond"], item["status"], item["owner_agent_id"]) == ("open-house", "offered", None)
    assert item["offered_to"] == sorted(POND_AGENTS), "the pond's agents, offered it at once"
    assert item["can_claim"] is False, "a broker is not offered it"
    assert datetime.fromisoformat(item["claim_before"]) > datetime.now(UTC)

    as_villa1 = await in_pond(site, "villa1", "realtor")
    [mine] = [i for i in as_villa1["items"] if i["lead_id"] == lead_id]
    assert (mine["can_claim"], mine["offered_to"]) == (True, []), "an agent sees its own offer only"
    assert (await ponds(site, "villa1", "realtor"))["open-house"] >= 1
    assert set(await ponds(site, "villa1", "realtor")) == {"open-house", "quiet"}, "villa1 is an agent of both"
    assert await ponds(site, "gen", "realtor") == {}, "gen is an agent of neither pond"
    assert (await in_pond(site, "gen", "realtor"))["items"] == [], "nothing it can claim"

    claim = await site.web.post(
        f"/v1/accounts/{ACCOUNT}/leads/{lead_id}/activities", headers=site.auth("villa1", "realtor"),
        json={"action": "accept"},
    )  # fmt: skip
    assert claim.status_code == 202, claim.text
    assert claim.json()["claim"] == "requested"
    await routed_from_the_broker(site, kafka_bootstrap, lead_id, "villa1", "accept")

    lead = (await get(site, f"/v1/accounts/{ACCOUNT}/leads/{lead_id}", BROKER.sub, "broker")).json()
    assert (lead["owner_agent_id"], lead["open_offers"]) == ("villa1", []), "the first claim has it"
    assert lead_id not in [i["lead_id"] for i in (await in_pond(site, BROKER.sub, "broker"))["items"]]
    assert await ponds(site, BROKER.sub, "broker") == before, "it left the pond"
    assert lead_id not in [i["lead_id"] for i in (await in_pond(site, "villa2", "realtor"))["items"]]


async def test_pond_lists_page_oldest_first_and_refuse_other_accounts_and_unknown_ponds(site: Site) -> None:
    leads = [await pond_lead(site, 210 + n) for n in range(3)]
    listed: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = await in_pond(site, "let1", "realtor", **params)
        assert len(page["items"]) <= 2
        listed += [i["lead_id"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert [i for i in listed if i in leads] == leads, "every lead once, oldest first"

    assert (await in_pond(site, BROKER.sub, "broker", pond="quiet"))["items"] == [], "declared, empty"
    unknown = await get(site, f"/v1/accounts/{ACCOUNT}/ponds/nowhere/leads", BROKER.sub, "broker")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "No such pond.")
    bad = await get(site, f"/v1/accounts/{ACCOUNT}/ponds/open-house/leads?cursor=abc", "let1", "realtor")
    assert bad.status_code == 422
    for url in (f"/v1/accounts/{ACCOUNT}/ponds", f"/v1/accounts/{ACCOUNT}/ponds/open-house/leads"):
        assert (await get(site, url, "elm-boss", "broker", OTHER)).status_code == 403, "another account's broker"
        assert (await get(site, url, "elm-agent", "realtor", OTHER)).status_code == 403, "another account's agent"
        assert (await site.web.get(url)).status_code == 401


async def test_the_ponds_page_lists_pond_leads_and_an_agent_claims_one_with_the_claim_button(
    site: Site, kafka_bootstrap: str
) -> None:
    lead_id = await pond_lead(site, 220)
    page_url = f"/app/accounts/{ACCOUNT}/ponds"

    broker = await site.sign_in(f"{ACCOUNT}|{BROKER.sub}|broker")
    shown = await broker.get(page_url)
    assert shown.status_code == 200, shown.text[:500]
    assert f'href="{page_url}">Ponds</a>' in shown.text, "the nav links the page"
    row = re.search(rf'<tr data-lead="{lead_id}">(.*?)</tr>', shown.text, re.S)
    assert row is not None
    assert ", ".join(sorted(POND_AGENTS)) in row.group(1), "who can claim it"
    assert "/actions" not in row.group(1), "a broker has no Claim button"
    assert "Quiet pond 0 leads No leads waiting." in text_of(shown)

    web = await site.sign_in(f"{ACCOUNT}|villa2|realtor")
    mine = await web.get(page_url)
    assert mine.status_code == 200, mine.text[:500]
    form = re.search(rf'<tr data-lead="{lead_id}">.*?<form method="post" action="([^"]+)"', mine.text, re.S)
    assert form is not None, mine.text[:2000]
    action = form.group(1)
    assert action == f"/app/accounts/{ACCOUNT}/leads/{lead_id}/actions", "the lead page's claim"
    sent = await web.post(action, data={"csrf": csrf_of(mine), "action": "accept"})
    assert (sent.status_code, sent.headers["location"]) == (303, f"/app/accounts/{ACCOUNT}/leads/{lead_id}")
    await routed_from_the_broker(site, kafka_bootstrap, lead_id, "villa2", "accept")
    lead = await web.get(sent.headers["location"])
    assert lead.status_code == 200
    assert f"Assigned To {NAMES['villa2']}" in text_of(lead)
    assert f'data-lead="{lead_id}"' not in (await web.get(page_url)).text, "claimed, it left the pond"


# What became of an ask


def villa_url(lead_id: str) -> str:
    return f"/v1/accounts/{ACCOUNT}/leads/{lead_id}"


async def expired_villa_lead(site: Site, n: int) -> tuple[str, str, str]:
    """A lead of the Villas rule whose first offer expired: (lead, the agent it missed it, its rival)."""
    lead = received(n, price={"min": 2_000_000})
    await site.world.route(lead)
    lead_id = str(lead.event_id)
    detail = (await get(site, villa_url(lead_id), BROKER.sub, "broker")).json()
    [first] = [o["agent_id"] for o in detail["open_offers"]]
    site.world.router.clock.advance(301_000)
    await site.world.router.service.sweep_once()
    await site.world.project()
    [second] = VILLAS - {first}
    return lead_id, first, second


async def outcome(site: Site, lead_id: str, sub: str, role: Any = "realtor") -> httpx.Response:
    return await get(site, f"{villa_url(lead_id)}/ask-back", sub, role)


async def test_an_ask_is_pending_until_the_router_answers_then_offered(site: Site, kafka_bootstrap: str) -> None:
    lead_id, first, _ = await expired_villa_lead(site, 230)
    never = await outcome(site, lead_id, first)
    assert (never.status_code, never.json()["detail"]) == (404, "You have not asked for this lead back.")

    asked = await site.web.post(f"{villa_url(lead_id)}/ask-back", headers=site.auth(first, "realtor"))
    assert asked.status_code == 202, asked.text
    pending = await outcome(site, lead_id, first)
    assert pending.status_code == 200, pending.text
    assert pending.json()["status"] == "pending"
    asked_at = datetime.fromisoformat(pending.json()["asked_at"])
    assert abs((datetime.now(UTC) - asked_at).total_seconds()) < 60

    await routed_from_the_broker(site, kafka_bootstrap, lead_id, first, "ask_back")
    offered = (await outcome(site, lead_id, first)).json()
    assert (offered["status"], offered["reason"]) == ("offered", None)
    assert datetime.fromisoformat(offered["asked_at"]) == asked_at
    assert datetime.fromisoformat(offered["offered_until"]) > datetime.now(UTC)
    assert offered["answered_at"] is not None


async def test_a_refused_ask_says_why_in_json_as_the_lost_offer_page_does(site: Site, kafka_bootstrap: str) -> None:
    lead_id, first, second = await expired_villa_lead(site, 231)
    take = LeadActivity.create(
        account_id=ACCOUNT, occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=uuid.UUID(lead_id), agent_id=second, action=ActivityAction.ACCEPT),
    )  # fmt: skip
    await site.world.router.service.on_activity(take)  # its rival claims the lead meanwhile
    await site.world.project()

    page_url = f"/app/accounts/{ACCOUNT}/leads/{lead_id}"
    web = await site.sign_in(f"{ACCOUNT}|{first}|realtor")
    lost = await web.get(page_url)
    sent = await web.post(f"{page_url}/ask-back", data={"csrf": csrf_of(lost)})
    assert sent.status_code == 303
    assert (await outcome(site, lead_id, first)).json()["status"] == "pending"
    assert "no answer yet" in text_of(await web.get(page_url)), "the page says it waits too"

    await routed_from_the_broker(site, kafka_bootstrap, lead_id, first, "ask_back")
    refused = (await outcome(site, lead_id, first)).json()
    assert (refused["status"], refused["reason"]) == ("refused", f"the lead is held by {second}")
    assert refused["offered_until"] is None
    answered = datetime.fromisoformat(refused["answered_at"])
    said = text_of(await web.get(page_url))
    assert f"Asking it back was refused at {answered:%Y-%m-%d %H:%M} UTC: the lead is held by {second}." in said

    assert (await outcome(site, lead_id, "let1")).json()["detail"] == "No such lead.", "never offered it"
    assert (await outcome(site, lead_id, BROKER.sub, "broker")).json()["detail"] == "You were not offered this lead."
    assert (await get(site, f"{villa_url(lead_id)}/ask-back", "elm-boss", "broker", OTHER)).status_code == 403
