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

from leadflow_ops.dead_letters import Coordinates, DeadLetter
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

    async def latest(self, topic: str, limit: int | None) -> tuple[list[DeadLetter], int]:
        """The last `limit` records of each partition (all when None), oldest first; and how many there are."""
        partitions = await self.partitions(topic)
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await log_ends(self._consumer, partitions)
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        ranges = {tp: (starts[tp] if limit is None else max(starts[tp], ends[tp] - limit), ends[tp])
                  for tp in partitions}  # fmt: skip
        found = await self._read(ranges)
        found.sort(key=lambda d: (d.timestamp_ms, d.partition, d.offset))
        return (found if limit is None else found[-limit:]), total

    async def chunks(self, topic: str, size: int = CHUNK_RECORDS) -> AsyncIterator[list[DeadLetter]]:
        """Every record of the topic as of now (its end offsets read once, first), at most `size` at a time, partition
        by partition in offset order: what a replay of the whole topic holds at once."""
        partitions = await self.partitions(topic)
        starts = await self._consumer.beginning_offsets(partitions)
        ends = await log_ends(self._consumer, partitions)
        for tp in (tp for tp in partitions if starts[tp] < ends[tp]):
            self._consumer.assign([tp])
            self._consumer.seek(tp, starts[tp])
            chunk: list[DeadLetter] = []
            deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            end = ends[tp]
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
        return {d.coordinates: d for d in await self._read(ranges) if d.coordinates in wanted}

    async def _read(self, ranges: dict[TopicPartition, tuple[int, int]]) -> list[DeadLetter]:
        """Records in [start, end) of each partition (start may be below a partition's first offset)."""
        todo = {tp: span for tp, span in ranges.items() if span[0] < span[1]}
        if not todo:
            return []
        self._consumer.assign(list(todo))
        for tp, (start, _) in todo.items():
            self._consumer.seek(tp, start)
        found: list[DeadLetter] = []
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        while todo:
            if time.monotonic() > deadline:
                raise OpsError(f"could not read {sorted(str(tp) for tp in todo)} within {READ_TIMEOUT_SECONDS:.0f} s")
            batches = await self._consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batches.items():
                found.extend(_dead_letter(r) for r in records if r.offset < todo[tp][1])
            for tp in list(todo):
                # The position passes the end even when the last offsets are gone (compaction, retention).
                if await self._consumer.position(tp) >= todo[tp][1]:
                    del todo[tp]
                    self._consumer.pause(tp)
        return found


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
