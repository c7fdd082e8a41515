"""Bulk writes that report per document, as the single-document calls they replace would have."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteConcernError

DUPLICATE_KEY = 11000
Doc = dict[str, Any]


async def insert_each(collection: AsyncCollection[Doc], docs: list[Doc]) -> list[BaseException | None]:
    """Insert `docs` in one unordered command; per document, None or why it was not stored (a
    DuplicateKeyError for a key stored already), as `insert_one` would raise. A write concern the server could
    not satisfy (say `w: majority` unacknowledged in time) fails every document that had no error of its own
    with the WriteConcernError `insert_one` would raise: written on the primary, not yet durable as asked."""
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        return _outcomes(exc.details, len(docs))
    return [None] * len(docs)


def _outcomes(details: Mapping[str, Any], count: int) -> list[BaseException | None]:
    """Each document's outcome from a bulk write's result (`BulkWriteError.details`)."""
    concern = details.get("writeConcernErrors") or []
    unconfirmed = (
        WriteConcernError(str(concern[0].get("errmsg", "")), concern[0].get("code"), concern[0]) if concern else None
    )
    outcomes: list[BaseException | None] = [unconfirmed] * count
    for error in details.get("writeErrors", []):
        kind = DuplicateKeyError if error.get("code") == DUPLICATE_KEY else OperationFailure
        outcomes[int(error["index"])] = kind(str(error.get("errmsg", "")), error.get("code"), error)
    return outcomes
