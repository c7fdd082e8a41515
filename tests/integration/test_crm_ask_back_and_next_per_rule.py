"""crm-api's "ask a missed offer back" (issue 15, item 5) and "who is next" per routing rule (item 7) against a
real router (routing_world.py: the router's use cases on nx-27017 behind its internal HTTP app on a real port)
and crm-api's whole app in-process on the session's Tansu.

Asking back: crm-api publishes an `ask_back` activity on leads.activity.v1 (read back from the broker) only for
an agent whose offer of the lead ended; the router's answer to that very record (a new offer, or a refusal) is
projected back, and the agent sees the lead again or is told why not. Who is next: the router's answer per
rule, with names, for brokers and admins; the Settings page shows it beside each rule, and a notice when the
router is down.

The router's clock starts at the real time here, so crm-api (on the real clock) sees its offers as open.
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
from fastapi.responses import JSONResponse
from routing_world import (
    ACCOUNT,
    BROKER,
    NAMES,
    OTHER,
    ROUTER_TOKEN,
    RULES,
    Site,
    broken_router,
    config,
    csrf_of,
    received,
    served,
    site_on,
    text_of,
)

from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.errors import Unavailable
from leadflow_crm_api.use_cases import next_up
from leadflow_devstack.processes import free_port
from leadflow_devstack.testing import records_until
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import ReturnLead, ReturnLeadPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

VILLAS = {"villa1", "villa2"}  # the Villas rule's rotation: 300 s to claim
PEOPLE = NAMES | {"pat": "Pam Paused"}
TEAM = {
    "id": "team",
    "name": "Team",
    "criteria": {"tags": ["team"]},
    "action": {"kind": "rotation", "agents": ["let1", "pat"]},
}


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    seed = config({"rules": [*RULES["rules"], TEAM]}, PEOPLE, {"pat": {"paused": True}})
    async with site_on(mongo_url, kafka_bootstrap, seed, now=datetime.now(UTC)) as site:
        yield site


def lead_url(lead_id: str) -> str:
    return f"/v1/accounts/{ACCOUNT}/leads/{lead_id}"


async def villa_lead(site: Site, n: int) -> str:
    """A lead of the Villas rule, routed and projected: offered to one of its two agents."""
    lead = received(n, price={"min": 2_000_000})
    await site.world.route(lead)
    return str(lead.event_id)


async def lead_as_broker(site: Site, lead_id: str) -> dict[str, Any]:
    response = await site.web.get(lead_url(lead_id), headers=site.auth(BROKER.sub, "broker"))
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


async def racers(site: Site, lead_id: str) -> list[str]:
    return sorted(o["agent_id"] for o in (await lead_as_broker(site, lead_id))["open_offers"])


async def expire(site: Site) -> None:
    """The claim windows run out: the router's sweeper offers the leads on; crm-api projects it."""
    site.world.router.clock.advance(301_000)
    await site.world.router.service.sweep_once()
    await site.world.project()


async def act(site: Site, lead_id: str, agent_id: str, action: ActivityAction) -> None:
    """An agent's action as the router takes it from leads.activity.v1; its answer projected."""
    activity = LeadActivity.create(
        account_id=ACCOUNT,
        occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=uuid.UUID(lead_id), agent_id=agent_id, action=action),
    )
    await site.world.router.service.on_activity(activity)
    await site.world.project()


async def asked_back(kafka_bootstrap: str, lead_id: str, agent_id: str) -> ConsumerRecord[bytes, bytes]:
    """crm-api's ask_back activity of the agent for the lead, read from leads.activity.v1 on the broker."""

    def ours(record: ConsumerRecord[bytes, bytes]) -> bool:
        payload = json.loads(record.value or b"{}").get("payload", {})
        return (payload.get("lead_id"), payload.get("agent_id"), payload.get("action")) == (
            lead_id,
            agent_id,
            "ask_back",
        )

    seen = await records_until(kafka_bootstrap, topics.LEADS_ACTIVITY, ours, timeout=30)
    return next(r for r in seen if ours(r))


async def answer_from_the_broker(site: Site, record: ConsumerRecord[bytes, bytes]) -> LeadActivity:
    """The router takes the very record crm-api published; its answer projected into crm-api's views."""
    activity = LeadActivity.model_validate_json(record.value or b"")
    await site.world.router.service.on_activity(activity)
    await site.world.project()
    return activity


