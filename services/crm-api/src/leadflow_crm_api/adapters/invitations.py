"""Brokerage invitations to realtors in `crm_invitations` (V4), and the agent flag the router reads (R6).

One document per (brokerage, realtor) under a derived `_id` (domain.sharing.invitation_id), so
two concurrent invites collide on insert instead of creating two. Status changes are
conditional updates on the current status, so two racing answers cannot both win.
Authorisation happens before these calls.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.domain.sharing import INVITATION_VALID, InvitationStatus, invitation_id
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import AGENTS, CRM_INVITATION_EMAILS, CRM_INVITATIONS

VALID_MS = int(INVITATION_VALID.total_seconds() * 1000)
MARK_ATTEMPTS = 3  # flag writes while the invitation keeps changing under them (each change writes its own after)

LIST_LIMIT = 1000  # a brokerage's invitations listed at once

Doc = dict[str, Any]


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # No index names _id (nx-27017, decision 0004); lists are per account in invitation order.
    await db[CRM_INVITATIONS].create_index([("account_id", ASCENDING), ("created_ms", ASCENDING)], name="account")
    await db[CRM_INVITATIONS].create_index([("realtor_id", ASCENDING)], name="realtor")
    await db[CRM_INVITATION_EMAILS].create_index([("account_id", ASCENDING), ("sent_ms", ASCENDING)], name="account")
    await db[CRM_INVITATION_EMAILS].create_index([("expires_at", ASCENDING)], name="forget_old", expireAfterSeconds=0)


def _email_id(stored: Doc) -> str:
    return f"{stored['_id']}/{stored['invited_ms']}"


class Invitations:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._invitations = db[CRM_INVITATIONS]

    async def get(self, invitation_id: str) -> Doc | None:
        return await self._invitations.find_one({"_id": invitation_id})

    async def of_account(self, account_id: str, *, status: InvitationStatus | None = None) -> list[Doc]:
        query: Doc = {"account_id": account_id}
        if status is not None:
            query["status"] = status.value
        cursor = self._invitations.find(query).sort([("created_ms", ASCENDING), ("_id", ASCENDING)])
        return [doc async for doc in cursor.limit(LIST_LIMIT)]

    async def create(self, doc: Doc) -> bool:
        """Insert a new invitation; False when one with its id exists already (insert, not upsert: 0004)."""
        try:
            await self._invitations.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def of_realtor(self, realtor_id: str) -> list[Doc]:
        order = [("created_ms", ASCENDING), ("_id", ASCENDING)]
        cursor = self._invitations.find({"realtor_id": realtor_id}).sort(order)
        return [doc async for doc in cursor.limit(LIST_LIMIT)]

    async def mark_notified(self, invitation_id: str, invited_ms: int) -> None:
        """The invitation email of this (re)invitation was handed to the router."""
        await self._invitations.update_one(
            {"_id": invitation_id, "invited_ms": invited_ms}, {"$set": {"notified_ms": invited_ms}}
        )

    async def disconnect(self, invitation_id: str, at: datetime) -> bool:
        """End an accepted invitation; False if it is not accepted (any more)."""
        current = {"status": InvitationStatus.ACCEPTED.value}
        return await self._end(invitation_id, current, InvitationStatus.DISCONNECTED, at)

    async def reopen(self, seen: Doc, fields: Doc) -> bool:
        """Invite again after a decline, a disconnection, a withdrawal, a realtor's leaving or an expiry: `seen` as
        read, so an answer or another invite meanwhile makes this False (decided again)."""
        result = await self._invitations.update_one(
            {"_id": seen["_id"], "status": seen["status"], "invited_ms": seen["invited_ms"]},
            {"$set": {**fields, "status": InvitationStatus.PENDING.value, "answered_at": None, "answered_ms": None}},
        )
        return result.matched_count > 0

    async def withdraw(self, invitation_id: str, at: datetime) -> bool:
        """The brokerage takes a pending invitation back (expired or not); False if it is not pending (any more)."""
        current = {"status": InvitationStatus.PENDING.value}
        return await self._end(invitation_id, current, InvitationStatus.WITHDRAWN, at)

    async def leave(self, invitation_id: str, realtor_id: str, at: datetime) -> bool:
        """The realtor ends its accepted invitation; False if it is not accepted (any more)."""
        current = {"realtor_id": realtor_id, "status": InvitationStatus.ACCEPTED.value}
        return await self._end(invitation_id, current, InvitationStatus.LEFT, at)

    async def _end(self, invitation_id: str, current: Doc, to: InvitationStatus, at: datetime) -> bool:
        result = await self._invitations.update_one(
            {"_id": invitation_id, **current},
            {"$set": {"status": to.value, "answered_at": at, "answered_ms": epoch_ms(at)}},
        )
        return result.matched_count > 0

    async def answer(self, invitation_id: str, realtor_id: str, answer: InvitationStatus, at: datetime) -> bool:
        """Move a pending invitation of `realtor_id` to `answer`; False if it is not pending any more, or expired."""
        current = {
            "realtor_id": realtor_id,
            "status": InvitationStatus.PENDING.value,
            "invited_ms": {"$gte": epoch_ms(at) - VALID_MS},
        }
        return await self._end(invitation_id, current, answer, at)

    async def mark_agent(self, account_id: str, realtor_id: str) -> None:
        """Tell the router (R6 eligibility) on the realtor's agent document, if the account has one, what the
        invitation says as it is: accepted or not. Written, then the invitation read again and the flag written again
        if it changed meanwhile: an answer and a disconnect at once (two requests, two replicas) each write after their
        own status write, so the last flag written is the last status's (written from the request's own answer, a
        disconnected realtor's late accept left it eligible for the office's leads: helper 189's review).

        Never creates an agent: agents come from the account's settings.
        """
        key = invitation_id(account_id, realtor_id)
        accepted = await self._accepted(key)
        for _ in range(MARK_ATTEMPTS):
            await self._set_flag(account_id, realtor_id, accepted)
            if (now := await self._accepted(key)) == accepted:
                return
            accepted = now
        await self._set_flag(account_id, realtor_id, accepted)

    async def sent_since(self, account_id: str, since_ms: int, *, but: str | None = None) -> int:
        """How many invitation emails the account sent from `since_ms` on (`but`: not counting one invitation's):
        each (re)invitation's email counts, however often one invitation was withdrawn and sent again (counting
        invitations, a withdraw and invite loop sent any number: helper 194's review)."""
        query: Doc = {"account_id": account_id, "sent_ms": {"$gte": since_ms}}
        if but is not None:
            query["invitation_id"] = {"$ne": but}
        return await self._db[CRM_INVITATION_EMAILS].count_documents(query)

    async def count_email(self, stored: Doc) -> bool:
        """Count the email of this (re)invitation, once (its id is the invitation's and its send's: a retry whose
        email did not go counts no second time), kept two days; False when it was counted already."""
        now = datetime.now(UTC)
        doc = {
            "_id": _email_id(stored),
            "account_id": stored["account_id"],
            "invitation_id": stored["_id"],
            "sent_ms": epoch_ms(now),
            "expires_at": now + timedelta(days=2),
        }
        try:
            await self._db[CRM_INVITATION_EMAILS].insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def uncount_email(self, stored: Doc) -> None:
        await self._db[CRM_INVITATION_EMAILS].delete_one({"_id": _email_id(stored)})

    async def _accepted(self, key: str) -> bool:
        doc = await self.get(key)
        return doc is not None and doc["status"] == InvitationStatus.ACCEPTED.value

    async def _set_flag(self, account_id: str, realtor_id: str, accepted: bool) -> None:
        await self._db[AGENTS].update_one(
            {"_id": realtor_id, "account_id": account_id}, {"$set": {"invitation_accepted": accepted}}
        )
