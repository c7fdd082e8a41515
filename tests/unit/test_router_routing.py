"""Router: the R5 decision and exactly-once handling of LeadReceived, with in-memory fakes (fakes_router.py)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest
from fakes_router import FakeAccounts, FakeContacts, FakeRecords, FakeRotations, Published
from prometheus_client import CollectorRegistry

from leadflow_router.domain.decisions import NewLead, RoutingContext, route_new_lead
from leadflow_router.domain.model import AccountSnapshot, Agent, RoutingRejected
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadSummary,
)

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme-realty", name="Acme Realty", roster=(Agent("agent-1", "Alex"), Agent("agent-2", "Bo"))
)


@dataclasses.dataclass
class Router:
    records: FakeRecords = dataclasses.field(default_factory=FakeRecords)
    publish: Published = dataclasses.field(default_factory=Published)
    accounts: FakeAccounts = dataclasses.field(default_factory=lambda: FakeAccounts(ACCOUNT))

    def service(self) -> RouterService:
        return RouterService(
            records=self.records,
            accounts=self.accounts,
            contacts=FakeContacts(),
            rotations=FakeRotations(),
            publish=self.publish,
            metrics=RouterMetrics(CollectorRegistry()),
            clock=lambda: NOW,
        )


JANE = Contact(first_name="Jane", last_name="Doe", email="jane@example.com", phone="+14155550123")


def _lead(account_id: str = "acme-realty", contact: Contact = JANE) -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=contact,
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        message="Call me",
    )
    return LeadReceived.create(account_id=account_id, payload=payload, occurred_at=NOW)


def _new_lead(event: LeadReceived) -> NewLead:
    p = event.payload
    return NewLead(str(event.event_id), event.account_id, LeadSummary(contact=p.contact, source=p.source))


# -- decision (R5) -----------------------------------------------------------------------------


def test_round_robin_off_gives_the_lead_to_roster_position_1() -> None:
    outcome = route_new_lead(_new_lead(_lead()), ACCOUNT, RoutingContext(), NOW)

    assert outcome.state is not None
    assert outcome.state.holder == "agent-1"
    assert outcome.state.reason is AssignmentReason.ROSTER_POSITION_1
    assert outcome.explanation.strip()
    [emit] = outcome.events
    assert emit.kind is LeadAssigned
    assert isinstance(emit.payload, LeadAssignedPayload)
    assert emit.payload.agent_id == "agent-1"
    assert emit.payload.explanation == outcome.explanation


@pytest.mark.parametrize("round_robin", [False, True])
def test_an_empty_roster_is_rejected(round_robin: bool) -> None:
    empty = dataclasses.replace(ACCOUNT, roster=(), round_robin=round_robin)
    with pytest.raises(RoutingRejected, match="empty roster"):
        route_new_lead(_new_lead(_lead()), empty, RoutingContext(), NOW)


# -- exactly once ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_first_delivery_stores_one_record_and_publishes_one_lead_assigned() -> None:
    router, event = Router(), _lead()

    await router.service().on_lead_received(event)

    assert list(router.records.docs) == [str(event.event_id)]
    assert router.records.docs[str(event.event_id)]["outbox"] == []  # flushed
    [(account_id, _)] = router.publish.records
    [assigned] = router.publish.assigned()
    assert account_id == "acme-realty"
    assert assigned.event_id == derived_event_id(event.event_id, "0")  # first event of the input
    assert assigned.correlation_id == event.correlation_id
    assert assigned.occurred_at == NOW
    assert assigned.payload.lead_id == event.event_id
    assert assigned.payload.agent_id == "agent-1"
    assert assigned.payload.reason is AssignmentReason.ROSTER_POSITION_1
    assert assigned.payload.contact == event.payload.contact
    assert assigned.payload.message == "Call me"


@pytest.mark.asyncio
async def test_redelivery_publishes_nothing_more_and_stores_no_second_record() -> None:
    router, event = Router(), _lead()
    await router.service().on_lead_received(event)

    await router.service().on_lead_received(event)
    await router.service().on_lead_received(LeadReceived.model_validate_json(event.model_dump_json()))

    assert router.records.inserted == 1
    assert len(router.records.docs) == 1
    assert len(router.publish.records) == 1


@pytest.mark.asyncio
async def test_a_record_stored_but_not_published_is_published_on_redelivery_with_the_same_event_id() -> None:
    router, event = Router(), _lead()
    router.publish.failing = True
    with pytest.raises(ConnectionError):
        await router.service().on_lead_received(event)  # crash after the record was stored
    assert _pending_events(router, str(event.event_id)) != []  # stored, with its events kept (decision 0068)
    assert router.publish.records == []

    router.publish.failing = False
    await router.service().on_lead_received(event)

    assert router.records.inserted == 1
    assert _pending_events(router, str(event.event_id)) == []
    assert [a.event_id for a in router.publish.assigned()] == [derived_event_id(event.event_id, "0")]


def _pending_events(router: Router, lead_id: str) -> list[str]:
    """The lead's events stored and not yet published: in its record's outbox or its batch's outbox document."""
    in_record = list(router.records.docs[lead_id]["outbox"])
    documents = router.records.outboxes.values()
    return in_record + [
        e for d in documents for item in d["leads"] if item["lead_id"] == lead_id for e in item["events"]
    ]


@pytest.mark.asyncio
async def test_different_leads_get_different_event_ids() -> None:
    router = Router()
    await router.service().on_lead_received(_lead())
    await router.service().on_lead_received(_lead(contact=Contact(first_name="Bob", email="bob@example.com")))

    ids = [a.event_id for a in router.publish.assigned()]
    assert len(ids) == 2
    assert len(set(ids)) == 2
    assert all(isinstance(i, uuid.UUID) for i in ids)


@pytest.mark.asyncio
async def test_unknown_account_is_rejected_without_side_effects() -> None:
    router = Router()
    with pytest.raises(RoutingRejected, match="other-realty"):
        await router.service().on_lead_received(_lead("other-realty"))
    assert router.records.docs == {}
    assert router.publish.records == []


@pytest.mark.asyncio
async def test_a_batch_rejects_an_unknown_account_and_routes_the_rest_once() -> None:
    router = Router()
    good = _lead()
    bob = _lead(contact=Contact(first_name="Bob", email="bob@example.com"))

    rejections = await router.service().on_leads_received([good, _lead("other-realty"), good, bob])

    [(index, exc)] = rejections
    assert index == 1
    assert isinstance(exc, RoutingRejected)
    assert "other-realty" in str(exc)
    assert sorted(router.records.docs) == sorted([str(good.event_id), str(bob.event_id)])
    assert sorted(a.payload.lead_id for a in router.publish.assigned()) == sorted([good.event_id, bob.event_id])
