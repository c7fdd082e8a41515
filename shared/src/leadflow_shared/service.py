"""One process's runtime: Prometheus registry, tracing (off by default), Kafka broker, MongoDB
client, HTTP app. The broker's middlewares: the consumer edge on every subscriber (retries, dead
letters, the consuming span: consumers.py) and, with tracing on, FastStream's telemetry on publishing.

Every service builds one `ServiceRuntime` in its bootstrap, registers its subscribers
and routes on it, and hands `runtime.app()` to uvicorn. The MongoDB client is opened
in the lifespan because PyMongo's async client is bound to the running loop.

Start-up serves first and joins later: once MongoDB is open and the producer connected,
HTTP and the background workers (the router's deadline sweeper, the notifier's re-driver)
run, while the consumers join their groups together in the background. A join takes
seconds per group; nothing that does not consume should wait for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared import tracing
from leadflow_shared.consumers import ConsumerEdge, Record, Subscription, UnknownFields, contract_of
from leadflow_shared.dead_letters import DeadLetters
from leadflow_shared.http import RequestMetrics, ServiceApp, add_operational_routes
from leadflow_shared.http_bodies import BodyGuard, BodyLimits, answer_invalid_requests
from leadflow_shared.kafka import CONSUMER_TIMEOUT_MS, PublishRaw, consumer_options, declare_publisher, make_broker
from leadflow_shared.lag import report_lag
from leadflow_shared.long_poll import block_for_batches, long_poll
from leadflow_shared.metrics import ConsumerMetrics, ServiceMetrics, make_registry
from leadflow_shared.mongo import CommandCounter, Document, make_mongo_client, ping
from leadflow_shared.settings import ServiceSettings
from leadflow_shared.topics import dlq

log = logging.getLogger(__name__)

DEAD_LETTER_DESCRIPTION = (
    "What this service could not process: the original value and key, the sender's headers, and "
    "dlq-reason, dlq-error-type, dlq-source-topic, dlq-source-partition, dlq-source-offset, dlq-service "
    "(docs/operations.md; `leadflow-ops dlq` lists and replays them)."
)

StartupHook = Callable[[AsyncDatabase[Document]], Awaitable[None]]
Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class NotStartedError(RuntimeError):
    """A resource was used before the service's lifespan opened it."""


