"""An agent made inactive (T3) while a router replica's account snapshot still says it is active (helper 188's
review, session 38).

crm-api sent `ReleaseAgentLeads` first and saved the status after it, and the router applied the command once; its
decisions read the account through a snapshot cache (`AccountSnapshots`, `ROUTER_CONFIG_CACHE_SECONDS`, 5 s, per
replica). The command's own fresh read could come before crm-api's save (and then cached "active" for 5 s), and
another replica's cache is up to 5 s old anyway: a lead decided in those seconds went to the agent who left, and
nothing took it back. Now crm-api saves the status first and the router releases the agent's leads once the
departure is older than the snapshots' cache time (`RouterService._settled`): what a stale replica gave the agent
meanwhile is taken back by the release.

Helper 192's review (session 39): a dead-lettered `ReleaseAgentLeads` replayed (`leadflow-ops dlq replay`) after the
agent was made active again took the lead it held by then away; a departure now releases nothing once the agent is
back (`Departure.holds_in`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from fakes_router import Published
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase
from router_harness import router_on, router_service

from leadflow_router.handlers import RouterService
from leadflow_shared.collections import AGENTS
from leadflow_shared.events.commands import (
    AgentDeparture,
    DistributeLead,
    DistributeLeadPayload,
    DistributionMode,
    ReleaseAgentLeads,
    ReleaseAgentLeadsPayload,
    ReturnLead,
    ReturnLeadPayload,
)
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadAssigned, LeadFellBack, LeadOffered, LeadReleased

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)


def office(account_id: str, agents: list[str], *, round_robin: bool) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": f"{account_id.title()} Office",
        "round_robin": round_robin,
        "agents": [{"agent_id": a, "name": f"Agent {a}", "email": f"{a}@acme.example"} for a in agents],
        "roster": agents,
        "sources": [{"name": "Website", "claim_window_seconds": 900}],
        "default_source": {"claim_window_seconds": 900},
    }


CONFIG = {
    "accounts": [
        office("r5-office", ["r5-broker", "r5-ana"], round_robin=False),
        office("rr-office", ["rr-broker", "rr-ana", "rr-bo"], round_robin=True),
        office("back-office", ["back-broker", "back-ana", "back-bo"], round_robin=False),
        office("two-office", ["two-broker", "two-ana"], round_robin=False),
    ]
}


def lead_received(account_id: str, *, at: datetime) -> LeadReceived:
    """A new lead from the brokerage's site, its contact its own (no R1 merge)."""
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Lead", email=f"lead-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def _service(db: AsyncDatabase[dict[str, Any]], clock: Clock, published: Published) -> RouterService:
    """A replica with the router's default snapshot cache (`ROUTER_CONFIG_CACHE_SECONDS`, 5 s)."""
    return router_service(db, published, clock, CollectorRegistry(), cache_seconds=5.0)


