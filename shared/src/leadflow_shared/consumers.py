"""Typed subscriptions and the one middleware at the consumers' edge: retries, dead letters (I4), tracing.

A handler's first parameter is its topic's contract, as FastStream reads it (and documents it in
the AsyncAPI document):

    async def on_command(command: LeadCommand) -> None: ...              # one message at a time
    async def on_leads(leads: Batch[LeadReceived]) -> BatchRejections: ...  # a batch, one commit

`Subscription.decode` (FastStream's decoder for the subscriber) turns the record's bytes into
that type, in pydantic's JSON mode. Nothing from the record reaches FastStream's own decoding:
cut-off JSON, deep nesting, NaN or bytes that are not UTF-8 are a validation error here, like a
wrong field. What pydantic's parser takes but no consumer can store (an integer beyond 64 bits, a
NUL in a member name: BSON has neither) or JSON does not have (NaN, Infinity) is refused before it,
naming the place (`NotStrictRecord`, decision 0083): else a handler would write part of what the
record means and fail at the rest, again at every retry. In a batch, each record is decoded on its
own: what cannot be decoded is set aside (`Batch.rejected`) and the rest handled.

`ConsumerEdge`, a FastStream middleware on every subscriber, then:
- dead-letters poison at once: what cannot be decoded, and what a handler rejects
  (`PoisonMessage`, a validation error, a batch handler's rejections);
- retries any other error with backoff a bounded number of times, then dead-letters it;
- lets an outage (`is_transient`) through, so FastStream rewinds to the message (NACK_ON_ERROR)
  and it is processed again once the dependency is back;
- runs a failed batch again one record at a time, so one bad record cannot hold up the others.
- dead-letters a record once: read again after an outage rewound its batch, it is neither dead-lettered nor
  run again (`ConsumerEdge.dead_letter`); a cancellation (FastStream's, past `graceful_timeout`) is never retried.
With tracing on, it does all that inside the message's consuming span (`Tracing.consuming`: a
record's continues the record's trace, a batch's its first record's), so a dead letter carries the
trace; with tracing off there is no span code on the way, one shared no-op context.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import logging
import re
import typing
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, Literal, TypeAlias, TypeVar, cast

from aiokafka import ConsumerRecord
from faststream import BaseMiddleware
from faststream.kafka import KafkaMessage
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter
from pydantic_core import CoreSchema, core_schema
from tenacity import (
    AsyncRetrying,
    AttemptManager,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from leadflow_shared.dead_letters import POISON_ERRORS, DeadLetters, is_transient
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.json_bodies import JsonBounds, NotStrictJson, parse_strict_json, safe_loc
from leadflow_shared.kafka import original_record
from leadflow_shared.kafka_records import UnreadableRecord, unreadable
from leadflow_shared.logs import bind
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.settings import KafkaSettings

if typing.TYPE_CHECKING:
    from faststream._internal.basic_types import AsyncFuncAny
    from faststream._internal.context.repository import ContextRepo
    from faststream.message import StreamMessage

    from leadflow_shared.tracing import Tracing

log = logging.getLogger(__name__)

E = TypeVar("E")
UnknownFields: TypeAlias = Literal["ignore", "forbid"]  # what a record's fields this version does not know get
Record: TypeAlias = ConsumerRecord[bytes, bytes]

_UNTRACED = contextlib.nullcontext()  # tracing off: the consuming "span" of every message (reentrant)

BatchRejections = list[tuple[int, Exception]]
"""(index in the batch, why) for each message a batch handler could not process."""


class TooLarge(PoisonMessage):
    """A message over its subscription's size limit: refused before it is parsed."""


class NotStrictRecord(PoisonMessage):
    """A record whose JSON holds what no consumer can keep or JSON does not have: refused before it is decoded."""


# Records are strict JSON too (leadflow_shared.json_bodies): integers within BSON's 64 bits, no NaN or Infinity (nor a
# number beyond a double, `1e400`, which pydantic reads as inf), no NUL in a member name. Checked only on a record
# that may hold one (`_suspect`): a leadflow event never does.
RECORD_BOUNDS = JsonBounds(max_depth=64, int_bits=64, max_errors=5)
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789E", b"0" * 10 + b"e")  # and an exponent's E as e
_LONG_NUMBER = b"0" * 19  # 19 digits in a row: an integer that may be beyond 64 bits (2**63 has 19)
# An exponent of 3 digits or more: a number that may be beyond a double (`1e400`, `-1E999`). Under 3, the mantissa
# would need 19 digits in a row to reach 1.8e308, which `_LONG_NUMBER` finds; a negative exponent underflows to 0.
_BIG_EXPONENT = re.compile(rb"e\+?000")
_MANTISSA = frozenset(b"0.")
_BEFORE_A_VALUE = frozenset(b":[, \t\r\n")  # what precedes a JSON value (or nothing: the document's start)
_NOT_STORABLE = frozenset({"finite_number", "integer_range", "unicode"})  # the rest: pydantic's to name


