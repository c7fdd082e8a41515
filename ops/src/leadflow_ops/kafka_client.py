"""Reading dead-letter topics and republishing to source topics, with the services' Kafka settings.

The reader joins no consumer group and commits nothing: listing a DLQ moves nobody's offsets.
The producer acknowledges like the services' (acks=all, idempotence as configured).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from leadflow_ops.dead_letters import Coordinates, DeadLetter, ListedLetter
from leadflow_ops.errors import OpsError
from leadflow_shared import kafka_records
from leadflow_shared.kafka import client_security, log_ends
from leadflow_shared.settings import KafkaSettings

CLIENT_ID = "leadflow-ops"
READ_TIMEOUT_SECONDS = 60.0
# Dead letters read at a time by a replay of a whole topic: a body may be up to the DLQ's limit (1 MiB), so a topic of
# a million letters is replayed holding 500 bodies at most, not all of them.
CHUNK_RECORDS = 500


def _dead_letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value or b"",
        headers=tuple(record.headers),  # as they came: a null value stays null
    )


class DeadLetterReader:
    """Reads a topic's records by position, from a snapshot of its end offsets."""

    def __init__(self, settings: KafkaSettings) -> None:
        kafka_records.install()  # a record aiokafka cannot read becomes a stand-in, as in the services
        self._servers = settings.bootstrap_servers
        # A position below a partition's first offset (retention removed it since we looked) reads from the first
        # offset still there; aiokafka's default ("latest") would jump to the end and find nothing.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers, client_id=CLIENT_ID, group_id=None,
            enable_auto_commit=False, auto_offset_reset="earliest", **client_security(settings),
        )  # fmt: skip

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in await self._consumer.topics():
            raise OpsError(f"no topic {topic!r} on {self._servers}")
        return [TopicPartition(topic, p) for p in sorted(self._consumer.partitions_for_topic(topic) or ())]

    async def latest(self, topic: str, limit: int | None) -> tuple[list[ListedLetter], int]:
        """The last `limit` records of each partition (all when None), oldest first, as listed (no bodies: read a
        chunk at a time, each letter's body dropped as it is read); and how many there are."""
        partitions = await self.partitions(topic)
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await log_ends(self._consumer, partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        ranges = {tp: (starts[tp] if limit is None else max(starts[tp], ends[tp] - limit), ends[tp])
                  for tp in partitions}  # fmt: skip
        found = [letter.listed() async for chunk in self._chunks(ranges) for letter in chunk]
        found.sort(key=lambda d: (d.timestamp_ms, d.summary["partition"], d.summary["offset"]))
        return (found if limit is None else found[-limit:]), total

    async def chunks(self, topic: str, size: int = CHUNK_RECORDS) -> AsyncIterator[list[DeadLetter]]:
        """Every record of the topic as of now (its end offsets read once, first), at most `size` at a time, partition
        by partition in offset order: what a replay of the whole topic holds at once."""
        partitions = await self.partitions(topic)
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await log_ends(self._consumer, partitions)
        async for chunk in self._chunks({tp: (starts[tp], ends[tp]) for tp in partitions}, size):
            yield chunk

    async def _chunks(
        self, ranges: dict[TopicPartition, tuple[int, int]], size: int = CHUNK_RECORDS
    ) -> AsyncIterator[list[DeadLetter]]:
        """The records in [start, end) of each partition, at most `size` at a time, partition by partition in offset
        order (a start below a partition's first offset reads from its first)."""
        for tp, (start, end) in ((tp, span) for tp, span in ranges.items() if span[0] < span[1]):
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            chunk: list[DeadLetter] = []
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            while await self._consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise OpsError(f"could not read {tp} within {READ_TIMEOUT_SECONDS:.0f} s")
                fetched = (await self._consumer.getmany(tp, timeout_ms=500, max_records=size)).get(tp, [])
                for record in (r for r in fetched if r.offset < end):
                    chunk.append(_dead_letter(record))
                    if len(chunk) == size:
                        yield chunk
                        chunk = []
                if fetched:
                    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            if chunk:
                yield chunk

    async def at(self, topic: str, where: Iterable[Coordinates]) -> dict[Coordinates, DeadLetter]:
        """The records at these coordinates; one that does not exist (any more) is left out."""
        wanted = set(where)
        partitions = {tp.partition: tp for tp in await self.partitions(topic)}
        by_partition: dict[TopicPartition, list[int]] = {}
        for c in wanted:
            if c.partition in partitions:
                by_partition.setdefault(partitions[c.partition], []).append(c.offset)
        if not by_partition:
            return {}
        starts = await self._consumer.beginning_offsets(list(by_partition))
        ends = await log_ends(self._consumer, list(by_partition))
        ranges = {tp: (max(min(offsets), starts[tp]), min(max(offsets) + 1, ends[tp]))
                  for tp, offsets in by_partition.items()}  # fmt: skip
        return {d.coordinates: d async for chunk in self._chunks(ranges) for d in chunk if d.coordinates in wanted}


class Republisher:
    """Publishes a replayed record and waits for the broker's acknowledgement."""

    def __init__(self, settings: KafkaSettings) -> None:
        options: dict[str, Any] = client_security(settings)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, client_id=CLIENT_ID, acks="all",
            enable_idempotence=settings.producer_idempotence, **options,
        )  # fmt: skip

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def publish(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes | None]]
    ) -> str:
        """Publish one record; returns where it landed, `topic[partition]@offset`."""
        meta = await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        return f"{meta.topic}[{meta.partition}]@{meta.offset}"
