"""T2 through the real broker and router process: a TransferLead on leads.commands.v1 moves the lead,
whose LeadTransferred comes out on leads.events.v1 keyed by the office it left."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import RecordPredicate, WaitForRecord
from leadflow_shared import topics
from leadflow_shared.envelope import Envelope
from leadflow_shared.events.commands import (
    TransferLead,
    TransferLeadPayload,
    TransferTeamMember,
    TransferTeamMemberPayload,
)
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    LeadAssigned,
    LeadTransferred,
    RoutingEvent,
    TeamMemberTransferred,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


@pytest.fixture
def offices(stack: Stack, tmp_path: Path) -> tuple[str, str]:
    """Two offices of one organisation, round robin off: roster position 1 holds new leads."""
    prefix = f"t2{uuid.uuid4().hex[:6]}"
    ids = (f"{prefix}-north", f"{prefix}-south")
    accounts: list[dict[str, object]] = []
    for office in ("north", "south"):
        agents = [f"{prefix}-{office}-broker", f"{prefix}-{office}-agent"]
        accounts.append(
            {
                "account_id": f"{prefix}-{office}",
                "name": f"{office.title()} Office",
                "organisation_id": prefix,
                "agents": [{"agent_id": a, "name": a, "email": f"{a}@example.com"} for a in agents],
                "roster": agents,
            }
        )
    path = tmp_path / "offices.json"
    path.write_text(json.dumps({"accounts": accounts}))
    stack.seed(path)
    return ids


def routing_event(body: bytes | None) -> RoutingEvent | None:
    """The event in a record of leads.events.v1, or None for anything this test does not read."""
    try:
        return None if body is None else ROUTING_EVENT.validate_json(body)
    except ValidationError:
        return None


async def send(stack: Stack, topic: str, message: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, message.model_dump_json().encode(), key=message.kafka_key())
    finally:
        await producer.stop()


async def test_transfer_command_moves_the_lead_through_the_broker(
    stack: Stack, offices: tuple[str, str], wait_for_record: WaitForRecord
) -> None:
    north, south = offices
    lead = LeadReceived.create(
        account_id=north,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Moving", email=f"moving-{uuid.uuid4().hex[:8]}@example.com"),
            source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
        ),
    )
    await send(stack, topics.LEADS_INTAKE, lead)

    def about(kind: type[Envelope], lead_id: uuid.UUID) -> RecordPredicate:
        def matches(record: ConsumerRecord[bytes, bytes]) -> bool:
            event = routing_event(record.value)
            return isinstance(event, kind) and getattr(event.payload, "lead_id", None) == lead_id

        return matches

    await wait_for_record(topics.LEADS_EVENTS, about(LeadAssigned, lead.event_id))

    command = TransferLead.create(
        account_id=north,
        occurred_at=datetime.now(UTC),
        payload=TransferLeadPayload(lead_id=lead.event_id, to_account_id=south, by_user_id=f"{north}-broker"),
    )
    await send(stack, topics.LEADS_COMMANDS, command)
    record = await wait_for_record(topics.LEADS_EVENTS, about(LeadTransferred, lead.event_id))

    assert record.key == north.encode()
    event = routing_event(record.value)
    assert isinstance(event, LeadTransferred)
    assert event.account_id == north
    assert event.payload.transfer_id == command.event_id
    assert (event.payload.from_account_id, event.payload.to_account_id) == (north, south)
    assert event.payload.previous_owner_agent_id == f"{north}-broker"
    assert event.payload.agent_id == f"{south}-broker"


async def test_team_member_command_is_relayed_to_the_target(
    stack: Stack, offices: tuple[str, str], wait_for_record: WaitForRecord
) -> None:
    north, south = offices
    command = TransferTeamMember.create(
        account_id=north,
        occurred_at=datetime.now(UTC),
        payload=TransferTeamMemberPayload(
            agent_id=f"{north}-agent", agent_name="Moving Agent", to_account_id=south, by_user_id=f"{north}-broker"
        ),
    )
    await send(stack, topics.LEADS_COMMANDS, command)

    def relayed(record: ConsumerRecord[bytes, bytes]) -> bool:
        event = routing_event(record.value)
        return isinstance(event, TeamMemberTransferred) and event.payload.transfer_id == command.event_id

    record = await wait_for_record(topics.LEADS_EVENTS, relayed)
    assert record.key == south.encode()
