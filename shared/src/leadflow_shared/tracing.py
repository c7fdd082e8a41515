"""OpenTelemetry tracing, off by default (decision 0046).

When a service enables it (`<PREFIX>TRACING__ENABLED=true`), `start` installs one tracer
provider for the process, exporting in batches over OTLP/HTTP, and instruments:

- FastAPI: a server span per request (not the probes nor /metrics), named by route; the path
  and query are replaced by the route template, since a path may carry a credential (an
  offer link's token);
- Kafka: publishing (FastStream's telemetry middleware, for nothing else) makes a producer span
  and puts its W3C `traceparent` in the record's headers. Consuming is the consumer edge's
  (`consumers.ConsumerEdge` opens `Tracing.consuming`): a record is processed, retried and
  dead-lettered in one span continuing its trace; a batch in one span, a child of its first
  record's context and linked to the others' (FastStream would start a new trace for every batch);
- PyMongo and httpx: client spans, without the statement (documents hold personal data);
- SMTP: `client_span` around each send (the notifier).

A client call outside any trace (a poller's MongoDB query every second) is not recorded: the
sampler drops client spans that would start a trace. Disabled, nothing is installed: no
provider, no middleware, no listener, no consuming span, and the helpers below return at once.

A batch handler that wants each record's work in that record's trace keeps the record's
`traceparent` with the work and resumes it (`continued`): the router stores it with a lead's
outbox, so the events published for a lead carry that lead's trace.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from faststream.kafka.opentelemetry.provider import KafkaTelemetrySettingsProvider
from faststream.kafka.response import KafkaPublishCommand
from faststream.opentelemetry.middleware import TelemetryMiddleware
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from leadflow_shared.settings import TracingSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from faststream.message import StreamMessage

log = logging.getLogger(__name__)

# Not traced: probes and scrapes every few seconds would drown the requests that matter.
EXCLUDED_URLS = "/health/live,/health/ready,/metrics"
MAX_LINKS = 128  # the SDK's default limit of links per span

_PROPAGATOR = TraceContextTextMapPropagator()
_active: Tracing | None = None  # one per process, like the OpenTelemetry globals it sets


class Tracing:
    """The process's tracer provider and the instrumentation that uses it."""

    def __init__(self, provider: TracerProvider, service_name: str) -> None:
        self.provider = provider
        self.service_name = service_name
        self.tracer = provider.get_tracer("leadflow")

    def publishing_middleware(self) -> TelemetryMiddleware[KafkaPublishCommand]:
        """The broker middleware that traces publishing: FastStream's, kept from consuming."""
        return TelemetryMiddleware[KafkaPublishCommand](
            settings_provider_factory=_publishing_only,
            tracer_provider=self.provider,
            include_messages_counters=False,
        )

    def consuming(self, msg: StreamMessage[Any]) -> contextlib.AbstractContextManager[None]:
        """The span a consumed record or batch is processed in (the consumer edge opens it)."""
        records = msg.raw_message
        attributes: dict[str, str | int]
        if not isinstance(records, (tuple, list)):  # one record (a batch: a tuple, a list in the test broker)
            attributes = {"messaging.kafka.destination.partition": records.partition,
                          "messaging.kafka.message.offset": records.offset}  # fmt: skip
            return self._consumer_span(records.topic, [msg.headers], attributes)
        if not records:
            return contextlib.nullcontext()
        attributes = {"messaging.batch.message_count": len(records)}
        return self._consumer_span(records[0].topic, msg.batch_headers, attributes)

    @contextlib.contextmanager
    def _consumer_span(
        self, topic: str, headers: Sequence[Mapping[str, Any]], attributes: Mapping[str, str | int]
    ) -> Iterator[None]:
        """A consumer span: parent the first record's context that has one, links to the others'."""
        contexts = [_PROPAGATOR.extract(carrier) for carrier in headers]
        spans = [s for c in contexts if (s := trace.get_current_span(c).get_span_context()).is_valid]
        parent = trace.set_span_in_context(trace.NonRecordingSpan(spans[0])) if spans else context.Context()
        others = {(s.trace_id, s.span_id): s for s in spans[1:]}  # a span context itself is unhashable
        links = [Link(s) for s in others.values()][:MAX_LINKS]
        attributes = {"messaging.system": "kafka", "messaging.operation": "process",
                      "messaging.destination.name": topic, **attributes}  # fmt: skip
        with (
            self.tracer.start_as_current_span(
                f"{topic} process",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=links,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span,
            _failure_type(span),
        ):
            yield

    def instrument(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"],
            server_request_hook=_routes_not_paths,
        )  # fmt: skip

    def shutdown(self) -> None:
        """Export what is buffered, then stop (the end of the process)."""
        self.provider.shutdown()


def start(settings: TracingSettings, *, service: str) -> Tracing | None:
    """Install tracing for this process when `settings` enable it; None (nothing installed) otherwise."""
    global _active  # OpenTelemetry's provider and instrumentation are per process
    if not settings.enabled:
        return None
    if _active is not None:
        return _active
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    name = settings.service_name or f"leadflow-{service}"
    resource = Resource.create({"service.name": name, "service.namespace": "leadflow"})
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_NoLoneClientCalls(settings.sample_ratio)))
    # The endpoint: the setting, else the exporter reads the standard OTEL_EXPORTER_OTLP_* variables.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    trace.set_tracer_provider(provider)
    # Before any MongoDB client exists: PyMongo hands global listeners to the clients made after.
    PymongoInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    _active = Tracing(provider, name)
    log.info("tracing on: %s, sampling %.0f%% of new traces", name, settings.sample_ratio * 100)
    return _active


