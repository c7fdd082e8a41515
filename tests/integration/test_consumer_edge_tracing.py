"""The consumer edge's consuming span (decision 0058) on a real broker (Tansu): a service runtime
with tracing on, its spans kept in memory.

A record is handled, retried and dead-lettered inside one CONSUMER span continuing the record's
`traceparent`; a batch inside one span, a child of its first record's context and linked to the
others'. The dead letter is published inside that span, so it carries the consuming span's trace
(FastStream's telemetry on publishing), not a new one nor the record's own header copied along.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind
from test_consumer_edge import activity, settings

from leadflow_devstack.servers import tansu_consumer_settings
from leadflow_devstack.testing import eventually, records_to_end
from leadflow_shared import tracing
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.settings import TracingSettings
from leadflow_shared.topics import dlq

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test's runtime only: `tracing.start` returns the process's `_active`
    tracing when there is one, so nothing global (provider, instrumentation) is installed."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_active", tracing.Tracing(provider, "leadflow-edge-test"))
    yield exporter
    provider.shutdown()


@pytest_asyncio.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer: the records' `traceparent` headers are the test's, as a caller upstream set them."""
    client = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


def traced_runtime(kafka_bootstrap: str, mongo_url: str) -> ServiceRuntime:
    on_tansu = settings(mongo_url, bootstrap_servers=kafka_bootstrap, **tansu_consumer_settings())
    traced = on_tansu.model_copy(update={"tracing": TracingSettings(enabled=True)})
    runtime = ServiceRuntime(traced, service="edge-test")
    assert runtime.tracing is tracing._active
    return runtime


def parent() -> tuple[str, SpanContext]:
    """A caller's `traceparent`, and the span context it names."""
    trace_id, span_id = secrets.randbits(128), secrets.randbits(64)
    header = f"00-{trace_id:032x}-{span_id:016x}-01"
    return header, SpanContext(trace_id, span_id, is_remote=True)


def by_agent(agent: str) -> bytes:
    payload = LeadActivity.model_validate_json(activity()).payload.model_copy(update={"agent_id": agent})
    return activity(payload=payload)


def consuming(exporter: InMemorySpanExporter, topic: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == f"{topic} process"]


def context_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def carried(record: ConsumerRecord[bytes, bytes]) -> tuple[int, int]:
    """The (trace id, span id) of a record's `traceparent` header."""
    header = dict(record.headers)["traceparent"].decode()
    _, trace_id, span_id, _ = header.split("-")
    return int(trace_id, 16), int(span_id, 16)


def published_in(exporter: InMemorySpanExporter, record: ConsumerRecord[bytes, bytes]) -> ReadableSpan:
    """The span a dead letter was published in: its `traceparent` names FastStream's producer span,
    whose parent this returns."""
    spans = exporter.get_finished_spans()
    [producer] = [s for s in spans if context_of(s) == carried(record)]
    assert (producer.kind, producer.name) == (SpanKind.PRODUCER, f"{record.topic} create")
    [parent] = [s for s in spans if context_of(s) == parent_of(producer)]
    return parent


def current() -> tuple[int, int]:
    now = trace.get_current_span().get_span_context()
    return now.trace_id, now.span_id


