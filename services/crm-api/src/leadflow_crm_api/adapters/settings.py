"""One account's settings in MongoDB: `accounts`, `agents` and `notifier_preferences`.

crm-api writes only the settings fields, each `$set` as a whole (arrays of documents too:
nx-27017 mangles `$push` of documents, decision 0004), on documents that already exist. The
router and the notifier read these documents and cache them briefly (5 s by default).
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

ACCOUNTS = "accounts"
AGENTS = "agents"
PREFERENCES = "notifier_preferences"

Doc = dict[str, Any]


class AccountSettings:
    """Settings reads and writes scoped to one account id (authorisation happens before)."""

    def __init__(self, db: AsyncDatabase[Doc], account_id: str) -> None:
        self._db = db
        self.account_id = account_id

    async def account(self) -> Doc | None:
        return await self._db[ACCOUNTS].find_one({"_id": self.account_id})

    async def agents(self) -> list[Doc]:
        return [a async for a in self._db[AGENTS].find({"account_id": self.account_id})]

    async def agent(self, agent_id: str) -> Doc | None:
        return await self._db[AGENTS].find_one({"_id": agent_id, "account_id": self.account_id})

    async def set_account(self, fields: Doc) -> bool:
        """`$set` on the existing account document; False when there is none (never creates one)."""
        result = await self._db[ACCOUNTS].update_one({"_id": self.account_id}, {"$set": fields})
        return result.matched_count > 0

    async def set_agent(self, agent_id: str, fields: Doc) -> bool:
        result = await self._db[AGENTS].update_one({"_id": agent_id, "account_id": self.account_id}, {"$set": fields})
        return result.matched_count > 0

    async def preferences(self, user_id: str) -> Doc | None:
        return await self._db[PREFERENCES].find_one({"_id": user_id})

    async def set_preferences(self, user_id: str, fields: Doc) -> None:
        """Set the given fields, keeping the rest (push token, a staff member's name and email).

        Not an upsert: whether nx-27017 takes `_id` from the filter on upsert is not established
        for update_one (it does not for replace_one, decision 0004), so insert with `_id` instead.
        """
        fields = {**fields, "account_id": self.account_id}
        collection = self._db[PREFERENCES]
        if (await collection.update_one({"_id": user_id}, {"$set": fields})).matched_count:
            return
        try:
            await collection.insert_one({"_id": user_id, **fields})
        except DuplicateKeyError:  # a concurrent first write won; apply ours over it
            await collection.update_one({"_id": user_id}, {"$set": fields})
