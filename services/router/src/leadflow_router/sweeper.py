"""The durable timer loop: fires due deadlines from MongoDB's deadline index (I3).

Timers live in the routing records (next_deadline_ms), not in memory, so a restarted
router fires what fell due while it was down, and several replicas can sweep at once:
each record is leased atomically, then changed by compare-and-set, so each expiry
fires once.

Between sweeps the loop sleeps until the earliest deadline in MongoDB, or until this
process stores an earlier one (the `Alarm`), and at most `idle_seconds`: a deadline another
replica stored is found within that (decision 0052). A record this version cannot read is set aside by the
reads themselves (`LeadRecords.due`, `unflushed`: decision 0091); a pass that fails anyway is logged by the
error's type and place, never its message, which may quote a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from pathlib import Path

from pymongo.errors import PyMongoError

from leadflow_router.adapters.codec import to_ms
from leadflow_router.handlers import RouterService

log = logging.getLogger(__name__)


class Alarm:
    """The earliest deadline (epoch ms) the sweeper should wake for; a store of an earlier one wakes it."""

    def __init__(self) -> None:
        self.next_ms: int | None = None
        self._earlier = asyncio.Event()

    def clear(self) -> None:
        self.next_ms = None
        self._earlier.clear()

    def at(self, deadline_ms: int | None) -> None:
        if deadline_ms is not None and (self.next_ms is None or deadline_ms < self.next_ms):
            self.next_ms = deadline_ms
            self._earlier.set()

    async def sleep(self, stopping: asyncio.Event, *, now_ms: int, longest: float, rate: float) -> None:
        """Until `next_ms` (on a clock running `rate` times real speed), an earlier deadline, or `stopping`."""
        seconds = longest if self.next_ms is None else min(longest, max(0.0, (self.next_ms - now_ms) / 1000 / rate))
        self._earlier.clear()
        waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._earlier.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


async def sweep(
    service: RouterService,
    stopping: asyncio.Event,
    *,
    alarm: Alarm,
    idle_seconds: float,
    clock_rate: float = 1.0,
    republish_every_seconds: float = 5.0,
    housekeeping_every_seconds: float = 600.0,
) -> None:
    """Fire deadlines until `stopping` is set; between sweeps, sleep until the next one is due."""
    next_republish = next_housekeeping = time.monotonic()
    while not stopping.is_set():
        alarm.clear()  # before reading MongoDB: a deadline stored meanwhile sets it again
        try:
            if time.monotonic() >= next_republish:
                # Set first: a republish that keeps failing must not keep the deadlines from firing.
                next_republish = time.monotonic() + republish_every_seconds
                await service.republish_stale()
            if time.monotonic() >= next_housekeeping:  # deleted rules' cursors (helper 88): rare, set first too
                next_housekeeping = time.monotonic() + housekeeping_every_seconds
                await service.forget_deleted_rules()
            if await service.sweep_once() >= service.sweep_batch:
                continue  # more are due: no pause
            now_ms = to_ms(service.clock()) or 0
            alarm.at(await service.records.next_deadline_ms(now_ms))
        except (PyMongoError, ConnectionError) as exc:
            log.warning("sweeper: %s; retrying", type(exc).__name__)
            now_ms, alarm.next_ms = 0, None
        except Exception as exc:  # noqa: BLE001 (the loop outlives any fault; the next pass tries again)
            # The error's type and where it was raised, never its message nor a traceback's: a record's
            # decoding error quotes the record (a contact's phone).
            log.error("sweeper failed: %s; retrying", type(exc).__name__,
                      extra={"error_type": type(exc).__name__, "raised_at": _raised_at(exc)})  # fmt: skip
            now_ms, alarm.next_ms = 0, None
        with contextlib.suppress(TimeoutError):
            await alarm.sleep(stopping, now_ms=now_ms, longest=idle_seconds, rate=clock_rate)


def _raised_at(exc: BaseException) -> str:
    """`file:line in function` of each frame the exception passed, innermost last: no values, no message."""
    frames = traceback.extract_tb(exc.__traceback__)
    return " > ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames[-8:])
