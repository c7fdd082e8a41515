"""The router consumes agents' actions in batches (decision 0109): a batch's leads together, each lead's actions in
their order, a refused action the batch's rejection, any other failure raised as it is (the edge tries again).

One at a time, each claim waited for the one before it (six round trips each): about 15 claims a second on this
machine, so a burst of claims made in time waited tens of seconds and lost to the sweeper (helper 197's
`bench/claim_bench.py`). Helper 201: a batch tried again re-applied the actions its record no longer remembered (its
last `RECENT_INPUTS`): a contact emailed twice; batches are `ACTIVITY_BATCH` records, half of it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_router import FakeRecords, Published, router_on_fakes, website_lead

from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig, RoutingRejected
from leadflow_router.domain.record import RoutingRecord
from leadflow_router.handlers import ACTIVITY_BATCH, RECENT_INPUTS
from leadflow_shared.events.activity import ActivityAction, ContactMessage, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import LeadChannel, LeadSource
from leadflow_shared.events.routing import ActivityLogged, ContactMessaged, LeadClaimed, LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme",
    name="Acme",
    roster=(Agent("boss", "Boss", round_robin=False), Agent("a", "A"), Agent("b", "B")),
    round_robin=True,
    sources={"Race": LeadSourceConfig(name="Race", race_count=2)},
)


def raced(email: str) -> Any:
    lead = website_lead("acme", T0, email=email)
    source = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Race")
    return lead.model_copy(update={"payload": lead.payload.model_copy(update={"source": source})})


def act(
    lead_id: uuid.UUID, agent_id: str, action: ActivityAction, message: ContactMessage | None = None
) -> LeadActivity:
    payload = LeadActivityPayload(lead_id=lead_id, agent_id=agent_id, action=action, message=message)
    return LeadActivity.create(account_id="acme", occurred_at=T0, payload=payload)


def accept(lead_id: uuid.UUID, agent_id: str) -> LeadActivity:
    return act(lead_id, agent_id, ActivityAction.ACCEPT)


def offers(published: Published) -> dict[str, str]:
    return {str(e.payload.lead_id): e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered)}


def claimed(published: Published) -> dict[str, str]:
    return {str(e.payload.lead_id): e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadClaimed)}


async def test_a_batch_claims_each_of_its_leads_and_rejects_only_the_action_on_no_lead() -> None:
    published = Published()
    service = router_on_fakes(ACCOUNT, clock=lambda: T0, publish=published)
    leads = [raced(f"pat{i}@example.com") for i in range(6)]
    assert not await service.on_leads_received(leads)
    offered = {
        str(e.payload.lead_id): e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered)
    }
    actions = [accept(lead.event_id, offered[str(lead.event_id)]) for lead in leads]
    actions.insert(2, accept(uuid.uuid4(), "a"))  # a lead the router never had

    rejections = await service.on_activities(actions)

    assert [(index, type(why)) for index, why in rejections] == [(2, RoutingRejected)]
    assert claimed(published) == {str(lead.event_id): offered[str(lead.event_id)] for lead in leads}


@pytest.mark.parametrize("first", ["a", "b"])
async def test_a_leads_actions_in_a_batch_are_applied_in_their_order(first: str) -> None:
    published = Published()
    service = router_on_fakes(ACCOUNT, clock=lambda: T0, publish=published)
    lead = raced("pat@example.com")
    assert not await service.on_leads_received([lead])
    racers = sorted(e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered))
    assert racers == ["a", "b"], "the setup: a race of the two agents"
    second = "b" if first == "a" else "a"

    assert await service.on_activities([accept(lead.event_id, first), accept(lead.event_id, second)]) == []

    assert claimed(published) == {str(lead.event_id): first}, "the first accept in the batch wins the race"


class MeetingRecords(FakeRecords):
    """Each read of a record waits (with a deadline) until `together` reads are in flight at once."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.together, self.in_flight, self.most = together, 0, 0
        self.met = asyncio.Event()

    async def get(self, lead_id: str) -> RoutingRecord | None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.together:
            self.met.set()
        try:
            await asyncio.wait_for(self.met.wait(), timeout=5)
        finally:
            self.in_flight -= 1
        return await super().get(lead_id)


