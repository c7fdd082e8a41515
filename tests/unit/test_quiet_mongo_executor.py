"""The quiet wait of PyMongo's periodic executors (decision 0070): it runs its target on the interval,
answers a wake at once, keeps PyMongo's minimum spacing, and stops when closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr
from pymongo.periodic_executor import AsyncPeriodicExecutor

from leadflow_devstack.testing import eventually
from leadflow_shared import quiet_mongo
from leadflow_shared.mongo import make_mongo_client
from leadflow_shared.settings import MongoSettings


@pytest.fixture(autouse=True)
def quiet() -> None:
    quiet_mongo.quiet_periodic_executors()


class Runs:
    def __init__(self) -> None:
        self.at: list[float] = []

    async def __call__(self) -> bool:
        self.at.append(time.monotonic())
        return True


@asynccontextmanager
async def running(*, interval: float, min_interval: float) -> AsyncIterator[tuple[AsyncPeriodicExecutor, Runs]]:
    """An executor counting its runs, open for the block and closed (and joined) after it."""
    runs = Runs()
    executor = AsyncPeriodicExecutor(interval=interval, min_interval=min_interval, target=runs)
    executor.open()
    try:
        yield executor, runs
    finally:
        executor.close()
        await executor.join(5)


@pytest.mark.asyncio
async def test_a_wake_runs_the_target_long_before_its_interval() -> None:
    async with running(interval=60, min_interval=0.01) as (executor, runs):
        await eventually(lambda: len(runs.at) == 1, timeout=5, what="the first run")
        executor.wake()
        await eventually(lambda: len(runs.at) == 2, timeout=5, what="the run the wake asked for")


@pytest.mark.asyncio
async def test_it_runs_on_its_interval_unwoken() -> None:
    async with running(interval=0.05, min_interval=0.01) as (_, runs):
        await eventually(lambda: len(runs.at) >= 4, timeout=5, what="runs on the interval")
    gaps = [later - earlier for earlier, later in zip(runs.at, runs.at[1:], strict=False)]
    assert min(gaps) >= 0.05 - 0.005, gaps  # never sooner than its interval unless woken


@pytest.mark.asyncio
async def test_wakes_never_run_it_twice_within_the_minimum_interval() -> None:
    async with running(interval=60, min_interval=0.2) as (executor, runs):
        await eventually(lambda: len(runs.at) == 1, timeout=5, what="the first run")
        for _ in range(20):  # woken much more often than min_interval allows
            executor.wake()
            await asyncio.sleep(0.02)
        await eventually(lambda: len(runs.at) >= 3, timeout=5, what="runs asked for by wakes")
    gaps = [later - earlier for earlier, later in zip(runs.at, runs.at[1:], strict=False)]
    assert min(gaps) >= 0.2 - 0.005, gaps


@pytest.mark.asyncio
async def test_close_stops_it_and_a_false_target_ends_it() -> None:
    runs = Runs()
    executor = AsyncPeriodicExecutor(interval=60, min_interval=0.01, target=runs)
    executor.open()
    await eventually(lambda: len(runs.at) == 1, timeout=5, what="the first run")
    executor.close()
    await executor.join(5)
    executor.wake()
    await asyncio.sleep(0)
    assert len(runs.at) == 1

    async def once() -> bool:
        return False

    ending = AsyncPeriodicExecutor(interval=0.01, min_interval=0.01, target=once)
    ending.open()
    await ending.join(5)
    assert ending._stopped


def test_a_pymongo_without_the_expected_attributes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quiet_mongo, "_EXPECTED", (*quiet_mongo._EXPECTED, "_renamed_in_a_new_pymongo"))
    with pytest.raises(RuntimeError, match="_renamed_in_a_new_pymongo"):
        quiet_mongo.quiet_periodic_executors()


def test_a_client_without_the_expected_upkeep_is_refused() -> None:
    class NotAClient:
        pass

    with pytest.raises(RuntimeError, match="_kill_cursors_executor"):
        quiet_mongo.slower_upkeep(NotAClient())


def test_leadflows_client_runs_its_upkeep_every_five_seconds() -> None:
    client = make_mongo_client(
        MongoSettings(url=SecretStr("mongodb://127.0.0.1:1/?directConnection=true")), app_name="t"
    )
    assert client._kill_cursors_executor._interval == quiet_mongo.UPKEEP_SECONDS


@pytest.mark.asyncio
async def test_a_mongodb_srv_client_is_made_and_runs_its_upkeep_every_five_seconds_once_resolved() -> None:
    # An SRV URL (Atlas's usual form): PyMongo makes the upkeep only after its first use resolved the record, so a
    # client could not be made at all ("PyMongo's AsyncMongoClient changed", every service at start: helper 192).
    url = SecretStr("mongodb+srv://leadflow:secret@cluster0.example.mongodb.net/")
    client = make_mongo_client(MongoSettings(url=url), app_name="t")
    try:
        assert getattr(client, "_kill_cursors_executor", None) is None, "no DNS asked yet"
        client._init_background()  # what its first use does once the SRV record is resolved
        assert client._kill_cursors_executor._interval == quiet_mongo.UPKEEP_SECONDS
    finally:
        await client.close()
