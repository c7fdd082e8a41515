"""Lead caps through the router's use cases on the real MongoDB-wire server (issue 15, item 3): what an
agent has is counted in `router_capacity` from the offer on, an agent at its cap is skipped, an offer
that ends unclaimed and a lead given back are credited back, races never take an agent past its cap,
and a new day starts from zero."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from router_harness import Router, router_on

from leadflow_shared.collections import ROUTER_CAPACITY
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ActivityLogged, LeadOffered

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
HOUR = 3_600_000


def config(race: int = 1, caps: dict[str, Any] | None = None) -> dict[str, Any]:
    caps = caps or {"day": 1}
    agents: list[dict[str, Any]] = [
        {"agent_id": "broker", "name": "Broker", "email": "broker@acme.example", "round_robin": False},
        {"agent_id": "ana", "name": "Ana", "email": "ana@acme.example", "caps": caps},
        {"agent_id": "ben", "name": "Ben", "email": "ben@acme.example", "caps": caps},
    ]
    return {
        "accounts": [
            {
                "account_id": "acme",
                "name": "Acme",
                "round_robin": True,
                "time_zone": "America/New_York",
                "agents": agents,
                "roster": [a["agent_id"] for a in agents],
                "sources": [{"name": "Website", "race_count": race, "claim_window_seconds": 600}],
            }
        ]
    }


def lead() -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=Contact(first_name="Lead", email=f"l-{uuid.uuid4().hex[:8]}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
    )
    return LeadReceived.create(account_id="acme", payload=payload, occurred_at=NOW)


def offered(router: Router, event: LeadReceived) -> list[str]:
    return [
        e.payload.agent_id
        for e in router.published.lead_events()
        if isinstance(e, LeadOffered) and e.payload.lead_id == event.event_id
    ]


async def counted(router: Router) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    async for doc in router.db[ROUTER_CAPACITY].find({"agent_id": {"$exists": True}}):  # not a lead's version
        found.setdefault(doc["agent_id"], set()).add(doc["lead_id"])
    return found


def act(event: LeadReceived, agent: str, action: ActivityAction) -> LeadActivity:
    payload = LeadActivityPayload(lead_id=event.event_id, agent_id=agent, action=action)
    return LeadActivity.create(account_id="acme", occurred_at=NOW, payload=payload)


@pytest.mark.asyncio
async def test_a_cap_skips_the_agent_and_an_unclaimed_offer_is_credited_back(mongo_url: str) -> None:
    async with router_on(mongo_url, config(), now=NOW) as router:
        first, second, third = lead(), lead(), lead()
        await router.service.on_leads_received([first, second])
        assert offered(router, first) + offered(router, second) == ["ana", "ben"]
        assert await counted(router) == {"ana": {str(first.event_id)}, "ben": {str(second.event_id)}}
        await router.service.on_activity(act(first, "ana", ActivityAction.CALL))  # claimed: still counted

        await router.service.on_leads_received([third])  # both at their daily cap of 1
        record = await router.record(third)
        assert record["holder"] == "broker"  # R9: nobody eligible
        assert offered(router, third) == []

        router.clock.advance(601_000)  # ben's offer expires unclaimed: credited back
        await router.service.sweep_once()
        assert await counted(router) == {"ana": {str(first.event_id)}}
        fourth = lead()
        await router.service.on_leads_received([fourth])
        assert offered(router, fourth) == ["ben"]


@pytest.mark.asyncio
async def test_a_race_never_takes_an_agent_past_its_cap_and_a_new_day_starts_from_zero(mongo_url: str) -> None:
    async with router_on(mongo_url, config(race=2), now=NOW) as router:
        first, second = lead(), lead()
        await router.service.on_leads_received([first])
        assert sorted(offered(router, first)) == ["ana", "ben"]  # both count while they race
        await router.service.on_leads_received([second])
        assert offered(router, second) == []

        await router.service.on_activity(act(first, "ana", ActivityAction.ACCEPT))  # ben's offer is withdrawn
        assert await counted(router) == {"ana": {str(first.event_id)}}
        third = lead()
        await router.service.on_leads_received([third])
        assert offered(router, third) == ["ben"]

        router.clock.advance(24 * HOUR)
        fourth = lead()
        await router.service.on_leads_received([fourth])
        assert sorted(offered(router, fourth)) == ["ana", "ben"]


@pytest.mark.asyncio
async def test_a_weekly_cap_counts_across_days(mongo_url: str) -> None:
    async with router_on(mongo_url, config(caps={"week": 2}), now=NOW) as router:
        got: list[str] = []
        for _ in range(3):
            event = lead()
            await router.service.on_leads_received([event])
            got += offered(router, event)
            await router.service.on_activity(act(event, got[-1], ActivityAction.CALL))
            router.clock.advance(24 * HOUR)
        assert got == ["ana", "ben", "ana"]
        event = lead()
        await router.service.on_leads_received([event])  # Thursday: ana 2 of 2, ben 1 of 2
        assert offered(router, event) == ["ben"]
        event = lead()
        await router.service.on_leads_received([event])
        assert offered(router, event) == []  # both at their weekly cap
        router.clock.advance(4 * 24 * HOUR)  # the next Monday
        event = lead()
        await router.service.on_leads_received([event])
        assert offered(router, event) != []


@pytest.mark.asyncio
async def test_a_pond_lead_counts_against_nobody_until_claimed_and_a_capped_agent_cannot_claim_it(
    mongo_url: str,
) -> None:
    pond = {
        "ponds": [{"id": "all", "name": "All", "agents": ["ana", "ben"]}],
        "rules": [{"id": "pool", "name": "Pool", "action": {"kind": "pond", "pond": "all"}}],
    }
    seeded = config()
    seeded["accounts"][0]["routing_rules"] = pond
    async with router_on(mongo_url, seeded, now=NOW) as router:
        first, second = lead(), lead()
        await router.service.on_leads_received([first, second])
        assert sorted(offered(router, first)) == sorted(offered(router, second)) == ["ana", "ben"]
        assert await counted(router) == {}
        await router.service.on_activity(act(first, "ana", ActivityAction.ACCEPT))
        assert (await router.record(first))["holder"] == "ana"
        assert await counted(router) == {"ana": {str(first.event_id)}}
        await router.service.on_activity(act(second, "ana", ActivityAction.ACCEPT))  # at her daily cap of 1
        refused = [
            e
            for e in router.published.lead_events()
            if isinstance(e, ActivityLogged) and e.payload.lead_id == second.event_id
        ]
        assert refused[-1].payload.claim_refused == "ana cannot take it from the pond: at its daily cap (1 of 1)"
        await router.service.on_activity(act(second, "ben", ActivityAction.ACCEPT))
        assert (await router.record(second))["holder"] == "ben"


@pytest.mark.asyncio
async def test_a_missed_offer_asked_back_is_offered_again_unless_the_agent_is_at_its_cap(mongo_url: str) -> None:
    async with router_on(mongo_url, config(caps={"day": 5}), now=NOW) as router:
        first = lead()
        await router.service.on_leads_received([first])
        assert offered(router, first) == ["ana"]
        router.clock.advance(601_000)  # ana misses it: ben has it
        await router.service.sweep_once()
        assert offered(router, first) == ["ana", "ben"]
        await router.service.on_activity(act(first, "ana", ActivityAction.ASK_BACK))
        assert offered(router, first) == ["ana", "ben", "ana"]
        assert await counted(router) == {"ana": {str(first.event_id)}, "ben": {str(first.event_id)}}

    async with router_on(mongo_url, config(caps={"day": 1}), now=NOW) as router:
        first, second = lead(), lead()
        await router.service.on_leads_received([first])
        router.clock.advance(601_000)
        await router.service.sweep_once()  # ana missed it, ben has it
        await router.service.on_leads_received([second])
        assert offered(router, second) == ["ana"]  # her missed offer was credited back: now at her cap of 1
        await router.service.on_activity(act(first, "ana", ActivityAction.ASK_BACK))
        logged = [e for e in router.published.lead_events() if isinstance(e, ActivityLogged)]
        assert logged[-1].payload.claim_refused == "cannot ask it back: at its daily cap (1 of 1)"
