"""A dead letter carries the original record exactly, and `leadflow-ops dlq replay` puts it back exactly
(decision 0091), on a real Tansu and nx-27017.

The key stays as it was (b"" is not None: an unkeyed replay would land on another partition), the headers
stay a list (a name repeated, a null value, a value that is not UTF-8, a name that is leadflow's own `dlq-*`),
in order, with leadflow's `dlq-*` headers after them; the replay drops only leadflow's headers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops_cli import ops_env, run_in_process, run_script
from prometheus_client import CollectorRegistry
from test_consumer_edge import settings as edge_settings

from leadflow_devstack.servers import tansu_consumer_settings
from leadflow_devstack.testing import eventually, records_to_end
from leadflow_shared.dead_letters import DeadLetters
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.kafka import consumer_options, ensure_topics, make_broker
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.replay import REPLAY, REPLAY_HEADERS
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.settings import KafkaSettings
from leadflow_shared.topics import TopicSpec, dlq

pytestmark = [pytest.mark.integration]

Headers = list[tuple[str, bytes | None]]


@pytest.fixture
def env(kafka_bootstrap: str, mongo_url: str) -> dict[str, str]:
    return ops_env(kafka_bootstrap, mongo_url, f"ops_{uuid.uuid4().hex[:10]}")


def consumed(topic: str, key: bytes | None, value: bytes, headers: Headers) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=1, offset=17, timestamp=0, timestamp_type=0, key=key, value=value,
                          checksum=None, serialized_key_size=len(key or b""), serialized_value_size=len(value),
                          headers=headers)  # fmt: skip


async def _as_parsed(record: Any) -> Any:
    return record


async def dead_letter(bootstrap: str, record: ConsumerRecord[bytes, bytes]) -> None:
    """`record`, as the services' parser hands it to FastStream (header values made safe), dead-lettered by
    the services' writer."""
    parse: Callable[[Any, Callable[[Any], Awaitable[Any]]], Awaitable[Any]] = consumer_options("g")["parser"]
    seen = await parse(record, _as_parsed)
    broker = make_broker(KafkaSettings(bootstrap_servers=bootstrap, producer_idempotence=False),
                         client_id="dlq-fidelity", registry=CollectorRegistry())  # fmt: skip
    await broker.connect()
    try:
        letters = DeadLetters(broker, ConsumerMetrics(CollectorRegistry(), "dlq_fidelity"), service="router")
        await letters.publish(seen, PoisonMessage("refused"))
    finally:
        await broker.stop()


def without_replay_headers(record: ConsumerRecord[bytes, bytes]) -> Headers:
    return [(name, value) for name, value in record.headers if name not in REPLAY_HEADERS]


