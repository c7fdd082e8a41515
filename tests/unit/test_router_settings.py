"""Router settings: the test clock (R10 across a DST change in e2e) never runs in production."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from leadflow_router.handlers import clock_from
from leadflow_router.settings import RouterSettings

pytestmark = pytest.mark.unit

START = datetime(2026, 3, 8, 6, 58, 58, tzinfo=UTC)


def test_the_test_clock_is_refused_in_production_and_taken_elsewhere() -> None:
    with pytest.raises(ValidationError, match="production runs on the real clock"):
        RouterSettings(environment="production", clock_start=START)
    assert RouterSettings(environment="test", clock_start=START).clock_start == START
    assert RouterSettings(environment="production").clock_start is None


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RouterSettings(clock_start=datetime(2026, 3, 8, 1, 58))  # noqa: DTZ001 - the point of the test


def test_the_test_clock_starts_at_its_instant_and_runs_at_real_speed() -> None:
    before = time.monotonic()  # before the clock starts, so `elapsed` bounds what it can have run
    clock = clock_from(START)
    first = clock()
    second = clock()
    elapsed = time.monotonic() - before
    assert START <= first <= second <= START + timedelta(seconds=elapsed)


def test_the_test_clock_can_run_faster_than_real_time() -> None:
    before = time.monotonic()
    clock = clock_from(START, rate=4.0)
    made = time.monotonic()  # the clock started between `before` and now
    first = clock()
    elapsed = time.monotonic() - before
    while time.monotonic() - made < 0.05:  # the clock advances only with real time: let some pass
        pass
    second = clock()
    real = time.monotonic() - before
    assert START <= first <= START + timedelta(seconds=4 * elapsed)
    assert START + timedelta(seconds=4 * 0.05) <= second <= START + timedelta(seconds=4 * real)
