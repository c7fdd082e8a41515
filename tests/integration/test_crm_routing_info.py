"""crm-api's "why this agent" and dry-run (issue 15, items 6-7) against a real router: the router's use cases
on the MongoDB-wire server behind its own internal HTTP app, served on a free port by the services' HTTP
server, and crm-api's use cases calling it over HTTP as they do in production (`RouterApi`). crm-api's
views are the router's events projected as its consumer projects them (routing_world.py, beside this file).

What is checked: the decisions come back with the agents' names, oldest first; who may ask (brokers and
admins of the lead's account); a lead the router never routed has none; the router down, answering
nonsense or refusing crm-api's service token is a 503, never a 500; a dry-run decides by the saved rules, a
draft or a past lead and changes nothing (every collection compared, nothing published); a draft naming
agents off the roster is a 422 naming the rule, before and at the router.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from crm_rows import assigned_row
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import SecretStr
from routing_world import (
    ACCOUNT,
    ADMIN,
    BROKER,
    OTHER,
    OUTSIDER,
    ROUTER_TOKEN,
    Site,
    World,
    broken_router,
    config,
    csrf_of,
    received,
    served,
    site_on,
    text_of,
    world_on,
)

from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.routing_info import DryRunLead
from leadflow_crm_api.domain.rules_and_availability import RoutingRules
from leadflow_crm_api.errors import ContentTooLarge, Forbidden, InvalidRequest, NotFound, Unavailable
from leadflow_crm_api.use_cases.leads import account_leads
from leadflow_devstack.processes import free_port
from leadflow_shared.events.intake import Contact

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def world(mongo_url: str) -> AsyncIterator[World]:
    async with world_on(mongo_url, config()) as world:
        yield world


async def test_a_lead_s_decisions_come_with_the_agents_names_oldest_first(world: World) -> None:
    lead = received(1, price={"min": 2_000_000})
    await world.route(lead)
    world.router.clock.advance(301_000)  # nobody claimed: the rule's next agent
    await world.router.service.sweep_once()
    await world.project()

    for caller in (BROKER, ADMIN):
        got = await world.routing(str(lead.event_id), caller)
        assert got.lead_id == str(lead.event_id)
        offered, reoffered = got.decisions
        assert offered.at <= reoffered.at
        assert (offered.rule_id, offered.rule_name) == ("villas", "Villas")
        assert [(r.rule_id, r.matched) for r in offered.rules] == [("villas", True)]
        assert [(a.agent_id, a.name) for a in offered.chosen] == [("villa1", "Vera Villa")]
        assert [(a.agent_id, a.name) for a in offered.waiting] == [("villa2", "Vic Villa")]
        assert offered.rotation is not None
        assert (offered.rotation.kind, offered.rotation.mode) == ("rule", "round_robin")
        assert [(a.agent_id, a.name) for a in reoffered.chosen] == [("villa2", "Vic Villa")]
        assert [(s.agent_id, s.name, s.reason) for s in reoffered.skipped] == [
            ("villa1", "Vera Villa", "had the lead already")
        ]

    rental = received(2, intent="rent")
    await world.route(rental)
    [decision] = (await world.routing(str(rental.event_id))).decisions
    assert [(r.rule_id, r.matched, r.why_not is not None) for r in decision.rules] == [
        ("villas", False, True),
        ("lettings", True, False),
    ]
    assert [(a.agent_id, a.name) for a in decision.chosen] == [("let1", "Lena Let")]


async def test_routing_info_is_for_the_brokers_and_admins_of_the_lead_s_account(world: World) -> None:
    lead, theirs = received(3, price={"min": 2_000_000}), received(4, OTHER)
    await world.route(lead, theirs)
    offered_to = Principal("villa1", Role.REALTOR, ACCOUNT)  # sees the lead (offered to it), not its routing
    assert await account_leads(offered_to, world.db, ACCOUNT).get(str(lead.event_id)) is not None
    with pytest.raises(Forbidden, match="brokers and admins"):
        await world.routing(str(lead.event_id), offered_to)
    with pytest.raises(Forbidden):  # another account's broker: refused before any lead is looked at
        await world.routing(str(lead.event_id), OUTSIDER)
    with pytest.raises(NotFound):  # another account's lead named under one's own account: no such lead
        await world.routing(str(theirs.event_id))
    with pytest.raises(NotFound):
        await world.routing(str(uuid.uuid4()))
    assert (await world.routing(str(theirs.event_id), OUTSIDER, OTHER)).decisions, "its own broker sees it"


async def test_a_lead_the_router_never_routed_has_no_decisions(world: World) -> None:
    row = assigned_row(ACCOUNT, "gen", Contact(first_name="Imported", email="imported@example.com"), minutes_ago=5)
    await world.db[CRM_LEADS].insert_one(row)
    assert (await world.routing(row["_id"])).decisions == []


async def test_a_dry_run_decides_by_the_saved_rules_a_draft_or_a_past_lead_and_changes_nothing(world: World) -> None:
    past = received(5, intent="rent")
    await world.route(past)
    before = await world.everything()

    villa = {
        "first_name": "Val",
        "email": "Val@Example.com",
        "source": "Website",
        "criteria": {"price": {"min": 3_000_000}},
    }
    saved = await world.dry_run(lead=villa)
    assert (saved.status, saved.decision.rule_id) == ("offered", "villas")
    assert [(a.agent_id, a.name) for a in saved.offered_to] == [("villa1", "Vera Villa")]
    assert saved.decision.chosen == saved.offered_to
    again = await world.dry_run(lead=villa)
    assert again.offered_to == saved.offered_to, "the rotation did not move"

    draft = {"rules": [{"id": "all", "name": "All", "action": {"kind": "agent", "agent_id": "gen"}}]}
    drafted = await world.dry_run(lead=villa, rules=draft)
    assert (drafted.decision.rule_id, [a.name for a in drafted.offered_to]) == ("all", ["Gus Gen"])
    by_id = await world.dry_run(lead_id=str(past.event_id))
    assert (by_id.decision.rule_id, [a.agent_id for a in by_id.offered_to]) == ("lettings", ["let1"])
    tagged = await world.dry_run(lead={"criteria": {"tags": ["  VIP "], "place": {"state": "tx"}}})
    assert tagged.decision.rule_id is None, "no rule matched: the source's rotation"

    assert await world.everything() == before, "nothing was written"
    assert world.router.published.records == [], "nothing was published: no offer, no email"


async def test_a_dry_run_refuses_what_it_cannot_decide(world: World) -> None:
    ghost = {
        "rules": [
            {"id": "ok", "name": "OK", "action": {"kind": "agent", "agent_id": "gen"}},
            {"id": "x", "name": "X", "action": {"kind": "rotation", "agents": ["gen", "ghost"]}},
        ]
    }
    with pytest.raises(RequestValidationError) as refused:
        await world.dry_run(lead={}, rules=ghost)
    assert [(e["loc"], e["msg"]) for e in refused.value.errors()] == [
        (("body", "rules", "rules", 1), "rule 'x': agents not on the roster: ['ghost']")
    ]
    # The router checks too (a roster changed between the two checks): its reasons, as a 422.
    sent = {"lead": DryRunLead().summary().model_dump(mode="json"), "rules": ghost}
    with pytest.raises(InvalidRequest, match=r"rule 'x': agents not on the roster: \['ghost'\]"):
        await world.api.post(f"/internal/v1/accounts/{ACCOUNT}/routing/dry-run", sent, missing="none")

    with pytest.raises(NotFound):
        await world.dry_run(lead_id=str(uuid.uuid4()))
    with pytest.raises(Forbidden):
        await world.dry_run(Principal("gen", Role.REALTOR, ACCOUNT), lead={})
    with pytest.raises(Forbidden):
        await world.dry_run(OUTSIDER, lead={})
    with pytest.raises(NotFound):  # its own broker, an account the views have no document of
        await world.dry_run(Principal("b", Role.BROKER, "nowhere"), "nowhere", lead={})


@pytest.mark.parametrize(
    "answer",
    [
        lambda: PlainTextResponse("overloaded", status_code=503),
        lambda: PlainTextResponse("not json"),
        lambda: JSONResponse(["a", "list"]),
        lambda: JSONResponse({"decisions": [{"at": "yesterday"}], "decision": {"step": 1}, "status": "offered"}),
    ],
    ids=["5xx", "not JSON", "not an object", "not decisions"],
)
async def test_a_router_that_does_not_answer_properly_is_a_503(world: World, answer: Callable[[], Any]) -> None:
    lead = received(6)
    await world.route(lead)
    async with served(broken_router(answer)) as broken:
        world.api = RouterApi(broken.url, token=ROUTER_TOKEN)
        with pytest.raises(Unavailable):
            await world.routing(str(lead.event_id))
        with pytest.raises(Unavailable):
            await world.dry_run(lead={})


async def test_a_body_the_router_refuses_as_too_large_is_a_413_not_a_503(world: World) -> None:
    """Helper 175: crm-api's body limit may be set up to 16 MiB, the router takes 4 MiB; its 413 was answered 503
    "try again", which no retry cures."""
    lead = received(9)
    await world.route(lead)

    def too_large() -> Any:
        return JSONResponse({"detail": "The request body is larger than 4194304 bytes."}, status_code=413)

    async with served(broken_router(too_large)) as refusing:
        world.api = RouterApi(refusing.url, token=ROUTER_TOKEN)
        with pytest.raises(ContentTooLarge, match="smaller rule set"):
            await world.dry_run(lead={})


@pytest.mark.parametrize("token", [None, SecretStr(secrets.token_urlsafe(32))], ids=["no token", "another token"])
async def test_without_the_router_s_service_token_crm_api_gets_no_routing_data_and_says_which_setting(
    world: World, token: SecretStr | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision 0082: the router refuses (401) a caller without its token; crm-api answers 503 and logs that its
    CRM_API_ROUTER_TOKEN is not the router's, never the token itself."""
    lead = received(8)
    await world.route(lead)
    assert (await world.routing(str(lead.event_id))).decisions, "with the token, the decisions come"
    world.api = RouterApi(world.server.url, token=token)
    with caplog.at_level(logging.ERROR, logger="leadflow_crm_api.adapters.router_api"):
        with pytest.raises(Unavailable):
            await world.routing(str(lead.event_id))
        with pytest.raises(Unavailable):
            await world.dry_run(lead={})
    refusals = [r.getMessage() for r in caplog.records if r.name == "leadflow_crm_api.adapters.router_api"]
    assert len(refusals) == 2, refusals
    assert all("CRM_API_ROUTER_TOKEN" in message for message in refusals)
    assert token is None or token.get_secret_value() not in caplog.text


