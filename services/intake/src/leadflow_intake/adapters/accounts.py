"""Accounts as intake needs them (does the account exist, its default phone region, its agents), cached.

The router owns the `accounts` and `agents` collections (docs/account-config.md); intake only reads
them. The cache keeps a lookup per lead off MongoDB: hits for `ttl` seconds, misses for `miss_ttl`
seconds only, so a newly seeded account is accepted soon after. An agent is cached only once known:
a lead naming an agent not known yet reads afresh, so an agent just added is accepted at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import phonenumbers
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.handlers import AccountInfo
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.ttl_cache import TtlCache


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
        self._cache: TtlCache[str, AccountInfo | None] = TtlCache(
            lambda info: ttl if info else miss_ttl, max_entries=max_entries, clock=clock
        )
        self._known_agents: TtlCache[tuple[str, str], bool] = TtlCache(
            lambda known: ttl if known else 0.0, max_entries=max_entries, clock=clock
        )

    async def find(self, account_id: str) -> AccountInfo | None:
        return await self._cache.get_or_load(account_id, lambda: self._info(account_id))

    async def has_agent(self, account_id: str, agent_id: str) -> bool:
        """On the account's roster (whom the router routes to) and an agent of this account, not another's."""
        return await self._known_agents.get_or_load(
            (account_id, agent_id), lambda: self._is_agent(account_id, agent_id)
        )

    async def _info(self, account_id: str) -> AccountInfo | None:
        # account_id is a validated plain string (pattern ^[A-Za-z0-9_.-]+$), never an operator.
        doc = await self._accounts.find_one({"_id": account_id}, {"default_region": 1})
        return None if doc is None else AccountInfo(default_region=self._region(doc.get("default_region")))

    async def _is_agent(self, account_id: str, agent_id: str) -> bool:
        # Both ids are validated plain strings (pattern ^[A-Za-z0-9_.-]+$), never operators.
        account = await self._accounts.find_one({"_id": account_id}, {"roster": 1})
        roster = account.get("roster") if account is not None else None
        if not (isinstance(roster, list) and agent_id in roster):
            return False
        agent = await self._agents.find_one({"_id": agent_id}, {"account_id": 1})
        return agent is not None and agent.get("account_id") == account_id

    def _region(self, stored: object) -> str:
        region = stored.upper() if isinstance(stored, str) else ""
        return region if region in phonenumbers.SUPPORTED_REGIONS else self._fallback_region
