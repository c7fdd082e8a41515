"""The consumers' edge (leadflow_shared.consumers) on FastStream's in-memory test broker: typed
subscribers, poison dead-lettered with the reason, bounded retries, a failed batch run one by one.

The same tests run against the real broker (Tansu) in tests/integration/test_kafka_handlers_on_tansu.py,
which imports them and gives them an `edge` on a running service instead.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
import pytest_asyncio
from faststream.kafka import TestKafkaBroker
from pydantic import BaseModel, field_validator

from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.settings import ServiceSettings
from leadflow_shared.topics import dlq

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

ACTIVITY = {
    "type": "LeadActivity",
    "account_id": "acme",
    "occurred_at": "2026-11-29T10:00:00Z",
    "payload": {"lead_id": str(uuid.UUID(int=1)), "agent_id": "ana", "action": "note"},
}


def activity(**changes: Any) -> bytes:
    event = LeadActivity.model_validate({"event_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())} | ACTIVITY)
    return event.model_copy(update=changes).model_dump_json().encode()


class Publish(Protocol):
    async def __call__(
        self, topic: str, value: bytes, key: bytes = b"acme", headers: dict[str, str] | None = None
    ) -> None: ...


@dataclass
class Edge:
    """A service runtime's broker with test subscriptions, and what reached them and the dead-letter topics."""

    runtime: ServiceRuntime
    start: Callable[[], Awaitable[None]]  # once the test's subscriptions are made
    publish: Publish
    settle: Callable[[Callable[[], bool]], Awaitable[None]]  # waits for (real broker) or checks (in memory) it
    topic: str = field(default_factory=lambda: f"edge.{uuid.uuid4().hex[:8]}")
    handled: list[Any] = field(default_factory=list)
    dead: list[dict[str, str]] = field(default_factory=list)  # each dead letter's headers
    dead_keys: list[bytes] = field(default_factory=list)  # and its key

    def dead_of(self, key: bytes) -> list[dict[str, str]]:
        """The headers of the dead letters keyed `key`: a test's own, when others share the broker's topics."""
        return [headers for headers, k in zip(self.dead, self.dead_keys, strict=True) if k == key]

    def collect_dead_letters(self, topic: str) -> None:
        async def on_dead_letters(letters: Batch[bytes]) -> BatchRejections:
            for letter in letters:
                self.dead.append(letter.message.headers)
                self.dead_keys.append(letter.message.key or b"")
            return []

        self.runtime.subscribe(dlq(topic), on_dead_letters, group_id="edge-test")


def settings(mongo_url: str = "mongodb://localhost:27017", **kafka: Any) -> ServiceSettings:
    return ServiceSettings.model_validate(
        {"kafka": {"handler_attempts": 3, "retry_initial_seconds": 0.01, "retry_max_seconds": 0.02,
                   "producer_idempotence": False} | kafka,
         "mongo": {"url": mongo_url}}
    )  # fmt: skip


@pytest_asyncio.fixture
async def edge() -> AsyncIterator[Edge]:
    """In memory: FastStream's TestKafkaBroker runs each published message through its subscriber at once."""
    runtime = ServiceRuntime(settings(), service="edge-test")
    in_memory = TestKafkaBroker(runtime.broker)
    started: list[bool] = []

    async def start() -> None:
        await in_memory.__aenter__()
        started.append(True)

    async def publish(topic: str, value: bytes, key: bytes = b"acme", headers: dict[str, str] | None = None) -> None:
        await runtime.broker.publish(value, topic, key=key, headers=headers)

    async def settle(condition: Callable[[], bool]) -> None:
        assert condition()

    yield Edge(runtime, start, publish, settle)
    if started:
        await in_memory.__aexit__(None, None, None)