async def test_a_router_that_is_down_is_a_503(world: World) -> None:
    lead = received(7)
    await world.route(lead)
    world.api = RouterApi(f"http://127.0.0.1:{free_port()}", token=ROUTER_TOKEN, timeout=2)
    with pytest.raises(Unavailable, match="did not answer"):
        await world.routing(str(lead.event_id))
    with pytest.raises(Unavailable, match="did not answer"):
        await world.dry_run(lead={}, rules=RoutingRules().model_dump())


# The web app's pages (routing_world.Site): one app for the module.


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        yield site


async def test_the_lead_page_shows_routing_info_to_brokers_and_a_notice_when_the_router_is_down(site: Site) -> None:
    lead = received(8, price={"min": 2_000_000})
    await site.world.route(lead)
    url = f"/app/accounts/{ACCOUNT}/leads/{lead.event_id}"
    web = await site.sign_in(f"{ACCOUNT}|oak-boss|broker")
    page = await web.get(url)
    assert page.status_code == 200, page.text[:500]
    shown = text_of(page)
    assert "Routing info" in shown
    assert "decided by rule Villas" in shown
    assert "Rules tried Villas: matched" in shown
    assert "Chosen Vera Villa villa1" in shown
    assert "Waiting their turn Vic Villa villa2" in shown
    assert "Rotation the rule's round robin, position" in shown

    agent = await site.sign_in(f"{ACCOUNT}|villa1|realtor")
    page = await agent.get(url)
    assert page.status_code == 200
    assert "Routing info" not in page.text, "a realtor's view does not name the other agents"

    web = await site.sign_in(f"{ACCOUNT}|oak-admin|admin")
    async with site.router_down():
        page = await web.get(url)
    assert page.status_code == 200, page.text[:500]
    assert "Routing info cannot be shown now: The router did not answer; try again." in text_of(page)
    assert 'class="decision"' not in page.text


