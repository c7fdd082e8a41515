"""A lead read in a caller's scope by its id alone, the scope matched in Python (`filter_match`), admits exactly the
rows the database's scoped query finds, on a real MongoDB-wire server: for any row (an array, a null, a missing
field) and every scope crm-api builds (a broker's, a realtor's in its account and in another, a realtor's CRM, a
pond list's). The shortcut exists because nx-27017 reads an `$or` scope over the whole collection (session 34)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from crm_harness import views_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scope_cases import SCOPE_FIELDS, SCOPES, stored

from leadflow_crm_api.adapters.leads import (
    CRM_LEADS,
    CRM_TIMELINE,
    ScopedLeads,
    merge_conditions,
    scope_filter,
)
from leadflow_crm_api.domain.principal import Principal, Role

pytestmark = [pytest.mark.integration]

row = st.fixed_dictionaries({"account_id": st.sampled_from(["acme", "zeta"]), **SCOPE_FIELDS})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=12))
def test_a_lead_read_by_its_id_is_in_a_scope_exactly_when_the_scoped_query_finds_it(
    mongo_url: str, rows: list[dict[str, Any]]
) -> None:
    async def compare() -> None:
        async with views_database(mongo_url) as db:
            docs, leads = await stored(db, rows), db[CRM_LEADS]
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
