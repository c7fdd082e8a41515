"""A time zone stored wrongly (null, unknown, not a string: written by hand or by an older version)
reads as UTC everywhere (`leadflow_shared.account_config.time_zone_of`), on nx-27017: the router
still times and offers the account's leads instead of dead-lettering each one, and the notifier still
writes the recipient's offer notice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes_router import pre_assigned
from router_harness import router_on
from test_notifier_channels import offered

from leadflow_devstack.testing import fresh_database
from leadflow_notifier.adapters.repository import AgentDirectory
from leadflow_notifier.domain.messages import EmailContent, messages_for
from leadflow_router.adapters.mongo import AccountSnapshots
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
WRONG = [None, "", "Mars/Olympus", "America", 5, {"name": "UTC"}]


@pytest.mark.parametrize("zone", WRONG)
async def test_the_router_offers_the_leads_of_an_account_whose_time_zone_cannot_be_read(
    mongo_url: str, zone: object
) -> None:
    agents = ["broker", "a"]
    config = {
        "accounts": [
            {
                "account_id": "acme",
                "name": "Acme",
                "time_zone": "America/New_York",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in agents],
                "roster": agents,
                "pause": [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "02:00", "end": "03:00"}],
            }
        ]
    }
    async with router_on(mongo_url, config, now=T0) as router:
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"time_zone": zone}})  # by hand, wrongly
        snapshot = await AccountSnapshots(router.db, 0).get("acme")
        assert snapshot is not None
        assert snapshot.time_zone == "UTC"
        lead = pre_assigned("acme", "nobody")  # an agent the account does not have: routed as a general lead
        assert not await router.service.on_leads_received([lead]), "routed, not dead-lettered"
        [offer] = [e for _, e in router.published.events() if isinstance(e, LeadOffered)]
        assert offer.payload.lead_id == lead.event_id
        assert offer.payload.deadline > T0


@pytest.mark.parametrize("zone", WRONG)
async def test_the_notifier_writes_the_offer_of_an_agent_whose_time_zone_cannot_be_read(
    mongo_url: str, zone: object
) -> None:
    async with fresh_database(mongo_url, "zones") as db:
        agent = {"_id": "a-1", "account_id": "acme-realty", "name": "Ana", "email": "ana@example.com"}
        await db[AGENTS].insert_one(agent | {"time_zone": zone})
        recipient = await AgentDirectory(db).get("a-1")
        assert recipient is not None
        assert recipient.time_zone == "UTC"
        sent = messages_for(offered(), recipient, "https://crm.example", now=T0)
        [email] = [m.content for m in sent if isinstance(m.content, EmailContent)]
        assert "12:15 UTC" in email.text  # the claim deadline, in the zone it fell back to


@pytest.mark.parametrize("zone", WRONG)
async def test_a_staff_member_s_stored_zone_that_cannot_be_read_is_utc(mongo_url: str, zone: object) -> None:
    """An admin or staff member who is not an agent: name, email and zone come from the preferences."""
    async with fresh_database(mongo_url, "zones") as db:
        prefs = {"_id": "ops", "account_id": "acme", "digest": True, "email": "ops@example.com", "time_zone": zone}
        await db["notifier_preferences"].insert_one(prefs)
        [staff] = await AgentDirectory(db).digest_subscribers("acme")
        assert (staff.agent_id, staff.time_zone) == ("ops", "UTC")
