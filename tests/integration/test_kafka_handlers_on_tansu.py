"""The Kafka handler tests of tests/unit/test_consumer_edge.py (the consumers' edge),
test_router_kafka_handlers.py, test_intake_kafka_handlers.py, test_notifier_kafka_handlers.py and
test_crm_kafka_handlers.py (the services' subscribers and publishers), run against the real broker
(Tansu): the same test functions, given an `edge` on a started service runtime instead of FastStream's
in-memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

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
from leadflow_devstack.testing import eventually
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.service import ServiceRuntime

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
