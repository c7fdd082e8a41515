"""crm-api's ponds and the outcome of an ask for a missed offer (issue 15, item 5), against a real router
(routing_world.py: the router's use cases on nx-27017 behind its internal HTTP app) and crm-api's whole app
in-process on the session's Tansu.

Ponds: a rule puts a tagged lead in a pond; the router offers it to the pond's agents at once and its events are
projected as crm-api's consumer projects them. `GET .../ponds` and `.../ponds/{pond}/leads` list it (an agent:
the offers it holds, whether it can claim them as the router's `can-take` says, and why not; brokers: all, with
who can claim), the web app's Ponds page shows it with the Claim button or the router's reason, and a claim goes
the ordinary way: crm-api publishes the `accept` (read back from leads.activity.v1), the router takes that very
record, and the lead leaves the pond.

Ask-back outcome: `GET .../ask-back` says pending until the router has answered the ask crm-api published, then
offered or refused with the reason, as the lost offer's web page says; a second ask while one waits is refused.

The router's clock starts at the real time, so crm-api (on the real clock) sees its offers as open.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from routing_world import ACCOUNT, BROKER, NAMES, OTHER, RULES, Site, config, csrf_of, received, site_on, text_of

from leadflow_crm_api.adapters.leads import CRM_LEADS, LeadViews
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases.ask_back import ALREADY_ASKED, UNANSWERED_AFTER
from leadflow_crm_api.use_cases.ponds import ROUTER_NOT_ASKED, RouterCheck
from leadflow_crm_api.web.ponds import pond_page
from leadflow_devstack.testing import records_to_end, records_until
from leadflow_shared import topics
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import CRM_TIMELINE
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

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
    assert (await get(site, f"/v1/accounts/{ACCOUNT}/ponds/open-house/leads", "gen", "realtor")).status_code == 404

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


def pond_item(found: dict[str, Any], lead_id: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = [i for i in found["items"] if i["lead_id"] == lead_id]
    assert len(items) == 1, found
    return items[0]


async def set_availability(site: Site, sub: str, **body: Any) -> None:
    """The agent's own availability form, as JSON (every field it omits back to its default)."""
    put = await site.web.put("/v1/agents/me/availability", json=body, headers=site.auth(sub, "realtor"))
    assert put.status_code == 200, put.text


async def test_an_agent_the_router_would_refuse_is_told_why_instead_of_offered_the_claim(site: Site) -> None:
    lead_id = await pond_lead(site, 240)
    item = pond_item(await in_pond(site, "let1", "realtor"), lead_id)
    assert (item["can_claim"], item["cannot_claim"]) == (True, None)
    listed = (await get(site, f"/v1/accounts/{ACCOUNT}/ponds", "let1", "realtor")).json()
    assert listed["cannot_claim"] is None
    page_url = f"/app/accounts/{ACCOUNT}/ponds"
    try:
        await set_availability(site, "let1", paused=True)
        item = pond_item(await in_pond(site, "let1", "realtor"), lead_id)
        assert (item["can_claim"], item["cannot_claim"]) == (False, "paused"), "the router refuses a paused agent"
        listed = (await get(site, f"/v1/accounts/{ACCOUNT}/ponds", "let1", "realtor")).json()
        assert listed["cannot_claim"] == "paused"
        assert listed["ponds"][0]["open_leads"] >= 1, "its offers are still counted"

        web = await site.sign_in(f"{ACCOUNT}|let1|realtor")
        shown = await web.get(page_url)
        assert shown.status_code == 200, shown.text[:500]
        row = re.search(rf'<tr data-lead="{lead_id}">(.*?)</tr>', shown.text, re.S)
        assert row is not None
        assert "/actions" not in row.group(1), "no Claim button"
        assert "Cannot claim now: paused" in row.group(1)
        assert "You cannot claim pond leads now: paused." in text_of(shown)

        await set_availability(site, "let1", caps={"day": 0})  # caps included
        item = pond_item(await in_pond(site, "let1", "realtor"), lead_id)
        assert item["can_claim"] is False
        assert item["cannot_claim"].startswith("at its daily cap ("), item
        other = pond_item(await in_pond(site, "villa1", "realtor"), lead_id)
        assert (other["can_claim"], other["cannot_claim"]) == (True, None), "another agent of the pond can"
        broker = pond_item(await in_pond(site, BROKER.sub, "broker"), lead_id)
        assert (broker["can_claim"], broker["cannot_claim"]) == (False, None), "a broker is offered nothing"
    finally:
        await set_availability(site, "let1")
    item = pond_item(await in_pond(site, "let1", "realtor"), lead_id)
    assert (item["can_claim"], item["cannot_claim"]) == (True, None)


