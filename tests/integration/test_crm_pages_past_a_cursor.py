"""A page past a list's cursor asks nx-27017 only what it serves from SQL (helper 177's review).

`ScopedLeads.find_page` asks a page after a cursor as two queries: the rows tied with the cursor on the sort key, then
those beyond it. The ties were asked with an `_id` range (`{field: key, "_id": {"$lt": id}}`), which nx-27017 does not
turn into SQL: it matched every office's rows in Python for the usual 0 or 1 tied row, and a small office's second
page cost 10-20 times its first beside 20,000 leads of other offices. With a date range, the cursor's bound on the
sort key met the range in an `$and`, read in Python too. Now the ties are read by the key alone (their ids compared in
crm-api), and two ranges on one field are one condition. What is asserted is the shape of what is sent (the commands,
seen by a command listener), not a time: the time it saves is in docs/performance.md's crm-api section.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import CRM_LEADS, ScopedLeads, ensure_indexes, scope_filter
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery, LeadSort
from leadflow_crm_api.use_cases.leads import lead_page

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

START = 1_700_000_000_000


class Finds(monitoring.CommandListener):
    """The filters of the `find` commands sent."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.filters.append(dict(event.command.get("filter") or {}))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...
    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@pytest_asyncio.fixture(loop_scope="session")
async def seen(mongo_url: str) -> AsyncIterator[tuple[AsyncDatabase[dict[str, Any]], Finds]]:
    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[finds])
    name = f"crm_pages_{uuid.uuid4().hex[:12]}"
    db = client[name]
    await ensure_indexes(db)
    try:
        yield db, finds
    finally:
        await client.drop_database(name)
        await client.close()


def row(account_id: str, i: int, ms: int) -> dict[str, Any]:
    return {"_id": f"{account_id}-{i:04d}", "account_id": account_id, "name": f"Lead {i}", "search_name": f"lead {i}",
            "search_email": "", "search_phone": "", "status": "assigned", "source": "Website",
            "owner_agent_id": "ana", "offered_to": [], "created_ms": ms, "last_activity_ms": ms,
            "last_event_id": f"e{i}"}  # fmt: skip


def uses_an_id_range_or_an_and(query: Any) -> bool:
    if isinstance(query, dict):
        if "$and" in query:
            return True
        if isinstance(query.get("_id"), dict):
            return True
        return any(uses_an_id_range_or_an_and(v) for v in query.values())
    if isinstance(query, list):
        return any(uses_an_id_range_or_an_and(v) for v in query)
    return False


@pytest.mark.parametrize(
    "query",
    [
        LeadQuery(),
        LeadQuery(created_from_ms=START - 1),
        LeadQuery(sort=LeadSort.CREATED_ASC, created_to_ms=START + 10**9),
    ],
    ids=["newest first", "in a date range", "oldest first, in a date range"],
)
async def test_a_walk_past_ties_asks_no_id_range_and_no_and_and_holds_every_lead_once(
    seen: tuple[AsyncDatabase[dict[str, Any]], Finds], query: LeadQuery
) -> None:
    db, finds = seen
    # 23 leads of "tiny", three of each created time (ties on the sort key), beside another office's.
    await db[CRM_LEADS].insert_many([row("tiny", i, START + (i // 3) * 1000) for i in range(23)])
    await db[CRM_LEADS].insert_many([row("big", i, START + i * 1000) for i in range(30)])
    leads = ScopedLeads(db, scope_filter(Principal("tess", Role.BROKER, "tiny"), "tiny"))
    walked: list[str] = []
    cursor = None
    for _ in range(20):
        page = await lead_page(leads, db, query, 4, cursor)
        walked += [item.lead_id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(walked) == sorted(f"tiny-{i:04d}" for i in range(23)), "every lead of the office once"
    assert len(walked) == len(set(walked))
    leads_finds = [f for f in finds.filters if f.get("account_id") == "tiny"]
    assert leads_finds
    assert not [f for f in leads_finds if uses_an_id_range_or_an_and(f)], (
        "a page past a cursor asked nx-27017 what it reads in Python over every office's rows"
    )
    await db[CRM_LEADS].delete_many({})
    finds.filters.clear()
