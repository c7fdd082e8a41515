"""One account's settings in MongoDB: `accounts`, `agents`, `staff` and `notifier_preferences`.

crm-api writes only the settings fields, each `$set` as a whole (arrays of documents too:
nx-27017 mangles `$push` of documents, decision 0004), on documents that already exist. The
router and the notifier read these documents and cache them briefly (5 s by default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.adapters.callers import removed_staff_id
from leadflow_crm_api.domain.settings import holds_for
from leadflow_shared.collections import (
    ACCOUNTS,
    AGENTS,
    CRM_REMOVED_STAFF,
    NOTIFIER_PREFERENCES,
    PUSH_DEVICES,
    STAFF,
)

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

    async def staff(self) -> list[Doc]:
        return [d async for d in self._db[STAFF].find({"account_id": self.account_id})]

    async def staff_member(self, user_id: str) -> Doc | None:
        """The staff record of `user_id` if it is this account's (ids are global)."""
        return await self._db[STAFF].find_one({"_id": user_id, "account_id": self.account_id})

    async def staff_id_taken(self, user_id: str) -> bool:
        """Whether `user_id` is another account's staff member (never touch another tenant's)."""
        return await self._db[STAFF].find_one({"_id": user_id, "account_id": {"$ne": self.account_id}}) is not None

    async def agent_elsewhere(self, user_id: str) -> bool:
        """Whether `user_id` is another account's agent (ids are global: never one of this account's staff)."""
        return await self._db[AGENTS].find_one({"_id": user_id, "account_id": {"$ne": self.account_id}}) is not None

    async def put_staff_member(self, user_id: str, fields: Doc) -> None:
        """Insert or replace the record (not an upsert: see set_preferences); a removal's mark goes (the record
        says what the user is here now)."""
        doc = {"_id": user_id, **fields, "account_id": self.account_id}
        if not (await self._db[STAFF].replace_one({"_id": user_id, "account_id": self.account_id}, doc)).matched_count:
            try:
                await self._db[STAFF].insert_one(doc)
            except DuplicateKeyError:  # a concurrent first write won; ours replaces it
                await self._db[STAFF].replace_one({"_id": user_id, "account_id": self.account_id}, doc)
        await self._db[CRM_REMOVED_STAFF].delete_one({"_id": removed_staff_id(self.account_id, user_id)})

    async def delete_staff_member(self, user_id: str, by: str) -> bool:
        """Remove the record and its preferences, and mark the removal: an admin's token of this user no longer
        holds here (decision 0105). The mark is written before the record goes (a removal that fails half-way
        leaves the user refused, never removed and still admitted) and again after it (a re-adding that ran
        meanwhile dropped the first)."""
        if await self.staff_member(user_id) is None:
            return False
        await self.mark_removed(user_id, by)
        result = await self._db[STAFF].delete_one({"_id": user_id, "account_id": self.account_id})
        if not result.deleted_count:
            return False
        await self.mark_removed(user_id, by)
        await self._db[NOTIFIER_PREFERENCES].delete_one({"_id": user_id, "account_id": self.account_id})
        return True

    async def mark_removed(self, user_id: str, by: str) -> None:
        mark_id = removed_staff_id(self.account_id, user_id)
        # The id in the document too: nx-27017's upsert ignores the filter's (decision 0004).
        mark = {"_id": mark_id, "account_id": self.account_id, "user_id": user_id, "by": by}
        await self._db[CRM_REMOVED_STAFF].replace_one(
            {"_id": mark_id}, {**mark, "removed_at": datetime.now(UTC)}, upsert=True
        )

    async def devices(self, user_id: str) -> list[Doc]:
        cursor = self._db[PUSH_DEVICES].find({"user_id": user_id, "account_id": self.account_id}).sort("_id", 1)
        return [d async for d in cursor]

    async def put_device(self, user_id: str, device_id: str, fields: Doc) -> None:
        """Register (or re-register) a device; its token leaves any other user's device (a handed-on phone), the
        legacy token of another user's preferences too (it still pushed there: helper 174)."""
        key = f"{user_id}/{device_id}"
        await self._db[PUSH_DEVICES].delete_many({"token": fields["token"], "_id": {"$ne": key}})
        await self._db[NOTIFIER_PREFERENCES].update_many(
            {"push_token": fields["token"], "_id": {"$ne": user_id}}, {"$set": {"push_token": None}}
        )
        doc = {"_id": key, "user_id": user_id, "device_id": device_id, "account_id": self.account_id, **fields}
        if (await self._db[PUSH_DEVICES].replace_one({"_id": key}, doc)).matched_count:
            return
        try:
            await self._db[PUSH_DEVICES].insert_one(doc)
        except DuplicateKeyError:
            await self._db[PUSH_DEVICES].replace_one({"_id": key}, doc)

    async def delete_device(self, user_id: str, device_id: str) -> bool:
        query = {"_id": f"{user_id}/{device_id}", "account_id": self.account_id}
        return (await self._db[PUSH_DEVICES].delete_one(query)).deleted_count > 0

    async def set_account(self, fields: Doc) -> bool:
        """`$set` on the existing account document; False when there is none (never creates one)."""
        result = await self._db[ACCOUNTS].update_one({"_id": self.account_id}, {"$set": fields})
        return result.matched_count > 0

    async def set_account_if(self, guard: Doc, fields: Doc) -> bool:
        """`$set` on the account only while `guard` holds (compare-and-set): False when it no longer does."""
        result = await self._db[ACCOUNTS].update_one({**guard, "_id": self.account_id}, {"$set": fields})
        return result.matched_count > 0

    async def set_agent(self, agent_id: str, fields: Doc) -> bool:
        result = await self._db[AGENTS].update_one({"_id": agent_id, "account_id": self.account_id}, {"$set": fields})
        return result.matched_count > 0

    async def preferences(self, user_id: str) -> Doc | None:
        """The user's preferences as this account sees them: none when another account wrote them (decision 0076)."""
        doc = await self._db[NOTIFIER_PREFERENCES].find_one({"_id": user_id})
        return doc if doc is not None and holds_for(doc, self.account_id) else None

    async def set_preferences(self, user_id: str, fields: Doc) -> None:
        """Set the given fields, keeping the rest (push token, a staff member's name and email) of this
        account's record; a record another account wrote is replaced, nothing of it kept (decision 0076: the
        caller checked that the user is this account's).

        Not an upsert: whether nx-27017 takes `_id` from the filter on upsert is not established
        for update_one (it does not for replace_one, decision 0004), so insert with `_id` instead.
        """
        fields = {**fields, "account_id": self.account_id}
        collection = self._db[NOTIFIER_PREFERENCES]
        stored = await collection.find_one({"_id": user_id}, {"account_id": 1})
        if stored is not None and not holds_for(stored, self.account_id):
            await collection.delete_one({"_id": user_id, "account_id": stored["account_id"]})
        if (await collection.update_one({"_id": user_id}, {"$set": fields})).matched_count:
            return
        try:
            await collection.insert_one({"_id": user_id, **fields})
        except DuplicateKeyError:  # a concurrent first write won; apply ours over it
            await collection.update_one({"_id": user_id}, {"$set": fields})
