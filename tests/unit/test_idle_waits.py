"""What lets idle consumers and the sweeper sleep (decision 0052): the fetch wait each fetch gets,
the batch subscriber's wait without a pause, and the sweeper's alarm."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from leadflow_router.sweeper import Alarm
from leadflow_shared.long_poll import ConsumerInternalsChangedError, block_for_batches, long_poll

pytestmark = pytest.mark.unit


class Fetcher:
    """The part of aiokafka's Fetcher that `long_poll` adapts: its planner reads `_fetch_max_wait_ms`."""

    def __init__(self) -> None:
        self._records: dict[str, object] = {}
        self._fetch_max_wait_ms = 20

    def _get_actions_per_node(self, _assignment: Any) -> int:
        return self._fetch_max_wait_ms  # the wait the next fetch request would carry


class Subscriber:
    def __init__(self) -> None:
        self.consumer = type("Consumer", (), {"_fetcher": Fetcher()})()
        self.max_records = 7

    async def get_msg(self, _consumer: Any) -> tuple[Any, ...]:
        raise AssertionError("replaced")


def test_a_fetch_covering_every_partition_waits_long_and_one_leaving_a_partition_out_waits_short() -> None:
    subscriber = Subscriber()
    long_poll(subscriber, idle_ms=500, busy_ms=20)
    fetcher = subscriber.consumer._fetcher
    assert fetcher._get_actions_per_node(None) == 500
    fetcher._records["leads.events.v1-0"] = object()  # records a handler has not taken yet
    assert fetcher._get_actions_per_node(None) == 20
    fetcher._records.clear()
    assert fetcher._get_actions_per_node(None) == 500


def test_consumer_internals_that_changed_stop_the_service_instead_of_being_ignored() -> None:
    with pytest.raises(ConsumerInternalsChangedError):
        long_poll(object(), idle_ms=500, busy_ms=20)
    with pytest.raises(ConsumerInternalsChangedError):
        block_for_batches(object(), idle_ms=500)


@pytest.mark.asyncio
async def test_a_batch_subscriber_asks_for_records_with_the_long_wait_and_returns_them_in_order() -> None:
    calls: list[dict[str, int]] = []

    class Consumer:
        async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
            calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
            return {"p0": ["a", "b"], "p1": ["c"]} if len(calls) > 1 else {}

    subscriber = Subscriber()
    block_for_batches(subscriber, idle_ms=500)
    assert await subscriber.get_msg(Consumer()) == ()  # none came: no pause after it either
    assert await subscriber.get_msg(Consumer()) == ("a", "b", "c")
    assert calls == [{"timeout_ms": 500, "max_records": 7}] * 2


def test_the_alarm_keeps_the_earliest_deadline() -> None:
    alarm = Alarm()
    seen = []
    for deadline in (None, 5_000, 9_000, 1_000):
        alarm.at(deadline)
        seen.append(alarm.next_ms)
    alarm.clear()
    assert [*seen, alarm.next_ms] == [None, 5_000, 5_000, 1_000, None]


@pytest.mark.asyncio
async def test_an_earlier_deadline_wakes_the_sleeping_sweeper() -> None:
    alarm, stopping = Alarm(), asyncio.Event()
    alarm.at(3_600_000)
    sleeping = asyncio.create_task(alarm.sleep(stopping, now_ms=0, longest=60, rate=1.0))
    await asyncio.sleep(0)  # let it start sleeping
    alarm.at(9_000_000)  # later: no reason to wake
    await asyncio.sleep(0)
    woke_early = sleeping.done()
    alarm.at(1_000)
    await asyncio.wait_for(sleeping, 5)
    assert not woke_early


@pytest.mark.asyncio
async def test_stopping_wakes_the_sleeping_sweeper() -> None:
    alarm, stopping = Alarm(), asyncio.Event()
    sleeping = asyncio.create_task(alarm.sleep(stopping, now_ms=0, longest=60, rate=1.0))
    await asyncio.sleep(0)
    stopping.set()
    await asyncio.wait_for(sleeping, 5)


@pytest.mark.asyncio
async def test_a_deadline_already_due_does_not_sleep() -> None:
    alarm, stopping = Alarm(), asyncio.Event()
    alarm.at(1_000)
    await asyncio.wait_for(alarm.sleep(stopping, now_ms=2_000, longest=60, rate=1.0), 5)