async def test_a_record_is_handled_retried_and_dead_lettered_inside_one_span_continuing_its_trace(
    exported: InMemorySpanExporter, producer: AIOKafkaProducer, kafka_bootstrap: str, mongo_url: str
) -> None:
    topic = f"edge-trace.{uuid.uuid4().hex[:8]}"
    seen: dict[str, list[tuple[int, int]]] = {}  # agent -> the current span of each attempt

    async def on_activity(event: LeadActivity) -> None:
        agent = event.payload.agent_id
        seen.setdefault(agent, []).append(current())
        if agent == "flaky" and len(seen[agent]) == 1:
            raise RuntimeError("the first attempt fails")
        if agent == "refused":
            raise PoisonMessage("no such agent")

    runtime = traced_runtime(kafka_bootstrap, mongo_url)
    runtime.subscribe(topic, on_activity, group_id="edge-trace")
    callers = {agent: parent() for agent in ("ana", "flaky", "refused")}
    offsets: dict[str, int] = {}
    for agent, (header, _) in callers.items():
        sent = await producer.send_and_wait(
            topic, by_agent(agent), key=b"acme", headers=[("traceparent", header.encode())]
        )
        offsets[agent] = sent.offset
    await producer.send_and_wait(topic, by_agent("untraced"), key=b"acme")  # no traceparent: a trace of its own
    await runtime.start()
    try:
        letters = await eventually(lambda: records_to_end(kafka_bootstrap, dlq(topic)), what="the dead letter")
        spans = await eventually(lambda: four if len(four := consuming(exported, topic)) == 4 else [], what="4 spans")
    finally:
        await runtime.stop()

    for agent, (_, caller) in callers.items():
        [span] = [s for s in spans if s.context is not None and s.context.trace_id == caller.trace_id]
        assert span.kind is SpanKind.CONSUMER
        assert parent_of(span) == (caller.trace_id, caller.span_id), "the record's trace continues"
        assert set(seen[agent]) == {context_of(span)}, f"{agent}: every attempt ran inside the consuming span"
        attributes = dict(span.attributes or {})
        assert attributes["messaging.system"] == "kafka"
        assert attributes["messaging.destination.name"] == topic
        assert attributes["messaging.kafka.message.offset"] == offsets[agent]
    assert len(seen["flaky"]) == 2, "retried once"
    [untraced] = [s for s in spans if context_of(s) in seen["untraced"]]
    assert parent_of(untraced) is None, "a record without a traceparent starts a trace"

    [letter] = letters
    assert dict(letter.headers)["dlq-error-type"] == b"PoisonMessage"
    refused = published_in(exported, letter)
    assert context_of(refused) in seen["refused"], "the dead letter was published inside the consuming span"


async def test_a_batch_is_handled_in_one_span_linked_to_its_records_and_its_dead_letter_carries_that_trace(
    exported: InMemorySpanExporter, producer: AIOKafkaProducer, kafka_bootstrap: str, mongo_url: str
) -> None:
    topic = f"edge-trace.{uuid.uuid4().hex[:8]}"
    runs: list[tuple[list[str], tuple[int, int]]] = []  # each run's agents and current span

    async def on_activities(batch: Batch[LeadActivity]) -> BatchRejections:
        agents = [item.event.payload.agent_id for item in batch]
        runs.append((agents, current()))
        return [(i, PoisonMessage("refused")) for i, agent in enumerate(agents) if agent == "refused"]

    runtime = traced_runtime(kafka_bootstrap, mongo_url)
    runtime.subscribe(topic, on_activities, group_id="edge-trace")
    callers = [parent() for _ in range(3)]
    # One record batch on one partition, there before the consumer joins: it is fetched as one batch.
    await producer.partitions_for(topic)
    batch = producer.create_batch()
    agents: list[tuple[str, tuple[str, SpanContext] | None]] = [
        ("ana", callers[0]),
        ("bob", callers[1]),
        ("cy", None),
        ("refused", callers[2]),
    ]
    for agent, caller in agents:
        headers = [("traceparent", caller[0].encode())] if caller else []
        assert batch.append(key=b"acme", value=by_agent(agent), timestamp=None, headers=headers) is not None
    await (await producer.send_batch(batch, topic, partition=0))
    await runtime.start()
    try:
        letters = await eventually(lambda: records_to_end(kafka_bootstrap, dlq(topic)), what="the dead letter")
        [span] = await eventually(lambda: consuming(exported, topic), what="the batch's span")
    finally:
        await runtime.stop()

    assert runs == [(["ana", "bob", "cy", "refused"], context_of(span))], "one run, inside the batch's span"
    assert span.kind is SpanKind.CONSUMER
    assert (span.attributes or {})["messaging.batch.message_count"] == 4
    first = callers[0][1]
    assert parent_of(span) == (first.trace_id, first.span_id)
    linked = {(link.context.trace_id, link.context.span_id) for link in span.links}
    assert linked == {(c.trace_id, c.span_id) for _, c in callers[1:]}, "linked to the other records' contexts"

    [letter] = letters
    assert carried(letter)[0] == first.trace_id, "the batch's trace, not the refused record's own header"
    assert context_of(published_in(exported, letter)) == context_of(span)
