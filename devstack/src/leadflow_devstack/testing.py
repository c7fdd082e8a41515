"""Helpers for tests of leadflow: polling a condition with a deadline instead of sleeping."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from tenacity import AsyncRetrying, stop_after_delay, wait_fixed

T = TypeVar("T")
RecordPredicate = Callable[[ConsumerRecord[bytes, bytes]], bool]
WaitForRecord = Callable[[str, RecordPredicate], Awaitable[ConsumerRecord[bytes, bytes]]]


@overload
async def eventually(condition: Callable[[], Awaitable[T]], *, timeout: float = ..., what: str = ...) -> T: ...
@overload
async def eventually(condition: Callable[[], T], *, timeout: float = ..., what: str = ...) -> T: ...


async def eventually(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; fail after `timeout`."""
    async for attempt in AsyncRetrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            result = condition()
            value = (await result) if inspect.isawaitable(result) else result
            if not value:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            return value
    raise AssertionError("unreachable")  # pragma: no cover


async def records_until(
    bootstrap: str, topic: str, last: RecordPredicate, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning up to the first one `last` matches; fail after `timeout`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    seen: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(records)
            if any(last(r) for r in seen):
                return seen
        raise AssertionError(f"no matching record on {topic} within {timeout}s")
    finally:
        await consumer.stop()
