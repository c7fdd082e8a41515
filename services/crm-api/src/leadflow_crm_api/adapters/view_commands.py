"""The projection's reads and writes of the views, coalesced across the leads of a batch (issue 14).

The projection handles a batch's leads concurrently (each lead's events in order), and each event
reads its row, checks its timeline entry, writes its row and its entry: five or six round trips.
Here the calls made at once go as one command per kind and collection (`leadflow_shared.coalesce`):
a `find` with `$in`, an unordered `insert_many`, a `bulk_write`. Each caller still gets its own
outcome, and a lead's next event starts only once its previous writes are stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.coalesce import Coalesced
from leadflow_shared.mongo_bulk import insert_each

Doc = dict[str, Any]
Coll = AsyncCollection[Doc]


@dataclass(frozen=True, slots=True)
class CollectionCommands:
    """One collection's coalesced commands, each awaited with one item: `await commands.find(doc_id)`."""

    find: Coalesced[str, Doc | None]  # the document with this `_id`, or None
    exists: Coalesced[str, bool]  # whether a document has this `_id`
    insert: Coalesced[Doc, None]  # stores the document; DuplicateKeyError if its `_id` is there already
    # Applies one lead's ops in order, in one ordered `bulk_write`: whether every op of the command matched a row.
    update: Coalesced[list[UpdateOne], bool]
    of_lead: Coalesced[str, list[Doc]]  # the documents whose `lead_id` is this, in the order of their `seq`


class ViewCommands:
    """The coalesced commands of each collection of the views (`commands[collection].insert(doc)`)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._of: dict[str, CollectionCommands] = {}

    def __getitem__(self, collection: str) -> CollectionCommands:
        commands = self._of.get(collection)
        if commands is None:
            coll = self._db[collection]
            commands = self._of[collection] = CollectionCommands(
                find=Coalesced(functools.partial(_find, coll)),
                exists=Coalesced(functools.partial(_exists, coll)),
                insert=Coalesced(functools.partial(insert_each, coll)),
                update=Coalesced(functools.partial(_update, coll)),
                of_lead=Coalesced(functools.partial(_of_lead, coll)),
            )
        return commands


async def _find(collection: Coll, ids: list[str]) -> list[Doc | None]:
    found = {doc["_id"]: doc async for doc in collection.find({"_id": {"$in": sorted(set(ids))}})}
    return [found.get(i) for i in ids]


async def _exists(collection: Coll, ids: list[str]) -> list[bool]:
    stored = {doc["_id"] async for doc in collection.find({"_id": {"$in": sorted(set(ids))}}, {"_id": 1})}
    return [i in stored for i in ids]


async def _of_lead(collection: Coll, lead_ids: list[str]) -> list[list[Doc]]:
    found: dict[str, list[Doc]] = {}
    async for doc in collection.find({"lead_id": {"$in": sorted(set(lead_ids))}}):
        found.setdefault(doc["lead_id"], []).append(doc)
    return [sorted(found.get(i, []), key=lambda doc: (doc.get("seq", 0), doc["_id"])) for i in lead_ids]


async def _update(collection: Coll, batches: list[list[UpdateOne]]) -> list[bool]:
    """The leads' ops (each lead's in order) in one ordered `bulk_write`: whether every op matched (or inserted) a
    row. An op that may rightly match nothing (an activity not newer than the row's) is not sent
    (`RowChanges.holding`), so a miss is a change held on what it read and someone changed since."""
    ops = [op for lead_ops in batches for op in lead_ops]
    result = await collection.bulk_write(ops, ordered=True)
    return [result.matched_count + result.upserted_count == len(ops)] * len(batches)
