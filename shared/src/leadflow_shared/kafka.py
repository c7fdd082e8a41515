"""Kafka plumbing with safe defaults, stated once.

- Producers: acks=all; idempotence on unless the broker cannot do it (settings).
- Consumers: offsets committed only after the handler finished (AckPolicy
  NACK_ON_ERROR: success commits, an unhandled error rewinds to the message);
  a new group starts from the earliest offset.
- Records aiokafka cannot read (a header name not UTF-8, lengths that do not add up) reach
  the dead-letter guard as stand-ins instead of wedging the fetcher (`kafka_records`).
- Handlers get the record's raw bytes: FastStream neither decodes the body nor trusts
  header values to be UTF-8, nor replies to a sender's `reply_to` (`consumer_options`),
  so no input can fail, or publish anything, before the dead-letter guard runs.
  A handler that needs headers too (the notifier's replay marker) gets an `Incoming`.
- Poison input (invalid JSON or schema, too deep, not UTF-8, `PoisonMessage`) goes to
  `<topic>.dlq` at once with the reason; any other error is retried with backoff a bounded number of
  times, then dead-lettered, except infrastructure outages (`is_transient`),
  which rewind so the message is processed once the dependency is back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from leadflow_shared import kafka_records
from leadflow_shared.errors import PoisonMessage as PoisonMessage  # re-exported: the DLQ guard handles it
from leadflow_shared.kafka_records import UNREADABLE, UnreadableRecord, printable, unreadable
from leadflow_shared.logs import bind
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.settings import KafkaSettings
from leadflow_shared.topics import TopicSpec, dlq

log = logging.getLogger(__name__)

# Errors of a dependency being down: retrying later will succeed, dead-lettering would not.
# Of Kafka's errors only the retriable ones (a record too large for the broker never fits).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError)


def is_transient(exc: BaseException) -> bool:
    """An outage to wait out (rewind), not a fault of the message (dead letter)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    return isinstance(exc, TRANSIENT_ERRORS)


# FastStream's request-reply header; leadflow never replies, so a sender may not choose a topic for it.
REPLY_TO = "reply_to"
# Errors the same bytes raise every time: retrying only delays the dead letter.
POISON_ERRORS: tuple[type[Exception], ...] = (
    ValidationError,
    PoisonMessage,
    RecursionError,
    UnicodeError,
    json.JSONDecodeError,
)


def _security(settings: KafkaSettings) -> BaseSecurity | None:
    """FastStream's security for the settings (KafkaSettings refuses inconsistent ones)."""
    context = ssl_context(settings)
    if settings.sasl_mechanism is None:
        return BaseSecurity(ssl_context=context) if context else None
    user = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    kind = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
    return kind[settings.sasl_mechanism](
        username=user, password=password, ssl_context=context, use_ssl=context is not None
    )


def client_security(settings: KafkaSettings) -> dict[str, Any]:
    """The security options of a plain aiokafka client (a tool's consumer), the same as the services'."""
    return parse_security(_security(settings))


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for SSL and SASL_SSL (CA file and client certificate if set); None otherwise."""
    if not settings.uses_tls:
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile)
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def make_broker(settings: KafkaSettings, *, client_id: str, registry: CollectorRegistry) -> KafkaBroker:
    """A FastStream Kafka broker with leadflow's delivery guarantees."""
    kafka_records.install()  # before any consumer fetches
    return KafkaBroker(
        settings.bootstrap_servers,
        client_id=client_id,
        # FastStream's own logger prints coloured text with a handler of its own: through ours
        # instead, its lines are JSON like the rest (leadflow_shared.logs).
        logger=logging.getLogger("faststream.leadflow"),
        acks="all",
        enable_idempotence=settings.producer_idempotence,
        max_batch_size=settings.producer_batch_bytes,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        graceful_timeout=settings.graceful_timeout_seconds,
        security=_security(settings),
        middlewares=[KafkaPrometheusMiddleware(registry=registry, app_name=client_id)],
        log_level=logging.DEBUG,  # per-message "Received/Processed" lines are noise at INFO
    )


