"""Accounts as intake needs them (does the account exist, its default phone region, its agents), cached.

The router owns the `accounts` and `agents` collections (docs/account-config.md); intake only reads
them. The cache keeps a lookup per lead off MongoDB: hits for `ttl` seconds, misses for `miss_ttl`
seconds only, so a newly seeded account is accepted soon after. An agent is cached only once known:
a lead naming an agent not known yet reads afresh, so an agent just added is accepted at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import phonenumbers
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.handlers import AccountInfo

ACCOUNTS = "accounts"
AGENTS = "agents"

K = TypeVar("K")
V = TypeVar("V")


class MongoAccounts:
    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        fallback_region: str,
        ttl: float = 60.0,
        miss_ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = db[ACCOUNTS]
        self._agents = db[AGENTS]
        self._fallback_region = fallback_region.upper()
        self._ttl, self._miss_ttl, self._max_entries = ttl, miss_ttl, max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, AccountInfo | None]] = {}
        self._known_agents: dict[tuple[str, str], float] = {}  # expiry of each known agent

    async def find(self, account_id: str) -> AccountInfo | None:
        now = self._clock()
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        # account_id is a validated plain string (pattern ^[A-Za-z0-9_.-]+$), never an operator.
        doc = await self._accounts.find_one({"_id": account_id}, {"default_region": 1})
        info = None if doc is None else AccountInfo(default_region=self._region(doc.get("default_region")))
        self._remember(self._cache, account_id, (now + (self._ttl if info else self._miss_ttl), info))
        return info

    async def has_agent(self, account_id: str, agent_id: str) -> bool:
        """On the account's roster (whom the router routes to) and an agent of this account, not another's."""
        now = self._clock()
        if self._known_agents.get((account_id, agent_id), 0.0) > now:
            return True
        # Both ids are validated plain strings (pattern ^[A-Za-z0-9_.-]+$), never operators.
        account = await self._accounts.find_one({"_id": account_id}, {"roster": 1})
        roster = account.get("roster") if account is not None else None
        known = isinstance(roster, list) and agent_id in roster
        if known:
            agent = await self._agents.find_one({"_id": agent_id}, {"account_id": 1})
            known = agent is not None and agent.get("account_id") == account_id
        if known:
            self._remember(self._known_agents, (account_id, agent_id), now + self._ttl)
        return known

    def _remember(self, cache: dict[K, V], key: K, value: V) -> None:
        cache.pop(key, None)
        if len(cache) >= self._max_entries:
            cache.pop(next(iter(cache)))  # the entry stored longest ago
        cache[key] = value

    def _region(self, stored: object) -> str:
        region = stored.upper() if isinstance(stored, str) else ""
        return region if region in phonenumbers.SUPPORTED_REGIONS else self._fallback_region
