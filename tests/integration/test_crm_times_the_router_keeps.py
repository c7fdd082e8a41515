"""What crm-api saves as a routing rule or time away is something the router can decide by (helper 167).

A rule's hours with a UTC offset ("09:00:00-05:00") were saved, and the router then compared them with each lead's
local time of day, which has none: `TypeError` for every new lead of the account, each batch retried and then
dead-lettered. Time away ending at the calendar's edge with an offset ("9999-12-31T23:00:00-14:00", no UTC value)
was saved from any realtor for itself, and the router's "away until ..." overflowed for every lead whose pool held
that agent: the office's general leads all failed. Both are refused now by field (`leadflow_shared.times`), and what
was stored before is read as unreadable, not decided on: the default rule routes the account's leads, an agent
whose availability cannot be read is passed by with that reason, and working hours stored with an offset are read
as the wall-clock times they are.

crm-api's whole app in-process against a real router (routing_world.py); the router alone on stored documents
(router_harness.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from router_harness import router_on
from routing_world import ACCOUNT, BROKER, RULES, Site, config, received, site_on

from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

RULES_URL = f"/v1/accounts/{ACCOUNT}/settings/routing-rules"
OFFSET_HOURS = {"start": "09:00:00-05:00", "end": "17:00:00-05:00"}  # as a client serialising a zoned time sends them
OFFICE_HOURS = {"id": "office-hours", "name": "Office hours", "criteria": {"hours": OFFSET_HOURS},
                "action": {"kind": "agent", "agent_id": "gen"}}  # fmt: skip
AWAY_TO_THE_END = {"start": "2026-01-01T00:00:00Z", "end": "9999-12-31T23:00:00-14:00"}  # 10000-01-01T13:00Z


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    async with site_on(mongo_url, kafka_bootstrap, config(), now=datetime.now(UTC)) as site:
        yield site


def names(answer: Any, *words: str) -> bool:
    """A 422 whose text names each of `words` (the field, the reason)."""
    return answer.status_code == 422 and all(word in answer.text for word in words)


async def test_a_rule_whose_hours_carry_a_utc_offset_is_refused_and_the_rules_stay(site: Site) -> None:
    broker = site.auth(BROKER.sub, "broker")
    before = (await site.web.get(RULES_URL, headers=broker)).json()
    saved = await site.web.put(RULES_URL, json={"version": before["version"], "rules": [OFFICE_HOURS, *RULES["rules"]]},
                               headers=broker)  # fmt: skip
    assert names(saved, "hours", "UTC offset"), saved.text
    assert (await site.web.get(RULES_URL, headers=broker)).json() == before


async def test_a_dry_run_of_a_draft_whose_hours_carry_a_utc_offset_is_refused_naming_them(site: Site) -> None:
    body = {"lead": {"first_name": "Jo"}, "rules": {"rules": [OFFICE_HOURS]}}
    answer = await site.web.post(f"/v1/accounts/{ACCOUNT}/routing/dry-run", json=body,
                                 headers=site.auth(BROKER.sub, "broker"))  # fmt: skip
    assert names(answer, "hours", "UTC offset"), answer.text


async def test_a_realtor_s_time_away_to_the_calendar_s_edge_is_refused_and_the_office_is_routed(site: Site) -> None:
    realtor = site.auth("villa1", "realtor")
    saved = await site.web.put("/v1/agents/me/availability", json={"away": [AWAY_TO_THE_END]}, headers=realtor)
    assert names(saved, "away", "UTC value"), saved.text
    lead = received(2)  # a general lead: the source's rotation, villa1 among its agents
    await site.world.router.service.on_leads_received([lead])
    offers = [e for _, e in site.world.router.published.events() if isinstance(e, LeadOffered)]
    site.world.router.published.clear()
    assert [str(o.payload.lead_id) for o in offers] == [str(lead.event_id)]


async def test_hours_and_time_away_stored_before_they_were_refused_route_by_the_default_and_pass_the_agent_by(
    mongo_url: str,
) -> None:
    async with router_on(mongo_url, config(), now=datetime.now(UTC)) as router:
        # As an older crm-api stored them, before the first lead (nothing cached yet).
        rules = {**RULES, "rules": [OFFICE_HOURS, *RULES["rules"]]}
        await router.db[ACCOUNTS].update_one({"_id": ACCOUNT}, {"$set": {"routing_rules": rules}})
        await router.db[AGENTS].update_one({"_id": "villa1"}, {"$set": {"away": [AWAY_TO_THE_END]}})
        # Working hours with an offset beside one without (saved before crm-api refused offsets): all day, as wall time.
        all_day = [{"weekdays": list(range(7)), "start": "00:00:00+01:00", "end": "00:00:00"}]
        await router.db[AGENTS].update_one({"_id": "villa2"}, {"$set": {"working_hours": all_day}})
        leads = [
            received(1),
            received(2, price={"min": 2_000_000}),
        ]  # the default rule's, and one the villas rule takes
        await router.service.on_leads_received(leads)
        offers = {str(e.payload.lead_id): e for _, e in router.published.events() if isinstance(e, LeadOffered)}
    assert set(offers) == {str(lead.event_id) for lead in leads}, "every lead offered: none failed its batch"
    assert offers[str(leads[1].event_id)].payload.agent_id == "villa2", "not villa1, whose time away cannot be read"
