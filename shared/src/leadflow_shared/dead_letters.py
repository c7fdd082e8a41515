"""Dead letters: a record that cannot be processed goes to `<topic>.dlq` with why (I4).

The dead letter holds the original value, key and headers (a list, in order, within a budget), then
leadflow's `dlq-*` headers (`dlq-original-headers`: how many of the first are the original's): the reason
(field paths and rules, never values: `_describe`), the error type, the source topic, partition and offset,
and the service (decision 0091). `leadflow-ops dlq` reads and replays them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, KafkaTimeoutError
from faststream.kafka import KafkaBroker
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import ValidationError
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from leadflow_shared.errors import PoisonMessage
from leadflow_shared.json_bodies import safe_loc
from leadflow_shared.kafka import original_record, raw_producer
from leadflow_shared.kafka_records import UNREADABLE, UnreadableRecord, is_utf8, printable
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.topics import dlq

if TYPE_CHECKING:
    from leadflow_shared.tracing import Tracing

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()

# Errors of a dependency being down: retrying later will succeed, dead-lettering would not.
# Of Kafka's errors only the retriable ones (a record too large for the broker never fits), and the
# producer's KafkaTimeoutError: a partition's batch did not drain in time, the broker is away (aiokafka
# does not flag it retriable, decision 0077).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionFailure, KafkaError)


# MongoDB's codes of a primary stepping down or shutting down, a host or network away, a read concern not yet
# available: PyMongo retries a write once on them; longer than that (an election) they are still an outage.
MONGODB_TRANSIENT_CODES = frozenset({6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436})


def is_transient(exc: BaseException) -> bool:
    """An outage to wait out (rewind), not a fault of the message (dead letter)."""
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)
    if isinstance(exc, InvalidOperation):
        # PyMongo's closed client: this process is stopping (a handler outlived the broker's graceful
        # timeout). The record is for the next consumer of its partition, not for the dead letters.
        return "after close" in str(exc)
    if isinstance(exc, OperationFailure):
        return _mongodb_outage(exc)
    return isinstance(exc, TRANSIENT_ERRORS)


def _mongodb_outage(exc: OperationFailure) -> bool:
    """A server's answer that says it cannot write now (during a failover), not that the write is wrong."""
    if exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError"):
        return True
    if isinstance(exc, WriteConcernError):  # written, but not yet acknowledged by enough members
        return True
    if isinstance(exc, BulkWriteError):  # only write-concern trouble, no document refused
        details = exc.details or {}
        return bool(details.get("writeConcernErrors")) and not details.get("writeErrors")
    return exc.code in MONGODB_TRANSIENT_CODES


# Errors the same bytes raise every time: retrying only delays the dead letter.
POISON_ERRORS: tuple[type[Exception], ...] = (
    ValidationError,
    PoisonMessage,
    RecursionError,
    UnicodeError,
    json.JSONDecodeError,
)


# Under aiokafka's 1 MiB max_request_size, with room for the key and the headers.
DLQ_MAX_VALUE_BYTES = 900 * 1024
DLQ_MAX_HEADER_BYTES = 16 * 1024


# Leadflow's header after the original's: how many of the dead letter's headers, from the first, are the
# original record's (in order, repeats and all); the `dlq-*` headers and the trace context follow them.
ORIGINAL_HEADERS = "dlq-original-headers"

Headers = list[tuple[str, bytes | None]]


