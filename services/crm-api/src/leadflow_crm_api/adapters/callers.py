"""Who a request comes from (S1): the bearer token verified, then its user's agent record checked (decision 0079).

A token lives for hours; an agent made inactive (T3) or moved to another office (T2) meanwhile is refused
from its next request on, as an expired token is (401). The agent record is read at most once per user per
`ttl` seconds (`CRM_API_AUTH__MEMBER_CACHE_SECONDS`), so the read paths gain no MongoDB round trip per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.domain.principal import Membership, Principal, admitted
from leadflow_crm_api.errors import Unauthenticated
from leadflow_shared.collections import AGENTS
from leadflow_shared.ttl_cache import TtlCache

Doc = dict[str, Any]
MAX_CACHED_USERS = 10_000


class Callers:
    def __init__(self, verifier: TokenVerifier, db: Callable[[], AsyncDatabase[Doc]], *, ttl: float) -> None:
        self._verifier = verifier
        self._db = db  # the runtime's database, open once the process has started
        self._members: TtlCache[str, Membership | None] = TtlCache(ttl, max_entries=MAX_CACHED_USERS)

    async def of(self, token: str) -> Principal:
        """The caller the token names, while it still is that; Unauthenticated (a reason safe to return) otherwise."""
        caller = self._verifier.verify(token)
        if not await self.still(caller):
            raise Unauthenticated("The bearer token's user is no longer an active member of this account.")
        return caller

    async def still(self, caller: Principal) -> bool:
        """Whether `caller`, verified earlier (a live page's stream), is still admitted."""
        membership = await self._members.get_or_load(caller.sub, lambda: self._membership(caller.sub))
        return admitted(caller, membership)

    async def recheck(self, user_id: str) -> None:
        """Read `user_id`'s agent record again now: this process changed it (a departure, a move), so its next
        request here is judged by the change, not by what was cached (other replicas: within `ttl`). The change
        is stored already: a read that fails now fails nothing (the cache reads it again within `ttl`)."""
        with contextlib.suppress(PyMongoError):
            await self._members.get_or_load(user_id, lambda: self._membership(user_id), fresh=True)

    async def _membership(self, user_id: str) -> Membership | None:
        agent = await self._db()[AGENTS].find_one({"_id": user_id}, {"account_id": 1, "status": 1, "active": 1})
        return None if agent is None else Membership.of(agent)
