"""Consumers that wait at the broker while idle instead of waking 50 times a second (decision 0052).

A Kafka fetch waits at the broker up to `fetch_max_wait_ms` for data and returns as soon as any
requested partition has some. aiokafka keeps one fetch in flight per broker and leaves out of it
every partition whose records are still waiting in the buffer; such a partition, once consumed,
can be fetched again only when the fetch in flight returns. So a long wait costs nothing while a
fetch covers every assigned partition, and delays a partition left out of it.

`long_poll` lets each fetch choose: the long wait when it covers everything, the short one when a
partition was left out (a handler is busy). And FastStream's batch subscriber asks for records
with a short timeout and then sleeps as long again when there were none: `block_for_batches`
makes it wait for records without the sleep: a record that arrives is handed over at once, and
`idle_ms` is only a backstop (stopping the consumer wakes the wait too; decision 0055).

Both reach into aiokafka's fetcher and FastStream's subscriber (versions pinned in uv.lock); they
fail at start-up, not silently, if those change (tests/integration/test_long_poll.py).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord


class ConsumerInternalsChangedError(RuntimeError):
    """aiokafka or FastStream no longer has what this module adapts (see the pinned versions)."""


def long_poll(subscriber: Any, *, idle_ms: int, busy_ms: int) -> None:
    """Each fetch of a started FastStream `subscriber` waits `idle_ms` if it covers every partition,
    else `busy_ms`."""
    fetcher = getattr(getattr(subscriber, "consumer", None), "_fetcher", None)
    plan: Callable[[Any], Any] | None = getattr(fetcher, "_get_actions_per_node", None)
    if fetcher is None or plan is None or not isinstance(getattr(fetcher, "_records", None), dict):
        raise ConsumerInternalsChangedError("aiokafka's Fetcher has no _get_actions_per_node/_records")

    def plan_with_wait(assignment: Any) -> Any:
        # _records holds the partitions whose fetched records are not consumed yet: this fetch leaves them out.
        fetcher._fetch_max_wait_ms = busy_ms if fetcher._records else idle_ms
        return plan(assignment)

    fetcher._get_actions_per_node = plan_with_wait
    fetcher._fetch_max_wait_ms = idle_ms


def block_for_batches(subscriber: Any, *, idle_ms: int) -> None:
    """FastStream batch `subscriber` waits up to `idle_ms` for records, with no pause after none came."""
    if not callable(getattr(subscriber, "get_msg", None)) or not hasattr(subscriber, "max_records"):
        raise ConsumerInternalsChangedError("FastStream's batch subscriber has no get_msg/max_records")

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        batches = await consumer.getmany(timeout_ms=idle_ms, max_records=subscriber.max_records)
        return tuple(chain.from_iterable(batches.values()))

    subscriber.get_msg = get_msg
