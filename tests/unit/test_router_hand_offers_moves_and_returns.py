"""What a broker's hand offer, an office move and a return leave of the lead's routing (helper 128's review,
session 30), on `RouterService` over the in-memory fakes (fakes_router), through crm-api's commands and agents'
activity as the Kafka edge hands them over:

- a hand offer (T4) is no pond offer, whatever pond the lead was in: it counts against caps and is claimed as any
  offer (`on_distributed` clears `pond`);
- a lead moved to another office (T2) carries none of the first office's rule, fallback step or pond into the
  target's events (decision 0020; `on_office_transfer`);
- a lead given back to nobody stays unassigned: no idle clock of its holder is left to hand it back later
  (`on_returned` clears `next_deadline`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_router import FakeContacts, Published, router_on_fakes

from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig, LeadStatus
from leadflow_router.handlers import RouterService
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.envelope import Envelope
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import (
    DistributeLead,
    DistributeLeadPayload,
    DistributionMode,
    ReturnLead,
    ReturnLeadPayload,
    TransferLead,
    TransferLeadPayload,
)
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadClaimed, LeadOffered
from leadflow_shared.routing_rules import RuleSet

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday


def office(account_id: str, roster: tuple[Agent, ...], rules: dict[str, Any] | None = None) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=account_id,
        name=account_id.title(),
        roster=roster,
        round_robin=True,
        sources={"Website": LeadSourceConfig(name="Website")},
        rules=RuleSet.model_validate(rules or {}),
    )


POND_RULES = {
    "ponds": [{"id": "buyers", "name": "Buyers", "agents": ["b", "c"], "hold_seconds": 3600}],
    "rules": [
        {"id": "vip", "name": "Vip", "match": "exact", "criteria": {}, "action": {"kind": "pond", "pond": "buyers"}}
    ],
}


def new_lead(account_id: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=NOW,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Jo", email=f"jo-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def act(account_id: str, lead_id: uuid.UUID, agent: str, action: ActivityAction, at: datetime) -> LeadActivity:
    payload = LeadActivityPayload(lead_id=lead_id, agent_id=agent, action=action)
    return LeadActivity.create(account_id=account_id, occurred_at=at, payload=payload)


def offer_by_hand(account_id: str, lead_id: uuid.UUID, agent: str) -> DistributeLead:
    payload = DistributeLeadPayload(
        lead_id=lead_id, distribution_id=uuid.uuid4(), agent_id=agent, mode=DistributionMode.OFFER,
        claim_window_seconds=600, by_user_id="boss",
    )  # fmt: skip
    return DistributeLead.create(account_id=account_id, occurred_at=NOW, payload=payload)


def give_back(account_id: str, lead_id: uuid.UUID, agent: str) -> ReturnLead:
    payload = ReturnLeadPayload(lead_id=lead_id, agent_id=agent)
    return ReturnLead.create(account_id=account_id, occurred_at=NOW, payload=payload)


def events_of(published: Published, kind: type[Envelope]) -> list[Any]:
    return [e for e in published.lead_events() if isinstance(e, kind)]


def service_of(*accounts: AccountSnapshot, now: list[datetime]) -> tuple[RouterService, Published]:
    published = Published()
    service = router_on_fakes(*accounts, clock=lambda: now[0], publish=published, contacts=FakeContacts())
    return service, published


@pytest.mark.asyncio
async def test_a_lead_offered_by_hand_after_a_pond_claim_is_no_pond_offer() -> None:
    """A pond lead claimed (b) and given back, then offered by hand to c, who is paused: the hand offer is an
    ordinary offer (on_distributed checks only that c is active), so c's accept claims it, as for any other lead
    offered by hand. The lead keeps the pond it left, though: the LeadOffered says pond 'buyers' (crm-api lists it
    in that pond), c's offer is not counted against its caps, and c's claim is refused as a pond claim."""
    paused_c = Agent("c", "C", availability=AgentAvailability(paused=True))
    roster = (Agent("broker", "Broker"), Agent("b", "B"), Agent("c", "C"))
    now = [NOW]
    service, published = service_of(office("acme", roster, POND_RULES), now=now)
    lead = new_lead("acme")
    await service.on_lead_received(lead)
    assert {e.payload.pond for e in events_of(published, LeadOffered)} == {"buyers"}
    await service.on_activity(act("acme", lead.event_id, "b", ActivityAction.ACCEPT, NOW))
    await service.on_command(give_back("acme", lead.event_id, "b"))
    service.accounts = router_on_fakes(office("acme", (*roster[:2], paused_c), POND_RULES), clock=lambda: NOW).accounts
    published.clear()

    await service.on_command(offer_by_hand("acme", lead.event_id, "c"))
    [offered] = events_of(published, LeadOffered)
    assert offered.payload.agent_id == "c"
    await service.on_activity(act("acme", lead.event_id, "c", ActivityAction.ACCEPT, NOW + timedelta(minutes=1)))
    assert [e.payload.agent_id for e in events_of(published, LeadClaimed)] == ["c"], published.lead_events()[-1]
    record = await service.records.get(str(lead.event_id))
    assert record is not None
    assert record.state is not None
    assert (offered.payload.pond, record.state.pond) == (None, None), "a hand offer is in no pond"


@pytest.mark.asyncio
async def test_a_lead_moved_to_another_office_carries_no_rule_nor_pond_of_the_first_into_its_events() -> None:
    """T2 of a lead in acme's pond 'buyers' (rule 'vip') to north, where the broker offers it by hand to y, who lets
    the offer expire. north's events must not name acme's pond or rule: the lead is north's now (decision 0020: not
    routed by the first office's setup). The moved state keeps `pond`, `rule_id` and `fallback_step`, so north's
    LeadOffered says pond 'buyers' (north's Ponds list shows acme's pond) and, once it expires, the sweeper's offer
    explains "Rule 'vip' no longer exists" to north (or, had north a rule 'vip', routes it by north's unrelated rule
    at acme's fallback step)."""
    acme = office("acme", (Agent("broker", "Broker"), Agent("b", "B"), Agent("c", "C")), POND_RULES)
    north = office("north", (Agent("nbroker", "N Broker"), Agent("x", "X"), Agent("y", "Y")))
    now = [NOW]
    service, published = service_of(acme, north, now=now)
    lead = new_lead("acme")
    await service.on_lead_received(lead)  # offered to acme's pond 'buyers' (b and c)
    transfer = TransferLead.create(
        account_id="acme", occurred_at=NOW,
        payload=TransferLeadPayload(lead_id=lead.event_id, to_account_id="north", by_user_id="boss"),
    )  # fmt: skip
    await service.on_command(transfer)
    published.clear()

    await service.on_command(offer_by_hand("north", lead.event_id, "y"))
    now[0] = NOW + timedelta(minutes=11)  # y's 10-minute window is over
    await service.sweep_once()
    north_events = [(key, event) for key, event in published.events() if event.account_id == "north"]
    offers = [event for _, event in north_events if isinstance(event, LeadOffered)]
    assert [o.payload.agent_id for o in offers[:1]] == ["y"]  # by hand
    assert len(offers) == 2  # then by the sweeper
    leaked = [o.payload.model_dump(include={"pond", "explanation"}) for o in offers]
    assert all(o["pond"] is None for o in leaked), leaked
    assert not any("vip" in o["explanation"] for o in leaked), leaked


@pytest.mark.asyncio
async def test_a_lead_given_back_to_nobody_stays_unassigned_past_its_idle_deadline() -> None:
    """Rule 'team' (idle: 30 minutes). a claims the lead (its idle clock starts), then gives it back; nobody else in
    the office can hold it, so it is unassigned "until a broker or admin distributes it" (on_returned). The idle
    deadline stays on the record, though: 30 minutes later the sweeper fires it, offers the lead on, finds nobody
    and hands it back (R9, FELL_BACK) to roster position 1: the very agent who gave it back."""
    team = {"id": "team", "name": "Team", "match": "exact", "criteria": {},
            "action": {"kind": "rotation", "agents": ["a"]}, "idle": {"minutes": 30, "times": 1}}  # fmt: skip
    now = [NOW]
    service, _ = service_of(office("solo", (Agent("a", "A"),), {"rules": [team]}), now=now)
    lead = new_lead("solo")
    await service.on_lead_received(lead)
    await service.on_activity(act("solo", lead.event_id, "a", ActivityAction.ACCEPT, NOW))
    await service.on_command(give_back("solo", lead.event_id, "a"))
    record = await service.records.get(str(lead.event_id))
    assert record is not None
    assert record.state is not None
    assert record.state.status is LeadStatus.UNASSIGNED

    now[0] = NOW + timedelta(minutes=31)
    await service.sweep_once()
    record = await service.records.get(str(lead.event_id))
    assert record is not None
    assert record.state is not None
    assert (record.state.status, record.state.holder, record.next_deadline_ms) == (LeadStatus.UNASSIGNED, None, None)
