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


class ManySource(Source):
    """`Source` that also loads many keys at once, recording each call's keys."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    async def load_many(self, keys: list[str]) -> dict[str, str | None]:
        self.calls.append(list(keys))
        self.started.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {key: self.values.get(key) for key in keys}


async def test_the_keys_one_caller_misses_are_loaded_in_one_call_and_kept() -> None:
    clock, source = Clock(), ManySource()
    source.values.update(a="one", b="two")
    cache: TtlCache[str, str | None] = TtlCache(60, clock=clock)
    await cache.get_or_load("a", source.loader("a"))
    got = await cache.get_many_or_load(["a", "b", "c", "b"], source.load_many)
    assert got == {"a": "one", "b": "two", "c": None}
    assert source.calls == [["b", "c"]], "the cached key is not read again; each missing key once"
    source.values["b"] = "changed"
    assert await cache.get_or_load("b", source.loader("b")) == "two", "what was loaded together is stored"
    clock.now += 61
    assert await cache.get_many_or_load(["a", "b"], source.load_many) == {"a": "one", "b": "changed"}
    assert source.calls == [["b", "c"], ["a", "b"]]
    assert await cache.get_many_or_load([], source.load_many) == {}
    assert len(source.calls) == 2, "nothing to load: no call"


async def test_keys_loaded_together_are_shared_with_callers_that_miss_them_meanwhile() -> None:
    source = ManySource()
    source.values.update(a="one", b="two")
    source.gate.clear()
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    together = asyncio.create_task(cache.get_many_or_load(["a", "b"], source.load_many))
    await source.started.wait()
    alone = asyncio.create_task(cache.get_or_load("a", source.loader("a")))
    overlapping = asyncio.create_task(cache.get_many_or_load(["b", "c"], source.load_many))
    await asyncio.sleep(0)  # let both join or start their loads before the first one finishes
    source.gate.set()
    assert await together == {"a": "one", "b": "two"}
    assert await alone == "one"
    assert await overlapping == {"b": "two", "c": None}
    assert source.calls == [["a", "b"], ["c"]], "b waited for, only c loaded again"
    assert source.loads == []


async def test_a_failed_load_of_many_fails_its_sharers_and_stores_nothing() -> None:
    source = ManySource()
    source.gate.clear()
    source.error = ConnectionError("database away")
    cache: TtlCache[str, str | None] = TtlCache(60, clock=Clock())
    together = asyncio.create_task(cache.get_many_or_load(["a", "b"], source.load_many))
    await source.started.wait()
    sharer = asyncio.create_task(cache.get_or_load("b", source.loader("b")))
    await asyncio.sleep(0)
    source.gate.set()
    for outcome in await asyncio.gather(together, sharer, return_exceptions=True):
        assert isinstance(outcome, ConnectionError)
    source.error, source.values["a"] = None, "back"
    assert await cache.get_many_or_load(["a", "b"], source.load_many) == {"a": "back", "b": None}
    assert len(cache) == 2


async def test_entries_of_keys_never_asked_again_are_forgotten_once_expired() -> None:
    # Helper 199's review: an expired entry went only when its key was loaded again or a bounded cache was full, so
    # the caches built without a bound (the router's account snapshots, the notifier's recipients with their
    # addresses and phones) kept every office and agent they ever met for the life of the process.
    clock, source = Clock(), Source()
    cache: TtlCache[str, str | None] = TtlCache(5.0, clock=clock)
    for i in range(3_000):
        source.values[f"office-{i}"] = f"snapshot {i}"
        assert await cache.get_or_load(f"office-{i}", source.loader(f"office-{i}")) == f"snapshot {i}"
        clock.now += 1.0  # five keys at a time are within their 5 s
    assert len(cache) <= 6


async def test_an_entry_kept_longer_is_kept_while_the_shorter_ones_after_it_go_once_it_ends() -> None:
    clock, source = Clock(), Source()
    cache: TtlCache[str, str | None] = TtlCache(lambda value: 5.0 if value is None else 60.0, clock=clock)
    source.values["kept"] = "a hit, a minute"
    await cache.get_or_load("kept", source.loader("kept"))
    for i in range(200):  # misses, 5 s each
        await cache.get_or_load(f"miss-{i}", source.loader(f"miss-{i}"))
        clock.now += 1.0
    assert len(cache) <= 60 + 1, "bounded by the longest time to live"
    assert await cache.get_or_load("kept", source.loader("kept")) == "a hit, a minute"
    assert source.loads.count("kept") == 2, "read again: its minute ended"
