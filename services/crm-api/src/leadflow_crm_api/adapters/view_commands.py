"""The projection's reads and writes of the views, coalesced across the leads of a batch (issue 14).

The projection handles a batch's leads concurrently (each lead's events in order), and each event
reads its row, checks its timeline entry, writes its row and its entry: five or six round trips.
Here the calls made at once go as one command per kind and collection (`leadflow_shared.coalesce`):
a `find` with `$in`, an unordered `insert_many`, a `bulk_write`. Each caller still gets its own
outcome, and a lead's next event starts only once its previous writes are stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_shared.coalesce import Coalesced
from leadflow_shared.mongo_bulk import insert_each

Doc = dict[str, Any]


class ViewCommands:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._coalesced: dict[tuple[str, str], Coalesced[Any, Any]] = {}

    def _of(self, kind: str, collection: str, flush: Callable[[list[Any]], Awaitable[Sequence[Any]]]) -> Any:
        key = (kind, collection)
        if key not in self._coalesced:
            self._coalesced[key] = Coalesced(flush)
        return self._coalesced[key]

    async def find(self, collection: str, doc_id: str) -> Doc | None:
        async def flush(ids: list[str]) -> list[Doc | None]:
            found = {doc["_id"]: doc async for doc in self._db[collection].find({"_id": {"$in": sorted(set(ids))}})}
            return [found.get(i) for i in ids]

        found: Doc | None = await self._of("find", collection, flush)(doc_id)
        return found

    async def exists(self, collection: str, doc_id: str) -> bool:
        async def flush(ids: list[str]) -> list[bool]:
            cursor = self._db[collection].find({"_id": {"$in": sorted(set(ids))}}, {"_id": 1})
            stored = {doc["_id"] async for doc in cursor}
            return [i in stored for i in ids]

        there: bool = await self._of("exists", collection, flush)(doc_id)
        return there

    async def insert(self, collection: str, doc: Doc) -> bool:
        """Store `doc` unless its `_id` is there already; whether it did."""

        async def flush(docs: list[Doc]) -> list[bool | BaseException]:
            outcomes = await insert_each(self._db[collection], docs)
            return [o is None or (False if isinstance(o, DuplicateKeyError) else o) for o in outcomes]

        inserted: bool = await self._of("insert", collection, flush)(doc)
        return inserted

    async def update(self, collection: str, ops: list[UpdateOne]) -> None:
        """Apply `ops` in order (one lead's), in one `bulk_write` with the other leads' ops."""

        async def flush(batches: list[list[UpdateOne]]) -> list[None]:
            await self._db[collection].bulk_write([op for ops in batches for op in ops], ordered=True)
            return [None] * len(batches)

        if ops:
            await self._of("update", collection, flush)(ops)
