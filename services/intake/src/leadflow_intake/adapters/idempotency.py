"""Idempotency keys of intake requests, in MongoDB.

A key is claimed with the event id it produced and two hashes of the request (as received and as
normalized, decision 0081); the record is marked published after the event reached Kafka, so a retry
after a crash in between publishes the same event (same id) again rather than losing it. The `_id` is the key's
stored form (domain/keys.py: `<space>/<account_id>/<key>`), one key space per way in.

The event (with the lead's contact details) is kept only until it is published; the record
itself only for `idempotency_days` (a TTL index on `created_at`): nothing personal stays here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_intake.handlers import Claim
from leadflow_shared.collections import INTAKE_REQUESTS


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]], *, keep_days: int) -> None:
    """The TTL index that forgets keys after `keep_days` (changing it needs collMod; see operations.md)."""
    await db[INTAKE_REQUESTS].create_index(
        [("created_at", ASCENDING)], name="forget_after", expireAfterSeconds=keep_days * 86_400
    )


class MongoIdempotencyStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._requests = db[INTAKE_REQUESTS]

    async def find(self, stored_key: str) -> Claim | None:
        doc = await self._requests.find_one({"_id": stored_key})
        return None if doc is None else _claim_of(doc)

    async def claim(self, stored_key: str, claim: Claim) -> tuple[Claim, bool]:
        """Store `claim` under the key and return it with True, or return the claim stored before with False."""
        try:
            await self._requests.insert_one(
                {
                    "_id": stored_key,
                    "event_id": str(claim.event_id),
                    "request_hash": claim.request_hash,
                    "received_hash": claim.received_hash,
                    "event_json": claim.event_json,
                    "published": claim.published,
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            stored = await self.find(stored_key)
            assert stored is not None  # noqa: S101 (the duplicate key proves it exists)
            return stored, False
        return claim, True

    async def mark_published(self, stored_key: str) -> None:
        # Published: the event is on Kafka now, and a retry needs only its id.
        published = {"$set": {"published": True}, "$unset": {"event_json": ""}}
        await self._requests.update_one({"_id": stored_key}, published)


def _claim_of(doc: dict[str, Any]) -> Claim:
    # A claim stored before decision 0081 has no received_hash: a retry is recognized by request_hash alone.
    return Claim(
        uuid.UUID(doc["event_id"]), doc["request_hash"], doc.get("event_json", ""), doc["published"],
        received_hash=doc.get("received_hash"),
    )  # fmt: skip
