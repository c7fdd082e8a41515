"""The crm_leads view in MongoDB: the projection writes it, the list endpoints read it."""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.domain.views import LeadTab

CRM_LEADS = "crm_leads"


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    # Serves the list queries: one account, newest first. Sorting and cursors use
    # created_ms (epoch milliseconds) and _id is left out of the index: nx-27017
    # compares datetimes to the second and breaks on indexes that name _id
    # (docs/decisions/0004-mongodb-wire-fidelity.md).
    await db[CRM_LEADS].create_index([("account_id", ASCENDING), ("created_ms", DESCENDING)], name="account_recent")


class LeadViews:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._leads = db[CRM_LEADS]

    async def upsert(self, lead_id: str, row: dict[str, Any]) -> None:
        """Idempotent: applying the same event twice leaves the same row."""
        created = {k: row[k] for k in ("created_at", "created_ms")}
        changes = {k: v for k, v in row.items() if k not in created}
        await self._leads.update_one({"_id": lead_id}, {"$set": changes, "$setOnInsert": created}, upsert=True)

    async def insert_new(self, lead_id: str, row: dict[str, Any]) -> None:
        """Create the row unless it exists: a replayed first event must not undo later ones."""
        with contextlib.suppress(DuplicateKeyError):
            await self._leads.insert_one({"_id": lead_id, **row})

    async def update(self, lead_id: str, changes: dict[str, Any]) -> None:
        await self._leads.update_one({"_id": lead_id}, {"$set": changes})

    async def list(
        self, account_id: str, *, tab: LeadTab, limit: int, after: tuple[int, str] | None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"account_id": account_id}
        if tab is LeadTab.MINE:
            query["transferred_to"] = None
        if after is not None:
            created_ms, lead_id = after
            query["$or"] = [
                {"created_ms": {"$lt": created_ms}},
                {"created_ms": created_ms, "_id": {"$lt": lead_id}},
            ]
        cursor = self._leads.find(query).sort([("created_ms", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [doc async for doc in cursor]

    async def get(self, account_id: str, lead_id: str) -> dict[str, Any] | None:
        return await self._leads.find_one({"_id": lead_id, "account_id": account_id})
