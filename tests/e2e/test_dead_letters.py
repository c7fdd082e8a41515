"""Poison input on leads.intake.v1 goes to leads.intake.v1.dlq with the reason; the next message is routed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged, LeadAssigned

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


def received(account_id: str = "acme-realty") -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Dee", last_name="Ell", email=f"dee-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
        ),
    )


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    value: bytes = dict(record.headers)[name]
    return value.decode()


@pytest.mark.parametrize(
    ("poison", "reason_part"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"event_id": "not-a-uuid", "type": "LeadReceived"}', "event_id"),
        (received("no-such-account").model_dump_json().encode(), "unknown account"),
    ],
    ids=["bad-json", "bad-schema", "unknown-account"],
)
async def test_poison_goes_to_dlq_with_reason_and_next_message_is_routed(
    stack: Stack, wait_for_record: WaitForRecord, poison: bytes, reason_part: str
) -> None:
    marker = uuid.uuid4().hex.encode()
    valid = received()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        # Same key, so both land on one partition: the valid one waits behind the poison.
        await producer.send_and_wait(topics.LEADS_INTAKE, poison, key=b"acme-realty", headers=[("test", marker)])
        await producer.send_and_wait(topics.LEADS_INTAKE, valid.model_dump_json().encode(), key=b"acme-realty")
    finally:
        await producer.stop()

    dead = await wait_for_record(topics.dlq(topics.LEADS_INTAKE), lambda r: r.value == poison)
    assert reason_part in header(dead, "dlq-reason")
    assert header(dead, "dlq-source-topic") == topics.LEADS_INTAKE
    assert header(dead, "dlq-service") == "router"
    assert dead.key == b"acme-realty"

    def routes_valid(record: ConsumerRecord[bytes, bytes]) -> bool:
        event = ROUTING_EVENT.validate_json(record.value or b"")
        return isinstance(event, LeadAssigned) and event.payload.lead_id == valid.event_id

    routed = ROUTING_EVENT.validate_json((await wait_for_record(topics.LEADS_EVENTS, routes_valid)).value or b"")
    assert isinstance(routed, LeadAssigned)
    assert routed.payload.agent_id == "alex-rivera"


@pytest.mark.parametrize("agent", ["no-offer", "unknown-lead"])
async def test_activity_on_an_unknown_lead_is_dead_lettered_and_without_an_offer_is_logged(
    stack: Stack, wait_for_record: WaitForRecord, agent: str
) -> None:
    lead_id = uuid.uuid4()
    if agent == "no-offer":
        # A lead held by roster position 1 (round robin off): nobody else holds an offer on it.
        valid = received()
        lead_id = valid.event_id
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.LEADS_INTAKE, valid.model_dump_json().encode(), key=b"acme-realty")
        finally:
            await producer.stop()
        await wait_for_record(topics.LEADS_EVENTS, lambda r: str(lead_id).encode() in (r.value or b""))
    activity = LeadActivity.create(
        account_id="acme-realty",
        occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=lead_id, agent_id="blair-chen", action=ActivityAction.NOTE),
    )
    body = activity.model_dump_json().encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.LEADS_ACTIVITY, body, key=b"acme-realty")
    finally:
        await producer.stop()
    if agent == "no-offer":
        # A note by someone who holds no offer is activity, never poison: it claims nothing.
        def logged(record: ConsumerRecord[bytes, bytes]) -> bool:
            event = ROUTING_EVENT.validate_json(record.value or b"")
            return isinstance(event, ActivityLogged) and event.payload.lead_id == lead_id

        event = ROUTING_EVENT.validate_json((await wait_for_record(topics.LEADS_EVENTS, logged)).value or b"")
        assert isinstance(event, ActivityLogged)
        assert (event.payload.by_agent_id, event.payload.agent_id) == ("blair-chen", "alex-rivera")
        assert event.payload.claim_refused is None  # never offered: not a lost claim
        return
    dead = await wait_for_record(topics.dlq(topics.LEADS_ACTIVITY), lambda r: r.value == body)
    assert "unknown lead" in header(dead, "dlq-reason")
    assert header(dead, "dlq-error-type") == "RoutingRejected"