async def test_an_agent_whose_offer_expired_asks_it_back_and_is_offered_it_again(
    site: Site, kafka_bootstrap: str
) -> None:
    lead_id = await villa_lead(site, 101)
    [first] = await racers(site, lead_id)
    [second] = VILLAS - {first}
    await expire(site)
    assert await racers(site, lead_id) == [second]
    as_first = site.auth(first, "realtor")
    assert (await site.web.get(lead_url(lead_id), headers=as_first)).status_code == 404, "its offer ended"

    asked = await site.web.post(f"{lead_url(lead_id)}/ask-back", headers=as_first)
    assert asked.status_code == 202, asked.text
    answer = asked.json()
    assert answer["detail"].startswith("Asked; the router decides")
    record = await asked_back(kafka_bootstrap, lead_id, first)
    assert record.key == ACCOUNT.encode()
    activity = LeadActivity.model_validate_json(record.value or b"")
    assert str(activity.event_id) == answer["event_id"]
    assert (activity.account_id, activity.payload.action, activity.payload.message) == (
        ACCOUNT,
        ActivityAction.ASK_BACK,
        None,
    )
    timeline = (await lead_as_broker(site, lead_id))["timeline"]
    assert [e["summary"] for e in timeline if e["event_id"] == answer["event_id"]] == [f"ask back by {first}"]

    await answer_from_the_broker(site, record)
    assert await racers(site, lead_id) == sorted(VILLAS), "it joins the race its rival still runs"
    again = await site.web.get(lead_url(lead_id), headers=as_first)
    assert again.status_code == 200, "offered again, it sees the lead"
    offer = next(o for o in again.json()["open_offers"] if o["agent_id"] == first)
    assert datetime.fromisoformat(offer["deadline"]) > datetime.now(UTC)


async def test_only_an_agent_whose_offer_ended_can_ask_it_back(site: Site) -> None:
    lead_id = await villa_lead(site, 102)
    [first] = await racers(site, lead_id)
    url = f"{lead_url(lead_id)}/ask-back"

    async def ask(sub: str, role: Any, account_id: str = ACCOUNT, where: str = url) -> tuple[int, str]:
        response = await site.web.post(where, headers=site.auth(sub, role, account_id))
        return response.status_code, response.json()["detail"]

    status, detail = await ask(first, "realtor")
    assert status == 409
    assert re.fullmatch(r"Nothing to ask back: your offer is open until .+ UTC; claim it instead\.", detail), detail
    assert await ask("let1", "realtor") == (404, "No such lead."), "never offered it: no lead, as for reading it"
    assert await ask(BROKER.sub, "broker") == (404, "You were not offered this lead."), "a broker sees the lead"
    assert (await ask("elm-boss", "broker", OTHER))[0] == 403, "another account's broker"
    # Its own token names its office: one naming another is not who it says (decision 0079), refused at once.
    assert (await ask(first, "realtor", OTHER))[0] == 401, "its lead asked for with a token of another account"
    assert await ask("elm-rae", "realtor", OTHER) == (404, "No such lead."), "the lead asked for by another account"
    assert await ask(first, "realtor", where=f"{lead_url(str(uuid.uuid4()))}/ask-back") == (404, "No such lead.")

    await act(site, lead_id, first, ActivityAction.CALL)  # it claims the lead
    assert (await lead_as_broker(site, lead_id))["owner_agent_id"] == first
    assert await ask(first, "realtor") == (409, "Nothing to ask back: you hold this lead.")
    gave_back = ReturnLead.create(
        account_id=ACCOUNT,
        occurred_at=datetime.now(UTC),
        payload=ReturnLeadPayload(lead_id=uuid.UUID(lead_id), agent_id=first),
    )
    await site.world.router.service.on_command(gave_back)
    await site.world.project()
    assert (await lead_as_broker(site, lead_id))["owner_agent_id"] != first
    assert await ask(first, "realtor") == (
        409,
        "Nothing to ask back: you claimed this lead before; only a missed offer can be asked back.",
    ), "a former holder, as the router would refuse it (decision 0090)"
    actions = [e["action"] for e in (await lead_as_broker(site, lead_id))["timeline"]]
    assert "ask_back" not in actions, "nothing refused was recorded"
    assert (await site.web.post(url)).status_code == 401, "no token"
    generic = await site.web.post(
        f"{lead_url(lead_id)}/activities", headers=site.auth(first, "realtor"), json={"action": "ask_back"}
    )
    assert generic.status_code == 422, "asking back has its own route, not the activities'"
    assert [p["name"] for p in generic.json()["invalid_params"]] == ["body.action"]


async def test_the_lead_page_of_an_ended_offer_asks_it_back_and_shows_the_router_s_refusal(
    site: Site, kafka_bootstrap: str
) -> None:
    lead_id = await villa_lead(site, 103)
    [first] = await racers(site, lead_id)
    [second] = VILLAS - {first}
    await expire(site)
    await act(site, lead_id, second, ActivityAction.ACCEPT)  # the lead goes to its rival meanwhile
    page_url = f"/app/accounts/{ACCOUNT}/leads/{lead_id}"

    web = await site.sign_in(f"{ACCOUNT}|{first}|realtor")
    lost = await web.get(page_url)
    assert lost.status_code == 410, lost.text[:500]
    assert re.search(rf"Your offer expired at .+ UTC; the lead is held by {PEOPLE[second]}\.", text_of(lost))
    form = f'<form method="post" action="{page_url}/ask-back"'
    assert form in lost.text
    assert "Ask for it back" in text_of(lost)
    assert (await web.post(f"{page_url}/ask-back", data={"csrf": "forged"})).status_code == 403

    sent = await web.post(f"{page_url}/ask-back", data={"csrf": csrf_of(lost)})
    assert (sent.status_code, sent.headers["location"]) == (303, page_url)
    told = await web.get(page_url)
    assert told.status_code == 410, "no new offer yet"
    assert "Asked; the router decides" in text_of(told)
    await answer_from_the_broker(site, await asked_back(kafka_bootstrap, lead_id, first))

    refused = await web.get(page_url)
    assert refused.status_code == 410
    said = text_of(refused)
    assert re.search(rf"Asking it back was refused at .+ UTC: the lead is held by {second}\.", said), said
    assert form in refused.text, "it may ask again"
    broker = await site.sign_in(f"{ACCOUNT}|{BROKER.sub}|broker")
    timeline = text_of(await broker.get(page_url))
    assert f"ask back by {first}" in timeline
    assert f"ask_back by {first} claimed nothing: cannot ask it back: the lead is held by {second}" in timeline