async def key_partition(bootstrap: str, topic: str, key: bytes) -> int:
    """The partition Kafka's default partitioner gives `key` on `topic` (a record sent with it, to compare)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"reference", key=key)
        return int(sent.partition)
    finally:
        await producer.stop()


@pytest.mark.asyncio
async def test_an_empty_key_and_repeated_headers_survive_dead_lettering_and_replay(
    kafka_bootstrap: str, env: dict[str, str]
) -> None:
    source = f"dlq-fidelity-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(source, 3), TopicSpec(dlq(source), 1)])
    original: Headers = [("x-tag", b"first"), ("x-tag", b"second"), ("dlq-reason", b"the sender's own"),
                         ("x-null", None), ("x-binary", b"\xff\xfe"), ("reply_to", b"elsewhere"),
                         ("x-tag", b"")]  # fmt: skip
    await dead_letter(kafka_bootstrap, consumed(source, b"", b'{"a": 1}', original))

    [letter] = await records_to_end(kafka_bootstrap, dlq(source))
    assert letter.key == b"", "an empty key is not dropped"
    assert list(letter.headers[: len(original)]) == original, "the original headers first, as they came"
    ours = dict(letter.headers[len(original) :])
    assert ours["dlq-original-headers"] == str(len(original)).encode()
    assert (ours["dlq-reason"], ours["dlq-source-topic"]) == (b"PoisonMessage: refused", source.encode())

    listed = run_script(env, "dlq", "list", dlq(source), "--json")  # as the operator runs it
    assert listed.code == 0, listed.err
    [row] = listed.json()["dead_letters"]
    assert (row["key"], row["reason"], row["source_offset"]) == ("", "PoisonMessage: refused", 17)
    shown = run_script(env, "dlq", "show", dlq(source), "0:0")
    assert shown.code == 0, shown.err
    assert "x-null: (null)" in shown.out

    reference = await key_partition(kafka_bootstrap, source, b"")
    run = run_script(env, "dlq", "replay", dlq(source), "--all", "--json")
    assert run.code == 0, run.err
    [replayed] = [r for r in await records_to_end(kafka_bootstrap, source) if r.value != b"reference"]
    assert (replayed.key, replayed.value, replayed.partition) == (b"", b'{"a": 1}', reference)
    assert without_replay_headers(replayed) == original, "only leadflow's headers are dropped"
    assert [name for name, _ in replayed.headers if name == REPLAY] == [REPLAY]


@pytest.mark.asyncio
async def test_a_consumer_s_dead_letter_carries_the_record_as_it_was_fetched(
    kafka_bootstrap: str, mongo_url: str
) -> None:
    """Through a running consumer: FastStream sees safe header values, the dead letter the original ones."""
    topic = f"dlq-fidelity-edge-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])

    async def refuse(_body: bytes) -> None:
        raise PoisonMessage("refused")

    runtime = ServiceRuntime(edge_settings(mongo_url, bootstrap_servers=kafka_bootstrap, **tansu_consumer_settings()),
                             service="dlq-fidelity")  # fmt: skip
    runtime.subscribe(topic, refuse, group_id="dlq-fidelity")
    original: Headers = [("h", b"\xff"), ("h", None), ("h", b"ok")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"not json", key=b"", headers=original)
    finally:
        await producer.stop()
    await runtime.start()
    try:
        [letter] = await eventually(lambda: records_to_end(kafka_bootstrap, dlq(topic)), what="the dead letter")
    finally:
        await runtime.stop()
    assert (letter.key, letter.value) == (b"", b"not json")
    assert list(letter.headers[:3]) == original
    assert dict(letter.headers[3:])["dlq-original-headers"] == b"3"


SURROGATES: tuple[Literal["Cs"]] = ("Cs",)  # a header name is UTF-8 on the wire
LEADFLOWS = ["dlq-reason", "dlq-source-topic", "dlq-original-headers", "DLQ-service", "reply_to", "traceparent", "x"]
# An earlier replay's `leadflow-replay*` headers are replaced by this replay's (decision 0044): not generated.
names = st.one_of(st.text(st.characters(exclude_categories=SURROGATES), max_size=12), st.sampled_from(LEADFLOWS))
names = names.filter(lambda name: name not in REPLAY_HEADERS)
headers = st.lists(st.tuples(names, st.none() | st.binary(max_size=24)), max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.none() | st.binary(max_size=40), value=st.binary(max_size=200), sent=headers)
def test_any_record_is_replayed_with_its_key_value_and_headers(
    kafka_bootstrap: str, env: dict[str, str], key: bytes | None, value: bytes, sent: Headers
) -> None:
    source = f"dlq-fidelity-{uuid.uuid4().hex[:8]}"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(source, 3), TopicSpec(dlq(source), 1)]))
    asyncio.run(dead_letter(kafka_bootstrap, consumed(source, key, value, sent)))

    listed = run_in_process(env, "dlq", "list", dlq(source), "--json")  # 20 console scripts took 137 s in the suite
    assert listed.code == 0, listed.err
    [row] = listed.json()["dead_letters"]
    assert (row["source_topic"], row["error_type"], row["bytes"]) == (source, "PoisonMessage", len(value))
    run = run_in_process(env, "dlq", "replay", dlq(source), "--all", "--json")
    assert run.code == 0, run.err
    assert [o["status"] for o in run.json()["outcomes"]] == ["replayed"]

    [replayed] = asyncio.run(records_to_end(kafka_bootstrap, source))
    assert (replayed.key, replayed.value) == (key, value)
    assert without_replay_headers(replayed) == sent