async def test_a_typed_subscriber_gets_the_event_and_poison_goes_to_the_dead_letter_topic(
    edge: Edge,
) -> None:

    async def on_activity(event: LeadActivity) -> None:
        edge.handled.append(event)

    edge.runtime.subscribe(edge.topic, on_activity, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    good = activity()
    for poison in (b"{not json", b'{"type": "LeadActivity"}', "\ud800".encode("utf-8", "surrogatepass"), b"[" * 5000):
        await edge.publish(edge.topic, poison)
    await edge.publish(edge.topic, good)
    await edge.settle(lambda: len(edge.dead) == 4 and len(edge.handled) == 1)
    assert [type(e) for e in edge.handled] == [LeadActivity]
    assert edge.handled[0].model_dump_json().encode() == good
    assert {d["dlq-error-type"] for d in edge.dead} == {"ValidationError"}
    assert {d["dlq-source-topic"] for d in edge.dead} == {edge.topic}
    assert all(d["dlq-reason"] for d in edge.dead)


async def test_a_field_from_a_newer_version_is_ignored_and_refused_only_where_the_contract_forbids_it(
    edge: Edge,
) -> None:
    """Decision 0056: another leadflow service a version ahead (a rolling upgrade) adds a field; this
    one reads the event without it. A partner's topic forbids what its contract does not name."""
    strict_topic = f"{edge.topic}.strict"
    refused: list[LeadActivity] = []

    async def on_activity(event: LeadActivity) -> None:
        edge.handled.append(event)

    async def on_partner_activity(event: LeadActivity) -> None:
        refused.append(event)

    edge.runtime.subscribe(edge.topic, on_activity, group_id="edge-test")
    edge.runtime.subscribe(strict_topic, on_partner_activity, group_id="edge-test", unknown_fields="forbid")
    edge.collect_dead_letters(strict_topic)
    await edge.start()
    original = activity()
    newer = json.loads(original)
    newer["trace_hint"] = "v2"  # at the envelope, and nested in the payload
    newer["payload"]["criteria"] = {"intent": "buy"}
    body = json.dumps(newer).encode()
    await edge.publish(edge.topic, body)
    await edge.publish(strict_topic, body)
    await edge.settle(lambda: len(edge.handled) == 1 and len(edge.dead) == 1)
    assert edge.handled[0].model_dump_json().encode() == original  # the same event, without what it did not know
    assert refused == []
    assert edge.dead[0]["dlq-error-type"] == "ValidationError"
    assert "criteria" in edge.dead[0]["dlq-reason"]


async def test_an_error_is_retried_a_bounded_number_of_times_then_dead_lettered(
    edge: Edge,
) -> None:
    attempts: list[str] = []

    async def on_activity(event: LeadActivity) -> None:
        attempts.append(event.payload.agent_id)
        if event.payload.agent_id == "flaky" and attempts.count("flaky") < 2:
            raise RuntimeError("first attempt fails")
        if event.payload.agent_id == "broken":
            raise RuntimeError("always fails")
        if event.payload.agent_id == "refused":
            raise PoisonMessage("no such agent")
        edge.handled.append(event.payload.agent_id)

    edge.runtime.subscribe(edge.topic, on_activity, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    for agent in ("flaky", "broken", "refused", "ana"):
        payload = LeadActivity.model_validate_json(activity()).payload.model_copy(update={"agent_id": agent})
        await edge.publish(edge.topic, activity(payload=payload))
    await edge.settle(lambda: edge.handled == ["flaky", "ana"] and len(edge.dead) == 2)
    assert attempts.count("flaky") == 2  # retried once, then handled
    assert attempts.count("broken") == 3  # handler_attempts, then dead-lettered
    assert attempts.count("refused") == 1  # poison is never retried
    assert sorted(d["dlq-error-type"] for d in edge.dead) == ["PoisonMessage", "RuntimeError"]


async def test_a_batch_sets_poison_aside_and_a_failed_batch_runs_one_record_at_a_time(
    edge: Edge,
) -> None:
    runs: list[list[str]] = []

    async def on_activities(batch: Batch[LeadActivity]) -> BatchRejections:
        agents = [item.event.payload.agent_id for item in batch]
        runs.append(agents)
        if "crashes" in agents and len(agents) > 1:
            raise RuntimeError("something unforeseen in a batch")  # the edge isolates the culprit
        if agents == ["crashes"]:
            raise RuntimeError("the culprit alone")
        rejected: BatchRejections = [(i, PoisonMessage("refused")) for i, a in enumerate(agents) if a == "refused"]
        edge.handled.extend(a for a in agents if a != "refused")
        return rejected

    edge.runtime.subscribe(edge.topic, on_activities, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    bodies = [b"{not json"]
    for agent in ("ana", "refused", "crashes", "bob"):
        payload = LeadActivity.model_validate_json(activity()).payload.model_copy(update={"agent_id": agent})
        bodies.append(activity(payload=payload))
    await edge.runtime.broker.publish_batch(*bodies, topic=edge.topic)  # one batch, in order
    await edge.settle(lambda: sorted(edge.handled) == ["ana", "bob"] and len(edge.dead) == 3)
    assert sorted(d["dlq-error-type"] for d in edge.dead) == ["PoisonMessage", "RuntimeError", "ValidationError"]
    assert ["crashes"] in runs  # run alone after the batch failed


class Fragile(BaseModel):
    """A contract whose validator has a bug: it raises something pydantic does not turn into a ValidationError."""

    name: str

    @field_validator("name")
    @classmethod
    def _buggy(cls, value: str) -> str:
        if value == "boom":
            raise RuntimeError("a bug in a validator")
        return value


async def test_a_record_that_breaks_decoding_in_a_batch_is_dead_lettered_alone(edge: Edge) -> None:
    async def on_fragile(batch: Batch[Fragile]) -> BatchRejections:
        edge.handled.extend(item.event.name for item in batch)
        return []

    edge.runtime.subscribe(edge.topic, on_fragile, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    await edge.runtime.broker.publish_batch(b'{"name": "a"}', b'{"name": "boom"}', b'{"name": "b"}', topic=edge.topic)
    await edge.settle(lambda: edge.handled == ["a", "b"] and len(edge.dead) == 1)
    assert edge.dead[0]["dlq-error-type"] == "RuntimeError"


class Counted(BaseModel):
    """A contract as leadflow's events have them: an unbounded count, campaign fields with any names, a rate."""

    round: int = 1
    utm: dict[str, str] = {}
    rate: float = 0.0


async def test_what_no_consumer_can_store_is_dead_lettered_before_the_handler_naming_the_place(edge: Edge) -> None:
    """Decision 0083: pydantic reads integers beyond 64 bits, NaN and a NUL in a member name, which BSON cannot
    hold; a handler would store part of what the record means, fail at the rest, and do so again at every retry
    (crm-api wrote a lead's row, then not its timeline entry). They are refused before the handler, at once. So is
    a number beyond a double (`1e400`), which pydantic reads as inf (the prefilter missed it: helper 133)."""

    async def on_counted(batch: Batch[Counted]) -> BatchRejections:
        edge.handled.extend(item.event.model_dump() for item in batch)
        return []

    edge.runtime.subscribe(edge.topic, on_counted, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    poison = {
        f'{{"round": {2**63}}}'.encode(): "round: an integer beyond the 64-bit range",
        f'{{"round": {-(2**70)}, "rate": NaN}}'.encode(): "round: an integer beyond the 64-bit range; "
        "rate: must be a finite number: NaN and Infinity are not JSON",
        b'{"utm": {"utm_source": "a", "x\\u0000": "b"}}': "utm: a member name holds a NUL character (\\u0000), "
        "which no stored document can hold",
        b'{"rate": -Infinity}': "rate: must be a finite number: NaN and Infinity are not JSON",
        b'{"rate": 1e400}': "rate: must be a finite number: beyond the range of 64-bit doubles",
        b'{"round": 1, "rate":-1E+999}': "rate: must be a finite number: beyond the range of 64-bit doubles",
    }
    good = [
        f'{{"round": {2**63 - 1}, "utm": {{"u": "a\\u0000b NaN Infinity {"9" * 30}"}}}}'.encode(),  # text holds any
        b'{"round": -9223372036854775808, "rate": 1e308}',
        b'{"round": 2, "rate": 1e-400, "utm": {"id": "ab-4e567", "n": "1e999"}}',  # underflows to 0; text
    ]
    await edge.runtime.broker.publish_batch(*poison, *good, topic=edge.topic)
    await edge.settle(lambda: len(edge.handled) == len(good) and len(edge.dead) == len(poison))
    assert edge.handled == [
        {"round": 2**63 - 1, "utm": {"u": f"a\x00b NaN Infinity {'9' * 30}"}, "rate": 0.0},
        {"round": -(2**63), "utm": {}, "rate": 1e308},
        {"round": 2, "utm": {"id": "ab-4e567", "n": "1e999"}, "rate": 0.0},
    ]
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead] == [
        ("NotStrictRecord", f"NotStrictRecord: {why}") for why in poison.values()
    ]


async def test_a_handler_cancelled_at_the_graceful_stop_is_not_run_again(edge: Edge) -> None:
    """I5: FastStream cancels a consume still running after `graceful_timeout`. tenacity's `with attempt:` swallows
    any BaseException, so the edge took the CancelledError for a failure and ran the handler again, after the
    consumer had left its group (helper 133). A cancellation propagates at once, never retried."""
    calls: list[str] = []
    first_running = asyncio.Event()

    async def on_activity(event: LeadActivity) -> None:
        calls.append(event.payload.agent_id)
        if len(calls) == 1:
            first_running.set()
            await asyncio.Event().wait()  # a handler outliving the graceful timeout: cancelled here

    edge.runtime.subscribe(edge.topic, on_activity, group_id="edge-test")
    await edge.start()
    consuming = asyncio.create_task(edge.publish(edge.topic, activity()))  # in memory: the consume runs in it
    await asyncio.wait_for(first_running.wait(), timeout=5)
    consuming.cancel()  # what `TasksMixin.stop` does to the consume loop's task
    done, _ = await asyncio.wait({consuming}, timeout=5)
    assert done, "the cancelled consume never ended"
    assert consuming.cancelled()
    assert calls == ["ana"], f"the handler ran again after its cancellation: {len(calls)} calls"
