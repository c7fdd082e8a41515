"""A periodic background loop: do some work, wait, again, until the service stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(
    seconds: float,
    stopping: asyncio.Event,
    work: Callable[[], Awaitable[object]],
    *,
    what: str,
    quiet: tuple[type[Exception], ...] = (),
) -> None:
    """Run `work`, then wait `seconds` or until `stopping` is set; repeat until it is set.

    A failed round is logged and the loop goes on. The log names the error's type, never its
    message (which may quote personal data); `quiet` errors (an outage, expected now and then) get
    one warning line, any other also the stack's frames, for the bug it likely is.
    """
    while not stopping.is_set():
        try:
            await work()
        except quiet as exc:
            log.warning("%s: %s; trying again", what, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 (a background loop's edge: logged, tried again next round)
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("%s failed: %s; trying again", what, type(exc).__name__, extra={"stack": frames})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
