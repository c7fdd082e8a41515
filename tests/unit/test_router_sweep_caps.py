"""An expiry that loses its compare-and-set to a claim frees no cap for the sweep pass's later records (decision
0077; found by helper 70's review). An expiry frees a cap slot in the pass's known usage for the agent whose offer
expired (`_recount`); a later record, even of another rotation, may take it. When a claim by that very agent beats
the expiry, the slot was never freed: the later record is decided again instead of stored, and the agent stays
within its cap. A lead counted on an earlier day frees no slot of today's cap when it stops counting (an expired
offer, an idle holder taken off it; found by helper 146's review): the pass's known usage keeps each counted lead's
time (`CountedLeads`). On the router's in-memory stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import ClaimRacingSweep, FakeCapacity, Published, router_on_fakes, website_lead

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import counted
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadReleased
from leadflow_shared.routing_rules import RuleSet

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme",
    name="Acme",
    roster=(Agent("a", "A", availability=AgentAvailability.model_validate({"caps": {"day": 1}})), Agent("b", "B")),
    round_robin=True,
)


def portal_lead(occurred_at: datetime) -> LeadReceived:
    """A lead of another source than the website's: another rotation."""
    return LeadReceived.create(
        account_id="acme",
        occurred_at=occurred_at,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Lee", email="lee@example.com"),
            source=LeadSource(channel=LeadChannel.LEAD_GEN, name="Zillow"),
        ),
    )


async def test_an_expiry_beaten_by_its_agents_claim_frees_no_cap_for_the_pass_later_deadlines() -> None:
    now = [NOW]
    records, out, capacity = ClaimRacingSweep(), Published(), FakeCapacity()
    router = router_on_fakes(ACCOUNT, clock=lambda: now[0], records=records, publish=out, capacity=capacity)
    records.service = router
    first = website_lead("acme", NOW, "pat1@example.com")
    assert not await router.on_leads_received([first])
    now[0] = NOW + timedelta(seconds=1)
    second = portal_lead(now[0])
    assert not await router.on_leads_received([second])
    offers = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    # a takes the first (its cap of 1 is then full); the second, in the portal's rotation, skips a for b.
    assert (offers[first.event_id], offers[second.event_id]) == ("a", "b")
    deadline = max(e.payload.deadline for e in out.lead_events() if isinstance(e, LeadOffered))
    records.claim = LeadActivity.create(  # a claims the first in time; it lands between the pass's read and CAS
        account_id="acme",
        occurred_at=deadline - timedelta(seconds=5),
        payload=LeadActivityPayload(lead_id=first.event_id, agent_id="a", action=ActivityAction.ACCEPT),
    )
    now[0] = deadline + timedelta(seconds=1)
    for _ in range(3):
        await router.sweep_once()
    against_a = [i for i, doc in records.docs.items() if "a" in counted(decode_record(doc).state)]
    assert len(against_a) <= 1, f"a has a day cap of 1 but {len(against_a)} leads count against it: {against_a}"


CAPPED = AgentAvailability.model_validate({"caps": {"day": 1}})


def numbered_lead(at: datetime, n: int) -> LeadReceived:
    return website_lead("acme", at, f"pat{n}@example.com")


def accept(received: LeadReceived, agent: str, at: datetime) -> LeadActivity:
    return LeadActivity.create(
        account_id="acme",
        occurred_at=at,
        payload=LeadActivityPayload(lead_id=received.event_id, agent_id=agent, action=ActivityAction.ACCEPT),
    )


def against(records: ClaimRacingSweep, agent: str) -> list[str]:
    return sorted(i for i, doc in records.docs.items() if agent in counted(decode_record(doc).state))