class ServiceRuntime:
    def __init__(self, settings: ServiceSettings, *, service: str) -> None:
        self.settings = settings
        self.service = service
        self.registry = make_registry()
        # Tracing first (off by default): PyMongo's listener must exist before the client is made.
        self.tracing = tracing.start(settings.tracing, service=service)
        self.broker: KafkaBroker = make_broker(settings.kafka, client_id=f"leadflow-{service}", registry=self.registry)
        if self.tracing is not None:  # a record's traceparent; consuming spans are the consumer edge's
            self.broker.add_middleware(self.tracing.publishing_middleware())
        self.consumer_metrics = ConsumerMetrics(self.registry, service.replace("-", "_"))
        self.metrics = ServiceMetrics(self.registry, service)
        self.dead_letters = DeadLetters(self.broker, self.consumer_metrics, service=service)
        edge = ConsumerEdge(self.dead_letters, settings.kafka, self.consumer_metrics, tracing=self.tracing)
        self.broker.add_middleware(edge)
        self._client: AsyncMongoClient[Document] | None = None
        self._command_counter = CommandCounter(self.registry, service.replace("-", "_"))
        self._startup_hooks: list[StartupHook] = []
        self._shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        self._workers: list[Worker] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._joining: asyncio.Task[None] | None = None
        self._join_failure: BaseException | None = None
        self._stopping = asyncio.Event()
        self._groups: dict[str, str] = {}  # topic -> consumer group, for the lag metric
        self._off_path: set[int] = set()  # subscribers (by id) off a new lead's way to its first notice

    @property
    def db(self) -> AsyncDatabase[Document]:
        if self._client is None:
            raise NotStartedError("MongoDB client is not open yet")
        return self._client[self.settings.mongo.database]

    def subscribe(
        self,
        topic: str,
        handler: Callable[..., Awaitable[Any]],
        *,
        group_id: str,
        max_records: int = 500,
        max_bytes: int | None = None,
        on_invalid: Callable[[Exception], None] | None = None,
        unknown_fields: UnknownFields = "ignore",
        on_lead_path: bool = True,
        admit: Callable[[Any, Record], None] | None = None,
    ) -> None:
        """Consume `topic` in group `<group_id>.<topic>` with `handler`, typed by its first parameter:
        an event type (one message at a time) or `Batch[...]` (up to `max_records` per batch, one
        commit). Messages over `max_bytes` are refused unread; `on_invalid(why)` hears of every
        message that cannot be decoded. The consumers' edge retries and dead-letters (consumers.py).
        A field the event type does not name is ignored (another leadflow service may be a version
        ahead during a rolling upgrade) unless `unknown_fields="forbid"` (decision 0056). A consumer
        not `on_lead_path` (not on a new lead's way to its first notice) waits longer at the broker
        while idle (`kafka.fetch_wait_idle_off_path_ms`, decision 0070). `admit(event, record)` may refuse a
        decoded event by its record (PoisonMessage: dead-lettered like one that cannot be decoded)."""
        event, batch = contract_of(handler)
        adapter = None if event is bytes else TypeAdapter(event)
        subscription = Subscription(topic, adapter, batch, max_bytes, on_invalid, unknown_fields, admit)
        options = self._group_options(topic, group_id) | {
            "decoder": subscription.decode,
            "title": f"{topic} -> {self.service}",
            "description": " ".join((inspect.getdoc(handler) or "").split()) or None,
        }
        if batch:
            subscriber = self.broker.subscriber(topic, batch=True, max_records=max_records, **options)
            subscriber(handler)
            # Records wake the wait at once, and so does stopping the consumer: the timeout is a backstop.
            block_for_batches(subscriber, idle_ms=CONSUMER_TIMEOUT_MS)
        else:
            subscriber = self.broker.subscriber(topic, **options)
            subscriber(handler)
        if not on_lead_path:
            self._off_path.add(id(subscriber))
        self.broker.publisher(
            dlq(topic),
            schema=bytes,
            title=f"{self.service} -> {dlq(topic)}",
            description=DEAD_LETTER_DESCRIPTION,
        )

    def publisher(self, topic: str, event: Any, *, description: str) -> PublishRaw:
        """Publish serialized `event`s to `topic`, keyed by account (declared for the AsyncAPI document)."""
        return declare_publisher(self.broker, topic, event, title=f"{self.service} -> {topic}", description=description)

    def _group_options(self, topic: str, group_id: str) -> dict[str, Any]:
        # One consumer group per (service, topic): a service's consumers of different
        # topics then never make each other rebalance.
        group = f"{group_id}.{topic}"
        self._groups[topic] = group
        self.consumer_metrics.consuming(topic)
        kafka = self.settings.kafka
        return consumer_options(
            group, fetch_max_wait_ms=kafka.fetch_wait_busy_ms, session_timeout_ms=kafka.session_timeout_ms
        )

    def run_in_background(self, worker: Worker) -> None:
        """Run `worker(stopping)` while the service runs; it must return soon after `stopping` is set."""
        self._workers.append(worker)

    def on_shutdown(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook()` at shutdown once the broker has drained, before MongoDB closes (e.g. HTTP clients)."""
        self._shutdown_hooks.append(hook)

    def on_startup(self, hook: StartupHook) -> None:
        """Run `hook(db)` once MongoDB is open and before consuming starts (e.g. indexes)."""
        self._startup_hooks.append(hook)

    async def start(self) -> None:
        self._client = make_mongo_client(
            self.settings.mongo, app_name=f"leadflow-{self.service}", listeners=[self._command_counter]
        )
        for hook in self._startup_hooks:
            await hook(self.db)
        await self.broker.connect()  # the producer: what HTTP routes and workers publish with
        self._stopping.clear()
        self._tasks = [asyncio.create_task(worker(self._stopping)) for worker in self._workers]
        if self.broker.subscribers:
            lag = report_lag(self.broker, self.metrics, self._groups, self._stopping)
            self._tasks.append(asyncio.create_task(lag))
        self._join_failure = None
        self._joining = asyncio.create_task(self._start_consumers())
        log.info("%s started; consumers joining", self.service)

    async def _start_consumers(self) -> None:
        """Start every subscriber at once (FastStream's broker.start() joins one group after another)."""
        started = time.monotonic()
        try:
            await asyncio.gather(*(subscriber.start() for subscriber in self.broker.subscribers))
            kafka = self.settings.kafka
            for subscriber in self.broker.subscribers:
                off_path = id(subscriber) in self._off_path
                idle_ms = kafka.fetch_wait_idle_off_path_ms if off_path else kafka.fetch_wait_idle_ms
                long_poll(subscriber, idle_ms=idle_ms, busy_ms=kafka.fetch_wait_busy_ms)
            for publisher in self.broker.publishers:
                await publisher.start()
            self.broker.running = True
        except Exception as exc:  # noqa: BLE001 (reported by liveness, so the orchestrator restarts the process)
            self._join_failure = exc
            log.error("%s: consumers failed to start: %s", self.service, type(exc).__name__)
            return
        # The embedded stack's tests wait for this line (leadflow_devstack's `Stack.wait_consuming`).
        log.info("%s: %d consumers joined in %.1f s", self.service, len(self.broker.subscribers),
                 time.monotonic() - started)  # fmt: skip

    @property
    def consuming(self) -> bool:
        """Every consumer has joined its group."""
        return self._joining is not None and self._joining.done() and self._join_failure is None

    async def stop(self) -> None:
        # Background workers first, then the broker: in-flight handlers finish
        # (graceful_timeout) and commit their offsets while MongoDB is still open.
        self._stopping.set()
        if self._joining is not None and not self._joining.done():
            self._joining.cancel()
        await asyncio.gather(*self._tasks, *([self._joining] if self._joining else []), return_exceptions=True)
        await self.broker.stop()
        for hook in self._shutdown_hooks:
            await hook()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self.tracing is not None:
            self.tracing.shutdown()  # exports the spans still buffered
        log.info("%s stopped", self.service)

    async def readiness(self) -> None:
        """MongoDB and Kafka answer. Consumers may still be joining: what they miss meanwhile
        waits for them on the topic, while HTTP can be served already."""
        if self._client is None:
            raise NotStartedError("not started")
        self.liveness()  # a replica whose consumers could not start takes no traffic either
        await ping(self._client)
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("Kafka broker unreachable")

    def liveness(self) -> None:
        """Fails once starting the consumers failed: restarting the process is the way out."""
        if self._join_failure is not None:
            raise NotStartedError(f"consumers failed to start: {type(self._join_failure).__name__}")

    def app(self, *, body_limits: BodyLimits | None = None, **fastapi_kwargs: Any) -> ServiceApp:
        """The service's FastAPI app: the operational routes, `RequestMetrics` outermost, a 422 that never
        repeats the input (`answer_invalid_requests`; intake and crm-api install their own shapes over it),
        and with `body_limits` the bodies bounded and strict JSON (`BodyGuard`, decision 0083)."""

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = ServiceApp(lifespan=lifespan, **fastapi_kwargs)
        add_operational_routes(
            app, registry=self.registry, readiness=self.readiness, liveness=self.liveness, metrics=self.metrics
        )
        answer_invalid_requests(app)
        if body_limits is not None:
            app.add_middleware(BodyGuard, limits=body_limits)  # inside what the service adds later (its gates)
        # Outermost of the app's middleware, whatever the service adds after it (`ServiceApp`).
        app.add_middleware(RequestMetrics, metrics=self.metrics, body_seconds=self.settings.http.body_timeout_seconds)
        if self.tracing is not None:
            self.tracing.instrument(app)
        return app
