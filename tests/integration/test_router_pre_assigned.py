"""R4 with an agent the account does not have (issue 10, item 5): an accepted lead is routed, never dropped.

Intake refuses a lead pre-assigned to an unknown agent, but the agent can be removed from
the roster between intake and routing, or the lead can name another account's agent: the
router then routes it as a general lead (R5/R6) and says why, instead of dead-lettering it.
The router process does the same: tests/e2e/test_router_pre_assigned_process.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_router import pre_assigned, website_lead
from router_harness import router_on

from leadflow_router.adapters.mongo import AccountSnapshots
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)


def acme(*agents: str, **account: Any) -> dict[str, Any]:
    """Acme's configuration with round robin on: `agents` on its roster in that order (the first its broker)."""
    agent_docs = [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in agents]
    return {"accounts": [{"account_id": "acme", "name": "Acme", "round_robin": True, "agents": agent_docs,
                          "roster": list(agents), **account}]}  # fmt: skip


async def test_an_agent_removed_between_intake_and_routing_gets_no_lead_and_the_lead_is_offered(
    mongo_url: str,
) -> None:
    config = acme("broker", "a", "b", sources=[{"name": "Zillow", "referral_fee_percent": 25}])
    async with router_on(mongo_url, config, now=T0) as router:
        kept = pre_assigned("acme", "b")
        assert not await router.service.on_leads_received([kept])
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"roster": ["broker", "a"]}})  # b leaves
        after = pre_assigned("acme", "b")
        assert not await router.service.on_leads_received([after]), "not rejected: nothing to dead-letter"

        events = {
            e.payload.lead_id: e for _, e in router.published.events() if isinstance(e, LeadAssigned | LeadOffered)
        }
        kept_event = events[kept.event_id]
        assert isinstance(kept_event, LeadAssigned)
        assert kept_event.payload.reason is AssignmentReason.PRE_ASSIGNED
        offered = events[after.event_id]
        assert isinstance(offered, LeadOffered)
        assert offered.payload.agent_id == "broker", "the first in rotation (R6)"
        assert offered.payload.referral_fee_percent == 25, "a general lead carries the source's fee (R11)"
        assert "Zillow pre-assigned 'b', who is not an agent of this account" in offered.payload.explanation
        record = await router.record(after)
        assert record["kind"] == "lead"
        assert record["outbox"] == [], "stored and published"


async def test_an_agent_added_since_the_snapshot_was_cached_keeps_a_lead_pre_assigned_to_them(mongo_url: str) -> None:
    config = acme("broker", "a")
    async with router_on(mongo_url, config, now=T0) as router:
        router.service.accounts = AccountSnapshots(router.db, ttl_seconds=3600)  # the process's cache
        assert not await router.service.on_leads_received([pre_assigned("acme", "a")])  # caches the roster
        await router.db[AGENTS].insert_one(
            {"_id": "new", "account_id": "acme", "name": "New", "email": "new@acme.example"}
        )
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"roster": ["broker", "a", "new"]}})
        lead = pre_assigned("acme", "new")
        assert not await router.service.on_leads_received([lead])
        events = [e for _, e in router.published.events() if isinstance(e, LeadAssigned)]
        assigned = next(e.payload for e in events if e.payload.lead_id == lead.event_id)
        assert (assigned.agent_id, assigned.reason) == ("new", AssignmentReason.PRE_ASSIGNED)


async def test_a_roster_still_naming_an_agent_of_another_office_routes_nothing_there(mongo_url: str) -> None:
    """crm-api moves a team member's record to its new office before it pulls the old roster's place (and a crash
    can stop it between the two): the old office's leads, pre-assigned or in rotation, never reach that agent."""
    config = acme("broker", "a", "moved")
    async with router_on(mongo_url, config, now=T0) as router:
        await router.db[AGENTS].update_one({"_id": "moved"}, {"$set": {"account_id": "south"}})
        leads = [pre_assigned("acme", "moved"), *(website_lead("acme", T0, f"w{i}@example.com") for i in range(6))]
        assert not await router.service.on_leads_received(leads)
        holders = {
            e.payload.agent_id for _, e in router.published.events() if isinstance(e, LeadAssigned | LeadOffered)
        }
        assert len(holders) >= 2, holders
        assert "moved" not in holders, holders
