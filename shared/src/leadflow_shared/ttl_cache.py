"""A small in-process cache whose entries expire: configuration read often and changed rarely.

A value is kept for `ttl` seconds from the moment its load began (so a change is seen within
`ttl` of being stored, however slow the read), or for a time that depends on the value (a miss
cached more briefly than a hit); a time of 0 or less does not store it. Concurrent callers that
miss the same key share one load; `get_many_or_load` loads the keys one caller misses together (one
query for many keys). Storing drops the entries stored longest ago that expired (a key never asked again
stayed for good: every office a router ever routed for, every agent a notifier ever told, helper 199's review);
with `max_entries`, storing one more also drops the entry stored longest ago. One event loop only (not
thread-safe).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
        self._forget_expired()
        if ttl <= 0:
            return
        if self._max_entries is not None and len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = _Entry(order, read_at + ttl, value)

    def _forget_expired(self) -> None:
        """The entries stored longest ago, while they have expired: each store drops those stored before it that
        ended (a value's time depending on it, one kept longer stops the sweep until it ends too)."""
        now = self._clock()
        for key, entry in list(itertools.islice(self._entries.items(), 64)):
            if entry.expires > now:
                return
            del self._entries[key]

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

    async def get_many_or_load(
        self, keys: Iterable[K], load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]]
    ) -> dict[K, V]:
        """The value of each key: cached, or else loaded with the other keys missed here by one
        `load_many(missing)`, which returns a value for each (stored, and shared with callers that miss
        them meanwhile); a key another caller is loading already is waited for, as `get_or_load` does."""
        values: dict[K, V] = {}
        waiting: list[K] = []
        missing: list[K] = []
        now = self._clock()
        for key in dict.fromkeys(keys):
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                values[key] = entry.value
            else:
                (waiting if key in self._loading else missing).append(key)
        if missing:
            values.update(await self._load_many(missing, load_many))
        for key in waiting:
            values[key] = await self.get_or_load(key, functools.partial(_one, key, load_many))
        return values

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        async def load_one(_: list[K]) -> dict[K, V]:
            return {key: await load()}

        return (await self._load_many([key], load_one))[key]

    async def _load_many(self, keys: list[K], load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> dict[K, V]:
        read_at, loop = self._clock(), asyncio.get_running_loop()
        loading = {key: (next(self._orders), loop.create_future()) for key in keys}
        self._loading.update((key, future) for key, (_, future) in loading.items())
        try:
            values = await load_many(keys)
            loaded = {key: values[key] for key in keys}
        except Exception as exc:
            for _, future in loading.values():
                future.set_exception(exc)
                future.exception()  # marked retrieved: when nobody waits on it, that is no error to report
            raise
        else:
            for key, (order, future) in loading.items():
                future.set_result(loaded[key])
                self._store(key, loaded[key], read_at, order)
            return loaded
        finally:
            for key, (_, future) in loading.items():
                if not future.done():  # cancelled: callers waiting on it load again
                    future.cancel()
                if self._loading.get(key) is future:
                    del self._loading[key]


async def _one(key: K, load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> V:
    return (await load_many([key]))[key]
