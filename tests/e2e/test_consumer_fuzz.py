"""I4, searched for: arbitrary records (bytes, headers, keys, broken events) on every consumed topic.

Each example puts a burst of arbitrary records on every topic a leadflow service consumes,
all on one partition (one key), in hand-built record batches (header names of any bytes,
sometimes compressed, sometimes a record whose lengths do not add up), then a sentinel
that every consumer dead-letters. The
sentinel reaching `<topic>.dlq` once per consuming service proves each record before it
was processed or dead-lettered, in bounded time, without stalling the partition
(test_consumer_poison.py shows a valid lead behind poison is then accepted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow_devstack.raw_records import GZIP, NO_COMPRESSION, RawRecord, produce_batch, record_batch
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import records_until
from leadflow_shared import topics

pytestmark = [pytest.mark.e2e]

CONSUMERS = {
    topics.LEADS_INBOUND: ["intake"],
    topics.LEADS_INTAKE: ["router"],
    topics.LEADS_ACTIVITY: ["router"],
    topics.LEADS_COMMANDS: ["router"],
    topics.LEADS_EVENTS: ["notifier", "crm-api"],
}
TYPES = ["LeadSubmitted", "LeadReceived", "LeadActivity", "ShareLead", "TransferLead", "LeadOffered", "LeadAssigned"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def envelope(kind: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "schema_version": 1,
        "account_id": "acme-realty",
        "occurred_at": datetime.now(UTC).isoformat(),
        "correlation_id": str(uuid.uuid4()),
        "payload": {"lead_id": str(uuid.uuid4()), "agent_id": "alex-rivera", "action": "note"},
    }


@st.composite
def broken_events(draw: st.DrawFn) -> bytes:
    """A plausible event with one field replaced by arbitrary JSON (NaN and Infinity included)."""
    event = envelope(draw(st.sampled_from(TYPES)))
    field = draw(st.sampled_from([*event, "payload.lead_id", "payload.agent_id", "payload.action"]))
    target, name = (event["payload"], field.split(".")[1]) if "." in field else (event, field)
    target[name] = draw(json_values | st.sampled_from([math.nan, math.inf, -math.inf]))
    return json.dumps(event).encode()


bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),  # lone surrogates included
    json_values.map(lambda v: json.dumps(v).encode()),
    broken_events(),
    st.integers(1, 5000).map(lambda depth: b'{"event_id": ' + b"[" * depth + b"]" * depth + b"}"),
)
header_names = st.sampled_from([b"content-type", b"traceparent", b"correlation_id", b"reply_to", b"x-any"]) | st.binary(
    max_size=20
)
header_values = st.none() | st.sampled_from([b"application/json", b"text/plain", b"\xff\xfe"]) | st.binary(max_size=40)
keys = st.binary(min_size=1, max_size=40)
records = st.lists(
    st.builds(
        RawRecord,
        value=bodies,
        headers=st.lists(st.tuples(header_names, header_values), max_size=4),
        length_error=st.sampled_from([0] * 9 + [2]),  # now and then a record the fetcher cannot read
    ),
    min_size=1,
    max_size=12,
)


def marker(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    value: bytes = dict(record.headers).get(name, b"")
    return value.decode("utf-8", "replace")


async def burst(poisoned_stack: Stack, key: bytes, sent: list[RawRecord], compression: int) -> None:
    run = uuid.uuid4().hex
    batch = record_batch([dataclasses.replace(r, key=key) for r in sent], compression=compression)
    producer = AIOKafkaProducer(bootstrap_servers=poisoned_stack.bootstrap, acks="all")
    await producer.start()
    try:
        for topic in CONSUMERS:
            await produce_batch(poisoned_stack.bootstrap, topic, key, batch)
            await producer.send_and_wait(topic, b"{sentinel", key=key, headers=[("x-fuzz-sentinel", run.encode())])
    finally:
        await producer.stop()

    async def sentinel_passed(topic: str, services: list[str]) -> None:
        passed: set[str] = set()

        def done(record: ConsumerRecord[bytes, bytes]) -> bool:
            if marker(record, "x-fuzz-sentinel") == run:
                passed.add(marker(record, "dlq-service"))
            return passed >= set(services)

        await records_until(poisoned_stack.bootstrap, topics.dlq(topic), done, timeout=60)

    await asyncio.gather(*(sentinel_passed(topic, services) for topic, services in CONSUMERS.items()))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys, sent=records, compression=st.sampled_from([NO_COMPRESSION, GZIP]))
def test_arbitrary_records_never_stall_a_consumer(
    poisoned_stack: Stack, key: bytes, sent: list[RawRecord], compression: int
) -> None:
    asyncio.run(burst(poisoned_stack, key, sent, compression))
