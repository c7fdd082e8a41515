"""Intake's MongoDB adapters against a real server (nx-27017, or MongoDB with MONGODB_URL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.handlers import AccountInfo, Claim

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        yield client[f"intake_{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
    clock = Clock()
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
    assert await store.claim("acme-realty", "k", first) == (first, True)
    assert await store.claim("acme-realty", "k", second) == (first, False)
    assert await store.claim("other-realty", "k", second) == (second, True)  # keys are per account
    await store.mark_published("acme-realty", "k")
    stored, created = await store.claim("acme-realty", "k", second)
    assert (stored.event_id, stored.published, created) == (first.event_id, True, False)
