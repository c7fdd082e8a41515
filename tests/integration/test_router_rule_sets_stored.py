"""Routing rules stored on the account (issue 15), routed through the router's use cases on the real
MongoDB-wire server: the rule set is read from the account document, a balanced rotation's counts
and a rule's cursor survive between batches, the sweeper re-offers within the rule, and a stored rule
set the router cannot read routes by the default instead of losing the lead."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from router_harness import Router, router_on

from leadflow_devstack.testing import eventually
from leadflow_router.adapters.account_config import ConfigFile
from leadflow_router.entrypoints.http import ServiceTokens, install
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared.collections import ACCOUNTS, ROUTER_ROTATIONS
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered
from leadflow_shared.routing_info import RoutingDecision

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TOKEN = secrets.token_urlsafe(32)  # crm-api's service token (decision 0082)
RULES = {
    "rules": [
        {
            "id": "luxury",
            "name": "Luxury",
            "criteria": {"price_min": 1_000_000},
            "action": {"kind": "rotation", "agents": ["lux1", "lux2"], "claim_window_seconds": 300},
        },
        {
            "id": "rentals",
            "name": "Rentals",
            "criteria": {"intents": ["rent"]},
            "action": {"kind": "rotation", "mode": "balanced", "agents": ["r1", "r2", "r3"]},
        },
    ]
}


def config(routing_rules: Any = RULES) -> dict[str, Any]:
    ids = ["broker", "lux1", "lux2", "r1", "r2", "r3", "gen"]
    return {
        "accounts": [
            {
                "account_id": "acme",
                "name": "Acme",
                "round_robin": True,
                "agents": [{"agent_id": i, "name": i.title(), "email": f"{i}@acme.example"} for i in ids],
                "roster": ids,
                **({"routing_rules": routing_rules} if routing_rules is not None else {}),
            }
        ]
    }


def lead(n: int, **criteria: Any) -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=Contact(first_name="Lead", email=f"lead{n}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        criteria=LeadCriteria.model_validate(criteria) if criteria else None,
    )
    return LeadReceived.create(account_id="acme", payload=payload, occurred_at=NOW)


def client_of(app: FastAPI) -> httpx.AsyncClient:
    """A client of the router's HTTP edge, with crm-api's service token."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router", headers=auth)


def offers(router: Router) -> list[LeadOffered]:
    return [e for _, e in router.published.events() if isinstance(e, LeadOffered)]


@pytest.mark.asyncio
async def test_rules_on_the_account_route_and_their_rotations_persist(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        await router.service.on_leads_received([lead(1, price={"min": 2_000_000}), lead(2, intent="buy")])
        await router.service.on_leads_received([lead(3, price={"min": 1_500_000})])
        for n in range(4, 10):  # one batch each: the counts must come back from the database
            await router.service.on_leads_received([lead(n, intent="rent")])

        got = [(o.payload.agent_id, o.payload.explanation.split(".")[0]) for o in offers(router)]
        assert got[0][0] == "lux1"
        assert got[1][0] not in {"lux1", "lux2", "r1", "r2", "r3"}  # no rule: the source's rotation
        assert got[2][0] == "lux2"  # the rule's cursor, stored after the first batch
        assert Counter(agent for agent, _ in got[3:]) == {"r1": 2, "r2": 2, "r3": 2}
        assert got[0][1] == "Routing rules: rule 'Luxury'"
        rotations = {d["_id"]: d["position"] async for d in router.db[ROUTER_ROTATIONS].find({})}
        assert rotations["acme:rule:luxury"] == 2
        assert {k: v for k, v in rotations.items() if "@" in k} == {
            "acme:rule:rentals@r1": 2,
            "acme:rule:rentals@r2": 2,
            "acme:rule:rentals@r3": 2,
        }


@pytest.mark.asyncio
async def test_an_unclaimed_offer_goes_on_within_its_rule(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        first = lead(1, price={"max": 3_000_000, "min": 2_500_000})
        await router.service.on_leads_received([first])
        stored = await router.record(first)
        assert stored["rule_id"] == "luxury"
        assert stored["summary"]["criteria"] == {
            "price": {"min": 2_500_000, "max": 3_000_000},
            "tags": [],
        } | dict.fromkeys(("intent", "property_type", "place", "mls_number"))
        router.clock.advance(301_000)
        assert await router.service.sweep_once() == 1
        assert [o.payload.agent_id for o in offers(router)] == ["lux1", "lux2"]
        router.clock.advance(301_000)
        await router.service.sweep_once()
        assert (await router.record(first))["holder"] == "broker"  # both had it: R9, roster position 1


@pytest.mark.asyncio
async def test_a_stored_rule_set_the_router_cannot_read_routes_by_the_default(mongo_url: str) -> None:
    async with router_on(mongo_url, config(None), now=NOW) as router:
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"routing_rules": {"rules": "garbage"}}})
        await router.service.on_leads_received([lead(1, intent="rent")])
        [offer] = offers(router)
        assert offer.payload.explanation.startswith("the stored routing rules cannot be read: routed by the default")


