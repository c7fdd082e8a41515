"""Fixtures: real servers on free ports, started once per test session.

- `mongo_url`: MONGODB_URL when set (a real MongoDB, to check fidelity), else an nx-27017.
- `stack`: the whole system as `leadflow-dev` runs it (Tansu, nx-27017, SMTP sink, the
  four services as processes), for integration and e2e tests.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from tenacity import AsyncRetrying, stop_after_delay, wait_fixed

from leadflow_devstack.servers import mongo_wire
from leadflow_devstack.stack import Stack

T = TypeVar("T")
RecordPredicate = Callable[[ConsumerRecord[bytes, bytes]], bool]
WaitForRecord = Callable[[str, RecordPredicate], Awaitable[ConsumerRecord[bytes, bytes]]]


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("MONGODB_URL"):
        yield url
        return
    server, url = mongo_wire(tmp_path_factory.mktemp("mongo"))
    try:
        yield url
    finally:
        server.stop(timeout=5)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    system = Stack(tmp_path_factory.mktemp("stack"))
    try:
        system.start_infra()
        system.start_services()
        yield system
    finally:
        system.stop()


@pytest.fixture
def wait_for_record(stack: Stack) -> WaitForRecord:
    """Read `topic` from the beginning until a record matches, or fail after a deadline."""

    async def wait(topic: str, matches: RecordPredicate, timeout: float = 30.0) -> ConsumerRecord[bytes, bytes]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for record in (r for records in batches.values() for r in records):
                    if matches(record):
                        return record
            raise AssertionError(f"no matching record on {topic} within {timeout}s")
        finally:
            await consumer.stop()

    return wait


async def eventually(condition: Callable[[], Awaitable[T] | T], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `condition` (sync or async) until it returns something truthy; fail after `timeout`."""
    async for attempt in AsyncRetrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            result = condition()
            value = await result if inspect.isawaitable(result) else result
            if not value:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            return value
    raise AssertionError("unreachable")  # pragma: no cover


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
