"""The durable timer loop: fires due deadlines from MongoDB's deadline index (I3).

Timers live in the routing records (next_deadline_ms), not in memory, so a restarted
router fires what fell due while it was down, and several replicas can sweep at once:
each record is leased atomically, then changed by compare-and-set, so each expiry
fires once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pymongo.errors import PyMongoError

from leadflow_router.handlers import RouterService

log = logging.getLogger(__name__)


async def sweep(
    service: RouterService, stopping: asyncio.Event, *, idle_seconds: float, republish_every_seconds: float = 5.0
) -> None:
    """Fire deadlines until `stopping` is set; idle briefly when nothing is due."""
    next_republish = time.monotonic()
    while not stopping.is_set():
        try:
            if time.monotonic() >= next_republish:
                await service.republish_stale()
                next_republish = time.monotonic() + republish_every_seconds
            if await service.sweep_once() >= service.sweep_batch:
                continue  # more are due: no pause
        except (PyMongoError, ConnectionError) as exc:
            log.warning("sweeper: %s; retrying", type(exc).__name__)
        except Exception:
            log.exception("sweeper failed on a record; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), idle_seconds)
