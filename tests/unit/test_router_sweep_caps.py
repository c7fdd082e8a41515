"""An expiry that loses its compare-and-set to a claim frees no cap for the sweep pass's later records (decision
0077; found by helper 70's review). An expiry frees a cap slot in the pass's known usage for the agent whose offer
expired (`_recount`); a later record, even of another rotation, may take it. When a claim by that very agent beats
the expiry, the slot was never freed: the later record is decided again instead of stored, and the agent stays
within its cap. On the router's in-memory stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import ClaimRacingSweep, Published, router_on_fakes, website_lead

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import counted
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme",
    name="Acme",
    roster=(Agent("a", "A", availability=AgentAvailability.model_validate({"caps": {"day": 1}})), Agent("b", "B")),
    round_robin=True,
)


class FakeCapacity:
    """The leads each agent counts against (CapacityLog): lead -> (account, agents, at_ms)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, tuple[str, ...], int]] = {}

    async def times(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {agent: [] for agent in agent_ids}
        for account, agents, at in self.held.values():
            for agent in agents:
                if account == account_id and agent in found and at >= since_ms:
                    found[agent].append(at)
        return found

    async def hold(self, lead_id: str, account_id: str, agent_ids: tuple[str, ...], at_ms: int) -> None:
        self.held[lead_id] = (account_id, agent_ids, at_ms)

    async def hold_many(self, holds: list[tuple[str, str, tuple[str, ...]]], at_ms: int) -> None:
        for lead_id, account_id, agents in holds:
            await self.hold(lead_id, account_id, agents, at_ms)


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
