"""A background loop runs its work until the service stops, and outlives a failed round (shared/background.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from leadflow_shared.background import every

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

PERSONAL = "jane.doe@example.com"


class Work:
    """Counts rounds; raises the errors queued in `failures`; sets `stopping` after `rounds` rounds."""

    def __init__(self, stopping: asyncio.Event, rounds: int, failures: list[Exception] | None = None) -> None:
        self.stopping, self.rounds, self.failures = stopping, rounds, failures or []
        self.done = 0
        self.ran = asyncio.Event()

    async def __call__(self) -> None:
        self.done += 1
        self.ran.set()
        if self.done >= self.rounds:
            self.stopping.set()
        if self.failures:
            raise self.failures.pop(0)


async def test_the_work_runs_each_round_until_stopping_is_set() -> None:
    stopping = asyncio.Event()
    work = Work(stopping, rounds=3)
    await asyncio.wait_for(every(0, stopping, work, what="test loop"), timeout=5)
    assert work.done == 3


async def test_setting_stopping_ends_the_wait_between_rounds_at_once() -> None:
    stopping = asyncio.Event()
    work = Work(stopping, rounds=1_000)
    loop = asyncio.create_task(every(3600, stopping, work, what="test loop"))
    await asyncio.wait_for(work.ran.wait(), timeout=5)
    stopping.set()
    await asyncio.wait_for(loop, timeout=5)  # not an hour
    assert work.done == 1


async def test_nothing_runs_once_stopping_is_set() -> None:
    stopping = asyncio.Event()
    stopping.set()
    work = Work(stopping, rounds=1)
    await asyncio.wait_for(every(0, stopping, work, what="test loop"), timeout=5)
    assert work.done == 0


async def test_a_failed_round_is_logged_without_its_message_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopping = asyncio.Event()
    work = Work(stopping, rounds=3, failures=[ValueError(f"bad address {PERSONAL}"), ConnectionError(PERSONAL)])
    with caplog.at_level(logging.WARNING, logger="leadflow_shared.background"):
        await asyncio.wait_for(every(0, stopping, work, what="test loop", quiet=(ConnectionError,)), timeout=5)
    assert work.done == 3, "both failures were survived"
    bug, outage = caplog.records
    assert (bug.levelno, bug.getMessage()) == (logging.ERROR, "test loop failed: ValueError; trying again")
    assert "test_shared_background.py" in getattr(bug, "stack", ""), "a bug's log shows where it happened"
    assert (outage.levelno, outage.getMessage()) == (logging.WARNING, "test loop: ConnectionError; trying again")
    assert not hasattr(outage, "stack")
    assert PERSONAL not in caplog.text
    assert all(r.exc_info is None and PERSONAL not in str(vars(r)) for r in caplog.records)