def _suspect(value: bytes) -> bool:
    """Whether `value` may hold what `RECORD_BOUNDS` refuses: a few microseconds, against the parse's tens."""
    if b"NaN" in value or b"Infinity" in value or b"\\u0000" in value:
        return True
    digits = value.translate(_DIGITS_AS_ZERO)
    return _LONG_NUMBER in digits or any(_a_number_before(digits, m.start()) for m in _BIG_EXPONENT.finditer(digits))


def _a_number_before(digits: bytes, exponent: int) -> bool:
    """Whether a JSON number's mantissa ends at `exponent` (its `e`): digits, maybe a point and a minus, beginning
    where a JSON value may. Not a word's `e` nor a UUID's hex (`"ab-4e567"`), or most events would be parsed twice."""
    start = exponent
    while start > 0 and digits[start - 1] in _MANTISSA:
        start -= 1
    if start == exponent:
        return False
    if start > 0 and digits[start - 1] == ord("-"):
        start -= 1
    return start == 0 or digits[start - 1] in _BEFORE_A_VALUE


def check_storable(value: bytes) -> None:
    """`NotStrictRecord` naming each place (no value) where `value` holds what `RECORD_BOUNDS` refuses."""
    if not _suspect(value):
        return
    try:
        parse_strict_json(value, RECORD_BOUNDS)
    except NotStrictJson as exc:
        found = [v for v in exc.violations if v.kind in _NOT_STORABLE]
        if found:
            places = "; ".join(f"{'.'.join(str(p) for p in safe_loc(v.loc)) or '<message>'}: {v.reason}" for v in found)
            raise NotStrictRecord(places) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Incoming:
    """A record's body with its headers and place, for handlers that read more than the event."""

    body: bytes
    headers: dict[str, str]  # values decoded leniently (bad bytes as U+FFFD); a repeated name: the last one
    partition: int | None = None  # where it was on its topic (crm-api's rebuild log records it)
    offset: int | None = None
    key: bytes | None = None


def incoming_of(record: Record) -> Incoming:
    headers = {name: (value or b"").decode("utf-8", "replace") for name, value in record.headers}
    return Incoming(record.value or b"", headers, record.partition, record.offset, record.key)


@dataclasses.dataclass(frozen=True, slots=True)
class Received(Generic[E]):
    """One record of a batch: its event, and the record as it came (body, headers, place)."""

    event: E
    message: Incoming


