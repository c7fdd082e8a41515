"""The router's Kafka edge (router/entrypoints/kafka.py) on FastStream's in-memory test broker: its
typed subscribers and its declared publisher, with in-memory repositories (fakes_router.py).

tests/integration/test_kafka_handlers_on_tansu.py runs the same tests against the real broker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes_router import FakeAccounts, FakeContacts, FakeRecords, FakeRotations, pre_assigned
from prometheus_client import CollectorRegistry
from test_consumer_edge import Edge, edge

from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.entrypoints import kafka
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.routing import LeadAssigned, RoutingEvent

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def wire_router(edge: Edge, account: str) -> list[RoutingEvent]:
    """The router's Kafka edge on `edge`'s runtime, as its bootstrap wires it; what it publishes to
    leads.events.v1 is collected (by a subscriber of that topic, as the notifier and crm-api are)."""
    snapshot = AccountSnapshot(account_id=account, name="Kafka Edge Realty", roster=(Agent("ana", "Ana"),))
    publish = edge.runtime.publisher(topics.LEADS_EVENTS, RoutingEvent, description="routing events")
    service = RouterService(
        records=FakeRecords(),
        accounts=FakeAccounts(snapshot),
        contacts=FakeContacts(),
        rotations=FakeRotations(),
        publish=publish,
        metrics=RouterMetrics(CollectorRegistry()),
        clock=lambda: NOW,
    )
    kafka.subscribe(edge.runtime, lambda: service, group_id=f"router-{uuid.uuid4().hex[:6]}", intake_batch=100)
    published: list[RoutingEvent] = []

    async def on_events(events: Batch[RoutingEvent]) -> BatchRejections:
        published.extend(item.event for item in events if item.event.account_id == account)
        return []

    edge.runtime.subscribe(topics.LEADS_EVENTS, on_events, group_id=f"watcher-{uuid.uuid4().hex[:6]}")
    edge.collect_dead_letters(topics.LEADS_INTAKE)
    edge.collect_dead_letters(topics.LEADS_COMMANDS)
    return published


async def test_a_lead_from_intake_is_assigned_once_and_poison_is_dead_lettered(edge: Edge) -> None:
    account = f"edge-{uuid.uuid4().hex[:8]}"
    published = wire_router(edge, account)
    await edge.start()
    lead = pre_assigned(account, "ana")
    body, key = lead.model_dump_json().encode(), account.encode()
    await edge.publish(topics.LEADS_INTAKE, body, key)
    await edge.publish(topics.LEADS_INTAKE, b'{"type": "LeadReceived", "account_id": 7}', key)
    await edge.publish(topics.LEADS_INTAKE, body, key)  # a redelivery: nothing more is published
    sentinel = pre_assigned(account, "ana")  # same key, same partition: handled after the redelivery
    await edge.publish(topics.LEADS_INTAKE, sentinel.model_dump_json().encode(), key)
    await edge.publish(topics.LEADS_COMMANDS, b'{"type": "NoSuchCommand"}', key)

    await edge.settle(lambda: len(published) >= 2 and len(edge.dead_of(key)) == 2)
    assert all(isinstance(event, LeadAssigned) for event in published)
    assert [(str(e.payload.lead_id), e.payload.agent_id) for e in published if isinstance(e, LeadAssigned)] == [
        (str(lead.event_id), "ana"),
        (str(sentinel.event_id), "ana"),
    ]
    assert sorted(d["dlq-source-topic"] for d in edge.dead_of(key)) == [topics.LEADS_COMMANDS, topics.LEADS_INTAKE]
    assert {d["dlq-error-type"] for d in edge.dead_of(key)} == {"ValidationError"}
    assert {d["dlq-service"] for d in edge.dead_of(key)} == {"edge-test"}


async def test_a_lead_no_record_can_hold_is_dead_lettered_at_once_and_the_next_is_routed(edge: Edge) -> None:
    """A NUL in a campaign field's name: the router failed to store the lead at every attempt (BSON ends a key at
    NUL), leaving an outbox document each time, then dead-lettered it. Refused before the handler now, naming the
    field (decision 0083), with nothing stored; the lead behind it is routed."""
    account = f"edge-{uuid.uuid4().hex[:8]}"
    published = wire_router(edge, account)
    await edge.start()
    key = account.encode()
    bad = pre_assigned(account, "ana")
    bad = bad.model_copy(update={"payload": bad.payload.model_copy(update={
        "source": bad.payload.source.model_copy(update={"utm": {"utm\x00source": "x"}})})})  # fmt: skip
    good = pre_assigned(account, "ana")
    await edge.publish(topics.LEADS_INTAKE, bad.model_dump_json().encode(), key)
    await edge.publish(topics.LEADS_INTAKE, good.model_dump_json().encode(), key)

    await edge.settle(lambda: len(published) == 1 and len(edge.dead_of(key)) == 1)
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
        ("NotStrictRecord", "NotStrictRecord: payload.source.utm: a member name holds a NUL character (\\u0000), "
         "which no stored document can hold")
    ]  # fmt: skip
    assert [str(e.payload.lead_id) for e in published if isinstance(e, LeadAssigned)] == [str(good.event_id)]
