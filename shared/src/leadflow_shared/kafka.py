"""Kafka plumbing with safe defaults, stated once.

- Producers: acks=all; idempotence on unless the broker cannot do it (settings).
- Consumers: offsets committed only after the handler finished (AckPolicy
  NACK_ON_ERROR: success commits, an unhandled error rewinds to the message);
  a new group starts from the earliest offset.
- Records aiokafka cannot read (a header name not UTF-8, lengths that do not add up) reach
  the consumers' edge as stand-ins instead of wedging the fetcher (`kafka_records`).
- FastStream neither trusts header values to be UTF-8 nor replies to a sender's `reply_to`
  (`consumer_options`; the record as fetched stays with it for its dead letter, `original_record`);
  a subscription decodes the body itself (`consumers.Subscription`), so no
  input can fail, or publish anything, before the consumers' edge (`consumers.ConsumerEdge`) runs.
- Producers are declared per topic with the event type they send (`declare_publisher`): FastStream
  documents them in the AsyncAPI document beside the typed subscribers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry

from leadflow_shared import kafka_records
from leadflow_shared.errors import PoisonMessage as PoisonMessage  # re-exported: the DLQ guard handles it
from leadflow_shared.settings import KafkaSettings
from leadflow_shared.topics import TopicSpec

log = logging.getLogger(__name__)

# FastStream's request-reply header; leadflow never replies, so a sender may not choose a topic for it.
REPLY_TO = "reply_to"


END_FETCH_SECONDS = 10.0  # `log_ends`: at most this long for a fetch to report a partition's high watermark


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


@dataclasses.dataclass
class SafeRecord(ConsumerRecord[bytes, bytes]):  # type: ignore[misc]  # aiokafka's generic dataclass
    """A record with headers FastStream can read (`_safe_headers`), and the record as it came."""

    original: ConsumerRecord[bytes, bytes] | None = None


def original_record(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    """The record as it was fetched, before `_safe_headers`: what its dead letter carries."""
    return record.original if isinstance(record, SafeRecord) and record.original is not None else record


def _safe_headers(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    """The record as FastStream may see it: every header value valid UTF-8 (FastStream decodes
    them strictly, and a null value not at all; bad bytes become U+FFFD), and no `reply_to`
    (FastStream would publish the handler's result to whatever topic a sender names there).
    The original stays with it (`original_record`): a dead letter carries its key, value and headers."""
    headers = record.headers
    if all(value is not None and value.isascii() and name != REPLY_TO for name, value in headers):
        return record  # the common case costs one scan
    safe = [(name, (value or b"").decode("utf-8", "replace").encode()) for name, value in headers if name != REPLY_TO]
    fields = {field.name: getattr(record, field.name) for field in dataclasses.fields(ConsumerRecord)}
    return SafeRecord(**(fields | {"headers": safe, "original": original_record(record)}))


async def log_ends(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's end offset as of now, for a reader that reads up to it (a rebuild, `leadflow-ops dlq`): the
    end offset listed, or the high watermark a fetch of the last listed record reports when higher. Tansu (the
    embedded broker, 0.6) lists the last batch's base offset + 1, so the other records of a batch of several (a
    producer's linger, a batch of dead letters) were left out; on Kafka the two agree. Leaves the partitions with
    records assigned, their positions where the fetch left them: the caller assigns and seeks."""
    listed: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    written = [tp for tp in partitions if listed[tp] > 0]  # a fetch reports it, the record there gone or not
    if written:
        consumer.assign(written)
        for tp in written:
            consumer.seek(tp, listed[tp] - 1)
        deadline = time.monotonic() + END_FETCH_SECONDS
        while any(consumer.highwater(tp) is None for tp in written) and time.monotonic() < deadline:
            await consumer.getmany(*written, timeout_ms=200)
        if unknown := sorted(str(tp) for tp in written if consumer.highwater(tp) is None):
            log.warning(
                "no high watermark within %.0f s: the listed end offsets kept for %s", END_FETCH_SECONDS, unknown
            )
    return listed | {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in written}


def raw_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The connected aiokafka producer behind `broker`, for a record FastStream cannot express (headers as
    a list: a name repeated, a value null or not UTF-8); None under FastStream's in-memory test client."""
    state = getattr(broker.config.producer, "_producer", None)  # FastStream 0.6: a RealProducer once connected
    producer = getattr(state, "producer", None) if state else None
    return producer if isinstance(producer, AIOKafkaProducer) else None


async def _parse_tolerantly(msg: Any, parse: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream parser hook: a record (or a batch's tuple of records) with safe headers."""
    if isinstance(msg, (tuple, list)):  # a list: FastStream's in-memory test broker
        return await parse(type(msg)(_safe_headers(r) for r in msg))
    return await parse(_safe_headers(msg))


CONSUMER_TIMEOUT_MS = 5_000


def consumer_options(group_id: str, *, fetch_max_wait_ms: int = 20, session_timeout_ms: int = 10_000) -> dict[str, Any]:
    """Subscriber options every leadflow consumer uses (see the module docstring).

    Fetches wait at most `fetch_max_wait_ms` for data until the consumer has joined; then
    `long_poll` chooses each fetch's wait (decision 0052). A member silent for `session_timeout_ms`
    is dropped from its group; it heartbeats every third of that (Kafka's advice, decision 0073).
    """
    return {
        "group_id": group_id,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": session_timeout_ms // 3,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        # A record of a transaction its producer aborted is no message: a partner's exactly-once pipeline aborts
        # and does its work again (aiokafka's default, read_uncommitted, took both: helper 170). Costs nothing
        # for leadflow's own producers, which use no transactions.
        "isolation_level": "read_committed",
        "fetch_max_wait_ms": fetch_max_wait_ms,
        # aiokafka's fetch loop also wakes every `consumer_timeout_ms` (200 by default) in case
        # nothing else does; a fetch in flight, a rebalance and a consumed buffer all wake it
        # already, so the idle consumer sleeps between its fetches instead (decision 0055).
        "consumer_timeout_ms": CONSUMER_TIMEOUT_MS,
        "parser": _parse_tolerantly,
    }


PublishRaw = Callable[[str, bytes], Awaitable[None]]
"""Publishes (account id, event JSON) to one topic."""


def declare_publisher(broker: KafkaBroker, topic: str, event: Any, *, title: str, description: str) -> PublishRaw:
    """A publisher of serialized `event`s to `topic`, keyed by account so an account's events stay in
    order; declared on the broker, so the AsyncAPI document shows who sends what where."""
    declared = broker.publisher(topic, schema=event, title=title, description=description)

    async def publish(account_id: str, event_json: bytes) -> None:
        await declared.publish(event_json, key=account_id.encode(), headers={"content-type": "application/json"})

    return publish


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
