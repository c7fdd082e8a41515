"""Helpers for tests of leadflow: polling a condition with a deadline instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, overload

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient, MongoClient
from pymongo.asynchronous.database import AsyncDatabase
from tenacity import AsyncRetrying, stop_after_delay, wait_fixed

from leadflow_shared import kafka_records
from leadflow_shared.envelope import Envelope
from leadflow_shared.kafka import log_ends

# The tests read topics the way leadflow's consumers do: a record aiokafka's reader cannot read
# (tests put some on purpose) becomes a stand-in instead of failing every later read.
kafka_records.install()

T = TypeVar("T")
RecordPredicate = Callable[[ConsumerRecord[bytes, bytes]], bool]
WaitForRecord = Callable[[str, RecordPredicate], Awaitable[ConsumerRecord[bytes, bytes]]]


@overload
async def eventually(condition: Callable[[], Awaitable[T]], *, timeout: float = ..., what: str = ...) -> T: ...
@overload
async def eventually(condition: Callable[[], T], *, timeout: float = ..., what: str = ...) -> T: ...


async def eventually(condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; fail after `timeout`."""
    async for attempt in AsyncRetrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.05), reraise=True):
        with attempt:
            result = condition()
            value = (await result) if inspect.isawaitable(result) else result
            if not value:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            return value
    raise AssertionError("unreachable")  # pragma: no cover


async def records_until(
    bootstrap: str, topic: str, last: RecordPredicate, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning up to the first one `last` matches; fail after `timeout`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(records)
            if any(last(r) for r in seen):
                return seen
        raise AssertionError(f"no matching record on {topic} within {timeout}s")
    finally:
        await consumer.stop()


async def publish_envelopes(
    bootstrap: str,
    topic: str,
    messages: Iterable[Envelope],
    headers: Callable[[bytes, bytes], list[tuple[str, bytes]]] | None = None,
) -> None:
    """Publish as a partner would: keyed by account, in order, each one acknowledged by the broker; `headers(value,
    key)` gives each record's headers (e.g. a partner's signature)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = []
        for message in messages:
            value, key = message.model_dump_json().encode(), message.account_id.encode()
            sent.append(await producer.send(topic, value, key=key, headers=headers(value, key) if headers else None))
        for future in sent:
            await future
    finally:
        await producer.stop()


async def records_to_end(bootstrap: str, topic: str, timeout: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` up to its end as of this call ([] if the topic does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return []
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        ends = await log_ends(consumer, partitions)  # Tansu lists less than a batch of several holds
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end within {timeout}s")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(records)
        return seen
    finally:
        await consumer.stop()


class TopicLog:
    """Every record value of `topic` from the beginning; `poll()` reads what arrived since."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.raw: list[bytes] = []

    async def __aenter__(self) -> TopicLog:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()

    async def poll(self) -> list[bytes]:
        """Read what arrived since the last poll; returns it (also appended to `raw`)."""
        new: list[bytes] = []
        for records in (await self._consumer.getmany(timeout_ms=100, max_records=5000)).values():
            new.extend(r.value or b"" for r in records)
        self.raw.extend(new)
        return new


def insert_rows(
    mongo_url: str, collection: str, rows: list[dict[str, Any]], *, database: str = "leadflow"
) -> list[str]:
    """Write `rows` straight into a collection (e.g. crm-api's views, faster than routing each lead); their ids."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    try:
        client[database][collection].insert_many(rows)
    finally:
        client.close()
    return [str(row["_id"]) for row in rows]


@contextlib.asynccontextmanager
async def fresh_database(mongo_url: str, prefix: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of the test's own (`<prefix>_<random>`), dropped afterwards."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"{prefix}_{uuid.uuid4().hex[:12]}"]
    try:
        yield db
    finally:
        await client.drop_database(db.name)
        await client.close()


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` in a `/metrics` page whose labels include `labels`."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def holders_of(db: AsyncDatabase[dict[str, Any]], needles: set[str]) -> list[str]:
    """`collection/_id` of every document, in every collection, whose text holds one of `needles`."""
    found = []
    for name in sorted(await db.list_collection_names()):
        async for doc in db[name].find({}):
            text = repr(doc)
            found += [f"{name}/{doc['_id']}" for needle in needles if needle in text][:1]
    return found


async def ops_json(bootstrap: str, mongo_url: str, *args: str) -> tuple[int, Any]:
    """`leadflow-ops ... --json` (the console script beside this Python) on these servers, in an environment
    without this process's OPS_* variables: its exit status and the JSON it printed."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPS_")}
    env |= {"OPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "OPS_KAFKA__PRODUCER_IDEMPOTENCE": "false",
            "OPS_MONGO__URL": mongo_url}  # fmt: skip
    script = str(Path(sys.executable).parent / "leadflow-ops")
    proc = await asyncio.create_subprocess_exec(
        script, *args, "--json", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    if proc.returncode is None or not out:
        raise RuntimeError(f"leadflow-ops {' '.join(args)} printed nothing: {err.decode()}")
    return proc.returncode, json.loads(out)