async def test_the_settings_page_tests_a_lead_by_the_saved_rules_or_the_draft(site: Site) -> None:
    before = await site.stored()
    url = f"/app/accounts/{ACCOUNT}/settings/routing-rules/dry-run"
    draft = json.dumps({"rules": [{"id": "all", "name": "All", "action": {"kind": "agent", "agent_id": "gen"}}]})
    web = await site.sign_in(f"{ACCOUNT}|oak-boss|broker")
    page = await web.get(f"/app/accounts/{ACCOUNT}/settings")
    assert "Test a lead" in text_of(page)
    # A renter's lead below the villas' price: the Lettings rule, one agent (whatever the rotations did before).
    form = {"csrf": csrf_of(page), "version": "0", "rules": draft, "test_source": "Website", "test_intent": "rent",
            "test_price_min": "$1,500", "test_price_max": "2,000", "test_city": "Austin",
            "test_tags": "VIP\r\ncash"}  # fmt: skip

    saved = await web.post(url, data=form | {"test_use": "saved"})
    assert saved.status_code == 200, saved.text[:500]
    assert "By the saved rules, this lead would be offered to Lena Let let1 ." in text_of(saved)
    assert "decided by rule Lettings" in text_of(saved)
    assert "Villas: not matched (" in text_of(saved)
    assert 'value="$1,500"' in saved.text, "what was typed is kept"
    drafted = await web.post(url, data=form | {"test_use": "draft"})
    assert "By the draft, this lead would be offered to Gus Gen gen ." in text_of(drafted)
    assert "{&#34;rules&#34;: [{&#34;id&#34;: &#34;all&#34;" in drafted.text, "the draft is kept as typed"

    not_json = await web.post(url, data=form | {"test_use": "draft", "rules": '{"rules": [,'})
    assert not_json.status_code == 422
    assert 'id="rules-rules-error"' in not_json.text
    ghost = json.dumps({"rules": [{"id": "x", "name": "X", "action": {"kind": "agent", "agent_id": "ghost"}}]})
    off_roster = await web.post(url, data=form | {"test_use": "draft", "rules": ghost})
    assert off_roster.status_code == 422
    assert "rules.0: rule 'x': agents not on the roster: ['ghost']" in text_of(off_roster)
    bad_price = await web.post(url, data=form | {"test_use": "saved", "test_price_max": "1000"})
    assert bad_price.status_code == 422
    assert re.search(r'id="test-test_price_min-error" role="alert">Value error, min is above max<', bad_price.text)
    bad_intent = await web.post(url, data=form | {"test_intent": "lease"})
    assert bad_intent.status_code == 422
    assert 'id="test-test_intent-error"' in bad_intent.text

    async with site.router_down():
        unanswered = await web.post(url, data=form | {"test_use": "saved"})
    assert unanswered.status_code == 503
    assert 'id="test-answer-error" role="alert">The router did not answer; try again.<' in unanswered.text

    agent = await site.sign_in(f"{ACCOUNT}|villa1|realtor")
    refused = await agent.post(url, data=form | {"csrf": csrf_of(await agent.get("/app/my/leads"))})
    assert refused.status_code == 403
    assert await site.stored() == before, "testing a lead changed nothing"
