"""A lead read in a caller's scope by its id alone, the scope matched in Python (`filter_match`), admits exactly the
rows the database's scoped query finds, on a real MongoDB-wire server: for any row (an array, a null, a missing
field) and every scope crm-api builds (a broker's, a realtor's in its account and in another, a realtor's CRM, a
pond list's). The shortcut exists because nx-27017 reads an `$or` scope over the whole collection (session 34)."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from crm_harness import views_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow_crm_api.adapters.leads import (
    CRM_LEADS,
    CRM_TIMELINE,
    ScopedLeads,
    merge_conditions,
    offered_to,
    realtor_filter,
    scope_filter,
)
from leadflow_crm_api.domain.principal import Principal, Role

pytestmark = [pytest.mark.integration]

MISSING = object()
AGENTS = ["ana", "ben"]
one_agent = st.sampled_from([MISSING, None, *AGENTS])
agent_list = st.sampled_from([MISSING, None]) | st.lists(st.sampled_from([*AGENTS, None]), max_size=3)
FIELDS = {
    "owner_agent_id": one_agent,
    "offered_to": agent_list,
    "transferred_to": one_agent,
    "assigned_users": agent_list,
}
row = st.fixed_dictionaries({"account_id": st.sampled_from(["acme", "zeta"]), **FIELDS})
SCOPES: dict[str, dict[str, Any]] = {
    "broker of acme": scope_filter(Principal("bea", Role.BROKER, "acme"), "acme"),
    "ana in acme": scope_filter(Principal("ana", Role.REALTOR, "acme"), "acme"),
    "ana of acme, in zeta": scope_filter(Principal("ana", Role.REALTOR, "acme"), "zeta"),
    "ana's CRM": realtor_filter(Principal("ana", Role.REALTOR, "acme")),
    "ana's ponds in acme": {"account_id": "acme"} | offered_to("ana"),
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=12))
def test_a_lead_read_by_its_id_is_in_a_scope_exactly_when_the_scoped_query_finds_it(
    mongo_url: str, rows: list[dict[str, Any]]
) -> None:
    async def compare() -> None:
        async with views_database(mongo_url) as db:
            docs = [{"_id": uuid.uuid4().hex, **{k: v for k, v in r.items() if v is not MISSING}} for r in rows]
            leads = db[CRM_LEADS]
            await leads.insert_many([dict(doc) for doc in docs])
            for name, scope in SCOPES.items():
                for doc in docs:
                    found = await leads.find_one(merge_conditions([scope, {"_id": doc["_id"]}]))
                    mark = await ScopedLeads(db, scope).lead_mark(doc["_id"])  # "gone": not in the scope
                    assert (mark != "gone") == (found is not None), f"{name}: {doc}"

    asyncio.run(compare())


def test_a_page_s_mark_tells_nothing_of_what_the_page_does_not_show(mongo_url: str) -> None:
    """The mark a page carries (its live stream's `since`) is a digest: a realtor reads neither the last event's id nor
    how many timeline entries the lead has (another agent's race entries are hidden from it); it still changes with
    either."""
    ana = scope_filter(Principal("ana", Role.REALTOR, "acme"), "acme")

    async def marks() -> list[str]:
        async with views_database(mongo_url) as db:
            row = {"_id": "lead-1", "account_id": "acme", "offered_to": ["ana"], "last_activity_ms": 5,
                   "last_event_id": "event-of-a-rival"}  # fmt: skip
            await db[CRM_LEADS].insert_one(row)
            leads, seen = ScopedLeads(db, ana), []
            seen.append(await leads.lead_mark("lead-1"))
            await db[CRM_TIMELINE].insert_one({"_id": "entry-1", "lead_id": "lead-1", "occurred_ms": 6})
            seen.append(await leads.lead_mark("lead-1"))
            await db[CRM_LEADS].update_one({"_id": "lead-1"}, {"$set": {"last_event_id": "another"}})
            seen.append(await leads.lead_mark("lead-1"))
            seen.append(await leads.change_mark())
            return seen

    seen = asyncio.run(marks())
    assert len(set(seen)) == len(seen), "each change changes the mark"
    for mark in seen:
        assert re.fullmatch("[0-9a-f]{32}", mark), mark
