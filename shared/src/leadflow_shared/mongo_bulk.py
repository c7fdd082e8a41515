"""Bulk writes that report per document, as the single-document calls they replace would have."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

DUPLICATE_KEY = 11000
Doc = dict[str, Any]


async def insert_each(collection: AsyncCollection[Doc], docs: list[Doc]) -> list[BaseException | None]:
    """Insert `docs` in one unordered command; per document, None or why it was not stored (a
    DuplicateKeyError for a key stored already, as `insert_one` would raise)."""
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        outcomes: list[BaseException | None] = [None] * len(docs)
        for error in exc.details.get("writeErrors", []):
            kind = DuplicateKeyError if error.get("code") == DUPLICATE_KEY else OperationFailure
            outcomes[int(error["index"])] = kind(str(error.get("errmsg", "")), error.get("code"), error)
        return outcomes
    return [None] * len(docs)
