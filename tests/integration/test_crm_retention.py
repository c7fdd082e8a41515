"""Helper 199's review (session 39): crm-api collections whose records are needed for a while were kept forever.

- `crm_used_offer_links`: one document per one-click accept link used (`routes/offer_links.py`), needed only while
  the link's offer is open (`link_offer_ended` refuses a link whose offer ended before the used-record is looked
  at): no TTL index, no pruning job; one per claimed offer for the life of the database.
- `crm_lead_moves`: one document per (account, lead) ever moved (`OfficeTransfers.hold_lead`), needed only while
  its move holds the lead (`UNSENT_HOLD` 15 minutes, `PUBLISHED_HOLD` an hour; an older holder is taken over):
  no TTL index, never deleted.

The test runs crm-api's startup hook (`adapters.leads.ensure_indexes`, which creates every crm-api index) on
nx-27017 and looks for a TTL index (`expireAfterSeconds`) on each; both failed before `MOVE_KEEP` and
`USED_LINK_KEEP` (adapters/offices.py). In-process caches that kept every key they met: unit/test_shared_ttl_cache.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import ensure_indexes
from leadflow_crm_api.adapters.offices import OfficeTransfers
from leadflow_shared.collections import CRM_INVITATION_EMAILS, CRM_LEAD_MOVES, CRM_SIGNED_OUT, CRM_USED_OFFER_LINKS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    database = client[f"retention_{uuid.uuid4().hex[:8]}"]
    try:
        yield database
    finally:
        await client.drop_database(database.name)
        await client.close()


async def _ttl_indexes(db: AsyncDatabase[dict[str, Any]], collection: str) -> list[str]:
    return [str(ix.get("name")) async for ix in await db[collection].list_indexes() if "expireAfterSeconds" in ix]


async def test_the_ttl_indexes_crm_api_makes_are_found(db: AsyncDatabase[dict[str, Any]]) -> None:
    """The check itself: the TTL indexes crm-api does make are seen."""
    await ensure_indexes(db)
    assert await _ttl_indexes(db, CRM_INVITATION_EMAILS)
    assert await _ttl_indexes(db, CRM_SIGNED_OUT)


@pytest.mark.parametrize("collection", [CRM_USED_OFFER_LINKS, CRM_LEAD_MOVES])
async def test_short_lived_crm_records_are_forgotten(db: AsyncDatabase[dict[str, Any]], collection: str) -> None:
    await ensure_indexes(db)
    assert await _ttl_indexes(db, collection), f"{collection}: no TTL index, nothing prunes it: kept forever"


async def test_a_moves_hold_carries_the_time_its_ttl_counts_from(db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_indexes(db)
    transfer = {"_id": str(uuid.uuid4()), "account_id": "north", "lead_id": str(uuid.uuid4())}
    assert await OfficeTransfers(db).hold_lead(transfer)
    held = await db[CRM_LEAD_MOVES].find_one({"_id": f"north|{transfer['lead_id']}"})
    assert held is not None
    assert isinstance(held["held_at"], datetime)
