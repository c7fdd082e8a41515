"""Entries expire after their time to live; callers that miss together share one load (shared/ttl_cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from leadflow_shared.ttl_cache import TtlCache

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Values to load, counting loads; `gate` holds every load until it is set."""

    def __init__(self) -> None:
        self.values: dict[str, str | None] = {}
        self.loads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.error: Exception | None = None

    def loader(self, key: str) -> Callable[[], Awaitable[str | None]]:
        async def load() -> str | None:
            self.loads.append(key)
            self.started.set()
            await self.gate.wait()
            if self.error is not None:
                raise self.error
            return self.values.get(key)

        return load


async def test_a_value_is_kept_for_its_ttl_then_read_again() -> None:
    clock, source = Clock(), Source()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=clock)
    source.values["a"] = "one"
    assert await cache.get_or_load("a", source.loader("a")) == "one"
    source.values["a"] = "two"
    clock.now += 59.9
    assert await cache.get_or_load("a", source.loader("a")) == "one"
    clock.now += 0.2
    assert await cache.get_or_load("a", source.loader("a")) == "two"
    assert source.loads == ["a", "a"]


async def test_the_ttl_can_depend_on_the_value_and_zero_stores_nothing() -> None:
    clock, source = Clock(), Source()
    cache: TtlCache[str, str | None] = TtlCache(lambda v: 60 if v is not None else 5, clock=clock)
    assert await cache.get_or_load("a", source.loader("a")) is None  # a miss, kept briefly
    source.values["a"] = "found"
    assert await cache.get_or_load("a", source.loader("a")) is None
    clock.now += 5.1
    assert await cache.get_or_load("a", source.loader("a")) == "found"
    uncached: TtlCache[str, str | None] = TtlCache(0, clock=clock)
    await uncached.get_or_load("b", source.loader("b"))
    await uncached.get_or_load("b", source.loader("b"))
    assert source.loads == ["a", "a", "b", "b"]
    assert len(uncached) == 0


async def test_fresh_loads_whatever_is_cached() -> None:
    source = Source()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    source.values["a"] = "one"
    await cache.get_or_load("a", source.loader("a"))
    source.values["a"] = "two"
    assert await cache.get_or_load("a", source.loader("a"), fresh=True) == "two"
    assert await cache.get_or_load("a", source.loader("a")) == "two", "the fresh value is stored"


async def test_callers_that_miss_together_share_one_load() -> None:
    source = Source()
    source.values["a"] = "one"
    source.gate.clear()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    callers = [asyncio.create_task(cache.get_or_load("a", source.loader("a"))) for _ in range(5)]
    await source.started.wait()
    source.gate.set()
    assert await asyncio.gather(*callers) == ["one"] * 5
    assert source.loads == ["a"]


async def test_a_failed_load_fails_its_sharers_and_is_not_stored() -> None:
    source = Source()
    source.gate.clear()
    source.error = ConnectionError("database away")
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    callers = [asyncio.create_task(cache.get_or_load("a", source.loader("a"))) for _ in range(2)]
    await source.started.wait()
    source.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    source.error, source.values["a"] = None, "back"
    assert await cache.get_or_load("a", source.loader("a")) == "back"
    assert source.loads == ["a", "a"]


async def test_when_the_loading_caller_is_cancelled_a_waiting_one_loads_itself() -> None:
    source = Source()
    source.values["a"] = "one"
    source.gate.clear()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    loading = asyncio.create_task(cache.get_or_load("a", source.loader("a")))
    await source.started.wait()
    # Tasks run in the order scheduled: `waiting` joins the pending load before `loading` sees its cancel.
    waiting = asyncio.create_task(cache.get_or_load("a", source.loader("a")))
    loading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loading
    source.gate.set()
    assert await waiting == "one"
    assert source.loads == ["a", "a"]


async def test_a_slow_load_does_not_replace_a_fresher_value() -> None:
    source, slow = Source(), Source()
    slow.values["a"], source.values["a"] = "old", "new"
    slow.gate.clear()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    stale = asyncio.create_task(cache.get_or_load("a", slow.loader("a")))
    await slow.started.wait()
    assert await cache.get_or_load("a", source.loader("a"), fresh=True) == "new"
    slow.gate.set()
    assert await stale == "old"  # its caller gets what it read...
    assert await cache.get_or_load("a", source.loader("a")) == "new"  # ...the cache keeps the fresher value


async def test_the_bound_drops_the_entry_stored_longest_ago() -> None:
    source = Source()
    cache: TtlCache[str, str | None] = TtlCache(60, max_entries=2, clock=Clock())
    for key in ("a", "b", "c"):
        await cache.get_or_load(key, source.loader(key))
    assert len(cache) == 2
    await cache.get_or_load("b", source.loader("b"))
    await cache.get_or_load("a", source.loader("a"))
    assert source.loads == ["a", "b", "c", "a"], "b was kept, a was dropped"
