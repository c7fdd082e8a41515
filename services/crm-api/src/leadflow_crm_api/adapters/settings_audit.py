"""The audit of settings changes in MongoDB (`crm_settings_audit`): one document per change of an account's
routing rules or of an agent's availability, never updated. Written after the change it records."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.clock import EPOCH, epoch_ms
from leadflow_shared.collections import CRM_SETTINGS_AUDIT

Doc = dict[str, Any]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # Sorted by epoch milliseconds, not the datetime (nx-27017 compares datetimes to the second) and
    # no index names _id (decision 0004).
    await db[CRM_SETTINGS_AUDIT].create_index(
        [("account_id", ASCENDING), ("setting", ASCENDING), ("at_ms", DESCENDING)], name="account_setting_recent"
    )
    await db[CRM_SETTINGS_AUDIT].create_index(
        [("account_id", ASCENDING), ("agent_id", ASCENDING), ("setting", ASCENDING), ("at_us", DESCENDING)],
        name="account_agent_setting_recent",
    )  # one agent's availability history


class SettingsAudit:
    """One account's audit entries (authorisation happens before)."""

    def __init__(self, db: AsyncDatabase[Doc], account_id: str) -> None:
        self._audit = db[CRM_SETTINGS_AUDIT]
        self.account_id = account_id

    async def record(self, setting: str, by_user_id: str, at: datetime, **fields: Any) -> None:
        entry = {"_id": uuid.uuid4().hex, "account_id": self.account_id, "setting": setting, "by_user_id": by_user_id}
        at_us = (at - EPOCH) // timedelta(microseconds=1)  # two saves within a millisecond keep their order
        await self._audit.insert_one(entry | {"at": at, "at_ms": epoch_ms(at), "at_us": at_us, **fields})

    async def latest(self, setting: str, limit: int, agent_id: str | None = None) -> list[Doc]:
        """The last `limit` changes of `setting` (of one agent's availability when `agent_id` is given), newest
        first: a rule set's by version (clocks can disagree), others by time (entries from before `at_us`
        existed are the oldest, ordered by `at_ms`)."""
        query = {"account_id": self.account_id, "setting": setting} | ({"agent_id": agent_id} if agent_id else {})
        order = [("version_after", DESCENDING)] if setting == "routing_rules" else [("at_us", DESCENDING)]
        cursor = self._audit.find(query)
        return [d async for d in cursor.sort([*order, ("at_ms", DESCENDING)]).limit(limit)]
