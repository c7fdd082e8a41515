"""Many concurrent calls of one database write, sent as one command (issue 14).

A consumer handles a batch's leads concurrently, and each lead makes the same few writes (the
notifier: its delivery record, `sent`, the digest item). `Coalesced` turns the calls made while
the previous command is in flight, or in the same turn of the event loop, into one bulk command:
round trips per batch instead of per lead, each caller still awaiting its own outcome. At low
load a call waits one turn of the loop and goes alone.

Calls that come one after another rather than together (the notifier's `sent` marks: each email's
SMTP exchange ends on its own) can still share a command: `expected` says how many calls are on
their way, and a flush waits for that many, at most `linger` seconds (decision 0072).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]
"""Writes the items; returns one outcome per item, in order (a result, or the error for that item)."""


class Coalesced(Generic[T, R]):
    def __init__(
        self,
        flush: Flush[T, R],
        *,
        max_items: int = 500,
        expected: Callable[[], int] | None = None,
        linger: float = 0.0,
    ) -> None:
        """`expected`: how many calls are under way (those waiting included); a flush waits until that
        many wait, or `linger` seconds have passed since it could have gone. None: no waiting."""
        self._flush = flush
        self._max_items = max_items
        self._expected = expected
        self._linger = linger
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def __call__(self, item: T) -> R:
        outcome: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, outcome))
        self._arrived.set()
        if self._running is None:
            self._running = asyncio.create_task(self._drain())
        return await outcome

    async def _gathered(self) -> None:
        """Wait until the calls `expected` are all waiting, at most `linger` seconds."""
        if self._expected is None or len(self._waiting) >= min(self._expected(), self._max_items):
            return
        deadline = asyncio.get_running_loop().time() + self._linger
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while len(self._waiting) < min(self._expected(), self._max_items):
                    self._arrived.clear()
                    await self._arrived.wait()

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._gathered()
                batch, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
                try:
                    outcomes = await self._flush([item for item, _ in batch])
                    if len(outcomes) != len(batch):
                        raise RuntimeError(f"flush gave {len(outcomes)} outcomes for {len(batch)} items")
                except Exception as exc:  # noqa: BLE001 (each caller gets it, as if it had written alone)
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except asyncio.CancelledError:
            for _, future in self._waiting:
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._running = None
