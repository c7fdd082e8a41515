"""leads.events.v1 from its beginning, for a rebuild of the views (decision 0045).

The partitions are read to the end offsets taken when the reader opens, merged by record time:
a lead moved to another office (T2) has its later events on another partition (they are keyed by
account), and the live projection met them after the move too. Each partition stays in order.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from leadflow_shared import kafka_records
from leadflow_shared.kafka import log_ends, ssl_context
from leadflow_shared.settings import KafkaSettings

FETCH_MS = 500
STALL_SECONDS = 30.0  # no record for this long while some are still due: the broker is away


def consumer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaConsumer:
    """A consumer of no group (it commits nothing), with the service's transport security."""
    kafka_records.install()  # records aiokafka cannot read become stand-ins, as in the services
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "enable_auto_commit": False,
        "fetch_max_wait_ms": 20,  # as the services' consumers: the end of a partition is not worth 500 ms
        "security_protocol": settings.security_protocol,
    }
    if (context := ssl_context(settings)) is not None:
        options["ssl_context"] = context
    if settings.sasl_mechanism is not None:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        options |= {"sasl_mechanism": settings.sasl_mechanism, "sasl_plain_username": settings.sasl_username,
                    "sasl_plain_password": password}  # fmt: skip
    return AIOKafkaConsumer(**options)


class EventHistory:
    """`async with EventHistory(...) as history`: `starts` and `ends` per partition, then `records()`."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self._consumer = consumer(settings, client_id="leadflow-crm-rebuild")
        self._topic = topic
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}

    async def __aenter__(self) -> EventHistory:
        await self._consumer.start()
        try:
            if self._topic not in await self._consumer.topics():
                return self  # no event yet: nothing to replay
            numbers = self._consumer.partitions_for_topic(self._topic) or set()
            partitions = [TopicPartition(self._topic, p) for p in numbers]
            ends = await log_ends(self._consumer, partitions)  # the ends as of now (Tansu lists less: `log_ends`)
            self._consumer.assign(partitions)
            starts = await self._consumer.beginning_offsets(partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        self.starts = {tp.partition: offset for tp, offset in starts.items()}
        self.ends = {tp.partition: offset for tp, offset in ends.items()}
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def records(self) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """Every record before `ends`, each partition in order, the partitions merged by timestamp."""
        due = {TopicPartition(self._topic, p) for p, end in self.ends.items() if self.starts.get(p, 0) < end}
        if not due:
            return
        await self._consumer.seek_to_beginning(*due)
        merge = _Merge(self._topic, self.ends, due)
        while merge.due:
            if merge.waiting:  # every partition still due needs a head before the earliest can be chosen
                await merge.fetch(self._consumer)
            else:
                yield merge.pop()


class _Merge:
    """One merged read: a buffer per partition and a heap of the buffers' heads by record time.

    `due`: partitions with records still to yield; `waiting`: those of them without a buffered head.
    """

    def __init__(self, topic: str, ends: dict[int, int], due: set[TopicPartition]) -> None:
        self._topic, self._ends = topic, ends
        self.due, self.waiting = set(due), set(due)
        self._buffers: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {tp: deque() for tp in due}
        self._heads: list[tuple[int, int, int]] = []  # (timestamp, partition, offset) of each buffered head
        self._stalled_since = time.monotonic()

    async def fetch(self, consumer: AIOKafkaConsumer) -> None:
        """One fetch for the waiting partitions: each gets a head, or is done once at its end."""
        fetched = await consumer.getmany(*self.waiting, timeout_ms=FETCH_MS)
        for tp, records in fetched.items():
            self._buffers[tp].extend(r for r in records if r.offset < self._ends[tp.partition])
        for tp in list(self.waiting):
            if self._buffers[tp]:
                self.waiting.discard(tp)
                self._push_head(tp)
                self._stalled_since = time.monotonic()
            elif await consumer.position(tp) >= self._ends[tp.partition]:
                self.waiting.discard(tp)
                self.due.discard(tp)
        if self.waiting and time.monotonic() - self._stalled_since > STALL_SECONDS:
            raise TimeoutError(f"{self._topic}: no records for {STALL_SECONDS:.0f} s before its end")

    def pop(self) -> ConsumerRecord[bytes, bytes]:
        """The earliest head; its partition then shows its next head, waits for a fetch, or is done."""
        _, partition, _ = heapq.heappop(self._heads)
        tp = TopicPartition(self._topic, partition)
        record = self._buffers[tp].popleft()
        if self._buffers[tp]:
            self._push_head(tp)
        elif record.offset + 1 >= self._ends[partition]:
            self.due.discard(tp)
        else:
            self.waiting.add(tp)
        return record

    def _push_head(self, tp: TopicPartition) -> None:
        head = self._buffers[tp][0]
        heapq.heappush(self._heads, (head.timestamp, tp.partition, head.offset))