@pytest_asyncio.fixture(loop_scope="session")
async def database(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with router_on(mongo_url, CONFIG, now=T0) as router:
        yield router.db


async def _deactivate(
    service: RouterService, db: AsyncDatabase[dict[str, Any]], account_id: str, agent_id: str
) -> None:
    """What crm-api's `put_agent_status` does, in its order: the status saved, then the command (applied by the
    router)."""
    await db[AGENTS].update_one({"_id": agent_id}, {"$set": {"status": "inactive", "active": False}})
    await service.on_command(_release(account_id, agent_id, T0))


def _release(account_id: str, agent_id: str, at: datetime) -> ReleaseAgentLeads:
    return ReleaseAgentLeads.create(
        account_id=account_id,
        occurred_at=at,
        payload=ReleaseAgentLeadsPayload(agent_id=agent_id, reason=AgentDeparture.DEACTIVATED, by_user_id="admin"),
    )


async def test_a_new_lead_is_not_assigned_to_a_position_1_made_inactive_a_moment_ago(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    clock, published = Clock(T0), Published()
    service = _service(database, clock, published)
    await service.on_lead_received(lead_received("r5-office", at=T0))  # R5: position 1 holds it (cache warm)
    await _deactivate(service, database, "r5-office", "r5-broker")
    published.clear()
    clock.advance(1000)

    lead = lead_received("r5-office", at=clock())
    await service.on_lead_received(lead)

    holders = [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadAssigned | LeadFellBack)]
    assert holders == ["r5-ana"], f"the new lead went to {holders}: r5-broker was made inactive before it came"


async def test_a_new_lead_is_not_offered_to_an_agent_made_inactive_a_moment_ago(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    clock, published = Clock(T0), Published()
    service = _service(database, clock, published)
    await service.on_lead_received(lead_received("rr-office", at=T0))  # the cache warm; rr-broker's turn
    await _deactivate(service, database, "rr-office", "rr-ana")
    published.clear()
    clock.advance(1000)

    for _ in range(3):  # a whole turn of the rotation
        await service.on_lead_received(lead_received("rr-office", at=clock()))

    offered = [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered)]
    assert "rr-ana" not in offered, f"offers made after rr-ana was made inactive: {offered}"


async def test_a_lead_given_back_is_not_held_by_a_position_1_made_inactive_a_moment_ago(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    """T4's return: the broker pool is the first active agent but the one giving it back (`on_returned`), read from
    the cached snapshot (`_return_lead`): position 1, made inactive a second before, holds the lead given back."""
    clock, published = Clock(T0), Published()
    service = _service(database, clock, published)
    lead = lead_received("back-office", at=T0)
    await service.on_lead_received(lead)  # R5: back-broker holds it
    await service.on_command(
        DistributeLead.create(
            account_id="back-office",
            occurred_at=T0,
            payload=DistributeLeadPayload(
                lead_id=lead.event_id,
                distribution_id=uuid.uuid4(),
                agent_id="back-ana",
                mode=DistributionMode.ASSIGN,
                by_user_id="admin",
            ),
        )
    )
    await _deactivate(service, database, "back-office", "back-broker")
    published.clear()
    clock.advance(1000)

    await service.on_command(
        ReturnLead.create(
            account_id="back-office",
            occurred_at=clock(),
            payload=ReturnLeadPayload(lead_id=lead.event_id, agent_id="back-ana"),
        )
    )

    holders = [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadAssigned)]
    assert holders == ["back-bo"], f"the lead given back is held by {holders}: back-broker was made inactive before"


async def test_a_lead_a_stale_replica_gave_the_agent_who_left_is_taken_back_by_the_release(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    """Two replicas: one's snapshot was read before the status was saved (cached, up to its cache time), the other
    applies the departure. The release waits until the departure is older than the cache time (here 0.5 s), so the
    lead the stale replica gave position 1 meanwhile (R5) is handed on to the next active agent."""
    clock, published = Clock(T0), Published()
    stale = _service(database, clock, published)
    await stale.on_lead_received(lead_received("two-office", at=T0))  # its snapshot: two-broker active
    await database[AGENTS].update_one({"_id": "two-broker"}, {"$set": {"status": "inactive", "active": False}})
    applying = replace(_service(database, clock, published), departures_settle_seconds=0.5)
    release = asyncio.create_task(applying.on_command(_release("two-office", "two-broker", datetime.now(UTC))))
    lead = lead_received("two-office", at=clock())
    await stale.on_lead_received(lead)  # within the cache time: the stale replica gives it to two-broker
    given = [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadAssigned)]
    assert given[-1] == "two-broker", "the race this test is about: a stale snapshot gave the lead"
    await release
    released = [
        e.payload.broker_agent_id
        for e in published.lead_events()
        if isinstance(e, LeadReleased) and str(e.payload.lead_id) == str(lead.event_id)
    ]
    assert released == ["two-ana"], f"the lead the agent who left got was not taken back: {released}"


async def test_a_stale_release_replayed_after_the_agent_came_back_leaves_its_leads(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    clock, published = Clock(T0), Published()
    service = _service(database, clock, published)
    # Deactivated by mistake: the status saved, the command dead-lettered (never applied); then made active again.
    await database[AGENTS].update_one({"_id": "two-broker"}, {"$set": {"status": "inactive", "active": False}})
    stale = _release("two-office", "two-broker", T0)
    await database[AGENTS].update_one({"_id": "two-broker"}, {"$set": {"status": "active", "active": True}})
    clock.advance(60_000)
    await service.on_lead_received(lead_received("two-office", at=clock()))  # R5: position 1 holds it
    holders = [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadAssigned)]
    assert holders == ["two-broker"], f"the setup: the lead went to {holders}"
    published.clear()

    await service.on_command(stale)  # `leadflow-ops dlq replay leads.commands.v1.dlq --all`

    released = [e.payload for e in published.lead_events() if isinstance(e, LeadReleased)]
    assert released == [], f"the replayed departure of an agent who is active took its lead away: {released}"