async def test_the_router_down_leaves_the_offer_to_decide_and_the_page_still_shows(site: Site) -> None:
    lead_id = await pond_lead(site, 241)
    web = await site.sign_in(f"{ACCOUNT}|villa1|realtor")
    async with site.router_down():
        item = pond_item(await in_pond(site, "villa1", "realtor"), lead_id)
        assert (item["can_claim"], item["cannot_claim"]) == (True, ROUTER_NOT_ASKED)
        listed = (await get(site, f"/v1/accounts/{ACCOUNT}/ponds", "villa1", "realtor")).json()
        assert listed["cannot_claim"] == ROUTER_NOT_ASKED
        shown = await web.get(f"/app/accounts/{ACCOUNT}/ponds")
    assert shown.status_code == 200, shown.text[:500]
    assert re.search(rf'<tr data-lead="{lead_id}">.*?<form method="post"', shown.text, re.S), "the Claim button"
    assert "The router could not be asked whether you can take a lead now" in text_of(shown)


async def test_an_agent_s_offer_past_its_deadline_is_not_counted_before_the_router_sweeps_it(site: Site) -> None:
    before = await ponds(site, "villa2", "realtor")
    brokers = await ponds(site, BROKER.sub, "broker")
    clock = site.world.router.clock
    clock.advance(-2 * 3600 * 1000)  # the router two hours behind: its 1 h offers end before crm-api's now
    try:
        lead_id = await pond_lead(site, 242)
    finally:
        clock.advance(2 * 3600 * 1000)
    assert await ponds(site, "villa2", "realtor") == before, "not counted as a lead it can claim"
    item = pond_item(await in_pond(site, "villa2", "realtor"), lead_id)
    assert datetime.fromisoformat(item["claim_before"]) < datetime.now(UTC), "still open in the router (no sweep)"
    assert (item["can_claim"], item["cannot_claim"]) == (False, None)
    assert (await ponds(site, BROKER.sub, "broker"))["open-house"] == brokers["open-house"] + 1, "in the pond still"


async def test_an_agent_is_not_told_the_name_of_a_pond_it_is_not_in(site: Site) -> None:
    url = f"/v1/accounts/{ACCOUNT}/ponds/{{}}/leads"
    for sub, pond in (("gen", "open-house"), ("gen", "quiet"), ("let1", "quiet")):
        answer = await get(site, url.format(pond), sub, "realtor")
        assert (answer.status_code, answer.json()["detail"]) == (404, "No such pond."), (sub, pond, answer.text)
        assert pond not in await ponds(site, sub, "realtor"), "as the ponds list hides it"
    for sub, role in (("villa1", "realtor"), (BROKER.sub, "broker")):
        assert (await in_pond(site, sub, role, pond="quiet"))["name"] == "Quiet pond"


async def test_a_pond_gone_between_the_count_and_its_page_shows_empty(site: Site) -> None:
    """The Ponds page counts the ponds, then reads each one's page: a pond gone in between (its rules changed, its
    last lead left) is shown empty rather than the whole page a 404."""
    check = RouterCheck(site.world.api, BROKER)
    now = datetime.now(UTC)
    for caller in (BROKER, Principal("gen", Role.REALTOR, ACCOUNT)):
        assert await pond_page(site.world.db, caller, ACCOUNT, "gone", check, cursor=None, now=now) is None
    found = await pond_page(site.world.db, BROKER, ACCOUNT, "quiet", check, cursor="c3RhbGU", now=now)
    assert found is not None
    assert found.items == [], "a stale cursor: the pond's first page"


async def test_an_assigned_lead_leaves_its_pond(site: Site) -> None:
    views = LeadViews(site.world.db)
    assigned, other = await pond_lead(site, 243), await pond_lead(site, 244)
    before = await ponds(site, BROKER.sub, "broker")
    payload = LeadAssignedPayload(
        lead_id=uuid.UUID(assigned), agent_id="villa1", reason=AssignmentReason.MANUAL, explanation="by hand",
        contact=Contact(first_name="Lead", email="lead243@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
    )  # fmt: skip
    # Projected on its own (its offers' closing not yet): the assignment alone takes the lead out of the pond.
    await project(LeadAssigned.create(account_id=ACCOUNT, occurred_at=datetime.now(UTC), payload=payload), views=views)
    row = await site.world.db[CRM_LEADS].find_one({"_id": assigned})
    assert row is not None
    assert (row["owner_agent_id"], row["open_offers"], row["pond"]) == ("villa1", [], None)
    assert await ponds(site, BROKER.sub, "broker") == before | {"open-house": before["open-house"] - 1}
    assert other in [i["lead_id"] for i in (await in_pond(site, BROKER.sub, "broker"))["items"]], "the others stay"


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


async def rival_claims(site: Site, lead_id: str, rival: str) -> None:
    """The lead's rival claims it meanwhile, through the router, and the views follow."""
    take = LeadActivity.create(
        account_id=ACCOUNT, occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=uuid.UUID(lead_id), agent_id=rival, action=ActivityAction.ACCEPT),
    )  # fmt: skip
    await site.world.router.service.on_activity(take)
    await site.world.project()