def test_a_rule_set_naming_agents_off_the_roster_is_refused_when_loaded() -> None:
    bad = config({"rules": [{"id": "x", "name": "X", "action": {"kind": "agent", "agent_id": "ghost"}}]})
    with pytest.raises(ValidationError, match=r"rule 'x': agents not on the roster: \['ghost'\]"):
        ConfigFile.model_validate(bad)


@pytest.mark.asyncio
async def test_a_lead_s_routing_decisions_are_kept_and_served_to_crm_api(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        first = lead(1, price={"min": 2_000_000})
        await router.service.on_leads_received([first])
        router.clock.advance(301_000)
        await router.service.sweep_once()

        app = FastAPI()
        install(app, lambda: router.service, tokens=ServiceTokens([TOKEN]))
        async with client_of(app) as client:
            answer = await client.get(f"/internal/v1/accounts/acme/leads/{first.event_id}/routing")
            other_account = await client.get(f"/internal/v1/accounts/other/leads/{first.event_id}/routing")
            unknown = await client.get(f"/internal/v1/accounts/acme/leads/{uuid.uuid4()}/routing")
        assert answer.status_code == 200, answer.text
        assert (other_account.status_code, unknown.status_code) == (404, 404)
        offered, reoffered = [RoutingDecision.model_validate(d) for d in answer.json()["decisions"]]
        assert (offered.rule_id, offered.chosen, offered.waiting) == ("luxury", ["lux1"], ["lux2"])
        assert [(r.rule_id, r.matched) for r in offered.rules] == [("luxury", True)]
        assert reoffered.chosen == ["lux2"]
        assert [(s.agent_id, s.reason) for s in reoffered.skipped] == [("lux1", "had the lead already")]
        assert reoffered.rotation is not None
        assert reoffered.rotation.cursor_before == offered.rotation.cursor_after if offered.rotation else False


@pytest.mark.asyncio
async def test_a_dry_run_decides_by_the_current_or_a_draft_rule_set_and_changes_nothing(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        past = lead(1, intent="rent")
        await router.service.on_leads_received([past])
        before = {name: [d async for d in router.db[name].find({})] for name in await router.db.list_collection_names()}
        app = FastAPI()
        install(app, lambda: router.service, tokens=ServiceTokens([TOKEN]))
        luxury = lead(2, price={"min": 3_000_000}).payload
        summary = {"contact": luxury.contact.model_dump(mode="json"), "source": luxury.source.model_dump(mode="json"),
                   "criteria": luxury.criteria.model_dump(mode="json") if luxury.criteria else None}  # fmt: skip
        draft = {"rules": [{"id": "all", "name": "All", "action": {"kind": "agent", "agent_id": "gen"}}]}
        url = "/internal/v1/accounts/acme/routing/dry-run"
        async with client_of(app) as client:
            current = await client.post(url, json={"lead": summary})
            drafted = await client.post(url, json={"lead": summary, "rules": draft})
            by_id = await client.post(url, json={"lead_id": str(past.event_id)})
            ghost = await client.post(url, json={"lead": summary, "rules": {"rules": [
                {"id": "x", "name": "X", "action": {"kind": "agent", "agent_id": "ghost"}}]}})  # fmt: skip
            both = await client.post(url, json={"lead": summary, "lead_id": str(past.event_id)})
            nowhere = await client.post("/internal/v1/accounts/nobody/routing/dry-run", json={"lead": summary})

        assert current.status_code == drafted.status_code == by_id.status_code == 200, current.text
        assert current.json()["offered_to"] == ["lux1"]
        assert current.json()["decision"]["rule_id"] == "luxury"
        assert drafted.json()["offered_to"] == ["gen"]
        assert by_id.json()["decision"]["rule_id"] == "rentals"  # the past lead's stored criteria
        assert ghost.status_code == 422
        assert ghost.json()["detail"] == ["rule 'x': agents not on the roster: ['ghost']"]
        assert (both.status_code, nowhere.status_code) == (422, 404)
        after = {name: [d async for d in router.db[name].find({})] for name in await router.db.list_collection_names()}
        assert after == before


@pytest.mark.asyncio
async def test_who_is_next_per_rule_follows_the_rule_s_rotation(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        app = FastAPI()
        install(app, lambda: router.service, tokens=ServiceTokens([TOKEN]))
        base = "/internal/v1/accounts/acme/routing/rules"
        async with client_of(app) as client:
            before = (await client.get(f"{base}/luxury/next")).json()
            await router.service.on_leads_received([lead(1, price={"min": 5_000_000})])
            after = (await client.get(f"{base}/luxury/next")).json()
            default = await client.get(f"{base}/default/next", params={"source": "Website"})
            unknown = await client.get(f"{base}/nothing/next")
        assert (before["next"], after["next"]) == (["lux1"], ["lux2"])
        assert after["eligible"] == ["lux1", "lux2"]
        assert after["pool"] == "Luxury"
        assert default.status_code == 200
        assert default.json()["pool"] == "the lead source's rotation"
        assert unknown.status_code == 404


@pytest.mark.asyncio
async def test_a_deleted_rule_s_cursors_are_removed_and_the_other_rules_keep_theirs(mongo_url: str) -> None:
    """Helper 88: a rule set saved without a rule left the rule's cursor (and a balanced rule's counts) in
    `router_rotations` forever. The sweeper removes them once the account's rule set as it is now has no such
    rule; the cursors of the rules still there, the default rule's and the sources' stay, and so does every
    cursor of an account whose stored rule set cannot be read (it may read again)."""
    office = config()["accounts"][0]
    beta = [{"agent_id": "beta-broker", "name": "Beta Broker", "email": "broker@beta.example"}]
    other = {"account_id": "beta", "name": "Beta", "agents": beta, "roster": ["beta-broker"]}
    async with router_on(mongo_url, {"accounts": [office, other]}, now=NOW) as router:
        # The leads go through both rules: their cursors and the balanced counts are stored.
        assert not await router.service.on_leads_received([lead(1, price={"min": 2_000_000}), lead(2, intent="rent")])
        await router.db[ACCOUNTS].update_one({"_id": "beta"}, {"$set": {"routing_rules": {"rules": "garbage"}}})
        kept = {"acme:rule:luxury", "acme:rule:default", "acme:Website", "beta:rule:gone", "beta:rule:gone@r1"}
        await router.db[ROUTER_ROTATIONS].insert_many(
            [{"_id": key, "position": 3} for key in kept - {"acme:rule:luxury"}]
        )
        before = {doc["_id"] async for doc in router.db[ROUTER_ROTATIONS].find({}, {"_id": 1})}
        assert {"acme:rule:luxury", "acme:rule:rentals", "acme:rule:rentals@r1"} <= before
        luxury = await router.service.rotations.get("acme:rule:luxury")

        # Saved without "rentals".
        await router.db[ACCOUNTS].update_one(
            {"_id": "acme"}, {"$set": {"routing_rules": {"rules": RULES["rules"][:1]}}}
        )
        stopping = asyncio.Event()
        sweeper = asyncio.create_task(
            sweep(router.service, stopping, alarm=Alarm(), idle_seconds=0.05, housekeeping_every_seconds=0.05)
        )
        try:

            async def rotations() -> set[str]:
                return {doc["_id"] async for doc in router.db[ROUTER_ROTATIONS].find({}, {"_id": 1})}

            async def rentals_gone() -> bool:
                return not any(key.startswith("acme:rule:rentals") for key in await rotations())

            await eventually(rentals_gone, timeout=10, what="the deleted rule's cursor and counts removed")
        finally:
            stopping.set()
            await asyncio.wait_for(sweeper, 5)
        assert await rotations() == kept
        assert await router.service.rotations.get("acme:rule:luxury") == luxury
