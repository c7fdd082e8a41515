"""The Kafka handler tests of tests/unit/test_consumer_edge.py (the consumers' edge),
test_router_kafka_handlers.py, test_intake_kafka_handlers.py, test_notifier_kafka_handlers.py and
test_crm_kafka_handlers.py (the services' subscribers and publishers), run against the real broker
(Tansu): the same test functions, given an `edge` on a started service runtime instead of FastStream's
in-memory broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.errors import KafkaTimeoutError
from pymongo.errors import AutoReconnect
from test_consumer_edge import (
    Edge,
    activity,
    settings,
    test_a_batch_sets_poison_aside_and_a_failed_batch_runs_one_record_at_a_time,
    test_a_field_from_a_newer_version_is_ignored_and_refused_only_where_the_contract_forbids_it,
    test_a_typed_subscriber_gets_the_event_and_poison_goes_to_the_dead_letter_topic,
    test_an_error_is_retried_a_bounded_number_of_times_then_dead_lettered,
    test_what_no_consumer_can_store_is_dead_lettered_before_the_handler_naming_the_place,
)
from test_crm_kafka_handlers import (
    test_a_race_is_projected_once_however_often_delivered_and_poison_is_dead_lettered,
    test_an_event_no_view_can_hold_is_dead_lettered_and_writes_nothing,
)
from test_intake_kafka_handlers import (
    test_a_partner_lead_becomes_one_lead_received_and_what_cannot_be_accepted_is_dead_lettered,
    test_a_partner_lead_replayed_under_other_keys_is_one_lead_keyed_by_its_account,
)
from test_notifier_kafka_handlers import (
    test_an_offer_no_delivery_record_can_hold_is_dead_lettered_unsent_and_the_next_is_emailed,
    test_each_offer_is_emailed_once_and_poison_is_dead_lettered,
)
from test_router_kafka_handlers import (
    test_a_lead_from_intake_is_assigned_once_and_poison_is_dead_lettered,
    test_a_lead_no_record_can_hold_is_dead_lettered_at_once_and_the_next_is_routed,
)

from leadflow_devstack.servers import tansu_consumer_settings
from leadflow_devstack.testing import eventually, records_to_end
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.service import ServiceRuntime
from leadflow_shared.topics import TopicSpec, dlq

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

__all__ = [  # collected here too, with this module's `edge`
    "test_a_batch_sets_poison_aside_and_a_failed_batch_runs_one_record_at_a_time",
    "test_a_field_from_a_newer_version_is_ignored_and_refused_only_where_the_contract_forbids_it",
    "test_a_lead_from_intake_is_assigned_once_and_poison_is_dead_lettered",
    "test_a_lead_no_record_can_hold_is_dead_lettered_at_once_and_the_next_is_routed",
    "test_a_partner_lead_becomes_one_lead_received_and_what_cannot_be_accepted_is_dead_lettered",
    "test_a_partner_lead_replayed_under_other_keys_is_one_lead_keyed_by_its_account",
    "test_a_race_is_projected_once_however_often_delivered_and_poison_is_dead_lettered",
    "test_a_typed_subscriber_gets_the_event_and_poison_goes_to_the_dead_letter_topic",
    "test_an_error_is_retried_a_bounded_number_of_times_then_dead_lettered",
    "test_an_event_no_view_can_hold_is_dead_lettered_and_writes_nothing",
    "test_an_offer_no_delivery_record_can_hold_is_dead_lettered_unsent_and_the_next_is_emailed",
    "test_each_offer_is_emailed_once_and_poison_is_dead_lettered",
    "test_what_no_consumer_can_store_is_dead_lettered_before_the_handler_naming_the_place",
]


@pytest_asyncio.fixture
async def edge(kafka_bootstrap: str, mongo_url: str) -> AsyncIterator[Edge]:
    on_tansu = settings(mongo_url, bootstrap_servers=kafka_bootstrap, **tansu_consumer_settings())
    runtime = ServiceRuntime(on_tansu, service="edge-test")
    started: list[bool] = []

    async def start() -> None:
        await runtime.start()
        started.append(True)
        await eventually(lambda: runtime.consuming, timeout=60, what="the consumers to join")

    async def publish(topic: str, value: bytes, key: bytes = b"acme", headers: dict[str, str] | None = None) -> None:
        await runtime.broker.publish(value, topic, key=key, headers=headers)

    async def settle(condition: Callable[[], bool]) -> None:
        await eventually(condition, timeout=60, what="the records to be handled or dead-lettered")

    yield Edge(runtime, start, publish, settle)
    if started:
        await runtime.stop()


@pytest.mark.parametrize(
    "outage",
    [
        AutoReconnect("primary stepped down"),
        # aiokafka's producer when a partition's batch cannot drain in time: the broker is away (not retriable
        # by its flag, yet an outage: dead-lettering the record would leave a partner's lead unpublished).
        KafkaTimeoutError(),
    ],
    ids=type,
)
async def test_an_outage_the_handler_meets_rewinds_instead_of_dead_lettering(edge: Edge, outage: Exception) -> None:
    attempts: list[str] = []

    async def on_activity(event: LeadActivity) -> None:
        attempts.append(event.payload.agent_id)
        if len(attempts) <= 2 * edge.runtime.settings.kafka.handler_attempts:  # outlasts the retries, twice
            raise outage
        edge.handled.append(event.payload.agent_id)

    edge.runtime.subscribe(edge.topic, on_activity, group_id="edge-test")
    edge.collect_dead_letters(edge.topic)
    await edge.start()
    await edge.publish(edge.topic, activity())
    await edge.settle(lambda: edge.handled == ["ana"] or bool(edge.dead))
    assert (edge.handled, edge.dead) == (["ana"], [])


async def test_a_batch_s_poison_is_dead_lettered_once_though_an_outage_rewinds_the_batch(
    kafka_bootstrap: str, mongo_url: str
) -> None:
    """I4 with an outage (helper 133): `ConsumerEdge.admitted` dead-letters a batch's undecodable records before the
    handler runs; an outage then rewinds the batch, which is decoded again. The poison record was dead-lettered
    again on every rewind (one more copy, and count, per cycle while MongoDB was away); now once."""
    topic = f"edge-rewind-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    runtime = ServiceRuntime(settings(mongo_url, bootstrap_servers=kafka_bootstrap, **tansu_consumer_settings()),
                             service="edge-rewind")  # fmt: skip
    attempts = runtime.settings.kafka.handler_attempts
    calls: list[int] = []
    handled: list[str] = []

    async def on_activities(batch: Batch[LeadActivity]) -> BatchRejections:
        calls.append(len(batch))
        if len(calls) <= 2 * attempts:  # MongoDB away for two rewinds of the batch
            raise AutoReconnect("primary stepped down")
        handled.extend(item.event.payload.agent_id for item in batch)
        return []

    runtime.subscribe(topic, on_activities, group_id="edge-rewind")
    await runtime.start()
    try:
        await eventually(lambda: runtime.consuming, timeout=60, what="the consumer to join")
        await runtime.broker.publish_batch(b"{not json", activity(), topic=topic)  # one record batch, in order
        await eventually(lambda: handled == ["ana"], timeout=60, what="the good record to be handled")
    finally:
        await runtime.stop()
    poison = [r for r in await records_to_end(kafka_bootstrap, dlq(topic)) if r.value == b"{not json"]
    assert len(calls) == 2 * attempts + 1
    assert len(poison) == 1, f"the poison record was dead-lettered {len(poison)} times"


async def test_a_handler_cancelled_at_the_graceful_stop_is_not_run_again_after_the_consumer_stopped(
    kafka_bootstrap: str, mongo_url: str
) -> None:
    """I5 (helper 133): a handler outliving KAFKA__GRACEFUL_TIMEOUT_SECONDS is cancelled by FastStream; the record is
    the partition's next consumer's. The edge's retry loop swallowed the CancelledError and ran the handler again,
    after the Kafka consumer had left its group (another replica may be handling the same record by then)."""
    topic = f"edge-stop-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    on_tansu = settings(mongo_url, bootstrap_servers=kafka_bootstrap, graceful_timeout_seconds=0.5,
                        **tansu_consumer_settings())  # fmt: skip
    runtime = ServiceRuntime(on_tansu, service="edge-stop")
    calls: list[dict[str, bool]] = []
    first_running = asyncio.Event()

    async def on_activity(_event: LeadActivity) -> None:
        subscriber: Any = next(iter(runtime.broker.subscribers))  # FastStream's Kafka subscriber
        calls.append({"consumer stopped": subscriber.consumer is None, "mongo closed": runtime._client is None})
        if len(calls) == 1:
            first_running.set()
            await asyncio.Event().wait()  # a handler slower than the graceful timeout

    runtime.subscribe(topic, on_activity, group_id="edge-stop")
    await runtime.start()
    await eventually(lambda: runtime.consuming, timeout=60, what="the consumer to join")
    await runtime.broker.publish(activity(), topic, key=b"acme")
    await asyncio.wait_for(first_running.wait(), timeout=60)
    subscribers: list[Any] = list(runtime.broker.subscribers)
    tasks = [task for subscriber in subscribers for task in subscriber.tasks]  # the consume loops
    await runtime.stop()
    done, _ = await asyncio.wait(tasks, timeout=30)
    assert len(done) == len(tasks), "the consume task did not end after the stop"
    assert len(calls) == 1, f"the handler ran again after its cancellation: {calls}"


async def test_a_record_dead_lettered_alone_is_not_dead_lettered_again_when_an_outage_rewinds_its_batch(
    kafka_bootstrap: str, mongo_url: str
) -> None:
    """I4 with an outage: a failed batch runs one record at a time (`ConsumerEdge._alone`); the first is
    dead-lettered, the second meets an outage and the batch rewinds. Read again, the first is not run nor
    dead-lettered again (it was, every cycle: helper 133); the second is handled once MongoDB is back."""
    topic = f"edge-alone-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1), TopicSpec(dlq(topic), 1)])
    runtime = ServiceRuntime(settings(mongo_url, bootstrap_servers=kafka_bootstrap, **tansu_consumer_settings()),
                             service="edge-alone")  # fmt: skip
    attempts = runtime.settings.kafka.handler_attempts
    alone: list[str] = []
    handled: list[str] = []

    async def on_activities(batch: Batch[LeadActivity]) -> BatchRejections:
        agents = [item.event.payload.agent_id for item in batch]
        if "bad" in agents:
            raise ValueError("this record's fault")
        alone.extend(agents)
        if len(alone) <= attempts:  # MongoDB away while the second record runs alone the first time
            raise AutoReconnect("primary stepped down")
        handled.extend(agents)
        return []

    runtime.subscribe(topic, on_activities, group_id="edge-alone")
    await runtime.start()
    try:
        await eventually(lambda: runtime.consuming, timeout=60, what="the consumer to join")
        first = LeadActivity.model_validate_json(activity())
        bad = activity(payload=first.payload.model_copy(update={"agent_id": "bad"}))
        await runtime.broker.publish_batch(bad, activity(), topic=topic)  # one record batch, in order
        await eventually(lambda: handled == ["ana"], timeout=60, what="the second record to be handled")
    finally:
        await runtime.stop()
    dead = [r for r in await records_to_end(kafka_bootstrap, dlq(topic)) if r.value == bad]
    assert len(alone) == attempts + 1
    assert len(dead) == 1, f"the first record was dead-lettered {len(dead)} times"