class Batch(list[Received[E]], Generic[E]):
    """The decodable records of a consumed batch, in topic order; `rejected`: the others, and why.

    For FastStream's AsyncAPI document a batch is its topic's message type (what is on the topic).
    """

    def __init__(self) -> None:
        super().__init__()
        self.rejected: list[tuple[Record, Exception]] = []
        self.records: list[Record] = []  # the record of each item, for its dead letter

    def add(self, event: E, record: Record) -> None:
        self.append(Received(event, incoming_of(record)))
        self.records.append(record)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        (item,) = typing.get_args(source) or (Any,)

        def documented(schema: CoreSchema, generate: GetJsonSchemaHandler) -> dict[str, Any]:
            # allOf: FastStream's generator misreads a parameter whose schema is a bare $ref.
            return {"allOf": [generate(schema)], "description": "Consumed in batches of such messages."}

        return core_schema.json_or_python_schema(
            json_schema=handler.generate_schema(item),
            python_schema=core_schema.is_instance_schema(cls),  # decoded already: passed through as is
            metadata={"pydantic_js_functions": [documented]},
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Subscription(Generic[E]):
    """What a topic's consumer accepts, and how its records become that."""

    topic: str
    adapter: TypeAdapter[E] | None  # None: `bytes`, the value as it came
    batch: bool
    max_bytes: int | None = None
    on_invalid: Callable[[Exception], None] | None = None  # e.g. a service's own rejection metric
    # "ignore": a field this version does not know is dropped (another leadflow service, newer than
    # this one, during a rolling upgrade); "forbid": it is refused (a partner's documented contract).
    unknown_fields: UnknownFields = "ignore"
    # Whether a decoded event may be taken, given its record as it came (e.g. a partner's signature over its
    # key and value, decision 0098): it raises PoisonMessage with the reason, and the record is dead-lettered.
    admit: Callable[[E, Record], None] | None = None

    def event(self, record: Record) -> E:
        """The record as this subscription's type; poison (POISON_ERRORS) if it cannot be."""
        try:
            if (why := unreadable(record.headers)) is not None:
                raise UnreadableRecord(why)
            value = record.value or b""
            if self.max_bytes is not None and len(value) > self.max_bytes:
                raise TooLarge(f"message is larger than {self.max_bytes} bytes")
            if self.adapter is None:
                return cast(E, value)
            check_storable(value)
            event = self.adapter.validate_json(value, extra=self.unknown_fields)
            if self.admit is not None:
                self.admit(event, record)
            return event
        except POISON_ERRORS as exc:
            if self.on_invalid is not None:
                self.on_invalid(exc)
            raise

    async def decode(self, message: KafkaMessage) -> E | Batch[E]:
        """FastStream's decoder hook (run once per message: FastStream caches the result)."""
        if not self.batch:
            return self.event(message.raw_message)
        batch: Batch[E] = Batch()
        for record in message.raw_message:
            try:
                batch.add(self.event(record), record)
            except Exception as exc:  # noqa: BLE001 (decoding is pure: whatever one record raises, it alone is set aside)
                batch.rejected.append((record, exc))
        return batch


def contract_of(handler: Callable[..., Awaitable[Any]]) -> tuple[Any, bool]:
    """The type of a handler's first parameter, and whether it takes batches (`Batch[E]`)."""
    first = next(iter(inspect.signature(handler).parameters))
    hint = typing.get_type_hints(handler, include_extras=True)[first]
    if typing.get_origin(hint) is Batch:
        return typing.get_args(hint)[0], True
    return hint, False


# Records this process dead-lettered, remembered so that one read again is not dead-lettered again (decision 0077,
# amended): an outage rewinds a batch after its poison was dead-lettered (`admitted`), or after `_alone` dead-lettered
# some of its records, and every rewind reads them again. Only records not yet committed are read again: at most the
# batch in flight of each subscriber (`max_records`, 500), so a few thousand are plenty. Past that, or after a restart
# or a rebalance (memory is per process), a record read again is dead-lettered once more: a duplicate dead letter
# (its replay is deduplicated by event id), never a missing one.
DEAD_LETTERED_REMEMBERED = 8192


def _identity(record: Record) -> tuple[Any, ...]:
    """A fetched record: its place, and its content too (a topic recreated reuses offsets; FastStream's in-memory
    broker gives every record offset 0)."""
    record = original_record(record)
    content = hash((record.key, record.value, tuple(record.headers)))
    return record.topic, record.partition, record.offset, record.timestamp, content


class _Propagating:
    """tenacity's attempt, except that what is not an `Exception` is no failure to retry: a `CancelledError`
    (FastStream cancels a handler outliving `graceful_timeout`, and the consumer has left its group by then),
    `KeyboardInterrupt`, `SystemExit` propagate at once (tenacity's `with attempt:` would swallow and retry them)."""

    __slots__ = ("_attempt",)

    def __init__(self, attempt: AttemptManager) -> None:
        self._attempt = attempt

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if exc is not None and not isinstance(exc, Exception):
            return False
        return bool(self._attempt.__exit__(kind, exc, tb))


class ConsumerEdge:
    """The middleware factory FastStream calls for each consumed message (see the module docstring).

    The middleware it makes, `_EdgeMiddleware`, runs the message in its `consume_scope`: there the
    handler is called (and retried); what the edge does before and after are these methods, which return.
    """

    def __init__(
        self, dead_letters: DeadLetters, settings: KafkaSettings, metrics: ConsumerMetrics, *, tracing: Tracing | None
    ) -> None:
        self.dead_letters = dead_letters
        dead_letters.traced(tracing)  # a dead letter carries the consuming span's trace
        self._settings = settings
        self._metrics = metrics
        self._tracing = tracing
        self._dead_lettered: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # `dead_letter`: most recent last

    def span(self, message: StreamMessage[Any]) -> contextlib.AbstractContextManager[object]:
        """The consuming span the message is processed in (`Tracing.consuming`); nothing when tracing is off."""
        return _UNTRACED if self._tracing is None else self._tracing.consuming(message)

    def __call__(self, msg: Any, /, *, context: ContextRepo) -> _EdgeMiddleware:
        return _EdgeMiddleware(msg, context=context, edge=self)

    def retrying(self, topic: str) -> AsyncRetrying:
        """The handler's attempts: bounded, with backoff; poison is not retried."""
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

    def _count_retry(self, topic: str, state: RetryCallState) -> None:
        self._metrics.retries.labels(topic).inc()
        error = state.outcome.exception() if state.outcome else None
        log.warning("retrying %s handler after %s", topic, type(error).__name__)

    async def dead_letter(self, record: Record, why: Exception) -> None:
        """Dead-letter `record` once: not again when it is read again after a rewind (`_dead_lettered`)."""
        if self.dead_lettered(record):
            return
        await self.dead_letters.publish(record, why)
        self._dead_lettered[_identity(record)] = None
        if len(self._dead_lettered) > DEAD_LETTERED_REMEMBERED:
            self._dead_lettered.popitem(last=False)

    def dead_lettered(self, record: Record) -> bool:
        """Whether this process dead-lettered `record` already (of the last `DEAD_LETTERED_REMEMBERED`)."""
        identity = _identity(record)
        if identity not in self._dead_lettered:
            return False
        self._dead_lettered.move_to_end(identity)
        return True

    async def admitted(self, message: StreamMessage[Any]) -> Batch[Any]:
        """A batch's decodable records; the others (`Batch.rejected`) dead-lettered."""
        batch = cast(Batch[Any], await message.decode())
        for record, why in batch.rejected:
            await self.dead_letter(record, why)
        return batch

    async def given_up(
        self, call_next: AsyncFuncAny, message: StreamMessage[Any], batch: Batch[Any] | None, failure: Exception
    ) -> None:
        """Out of attempts: a record is dead-lettered. A batch runs again one record at a time, so one
        poison record cannot hold up the rest (a batch handler must be idempotent: it may run again)."""
        if batch is None:
            await self.dead_letter(cast(Record, message.raw_message), failure)
            return
        log.warning("batch of %d from %s failed; processing one by one", len(batch), batch.records[0].topic)
        for record in batch.records:
            await self._alone(call_next, message, record)

    async def _alone(self, call_next: AsyncFuncAny, message: StreamMessage[Any], record: Record) -> None:
        if self.dead_lettered(record):  # before an outage rewound its batch: decided, not run again
            return
        one = copy.copy(message)  # a copy forgets the decoded batch: it decodes its one record
        one.raw_message, one.body = (record,), [record.value or b""]
        try:
            with bind(topic=record.topic, partition=record.partition, offset=record.offset):
                rejections: BatchRejections = await self._attempts(call_next, one, record.topic)
        except Exception as exc:
            if is_transient(exc):
                raise
            await self.dead_letter(record, exc)
            return
        for _, why in rejections:
            await self.dead_letter(record, why)

    async def _attempts(self, call_next: AsyncFuncAny, message: StreamMessage[Any], topic: str) -> Any:
        async for attempt in self.retrying(topic):
            with _Propagating(attempt):
                return await call_next(message)
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


class _EdgeMiddleware(BaseMiddleware):
    __slots__ = ("_edge",)

    def __init__(self, msg: Any, /, *, context: ContextRepo, edge: ConsumerEdge) -> None:
        super().__init__(msg, context=context)
        self._edge = edge

    async def consume_scope(self, call_next: AsyncFuncAny, msg: StreamMessage[Any]) -> Any:
        """One record, or a batch in one go: handled (retried), or dead-lettered; an outage rewinds instead.

        A batch's rejected records are dead-lettered, the rest committed together.
        """
        edge, batch, rejections = self._edge, None, None
        with edge.span(msg):  # retries and dead letters inside: a dead letter carries the trace
            if isinstance(msg.raw_message, (tuple, list)):  # a batch's records (a list: FastStream's test broker)
                batch = await edge.admitted(msg)
                if not batch:
                    return None
                first = batch.records[0]
                place = bind(topic=first.topic, partition=first.partition, offset=first.offset, batch=len(batch))
            else:
                first = cast(Record, msg.raw_message)
                place = bind(topic=first.topic, partition=first.partition, offset=first.offset)
            try:
                with place:
                    async for attempt in edge.retrying(first.topic):
                        with _Propagating(attempt):
                            rejections = await call_next(msg)
            except Exception as failure:  # the consumer's edge: nothing may stop the partition
                if is_transient(failure):
                    raise  # rewind: the message is processed again when the dependency is back
                await edge.given_up(call_next, msg, batch, failure)
                return None
            if batch is not None:
                for index, why in cast(BatchRejections, rejections):
                    await edge.dead_letter(batch.records[index], why)
        return None  # nothing to publish: leadflow's handlers never reply