# Who is next per rule


async def test_who_is_next_per_rule_comes_with_names_for_brokers_and_admins(site: Site) -> None:
    base = f"/v1/accounts/{ACCOUNT}/routing/rules"

    async def ask(rule_id: str, sub: str = BROKER.sub, role: Any = "broker", **params: str) -> httpx.Response:
        return await site.web.get(f"{base}/{rule_id}/next", params=params, headers=site.auth(sub, role))

    team = await ask("team")
    assert team.status_code == 200, team.text
    assert team.json() == {
        "rule_id": "team",
        "pool": "Team",
        "mode": "round_robin",
        "next": [{"agent_id": "let1", "name": "Lena Let"}],
        "eligible": [{"agent_id": "let1", "name": "Lena Let"}],
        "skipped": [{"agent_id": "pat", "name": "Pam Paused", "reason": "paused"}],
    }
    villas = (await ask("villas", "oak-admin", "admin")).json()
    assert villas["eligible"] == [{"agent_id": a, "name": PEOPLE[a]} for a in ("villa1", "villa2")]
    assert [n["agent_id"] for n in villas["next"]] in (["villa1"], ["villa2"])
    default = await ask("default", source="Website")
    assert default.status_code == 200, default.text
    assert default.json()["pool"] == "the lead source's rotation"
    assert all(n["name"] == PEOPLE[n["agent_id"]] for n in default.json()["next"] + default.json()["eligible"])

    unknown = await ask("nothing")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "No such routing rule.")
    assert (await ask("team", "villa1", "realtor")).status_code == 403
    outsider = await site.web.get(f"{base}/team/next", headers=site.auth("elm-boss", "broker", OTHER))
    assert outsider.status_code == 403
    async with site.router_down():
        down = await ask("team")
    assert (down.status_code, down.json()["detail"]) == (503, "The router did not answer; try again.")


async def test_a_router_down_or_answering_nonsense_about_a_rule_is_unavailable(site: Site) -> None:
    async def rule_next(router: RouterApi) -> next_up.RuleNextUp:
        return await next_up.who_is_next_by_rule(ACCOUNT, "team", BROKER, site.world.db, router)

    assert (await rule_next(site.world.api)).next[0].name == "Lena Let"
    with pytest.raises(Unavailable, match="did not answer"):
        await rule_next(RouterApi(f"http://127.0.0.1:{free_port()}", token=ROUTER_TOKEN, timeout=2))
    async with served(broken_router(lambda: JSONResponse({"next": "villa1"}))) as broken:
        with pytest.raises(Unavailable, match="could not be read"):
            await rule_next(RouterApi(broken.url, token=ROUTER_TOKEN))


def row_text(page: httpx.Response, rule_id: str) -> str:
    """What the Routing rules table shows for one rule (its row)."""
    found = re.search(rf'<tr data-rule="{rule_id}">(.*?)</tr>', page.text, re.S)
    assert found is not None, rule_id
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


async def test_the_settings_page_shows_who_is_next_beside_each_rule_or_a_notice(site: Site) -> None:
    web = await site.sign_in(f"{ACCOUNT}|{BROKER.sub}|broker")
    page = await web.get(f"/app/accounts/{ACCOUNT}/settings")
    assert page.status_code == 200, page.text[:500]
    assert row_text(page, "team").endswith("next: Lena Let let1 (1 skipped: Pam Paused, paused)")
    assert row_text(page, "lettings").endswith("next: Lena Let let1")
    assert re.search(r"next: (Vera Villa villa1|Vic Villa villa2)$", row_text(page, "villas"))
    assert re.search(r"next: \w", row_text(page, "default")), row_text(page, "default")
    assert "Who is next cannot be shown now" not in text_of(page)

    async with site.router_down():
        down = await web.get(f"/app/accounts/{ACCOUNT}/settings")
    assert down.status_code == 200, down.text[:500]
    assert "Who is next cannot be shown now: The router did not answer; try again." in text_of(down)
    assert "next:" not in row_text(down, "team")
