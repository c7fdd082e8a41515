"""Concurrent calls of one write become one command, each caller with its own outcome (shared/coalesce.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from leadflow_shared.coalesce import Coalesced

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class Store:
    """Stores numbers; refuses odd ones (as a per-document error); can fail whole commands."""

    def __init__(self) -> None:
        self.commands: list[list[int]] = []
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, items: list[int]) -> Sequence[str | BaseException]:
        self.commands.append(items)
        await self.gate.wait()
        if self.down:
            raise ConnectionError("database away")
        return [ValueError(f"odd {n}") if n % 2 else f"stored {n}" for n in items]


async def test_calls_in_one_turn_go_as_one_command_and_each_gets_its_outcome() -> None:
    store = Store()
    write = Coalesced(store.write)
    outcomes = await asyncio.gather(*(write(n) for n in (2, 3, 4)), return_exceptions=True)
    assert store.commands == [[2, 3, 4]]
    assert (outcomes[0], outcomes[2]) == ("stored 2", "stored 4")
    assert isinstance(outcomes[1], ValueError)


async def test_calls_made_while_a_command_is_in_flight_go_together_in_the_next() -> None:
    store = Store()
    write = Coalesced(store.write)
    store.gate.clear()
    first = asyncio.create_task(write(2))
    while not store.commands:  # noqa: ASYNC110 (steps the loop until the first command is in flight)
        await asyncio.sleep(0)
    later = [asyncio.create_task(write(n)) for n in (4, 6)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(first, *later) == ["stored 2", "stored 4", "stored 6"]
    assert store.commands == [[2], [4, 6]]


async def test_a_failed_command_fails_each_caller_and_the_next_calls_work() -> None:
    store = Store()
    write = Coalesced(store.write)
    store.down = True
    outcomes = await asyncio.gather(write(2), write(4), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    store.down = False
    assert await write(8) == "stored 8"


async def test_a_command_holds_at_most_max_items() -> None:
    store = Store()
    write = Coalesced(store.write, max_items=2)
    await asyncio.gather(*(write(n) for n in (2, 4, 6, 8, 10)))
    assert store.commands == [[2, 4], [6, 8], [10]]


async def test_calls_expected_one_after_another_wait_for_each_other_and_go_as_one_command() -> None:
    """The notifier's `sent` marks: each email ends on its own; with three on their way, the first two
    wait for the third (decision 0072), and it is one command."""
    store = Store()
    on_the_way = 3
    write = Coalesced(store.write, expected=lambda: on_the_way, linger=60.0)
    first = asyncio.create_task(write(2))
    second = asyncio.create_task(write(4))
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.commands == [], "two of the three expected: no command yet"
    assert list(await asyncio.gather(first, second, write(6))) == ["stored 2", "stored 4", "stored 6"]
    assert store.commands == [[2, 4, 6]]


async def test_an_expected_call_that_never_comes_holds_the_others_no_longer_than_the_linger() -> None:
    """A send that failed is never marked: the marks waiting for it go once the linger is over."""
    store = Store()
    write = Coalesced(store.write, expected=lambda: 2, linger=0.01)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(write(2), timeout=5) == "stored 2"
    assert asyncio.get_running_loop().time() - started >= 0.01
    assert store.commands == [[2]]


async def test_nothing_expected_beyond_the_calls_waiting_goes_at_once() -> None:
    store = Store()
    write = Coalesced(store.write, expected=lambda: 1, linger=60.0)
    assert await asyncio.wait_for(write(2), timeout=5) == "stored 2"
    assert store.commands == [[2]]
