"""The audit of settings changes in MongoDB (`crm_settings_audit`): one document per change of an account's
routing rules or of an agent's availability, never updated. Written after the change it records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import CRM_SETTINGS_AUDIT

Doc = dict[str, Any]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # Sorted by epoch milliseconds, not the datetime (nx-27017 compares datetimes to the second) and
    # no index names _id (decision 0004).
    await db[CRM_SETTINGS_AUDIT].create_index(
        [("account_id", ASCENDING), ("setting", ASCENDING), ("at_ms", DESCENDING)], name="account_setting_recent"
    )


class SettingsAudit:
    """One account's audit entries (authorisation happens before)."""

    def __init__(self, db: AsyncDatabase[Doc], account_id: str) -> None:
        self._audit = db[CRM_SETTINGS_AUDIT]
        self.account_id = account_id

    async def record(self, setting: str, by_user_id: str, at: datetime, **fields: Any) -> None:
        entry = {"_id": uuid.uuid4().hex, "account_id": self.account_id, "setting": setting, "by_user_id": by_user_id}
        await self._audit.insert_one(entry | {"at": at, "at_ms": epoch_ms(at), **fields})

    async def latest(self, setting: str, limit: int) -> list[Doc]:
        """The last `limit` changes of `setting`, newest first (a rule set's by version: clocks can disagree)."""
        order = [("version_after", DESCENDING)] if setting == "routing_rules" else []
        cursor = self._audit.find({"account_id": self.account_id, "setting": setting})
        return [d async for d in cursor.sort([*order, ("at_ms", DESCENDING)]).limit(limit)]