class DeadLetters:
    """Publishes dead letters for one service and counts them."""

    def __init__(self, broker: KafkaBroker, metrics: ConsumerMetrics, *, service: str) -> None:
        self._broker = broker
        self._metrics = metrics
        self._service = service
        self._tracing: Tracing | None = None

    def traced(self, tracing: Tracing | None) -> None:
        """Publish each dead letter in a producer span, its `traceparent` among leadflow's headers."""
        self._tracing = tracing

    async def publish(self, record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
        """Publish the original record to `<topic>.dlq`, the reason in headers after its own, and count it.

        The key (None stays None, b"" stays b""), the value and the headers (a list: order, repeated names
        and null values kept) are the record's as it was fetched (`kafka.original_record`); leadflow's
        `dlq-*` headers follow them, `dlq-original-headers` saying how many of the first are the original's."""
        record = original_record(record)
        topic, partition, offset = record.topic, record.partition, record.offset
        ours = {
            "dlq-reason": _describe(exc),
            "dlq-error-type": type(exc).__name__,
            "dlq-source-topic": topic,
            "dlq-source-partition": str(partition),
            "dlq-source-offset": str(offset),
            "dlq-service": self._service,
        }
        theirs = _kept_headers(record.headers, ours)
        value = record.value or b""
        if len(value) > DLQ_MAX_VALUE_BYTES:
            # Keep the head and say how long the original was (it stays on the source topic).
            ours["dlq-truncated-from-bytes"] = str(len(value))
            value = value[:DLQ_MAX_VALUE_BYTES]
        key = None if record.key is None else record.key[:1024]
        try:
            await self._send(dlq(topic), key, value, theirs, ours)
        except KafkaError as publish_error:
            if is_transient(publish_error):
                raise  # the broker is away: rewind, and dead-letter it once it is back
            # Refused for good (too large for this broker's limits): the reason and the source's
            # coordinates still go out, so an operator can find the record on its topic.
            ours["dlq-value-dropped"] = type(publish_error).__name__
            await self._send(dlq(topic), key, b"", [], ours)
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

    async def _send(self, topic: str, key: bytes | None, value: bytes, theirs: Headers, ours: dict[str, str]) -> None:
        """The original's headers, then ours (with the trace context of a producer span when tracing is on)."""
        with contextlib.ExitStack() as scope:
            if self._tracing is not None:
                scope.enter_context(self._tracing.tracer.start_as_current_span(
                    f"{topic} create", kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "messaging.operation": "create",
                                "messaging.destination.name": topic},
                ))  # fmt: skip
                carrier: dict[str, str] = {}
                _PROPAGATOR.inject(carrier)
                ours = ours | carrier
            headers = [*theirs, (ORIGINAL_HEADERS, str(len(theirs)).encode())]
            headers += [(name, text.encode()) for name, text in ours.items()]
            producer = raw_producer(self._broker)
            if producer is None:  # FastStream's in-memory test client: headers as its dict, the last value of a name
                as_text = {name: (raw or b"").decode("utf-8", "replace") for name, raw in headers}
                await self._broker.publish(value, topic, key=key, headers=as_text)
                return
            await producer.send_and_wait(topic, value, key=key, headers=headers)


def _kept_headers(headers: Sequence[tuple[str, bytes | None]], ours: dict[str, str]) -> Headers:
    """The record's headers as they came, in order, within a budget: a dead letter must fit the producer's
    1 MiB request limit, or it would rewind forever (over it, none are kept and `dlq-headers-dropped` says how
    many there were). A stand-in's UNREADABLE header is left out (its reason is `dlq-reason`); a name that is
    not UTF-8 (only on an unreadable record, never replayed) is kept escaped: Kafka's names are UTF-8."""
    kept = [(name if is_utf8(name) else printable(name), value) for name, value in headers if name != UNREADABLE]
    if sum(len(name.encode()) + len(value or b"") for name, value in kept) > DLQ_MAX_HEADER_BYTES:
        ours["dlq-headers-dropped"] = str(len(kept))
        return []
    return kept


def _reason(exc: Exception) -> str:
    """The metric's fixed reason token (DEAD_LETTER_REASONS); the DLQ headers name the error type."""
    if isinstance(exc, UnreadableRecord):
        return "unreadable"
    return "invalid" if isinstance(exc, POISON_ERRORS) else "failed"


# Errors whose messages say where the bytes went wrong, never what they hold.
PLAIN_MESSAGES: tuple[type[Exception], ...] = (json.JSONDecodeError, UnicodeError, RecursionError)


# A member name as a log line shows it: leadflow's field names are snake_case; any other is a key the sender chose (in a
# free-form map such as a source's `utm`, or an unknown member) and may hold anything, an address included (helper 168).
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def _place(loc: Sequence[str | int], *, logged: bool) -> str:
    parts = safe_loc(loc)
    if logged:
        parts = [p if isinstance(p, int) or _FIELD_NAME.fullmatch(p) else "<key>" for p in parts]
    return ".".join(str(p) for p in parts) or "<message>"


def _describe(exc: Exception, *, messages: bool = True) -> str:
    """The reason of a dead letter: field paths with the validation messages (for the DLQ header, which
    `leadflow-ops dlq list` prints while it keeps the bodies back) or with error types only (for logs).

    Only messages that hold no input are kept: pydantic's (without the input), leadflow's own
    (`PoisonMessage`: ids and rules) and a parser's. Any other error is named by its type and a fixed reason
    (decision 0091): a library's message may quote the record, as MongoDB's duplicate-key error quotes the
    key's value (an email)."""
    name = type(exc).__name__
    if isinstance(exc, ValidationError):
        parts = [
            f"{_place(err['loc'], logged=not messages)}: {err['msg'] if messages else err['type']}"
            for err in exc.errors(include_input=False)[:20]
        ]
        return "; ".join(parts)[:2000]
    if not messages:
        return name
    if isinstance(exc, (PoisonMessage, *PLAIN_MESSAGES)):
        return f"{name}: {exc}"[:2000]
    if isinstance(exc, PyMongoError):
        code = getattr(exc, "code", None)
        return f"{name}: a MongoDB error{f' (code {code})' if code is not None else ''}; message withheld"
    return f"{name}: message withheld (it may quote the record)"
