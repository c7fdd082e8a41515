"""`insert_each` on the real MongoDB-wire server: one unordered command, duplicates reported per document."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from leadflow_shared.mongo_bulk import insert_each

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_keys_stored_already_are_reported_and_the_others_stored(mongo_url: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"bulk_{uuid.uuid4().hex[:12]}"]
    try:
        await db.items.insert_one({"_id": "b", "n": 0})
        outcomes = await insert_each(db.items, [{"_id": k, "n": 1} for k in ("a", "b", "c")])
        assert outcomes[0] is None
        assert outcomes[2] is None
        assert isinstance(outcomes[1], DuplicateKeyError)
        stored = {d["_id"]: d["n"] async for d in db.items.find({})}
        assert stored == {"a": 1, "b": 0, "c": 1}, "the duplicate left as it was, the others stored"
        assert await insert_each(db.items, [{"_id": "d"}]) == [None]
    finally:
        await client.drop_database(db.name)
        await client.close()
