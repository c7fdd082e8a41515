"""Who a request comes from (S1): the bearer token verified, then its user's standing in the office checked
(decisions 0079, 0105).

A token lives for hours; an agent made inactive (T3) or moved to another office (T2) meanwhile, an admin the
office removed or demoted to staff, and a web session's token signed out are refused from the next request
on, as an expired token is (401). Each user's records are read at most once per `ttl` seconds
(`CRM_API_AUTH__MEMBER_CACHE_SECONDS`), and each token's sign-out likewise, so the read paths gain no MongoDB
round trip per request.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.domain.principal import Membership, Principal, Role, StaffWord, admitted
from leadflow_crm_api.errors import Unauthenticated
from leadflow_shared.collections import AGENTS, CRM_REMOVED_STAFF, CRM_SIGNED_OUT, STAFF
from leadflow_shared.ttl_cache import TtlCache

Doc = dict[str, Any]
MAX_CACHED_USERS = 10_000


def removed_staff_id(account_id: str, user_id: str) -> str:
    """`crm_removed_staff`'s id: one office's word about one user (ids are global, offices are not)."""
    return f"{account_id}|{user_id}"


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # A signed-out token is refused by its own expiry after that: its record goes then.
    await db[CRM_SIGNED_OUT].create_index([("expires_at", ASCENDING)], name="forget_expired", expireAfterSeconds=0)


class Callers:
    def __init__(self, verifier: TokenVerifier, db: Callable[[], AsyncDatabase[Doc]], *, ttl: float) -> None:
        self._verifier = verifier
        self._db = db  # the runtime's database, open once the process has started
        self._members: TtlCache[str, Membership | None] = TtlCache(ttl, max_entries=MAX_CACHED_USERS)
        self._staff: TtlCache[tuple[str, str], StaffWord] = TtlCache(ttl, max_entries=MAX_CACHED_USERS)
        self._signed_out: TtlCache[str, bool] = TtlCache(ttl, max_entries=MAX_CACHED_USERS)

    async def of(self, token: str) -> Principal:
        """The caller the token names, while it still is that; Unauthenticated (a reason safe to return) otherwise.
        A live page's stream asks again at each poll: it ends with its token's expiry, sign-out or user."""
        caller = self._verifier.verify(token)  # its expiry too, each time a stream asks again
        digest = caller.session or ""
        if await self._signed_out.get_or_load(digest, lambda: self._was_signed_out(digest)):
            raise Unauthenticated("The bearer token was signed out.")
        if not await self._admitted(caller):
            raise Unauthenticated("The bearer token's user is no longer an active member of this account.")
        return caller

    async def is_member(self, agent_id: str, account_id: str) -> bool:
        """Whether `agent_id` is an agent of `account_id` not made inactive (as a token of it would be admitted): an
        offer's accept link claims for its agent only while so (read through the same cache)."""
        membership = await self._members.get_or_load(agent_id, lambda: self._membership(agent_id))
        return membership is not None and admitted(Principal(agent_id, Role.REALTOR, account_id), membership)

    async def sign_out(self, caller: Principal) -> None:
        """End the caller's token everywhere (the web app and the API), by its claims (`Principal.session`: a hash,
        no credential kept), until the token's own expiry and the leeway it is accepted for after it; this replica
        at once, others within `ttl`."""
        until = (caller.expires_at or time.time()) + self._verifier.leeway_seconds
        digest = caller.session or ""
        with contextlib.suppress(DuplicateKeyError):  # signed out twice (two tabs)
            await self._db()[CRM_SIGNED_OUT].insert_one(
                {"_id": digest, "expires_at": datetime.fromtimestamp(until, UTC)}
            )
        await self._signed_out.get_or_load(digest, lambda: self._was_signed_out(digest), fresh=True)

    async def _admitted(self, caller: Principal) -> bool:
        membership = await self._members.get_or_load(caller.sub, lambda: self._membership(caller.sub))
        staff = None
        if membership is None and caller.role is Role.ADMIN:
            key = (caller.sub, caller.account_id)
            staff = await self._staff.get_or_load(key, lambda: self._staff_word(*key))
        return admitted(caller, membership, staff)

    async def recheck(self, user_id: str, account_id: str | None = None) -> None:
        """Read `user_id`'s records again now: this process changed them (a departure, a move; with `account_id`,
        its staff record there), so its next request here is judged by the change, not by what was cached (other
        replicas: within `ttl`). The change is stored already: a read that fails now fails nothing (the cache
        reads it again within `ttl`)."""
        with contextlib.suppress(PyMongoError):
            await self._members.get_or_load(user_id, lambda: self._membership(user_id), fresh=True)
            if account_id is not None:
                await self._staff.get_or_load(
                    (user_id, account_id), lambda: self._staff_word(user_id, account_id), fresh=True
                )

    async def _membership(self, user_id: str) -> Membership | None:
        agent = await self._db()[AGENTS].find_one({"_id": user_id}, {"account_id": 1, "status": 1, "active": 1})
        return None if agent is None else Membership.of(agent)

    async def _staff_word(self, user_id: str, account_id: str) -> StaffWord:
        db = self._db()
        record = await db[STAFF].find_one({"_id": user_id, "account_id": account_id}, {"role": 1})
        if record is not None:
            return StaffWord(role=str(record.get("role", "staff")))
        removed = await db[CRM_REMOVED_STAFF].find_one({"_id": removed_staff_id(account_id, user_id)}, {"_id": 1})
        return StaffWord(removed=removed is not None)

    async def _was_signed_out(self, digest: str) -> bool:
        return await self._db()[CRM_SIGNED_OUT].find_one({"_id": digest}, {"_id": 1}) is not None