async def test_an_offer_made_yesterday_that_expires_today_frees_no_slot_of_today_s_cap() -> None:
    """Lead 1 is offered to a (day cap 1) at 23:50 on Monday; on Tuesday a claims lead 4, so a is at its Tuesday
    cap. At 00:20 one sweep pass expires lead 1 (yesterday's: it never counted on Tuesday), then leads 2 and 3.
    Expiring lead 1 frees no slot of a's Tuesday count, so lead 3 is not re-offered to a: a stays skipped at its
    daily cap and lead 3 goes to b (helper 146's review: the pass's usage took 1 off day, week and month alike)."""
    monday = datetime(2026, 5, 4, 23, 50, tzinfo=UTC)
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("a", "A", availability=CAPPED), Agent("b", "B"), Agent("c", "C")),
        round_robin=True,
    )
    now = [monday]
    records, out, capacity = ClaimRacingSweep(), Published(), FakeCapacity()
    router = router_on_fakes(account, clock=lambda: now[0], records=records, publish=out, capacity=capacity)
    tuesday = datetime(2026, 5, 5, 0, 0, tzinfo=UTC)
    leads = []
    for n, at in enumerate([monday, *(tuesday + timedelta(minutes=m) for m in (1, 2, 3))], start=1):
        now[0] = at
        leads.append(numbered_lead(at, n))
        assert not await router.on_leads_received([leads[-1]])
    offers = [(e.payload.lead_id, e.payload.agent_id) for e in out.lead_events() if isinstance(e, LeadOffered)]
    assert [agent for _, agent in offers] == ["a", "b", "c", "a"]  # lead 4: a's Monday lead does not count today
    now[0] = tuesday + timedelta(minutes=4)
    await router.on_activity(accept(leads[3], "a", now[0]))
    assert decode_record(records.docs[str(leads[3].event_id)]).state.holder == "a"  # type: ignore[union-attr]

    out.clear()
    now[0] = tuesday + timedelta(minutes=20)  # leads 1-3 are due (00:05, 00:16, 00:17), in one pass
    await router.sweep_once()
    reoffered = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert reoffered.get(leads[2].event_id) != "a", (
        f"lead 3 re-offered to a, at its daily cap (lead 4 claimed today); re-offers: {reoffered}"
    )
    assert reoffered.get(leads[2].event_id) == "b", reoffered
    assert len(against(records, "a")) <= 1, f"a (day cap 1) counts {against(records, 'a')} on one day"


async def test_an_idle_holder_taken_off_yesterday_s_lead_frees_no_slot_of_today_s_cap() -> None:
    """The same for idle reassignment: a (day cap 1) claims lead 1 on Monday night (offered 23:00, claimed 23:10;
    the default rule takes an idle lead back after 60 minutes), then on Tuesday claims lead 4 and is at its
    Tuesday cap. One pass at 00:20 takes lead 1 from a for idleness (counted since Monday: no Tuesday slot freed),
    then re-offers leads 2 and 3: lead 3's turn is a's, who is skipped at its daily cap."""
    monday = datetime(2026, 5, 4, 23, 0, tzinfo=UTC)
    rule_set = RuleSet.model_validate(
        {"default": {"action": {"kind": "rotation", "agents": ["a", "b", "c"]}, "idle": {"minutes": 60}}}
    )
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("a", "A", availability=CAPPED), Agent("b", "B"), Agent("c", "C")),
        round_robin=True,
        rules=rule_set,
    )
    now = [monday]
    records, out, capacity = ClaimRacingSweep(), Published(), FakeCapacity()
    router = router_on_fakes(account, clock=lambda: now[0], records=records, publish=out, capacity=capacity)
    leads = [numbered_lead(monday, 1)]
    assert not await router.on_leads_received([leads[0]])
    now[0] = monday + timedelta(minutes=10)
    await router.on_activity(accept(leads[0], "a", now[0]))  # its idle clock: Tuesday 00:10
    tuesday = datetime(2026, 5, 5, 0, 0, tzinfo=UTC)
    for n, minute in ((2, 1), (3, 2), (4, 3)):
        now[0] = tuesday + timedelta(minutes=minute)
        leads.append(numbered_lead(now[0], n))
        assert not await router.on_leads_received([leads[-1]])
    offers = [e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)]
    assert offers == ["a", "b", "c", "a"]  # lead 4: a's Monday lead does not count today
    now[0] = tuesday + timedelta(minutes=4)
    await router.on_activity(accept(leads[3], "a", now[0]))
    assert decode_record(records.docs[str(leads[3].event_id)]).state.holder == "a"  # type: ignore[union-attr]

    out.clear()
    now[0] = tuesday + timedelta(minutes=20)  # lead 1's idle clock (00:10), then leads 2 and 3 (00:16, 00:17)
    await router.sweep_once()
    released = [e.payload.lead_id for e in out.lead_events() if isinstance(e, LeadReleased)]
    assert released == [leads[0].event_id], "lead 1 taken from a for idleness"
    reoffered = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert reoffered.get(leads[2].event_id) != "a", (
        f"lead 3 re-offered to a, at its daily cap (lead 4 claimed today); re-offers: {reoffered}"
    )
    assert against(records, "a") == [str(leads[3].event_id)], "a counts only today's lead 4"