async def test_a_batchs_leads_are_applied_together_not_one_after_another() -> None:
    published, records = Published(), MeetingRecords(together=3)
    service = router_on_fakes(ACCOUNT, clock=lambda: T0, publish=published, records=records)
    leads = [raced(f"pat{i}@example.com") for i in range(3)]
    records.met.set()  # routing the leads reads nothing concurrently
    assert not await service.on_leads_received(leads)
    records.met.clear()
    offered = {
        str(e.payload.lead_id): e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered)
    }

    await service.on_activities([accept(lead.event_id, offered[str(lead.event_id)]) for lead in leads])

    assert records.most >= 3, "the three leads' records were read at the same time"
    assert len(claimed(published)) == 3


async def test_a_failure_that_is_no_refusal_is_raised_as_it_is_for_the_edge_to_try_again() -> None:
    class Down(FakeRecords):
        async def get(self, lead_id: str) -> RoutingRecord | None:
            raise ConnectionError(f"MongoDB is down: {lead_id} not read")

    service = router_on_fakes(ACCOUNT, clock=lambda: T0, records=Down())
    with pytest.raises(ConnectionError):  # not an ExceptionGroup the edge would not know as transient
        await service.on_activities([accept(uuid.uuid4(), "a"), accept(uuid.uuid4(), "b")])


class FailsOnce(FakeRecords):
    """The `fail_at`-th compare-and-set fails once (MongoDB's primary stepping down, say): no refusal, so the edge
    runs the batch again."""

    def __init__(self) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, -1

    async def compare_and_set(self, record: RoutingRecord, expected_version: int) -> bool:
        self.calls += 1
        if self.calls == self.fail_at:
            raise ConnectionError("not primary")
        return await super().compare_and_set(record, expected_version)


async def test_a_batch_tried_again_after_a_late_failure_sends_the_contact_the_agents_email_once() -> None:
    assert 2 * ACTIVITY_BATCH <= RECENT_INPUTS, "a batch's actions, and as many landing meanwhile, are remembered"
    published, records = Published(), FailsOnce()
    service = router_on_fakes(ACCOUNT, clock=lambda: T0, publish=published, records=records)
    lead = website_lead("acme", T0, email="pat@example.com")
    assert not await service.on_leads_received([lead])
    agent = offers(published)[str(lead.event_id)]
    await service.on_activity(accept(lead.event_id, agent))  # the agent holds the lead
    published.clear()
    # The fullest batch of one lead: the holder's email to the contact, then notes; the last note's store fails.
    email = act(lead.event_id, agent, ActivityAction.EMAIL, ContactMessage(subject="Hi", body="About the house"))
    batch = [email, *(act(lead.event_id, agent, ActivityAction.NOTE) for _ in range(ACTIVITY_BATCH - 1))]
    records.calls, records.fail_at = 0, len(batch)
    with pytest.raises(ConnectionError):
        await service.on_activities(batch)
    assert await service.on_activities(batch) == []  # the edge's retry of the whole batch

    assert len([e for e in published.lead_events() if isinstance(e, ContactMessaged)]) == 1
    assert len([e for e in published.lead_events() if isinstance(e, ActivityLogged)]) == len(batch)


async def test_a_failure_of_one_lead_leaves_the_other_leads_actions_applied_not_cut_off() -> None:
    published, records = Published(), FailsOnce()
    service = router_on_fakes(ACCOUNT, clock=lambda: T0, publish=published, records=records)
    leads = [raced(f"pat{i}@example.com") for i in range(4)]
    assert not await service.on_leads_received(leads)
    offered = offers(published)
    records.calls, records.fail_at = 0, 1  # the first lead's claim fails; the others go on to their end
    with pytest.raises(ConnectionError):
        await service.on_activities([accept(lead.event_id, offered[str(lead.event_id)]) for lead in leads])
    assert len(claimed(published)) == 3, "the three other leads' claims were applied, none cancelled half-way"