async def test_a_refused_ask_says_why_in_json_as_the_lost_offer_page_does(site: Site, kafka_bootstrap: str) -> None:
    lead_id, first, second = await expired_villa_lead(site, 231)
    await rival_claims(site, lead_id, second)

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


async def test_a_second_ask_while_the_first_waits_is_refused(site: Site, kafka_bootstrap: str) -> None:
    lead_id, first, _ = await expired_villa_lead(site, 232)
    url = f"{villa_url(lead_id)}/ask-back"
    one = await site.web.post(url, headers=site.auth(first, "realtor"))
    assert one.status_code == 202, one.text
    two = await site.web.post(url, headers=site.auth(first, "realtor"))
    assert (two.status_code, two.json()["detail"]) == (409, ALREADY_ASKED)
    web = await site.sign_in(f"{ACCOUNT}|{first}|realtor")
    page_url = f"/app/accounts/{ACCOUNT}/leads/{lead_id}"
    sent = await web.post(f"{page_url}/ask-back", data={"csrf": csrf_of(await web.get(page_url))})
    assert (sent.status_code, sent.headers["location"]) == (303, page_url)
    assert ALREADY_ASKED in text_of(await web.get(page_url)), "the button says so too"

    await routed_from_the_broker(site, kafka_bootstrap, lead_id, first, "ask_back")
    assert (await outcome(site, lead_id, first)).json()["status"] == "offered"
    match = ours(lead_id, first, "ask_back")
    assert len([r for r in await records_to_end(kafka_bootstrap, topics.LEADS_ACTIVITY) if match(r)]) == 1


async def test_an_ask_left_unanswered_for_minutes_no_longer_blocks_a_new_one(site: Site, kafka_bootstrap: str) -> None:
    """The router answers within seconds; an ask it never answered (dead-lettered) must not block the agent for good,
    nor leave the next ask pending once the router has answered that one (decision 0067: its answer names it)."""
    lead_id, first, second = await expired_villa_lead(site, 234)
    url = f"{villa_url(lead_id)}/ask-back"
    assert (await site.web.post(url, headers=site.auth(first, "realtor"))).status_code == 202
    assert (await site.web.post(url, headers=site.auth(first, "realtor"))).status_code == 409
    long_ago = datetime.now(UTC) - UNANSWERED_AFTER - timedelta(seconds=5)
    moved = await site.world.db[CRM_TIMELINE].update_many(
        {"lead_id": lead_id, "type": "LeadActivity", "action": "ask_back"},
        {"$set": {"occurred_at": long_ago, "occurred_ms": epoch_ms(long_ago)}},
    )
    assert moved.modified_count == 1
    await rival_claims(site, lead_id, second)
    again = await site.web.post(url, headers=site.auth(first, "realtor"))
    assert again.status_code == 202, again.text

    ask_id = again.json()["event_id"]  # the router takes this ask only: the first never reached it
    match = ours(lead_id, first, "ask_back")
    [record] = [r for r in await records_to_end(kafka_bootstrap, topics.LEADS_ACTIVITY) if match(r)
                and json.loads(r.value or b"{}")["event_id"] == ask_id]  # fmt: skip
    await site.world.router.service.on_activity(LeadActivity.model_validate_json(record.value or b""))
    await site.world.project()
    refused = (await outcome(site, lead_id, first)).json()
    assert (refused["status"], refused["event_id"]) == ("refused", ask_id), "answered, though one ask never was"
    assert refused["reason"] == f"the lead is held by {second}"


async def test_two_asks_sent_at_once_are_one_which_the_router_answers_once(site: Site, kafka_bootstrap: str) -> None:
    """A double click: both requests may be checked before either is recorded; both then send the same ask (its id
    derived from the lead, the agent and how many asks came before), which the router takes once."""
    lead_id, first, _ = await expired_villa_lead(site, 233)
    url = f"{villa_url(lead_id)}/ask-back"
    answers = await asyncio.gather(*(site.web.post(url, headers=site.auth(first, "realtor")) for _ in range(2)))
    assert sorted(a.status_code for a in answers) in ([202, 202], [202, 409]), [a.text for a in answers]
    match = ours(lead_id, first, "ask_back")
    sent = [r for r in await records_to_end(kafka_bootstrap, topics.LEADS_ACTIVITY) if match(r)]
    assert len({json.loads(r.value or b"{}")["event_id"] for r in sent}) == 1, "one ask, however often it was sent"
    for record in sent:
        await site.world.router.service.on_activity(LeadActivity.model_validate_json(record.value or b""))
    await site.world.project()
    timeline = (await get(site, villa_url(lead_id), BROKER.sub, "broker")).json()["timeline"]
    said = [e for e in timeline if "asked back the offer" in e["summary"] or "cannot ask it back" in e["summary"]]
    assert len(said) == 1, "answered once"
    assert (await outcome(site, lead_id, first)).json()["status"] == "offered"
