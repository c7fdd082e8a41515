"""A small in-process cache whose entries expire: configuration read often and changed rarely.

A value is kept for `ttl` seconds from the moment its load began (so a change is seen within
`ttl` of being stored, however slow the read), or for a time that depends on the value (a miss
cached more briefly than a hit); a time of 0 or less does not store it. Concurrent callers that
miss the same key share one load. With `max_entries`, storing one more drops the entry stored
longest ago. One event loop only (not thread-safe).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    order: int  # of the load that produced it: a later load's value is the fresher one
    expires: float
    value: V


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        ttl: float | Callable[[V], float],
        *,
        max_entries: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}  # in the order stored
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._orders = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def _store(self, key: K, value: V, read_at: float, order: int) -> None:
        stored = self._entries.get(key)
        if stored is not None and stored.order > order:
            return  # a slow load finishing after a fresher one
        ttl = self._ttl(value) if callable(self._ttl) else self._ttl
        self._entries.pop(key, None)
        if ttl <= 0:
            return
        if self._max_entries is not None and len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = _Entry(order, read_at + ttl, value)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        """The cached value, or else `load()`'s (stored, and shared with callers that miss meanwhile).

        `fresh`: load now whatever is cached or loading; callers that miss meanwhile share this load.
        """
        while not fresh:
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                return entry.value
            pending = self._loading.get(key)
            if pending is None:
                break
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if pending.cancelled() and not (task is not None and task.cancelling()):
                    continue  # the loading caller was cancelled, not this one: load again
                raise
        return await self._load(key, load)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        read_at, order = self._clock(), next(self._orders)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: when nobody waits on it, that is no error to report
            raise
        else:
            future.set_result(value)
            self._store(key, value, read_at, order)
            return value
        finally:
            if not future.done():  # cancelled: callers waiting on it load again
                future.cancel()
            if self._loading.get(key) is future:
                del self._loading[key]
