"""`insert_each` reports each document's outcome as `insert_one` would have raised it (shared/mongo_bulk.py).

The server's own duplicate keys are in integration/test_shared_mongo_bulk_stored.py. A write concern error
(`w: majority` not acknowledged in time) cannot be made on the single-node MongoDB-wire server the tests run,
so it is given here as PyMongo reports it: a BulkWriteError whose details hold `writeConcernErrors`.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteConcernError

from leadflow_shared.mongo_bulk import insert_each

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

DOCS: list[dict[str, Any]] = [{"_id": n} for n in range(4)]


class Refusing:
    """A collection whose `insert_many` fails with the result given (PyMongo's BulkWriteError details)."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.details = details

    async def insert_many(self, docs: list[dict[str, Any]], *, ordered: bool) -> None:  # noqa: ARG002
        assert not ordered, "one document's error must not keep the others out"
        raise BulkWriteError(self.details)


def collection(details: dict[str, Any]) -> AsyncCollection[dict[str, Any]]:
    return cast("AsyncCollection[dict[str, Any]]", Refusing(details))


async def test_a_duplicate_and_another_error_are_each_documents_own() -> None:
    errors = [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"}, {"index": 3, "code": 2, "errmsg": "bad"}]
    outcomes = await insert_each(collection({"writeErrors": errors, "writeConcernErrors": []}), DOCS)
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], DuplicateKeyError)
    assert type(outcomes[3]) is OperationFailure
    assert outcomes[3].code == 2


async def test_a_write_concern_not_met_fails_every_document_without_an_error_of_its_own() -> None:
    concern = [{"code": 64, "errmsg": "waiting for replication timed out", "errInfo": {"wtimeout": True}}]
    errors = [{"index": 2, "code": 11000, "errmsg": "E11000 duplicate key"}]
    outcomes = await insert_each(collection({"writeErrors": errors, "writeConcernErrors": concern}), DOCS)
    assert isinstance(outcomes[2], DuplicateKeyError), "stored before: that is still what it says"
    for n in (0, 1, 3):
        outcome = outcomes[n]
        assert isinstance(outcome, WriteConcernError), f"document {n} is not known durable"
        assert outcome.code == 64
