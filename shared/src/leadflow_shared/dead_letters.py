"""Dead letters: a record that cannot be processed goes to `<topic>.dlq` with why (I4).

The dead letter holds the original value and key, the sender's headers (within a budget) and
leadflow's `dlq-*` headers: the reason (field paths and rules, never values: `_describe`), the error type, the
source topic, partition and offset, and the service. `leadflow-ops dlq` reads and replays them.
"""

from __future__ import annotations

import json
import logging

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, KafkaTimeoutError
from faststream.kafka import KafkaBroker
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
from leadflow_shared.kafka_records import UNREADABLE, UnreadableRecord, printable
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.topics import dlq

log = logging.getLogger(__name__)

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


class DeadLetters:
    """Publishes dead letters for one service and counts them."""

    def __init__(self, broker: KafkaBroker, metrics: ConsumerMetrics, *, service: str) -> None:
        self._broker = broker
        self._metrics = metrics
        self._service = service

    async def publish(self, record: ConsumerRecord[bytes, bytes], exc: Exception) -> None:
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
            if is_transient(publish_error):
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


# Errors whose messages say where the bytes went wrong, never what they hold.
PLAIN_MESSAGES: tuple[type[Exception], ...] = (json.JSONDecodeError, UnicodeError, RecursionError)


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
            f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg'] if messages else err['type']}"
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
