"""PyMongo's background tasks wait for their next run instead of polling for it (decision 0070).

Every `AsyncMongoClient` runs periodic tasks: a monitor per server (a `hello` every 10 s) and the
client's own upkeep (killing cursors, pruning idle connections, every second). PyMongo's
`AsyncPeriodicExecutor` waits for the next run by sleeping in 0.5 s steps (`MIN_HEARTBEAT_INTERVAL`)
and checking a flag that `wake()` sets, so an idle client is put on a CPU two to four times a second for
nothing: a sixth of what the four idle services cost (issue 14, goal 2).

`quiet_periodic_executors()` replaces that wait: the executor waits on an `asyncio.Event` until its
interval ends or `wake()` sets it, then keeps PyMongo's spacing (at least `min_interval` between two
runs). What runs, when it runs at the latest and how soon a wake is answered are PyMongo's own; only
the idle steps go. `slower_upkeep(client)` also runs a client's upkeep every 5 s instead of every second:
a cursor abandoned unclosed is killed on the server a few seconds later (leadflow closes its cursors),
and a dropped pool's idle connections are pruned later (a checked-out connection is checked anyway).
Proof: tests/unit/test_quiet_mongo_executor.py (wakes, spacing, intervals, stopping) and
tests/integration/test_quiet_mongo.py (an idle client's wake-ups on nx-27017; an outage survived).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from pymongo import _csot, _op_id
from pymongo.periodic_executor import AsyncPeriodicExecutor

# The executor's attributes the replacement relies on: checked at install, so a PyMongo that renames
# them fails at start-up instead of running unmonitored.
UPKEEP_SECONDS = 5.0
_EXPECTED = ("_interval", "_min_interval", "_target", "_stopped", "_skip_sleep", "_event", "_task")


async def _run(self: Any) -> None:
    """PyMongo's `_run` (pymongo/periodic_executor.py) with the wait for the next run blocking."""
    _csot.reset_all()
    _op_id.reset()
    wakes = _wakes(self)
    while not self._stopped:
        if self._task and self._task.cancelling():
            raise asyncio.CancelledError
        try:
            if not await self._target():
                self._stopped = True
                break
        except BaseException:
            self._stopped = True
            raise
        if self._skip_sleep:
            self._skip_sleep = False
        else:
            await _until_next_run(self, wakes)
        self._event = False
        wakes.clear()


async def _until_next_run(self: Any, wakes: asyncio.Event) -> None:
    ran = time.monotonic()
    if not self._event:
        try:
            await asyncio.wait_for(wakes.wait(), self._interval)
        except TimeoutError:
            return
    # Woken early: PyMongo never runs the target twice within `min_interval`.
    rest = self._min_interval - (time.monotonic() - ran)
    if rest > 0:
        await asyncio.sleep(rest)


def _wakes(executor: Any) -> asyncio.Event:
    wakes: asyncio.Event | None = getattr(executor, "_leadflow_wakes", None)
    if wakes is None:
        wakes = asyncio.Event()
        executor._leadflow_wakes = wakes
    return wakes


def _wake(self: Any) -> None:
    """PyMongo's `wake`: the flag, and the event the quiet wait blocks on."""
    self._event = True
    wakes: asyncio.Event | None = getattr(self, "_leadflow_wakes", None)
    if wakes is not None:
        wakes.set()


def quiet_periodic_executors() -> None:
    """Install the blocking wait (idempotent). Call before the first client is created."""
    probe = AsyncPeriodicExecutor(interval=1, min_interval=1, target=None)
    missing = [name for name in _EXPECTED if not hasattr(probe, name)]
    if missing:
        raise RuntimeError(f"PyMongo's AsyncPeriodicExecutor changed (no {', '.join(missing)}): see decision 0070")
    AsyncPeriodicExecutor._run = _run  # type: ignore[method-assign]
    AsyncPeriodicExecutor.wake = _wake  # type: ignore[method-assign]


def slower_upkeep(client: Any) -> None:
    """Run `client`'s upkeep (killing abandoned cursors, pruning its pools) every `UPKEEP_SECONDS`.

    A `mongodb+srv://` client (Atlas's usual URL) makes its upkeep only once its first use resolved the SRV record
    (`_init_background`, called then): slowed as it is made (it failed every service at start: helper 192)."""
    executor = getattr(client, "_kill_cursors_executor", None)
    if executor is None and getattr(client, "_resolve_srv_info", {}).get("is_srv"):
        _slow_once_made(client)
        return
    if not isinstance(executor, AsyncPeriodicExecutor):
        raise RuntimeError("PyMongo's AsyncMongoClient changed (no _kill_cursors_executor): see decision 0070")
    executor.update_interval(UPKEEP_SECONDS)


def _slow_once_made(client: Any) -> None:
    made, ref = type(client)._init_background, weakref.ref(client)  # no cycle: the client is freed as before

    def init_background(old_pid: int | None = None) -> None:
        if (alive := ref()) is not None:
            made(alive, old_pid)
            slower_upkeep(alive)

    client._init_background = init_background