def traceparent(headers: Mapping[str, str]) -> str | None:
    """The W3C trace context of a record's headers, re-encoded (so only a valid one is kept); None
    when tracing is off or the record has none."""
    if _active is None:
        return None
    span = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
    if not span.is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(trace.NonRecordingSpan(span)))
    return carrier.get("traceparent")


@contextlib.contextmanager
def continued(parent: str | None) -> Iterator[None]:
    """Run the block in the trace of `parent` (a stored `traceparent`), unless the current span is
    in that trace already (it is then the better parent: the batch span of the same record)."""
    if _active is None or not parent:
        yield
        return
    remote = _PROPAGATOR.extract({"traceparent": parent}, context.get_current())
    wanted = trace.get_current_span(remote).get_span_context()
    if not wanted.is_valid or trace.get_current_span().get_span_context().trace_id == wanted.trace_id:
        yield
        return
    token = context.attach(remote)
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, str | int]) -> Iterator[None]:
    """A client span around a call no instrumentation sees (an SMTP send); nothing when tracing is off."""
    if _active is None:
        yield
        return
    with (
        _active.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span,
        _failure_type(span),
    ):
        yield


@contextlib.contextmanager
def _failure_type(span: trace.Span) -> Iterator[None]:
    """Our spans record a failure's type, not its message: a message may quote input (personal data)."""
    try:
        yield
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        raise


def _publishing_only(msg: Any) -> KafkaTelemetrySettingsProvider | None:
    """FastStream's telemetry for publishing only (FastStream makes a publish's middlewares with no
    message): consuming spans are the consumer edge's, so retries and dead letters happen inside."""
    return KafkaTelemetrySettingsProvider() if msg is None else None


class _NoLoneClientCalls(Sampler):
    """New traces at `ratio`, except one a client call would start: a poller's MongoDB query
    (sweeper, re-driver, lease renewal) outside any request or message."""

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoLoneClientCalls{{{self._ratio.rate}}}"


def _routes_not_paths(span: trace.Span, _scope: dict[str, Any]) -> None:
    """FastAPI's request hook: the route template where the path and query were (a path may
    carry a credential, an offer link's token)."""
    if not isinstance(span, ReadableSpan) or span.kind is not SpanKind.SERVER:
        return
    attributes = span.attributes or {}
    route = str(attributes.get("http.route", "unmatched"))
    for key in ("http.target", "url.path", "http.url", "url.full"):
        if key in attributes:
            span.set_attribute(key, route)
    if "url.query" in attributes:
        span.set_attribute("url.query", "")
