"""Intake's MongoDB adapters against a real server (nx-27017, or MongoDB with MONGODB_URL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from fakes_intake import MonotonicClock
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.adapters import idempotency
from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.domain import keys
from leadflow_intake.domain.keys import stored_key
from leadflow_intake.handlers import AccountInfo, Claim
from leadflow_shared.collections import INTAKE_REQUESTS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        yield client[f"intake_{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


async def test_accounts_give_the_stored_region_or_the_fallback(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db["accounts"].insert_many([
        {"_id": "london-homes", "default_region": "gb"},
        {"_id": "no-region"},
        {"_id": "bad-region", "default_region": "XX"},
    ])  # fmt: skip
    accounts = MongoAccounts(db, fallback_region="US")
    assert await accounts.find("london-homes") == AccountInfo("GB")
    assert await accounts.find("no-region") == AccountInfo("US")
    assert await accounts.find("bad-region") == AccountInfo("US")
    assert await accounts.find("missing") is None


async def test_accounts_cache_hits_longer_than_misses(db: AsyncDatabase[dict[str, Any]]) -> None:
    clock = MonotonicClock()
    accounts = MongoAccounts(db, fallback_region="US", ttl=60, miss_ttl=5, clock=clock)
    assert await accounts.find("new-account") is None
    await db["accounts"].insert_one({"_id": "new-account", "default_region": "DE"})
    assert await accounts.find("new-account") is None  # the miss is cached...
    clock.now += 5.1
    assert await accounts.find("new-account") == AccountInfo("DE")  # ...briefly
    await db["accounts"].update_one({"_id": "new-account"}, {"$set": {"default_region": "FR"}})
    clock.now += 59
    assert await accounts.find("new-account") == AccountInfo("DE")
    clock.now += 1.1
    assert await accounts.find("new-account") == AccountInfo("FR")


async def test_accounts_cache_is_bounded(db: AsyncDatabase[dict[str, Any]]) -> None:
    accounts = MongoAccounts(db, fallback_region="US", max_entries=3)
    for i in range(10):
        await accounts.find(f"a{i}")
    assert len(accounts._cache) == 3  # the bound is the point of this test


async def test_idempotency_claim_returns_the_first_claim_and_marks_it_published(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    store = MongoIdempotencyStore(db)
    first = Claim(uuid.uuid4(), "hash-1", '{"a":1}', published=False)
    second = Claim(uuid.uuid4(), "hash-2", '{"a":2}', published=False)
    acme_k = stored_key(keys.WEBSITE, "acme-realty", "k")
    assert await store.claim(acme_k, first) == (first, True)
    assert await store.claim(acme_k, second) == (first, False)
    assert await store.claim(stored_key(keys.WEBSITE, "other-realty", "k"), second) == (second, True)  # per account
    await store.mark_published(acme_k)
    stored, created = await store.claim(acme_k, second)
    assert (stored.event_id, stored.published, created) == (first.event_id, True, False)


async def test_a_published_request_keeps_no_contact_details_and_is_forgotten_after_its_days(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await idempotency.ensure_indexes(db, keep_days=7)
    await idempotency.ensure_indexes(db, keep_days=7)  # every start: the same index again is fine
    store = MongoIdempotencyStore(db)
    key = stored_key(keys.WEBSITE, "acme-realty", f"ttl-{uuid.uuid4()}")
    claim = Claim(uuid.uuid4(), "hash", '{"email":"jo@example.com"}', published=False)
    await store.claim(key, claim)
    pending = await db[INTAKE_REQUESTS].find_one({"_id": key})
    assert pending is not None
    assert pending["event_json"] == claim.event_json  # kept until published: a retry republishes it
    await store.mark_published(key)
    stored = await db[INTAKE_REQUESTS].find_one({"_id": key})
    assert stored is not None
    assert "event_json" not in stored
    assert isinstance(stored["created_at"], datetime)  # a BSON date: what a TTL index reads
    # By its key: nx-27017 names indexes its own way (MongoDB keeps "forget_after").
    ttl = [i async for i in await db[INTAKE_REQUESTS].list_indexes() if dict(i["key"]) == {"created_at": 1}]
    assert [i["expireAfterSeconds"] for i in ttl] == [7 * 86_400]
    again, created = await store.claim(key, Claim(uuid.uuid4(), "hash", "{}", published=False))
    assert (again.event_id, again.published, created) == (claim.event_id, True, False)


async def test_the_same_key_text_in_each_way_in_is_a_different_key(db: AsyncDatabase[dict[str, Any]]) -> None:
    """A form's key crafted as another way's stored key claims nothing of that way (issue 10, item 4)."""
    store = MongoIdempotencyStore(db)
    event_id = str(uuid.uuid4())
    crafted = {"webhook:homefinder:k1": (keys.webhook("homefinder"), "k1"), f"inbound:{event_id}": (keys.PARTNER,
               event_id), "webhook.homefinder/acme-realty/k2": (keys.webhook("homefinder"), "k2")}  # fmt: skip
    for form_key, (space, key) in crafted.items():
        squat = Claim(uuid.uuid4(), "form", "{}", published=True)
        real = Claim(uuid.uuid4(), "real", "{}", published=False)
        assert await store.claim(stored_key(keys.WEBSITE, "acme-realty", form_key), squat) == (squat, True)
        assert await store.claim(stored_key(space, "acme-realty", key), real) == (real, True)


async def seed_agents(db: AsyncDatabase[dict[str, Any]]) -> None:
    # The shapes the router's seed command writes (docs/account-config.md).
    await db["accounts"].insert_many([
        {"_id": "acme-realty", "default_region": "US", "roster": ["alex-rivera", "blair-chen", "ghost"]},
        {"_id": "summit-homes", "roster": ["dana-whitehorse"]},
    ])  # fmt: skip
    await db["agents"].insert_many([
        {"_id": "alex-rivera", "account_id": "acme-realty", "name": "Alex"},
        {"_id": "blair-chen", "account_id": "acme-realty", "name": "Blair"},
        {"_id": "off-roster", "account_id": "acme-realty", "name": "Off"},
        {"_id": "dana-whitehorse", "account_id": "summit-homes", "name": "Dana"},
    ])  # fmt: skip


async def test_agents_are_those_the_router_routes_to_in_the_account(db: AsyncDatabase[dict[str, Any]]) -> None:
    await seed_agents(db)
    accounts = MongoAccounts(db, fallback_region="US")
    assert await accounts.has_agent("acme-realty", "alex-rivera")
    assert not await accounts.has_agent("acme-realty", "dana-whitehorse")  # another account's agent
    assert not await accounts.has_agent("acme-realty", "nobody")
    assert not await accounts.has_agent("acme-realty", "ghost")  # on the roster, no such agent
    assert not await accounts.has_agent("acme-realty", "off-roster")  # the router routes to roster agents only
    assert not await accounts.has_agent("no-such-account", "alex-rivera")


async def test_a_new_agent_is_known_at_once_and_a_known_one_is_cached(db: AsyncDatabase[dict[str, Any]]) -> None:
    await seed_agents(db)
    clock = MonotonicClock()
    accounts = MongoAccounts(db, fallback_region="US", ttl=60, clock=clock)
    assert not await accounts.has_agent("acme-realty", "eve-new")
    await db["agents"].insert_one({"_id": "eve-new", "account_id": "acme-realty", "name": "Eve"})
    await db["accounts"].update_one({"_id": "acme-realty"}, {"$set": {"roster": ["alex-rivera", "eve-new"]}})
    assert await accounts.has_agent("acme-realty", "eve-new")  # a miss is not cached
    await db["accounts"].update_one({"_id": "acme-realty"}, {"$set": {"roster": ["alex-rivera"]}})
    assert await accounts.has_agent("acme-realty", "eve-new")  # a hit is, for ttl
    clock.now += 60.1
    assert not await accounts.has_agent("acme-realty", "eve-new")
