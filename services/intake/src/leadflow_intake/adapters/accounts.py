"""Accounts as intake needs them (does the account exist, its default phone region), cached.

The router owns the `accounts` collection (docs/account-config.md); intake only reads it. The
cache keeps a lookup per lead off MongoDB: hits for `ttl` seconds, misses for `miss_ttl`
seconds only, so a newly seeded account is accepted soon after.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import phonenumbers
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.handlers import AccountInfo

ACCOUNTS = "accounts"


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
        self._fallback_region = fallback_region.upper()
        self._ttl, self._miss_ttl, self._max_entries = ttl, miss_ttl, max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, AccountInfo | None]] = {}

    async def find(self, account_id: str) -> AccountInfo | None:
        now = self._clock()
        cached = self._cache.get(account_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        # account_id is a validated plain string (pattern ^[A-Za-z0-9_.-]+$), never an operator.
        doc = await self._accounts.find_one({"_id": account_id}, {"default_region": 1})
        info = None if doc is None else AccountInfo(default_region=self._region(doc.get("default_region")))
        self._cache.pop(account_id, None)
        if len(self._cache) >= self._max_entries:
            self._cache.pop(next(iter(self._cache)))  # the entry stored longest ago
        self._cache[account_id] = (now + (self._ttl if info else self._miss_ttl), info)
        return info

    def _region(self, stored: object) -> str:
        region = stored.upper() if isinstance(stored, str) else ""
        return region if region in phonenumbers.SUPPORTED_REGIONS else self._fallback_region