def _safe_headers(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    """The record as FastStream may see it: every header value valid UTF-8 (FastStream decodes
    them strictly, and a null value not at all; bad bytes become U+FFFD), and no `reply_to`
    (FastStream would publish the handler's result to whatever topic a sender names there).
    Only headers change: the dead-letter guard still publishes the original value and key."""
    headers = record.headers
    if all(value is not None and value.isascii() and name != REPLY_TO for name, value in headers):
        return record  # the common case costs one scan
    safe = [(name, (value or b"").decode("utf-8", "replace").encode()) for name, value in headers if name != REPLY_TO]
    return dataclasses.replace(record, headers=safe)


async def _parse_tolerantly(msg: Any, parse: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream parser hook: a record (or a batch's tuple of records) with safe headers."""
    if isinstance(msg, tuple):
        return await parse(tuple(_safe_headers(r) for r in msg))
    return await parse(_safe_headers(msg))


async def _raw_body(msg: KafkaMessage) -> Any:
    """FastStream decoder hook: the body as it came, bytes (or a batch's list of bytes).

    FastStream's own decoder parses JSON when the content-type says so, and its errors
    (cut-off JSON, deep nesting) escape every handler; leadflow's handlers parse themselves.
    """
    return msg.body


def consumer_options(group_id: str, *, fetch_max_wait_ms: int = 20) -> dict[str, Any]:
    """Subscriber options every leadflow consumer uses (see the module docstring).

    Fetches wait at most `fetch_max_wait_ms` for data until the consumer has joined; then
    `long_poll` chooses each fetch's wait (decision 0052).
    """
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "parser": _parse_tolerantly,
        "decoder": _raw_body,
    }


PublishRaw = Callable[[str, bytes], Awaitable[None]]
"""Publishes (account id, event JSON) to one topic."""


def publisher(broker: KafkaBroker, topic: str) -> PublishRaw:
    """Publish serialized events to `topic` keyed by account, so an account's events stay in order."""

    async def publish(account_id: str, event_json: bytes) -> None:
        await broker.publish(event_json, topic, key=account_id.encode(), headers={"content-type": "application/json"})

    return publish


# Under aiokafka's 1 MiB max_request_size, with room for the key and the headers.
DLQ_MAX_VALUE_BYTES = 900 * 1024
DLQ_MAX_HEADER_BYTES = 16 * 1024

BatchRejections = list[tuple[int, Exception]]
"""(index in the batch, why) for each message a batch handler could not process."""

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """A record's body with its headers and place, for handlers that read more than the body."""

    body: bytes
    headers: dict[str, str]  # values decoded leniently (bad bytes as U+FFFD); a repeated name: the last one
    partition: int | None = None  # where it was on its topic (crm-api's rebuild log records it)
    offset: int | None = None


def body_of(record: ConsumerRecord[bytes, bytes]) -> bytes:
    return record.value or b""


def incoming_of(record: ConsumerRecord[bytes, bytes]) -> Incoming:
    headers = {name: (value or b"").decode("utf-8", "replace") for name, value in record.headers}
    return Incoming(body_of(record), headers, record.partition, record.offset)


class DeadLetterGuard:
    """Runs handlers on raw Kafka records with bounded retries and a dead-letter exit."""

    def __init__(
        self,
        broker: KafkaBroker,
        settings: KafkaSettings,
        metrics: ConsumerMetrics,
        *,
        service: str,
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._metrics = metrics
        self._service = service

    def _retrying(self, topic: str) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._settings.handler_attempts),
            wait=wait_exponential_jitter(
                multiplier=self._settings.retry_initial_seconds,
                max=self._settings.retry_max_seconds,
                jitter=self._settings.retry_initial_seconds,
            ),
            retry=retry_if_not_exception_type(POISON_ERRORS),
            before_sleep=lambda state: self._count_retry(topic, state),
            reraise=True,
        )

    async def run(self, message: KafkaMessage, handle: Callable[[bytes], Awaitable[None]]) -> None:
        """One message: retried, then dead-lettered; an outage rewinds instead."""
        await self._run_record(message.raw_message, handle, body_of)  # a single-message subscriber

    async def _run_record(
        self,
        record: ConsumerRecord[bytes, bytes],
        handle: Callable[[T], Awaitable[None]],
        view: Callable[[ConsumerRecord[bytes, bytes]], T],
    ) -> None:
        if (why := unreadable(record.headers)) is not None:
            await self.dead_letter(record, UnreadableRecord(why))
            return
        try:
            with bind(topic=record.topic, partition=record.partition, offset=record.offset):
                async for attempt in self._retrying(record.topic):
                    with attempt:
                        await handle(view(record))
        except Exception as exc:  # the consumer's edge: nothing may stop the partition
            if is_transient(exc):
                raise  # rewind: the message is processed again when the dependency is back
            await self.dead_letter(record, exc)

    async def run_batch(
        self,
        message: KafkaMessage,
        handle_batch: Callable[[list[bytes]], Awaitable[BatchRejections]],
        handle_one: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """A batch in one go; rejected messages are dead-lettered, the rest committed together.

        The batch handler must be idempotent (it may run again). If it fails on something
        unforeseen, each message is run alone, so one poison message cannot hold up the rest.
        """
        await self._run_batch(message, handle_batch, handle_one, body_of)

    async def run_batch_with_headers(
        self,
        message: KafkaMessage,
        handle_batch: Callable[[list[Incoming]], Awaitable[BatchRejections]],
        handle_one: Callable[[Incoming], Awaitable[None]],
    ) -> None:
        """`run_batch` for handlers that read headers as well as bodies."""
        await self._run_batch(message, handle_batch, handle_one, incoming_of)

    async def _run_batch(
        self,
        message: KafkaMessage,
        handle_batch: Callable[[list[T]], Awaitable[BatchRejections]],
        handle_one: Callable[[T], Awaitable[None]],
        view: Callable[[ConsumerRecord[bytes, bytes]], T],
    ) -> None:
        records: list[ConsumerRecord[bytes, bytes]] = []
        for record in message.raw_message:  # a batch subscriber's tuple of records
            if (why := unreadable(record.headers)) is not None:
                await self.dead_letter(record, UnreadableRecord(why))
            else:
                records.append(record)
        if not records:
            return
        first = records[0]
        try:
            with bind(topic=first.topic, partition=first.partition, offset=first.offset, batch=len(records)):
                async for attempt in self._retrying(first.topic):
                    with attempt:
                        rejections = await handle_batch([view(r) for r in records])
        except Exception as failure:  # isolate the culprit: one message at a time
            if is_transient(failure):
                raise
            log.warning("batch of %d from %s failed; processing one by one", len(records), records[0].topic)
            for record in records:
                await self._run_record(record, handle_one, view)
            return
        for index, exc in rejections:
            await self.dead_letter(records[index], exc)

    def _count_retry(self, topic: str, state: RetryCallState) -> None:
        self._metrics.retries.labels(topic).inc()
        error = state.outcome.exception() if state.outcome else None
        log.warning("retrying %s handler after %s", topic, type(error).__name__)

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        """Publish the original bytes to `<topic>.dlq` with the reason in headers, and count it."""
        topic, partition, offset = record.topic, record.partition, record.offset
        reason = _describe(exc)
        value = record.value or b""
        ours = {
            "dlq-reason": reason,
            "dlq-error-type": type(exc).__name__,
            "dlq-source-topic": topic,
            "dlq-source-partition": str(partition),
            "dlq-source-offset": str(offset),
            "dlq-service": self._service,
        }
        # The sender's headers travel along (trace context, content-type, its own) within a
        # budget, never under leadflow's `dlq-` names: a dead letter must fit the producer's
        # 1 MiB request limit, or it would rewind forever.
        theirs = {printable(name): (raw or b"").decode("utf-8", "replace") for name, raw in record.headers
                  if name != UNREADABLE and not name.lower().startswith("dlq-")}  # fmt: skip
        if sum(len(n.encode()) + len(v.encode()) for n, v in theirs.items()) > DLQ_MAX_HEADER_BYTES:
            ours["dlq-headers-dropped"] = str(len(theirs))
            theirs = {}
        if len(value) > DLQ_MAX_VALUE_BYTES:
            # Keep the head and say how long the original was (it stays on the source topic).
            ours["dlq-truncated-from-bytes"] = str(len(value))
            value = value[:DLQ_MAX_VALUE_BYTES]
        key = (record.key or b"")[:1024] or None
        try:
            await self._broker.publish(value, dlq(topic), key=key, headers=theirs | ours)
        except KafkaError as publish_error:
            if publish_error.retriable:
                raise  # the broker is away: rewind, and dead-letter it once it is back
            # Refused for good (too large for this broker's limits): the reason and the source's
            # coordinates still go out, so an operator can find the record on its topic.
            ours["dlq-value-dropped"] = type(publish_error).__name__
            await self._broker.publish(b"", dlq(topic), key=key, headers=ours)
        self._metrics.dead_lettered.labels(topic, _reason(exc)).inc()
        # Logs get field paths and error types only: validators' messages may quote input.
        log.warning(
            "dead-lettered %s[%s]@%s: %s",
            topic,
            partition,
            offset,
            _describe(exc, messages=False),
            extra={"topic": topic, "partition": partition, "offset": offset},
        )


def _reason(exc: Exception) -> str:
    """The metric's fixed reason token (DEAD_LETTER_REASONS); the DLQ headers name the error type."""
    if isinstance(exc, UnreadableRecord):
        return "unreadable"
    return "invalid" if isinstance(exc, POISON_ERRORS) else "failed"


def _describe(exc: Exception, *, messages: bool = True) -> str:
    """The reason of a dead letter: field paths with the validation messages (for the DLQ
    header, next to the original bytes anyway) or with error types only (for logs)."""
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg'] if messages else err['type']}"
            for err in exc.errors(include_input=False)[:20]
        ]
        return "; ".join(parts)[:2000]
    if isinstance(exc, PoisonMessage):
        return f"{type(exc).__name__}: {exc}"[:2000]  # our own reasons: ids and rules, no personal data
    return f"{type(exc).__name__}: {exc}"[:2000] if messages else type(exc).__name__


async def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec]) -> None:
    """Create the topics that do not exist yet (replication 1 here; production sets its own)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(s.name, s.partitions, 1) for s in specs if s.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them meanwhile
                await admin.create_topics(missing)
    finally:
        await admin.close()
