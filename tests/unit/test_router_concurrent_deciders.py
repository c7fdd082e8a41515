"""Lead caps and rotation turns under two deciders of one account at once (helper 146's review, session 32).

A sweeper (any replica's) and a consumer (this replica's or another's) each read the rotation cursor and the capped
agents' usage when deciding. They wrote the cursor (`$max`) and the holds at flush, so both could take the same turn or
the last slot. Now each takes them before its records are stored (`RouterService._reserve`): the holds, then the
agents it started counting the lead against read again (past a cap: another took the slot), then each cursor moved
from its value as read (`RotationCursors.take`); the one that finds them taken decides again (decisions 0010, 0061)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import FakeCapacity, FakeContacts, FakeRecords, FakeRotations, Published, router_on_fakes

from leadflow_router.adapters.codec import decode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.availability import Place, counted
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.domain.record import RoutingRecord, Taken
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.events.commands import DistributeLead, DistributeLeadPayload, DistributionMode
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

CAPPED = AgentAvailability.model_validate({"caps": {"day": 1}})


class ReadingTogether(FakeCapacity):
    """Usage reads (`places`: each decider's first) that wait for each other, `readers` of them (a barrier with a
    deadline: two deciders reading usage at the same moment); 0: none."""

    def __init__(self, readers: int = 0) -> None:
        super().__init__()
        self.readers, self._arrived, self._all_in = readers, 0, asyncio.Event()

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        if self.readers:
            self._arrived += 1
            if self._arrived >= self.readers:
                self._all_in.set()
            with contextlib.suppress(TimeoutError):  # a decider reading after the other's hold does not wait forever
                await asyncio.wait_for(self._all_in.wait(), timeout=2.0)
        return await super().places(account_id, agent_ids, since_ms)


def lead(at: datetime, n: int) -> LeadReceived:
    return LeadReceived.create(
        account_id="acme",
        occurred_at=at,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=f"pat{n}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def against(records: FakeRecords, agent: str) -> list[str]:
    return sorted(i for i, doc in records.docs.items() if agent in counted(decode_record(doc).state))


async def test_a_sweep_and_a_new_lead_decided_at_once_do_not_both_give_a_capped_agent_a_lead() -> None:
    """Two deciders of one account at the same moment: a replica's sweeper re-offering an expired lead, and the
    consumer (this replica's or another's) routing a new lead. Both read a's usage (day cap 1, nothing counted)
    before either's hold is written (`_usage` is read, the hold applied at flush: nothing reserves the slot), so
    both offer to a: two leads open to a at once, over its cap. Expected: at most one lead counts against a."""
    start = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(
            Agent("boss", "Boss", round_robin=False),
            Agent("a", "A", availability=CAPPED),
            Agent("b", "B"),
        ),
        round_robin=True,
    )
    now = [start]
    records, out, rotations, contacts = FakeRecords(), Published(), FakeRotations(), FakeContacts()
    capacity = ReadingTogether()
    shared = {"records": records, "publish": out, "rotations": rotations, "contacts": contacts, "capacity": capacity}
    first = router_on_fakes(account, clock=lambda: now[0], **shared)
    second = router_on_fakes(account, clock=lambda: now[0], **shared)
    await rotations.advance("acme:Website", 1)  # the next lead goes to b
    one = lead(start, 1)
    assert not await first.on_leads_received([one])
    assert [e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)] == ["b"]
    now[0] = start + timedelta(minutes=16)  # b's offer ran out: lead 1 is due, and goes to a (b had it)
    two = lead(now[0], 2)  # a new lead, next in rotation: a
    capacity.readers = 2
    await asyncio.gather(first.sweep_once(), second.on_leads_received([two]))
    open_to = {
        str(e.payload.lead_id): e.payload.agent_id
        for e in out.lead_events()
        if isinstance(e, LeadOffered) and e.payload.lead_id in {one.event_id, two.event_id}
    }
    assert len(against(records, "a")) <= 1, (
        f"a has a day cap of 1 but leads {against(records, 'a')} count against it (offers: {open_to})"
    )


class ReadTogether(FakeRotations):
    """Cursor reads of `key` that wait for each other (with a deadline): two deciders reading where a rotation
    stands at the same moment, before either's advance is applied."""

    def __init__(self, key: str, readers: int) -> None:
        super().__init__()
        self.key, self.readers, self._arrived, self._all_in = key, readers, 0, asyncio.Event()

    async def _meet(self, keys: list[str]) -> None:
        if self.key in keys and self.readers:
            self._arrived += 1
            if self._arrived >= self.readers:
                self._all_in.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_in.wait(), timeout=2.0)

    async def get_many(self, keys: list[str]) -> dict[str, int]:  # a sweep's read
        await self._meet(keys)
        return await super().get_many(keys)

    async def read_many(self, keys: list[str]) -> dict[str, Taken]:  # a batch of new leads' read
        await self._meet(keys)
        return await super().read_many(keys)


async def test_a_re_offer_and_a_new_lead_decided_at_once_take_two_turns_of_the_rotation() -> None:
    """Round robin a, b, c (docs/routing-rules.md, "State": a re-offer takes its turn in the rotation as a new lead
    does). Lead 1 went to a; its offer runs out. The sweeper re-offers it while the consumer routes lead 2: both read
    the cursor (1) before either advance is applied (read when deciding, `$max` at flush), so both go to b and the
    cursor ends at 2, not 3: c loses its turn, b gets two in a row. Every such overlap loses a turn, so a weighted
    rotation's "exactly its weight's share over any full cycle" does not hold while the sweeper is busy (decision
    0010 accepts one reused position only after a crash). Expected: lead 1 to b and lead 2 to c (or the reverse)."""
    start = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("boss", "Boss", round_robin=False), Agent("a", "A"), Agent("b", "B"), Agent("c", "C")),
        round_robin=True,
    )
    now = [start]
    records, out, rotations = FakeRecords(), Published(), ReadTogether("acme:Website", 0)
    shared = {"records": records, "publish": out, "rotations": rotations, "contacts": FakeContacts()}
    sweeper = router_on_fakes(account, clock=lambda: now[0], **shared)
    consumer = router_on_fakes(account, clock=lambda: now[0], **shared)
    one = lead(start, 1)
    assert not await consumer.on_leads_received([one])
    assert [e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)] == ["a"]
    out.clear()
    now[0] = start + timedelta(minutes=16)  # a's offer ran out
    two = lead(now[0], 2)
    rotations.readers = 2
    await asyncio.gather(sweeper.sweep_once(), consumer.on_leads_received([two]))
    offered = sorted(e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered))
    assert offered == ["b", "c"], f"two turns taken at once went to {offered}; cursor {rotations.positions}"
    assert rotations.positions["acme:Website"] == 3


class DiesStoring(FakeRecords):
    """Records whose first batch insert dies (a crash after the batch's turns and holds were taken)."""

    died = False

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if not self.died:
            self.died = True
            raise ConnectionError("killed before its records were stored")
        return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)


async def test_a_batch_cut_after_its_turns_and_holds_is_decided_again_as_it_was() -> None:
    """A crash after a batch took its turns and wrote its holds, before its records were stored: the redelivered
    batch begins where its take began (not after it: no turn skipped) and reads usage without its own leads' holds
    (not at a cap it only seems to fill itself): each lead goes where it would have gone without the crash."""
    start = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("boss", "Boss", round_robin=False), Agent("a", "A", availability=CAPPED), Agent("b", "B")),
        round_robin=True,
    )
    records, out, rotations, capacity = DiesStoring(), Published(), FakeRotations(), FakeCapacity()
    router = router_on_fakes(account, clock=lambda: start, records=records, publish=out, rotations=rotations,
                             capacity=capacity)  # fmt: skip
    one, two = lead(start, 1), lead(start, 2)
    with pytest.raises(ConnectionError):
        await router.on_leads_received([one, two])
    assert rotations.positions["acme:Website"] == 2, "the turns were taken before the crash"
    assert not out.lead_events()
    assert not await router.on_leads_received([one, two])
    offered = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert offered == {one.event_id: "a", two.event_id: "b"}
    assert rotations.positions["acme:Website"] == 2
    assert against(records, "a") == [str(one.event_id)]


async def test_a_hand_offer_to_an_agent_at_its_cap_is_made_not_taken_for_a_lost_slot() -> None:
    """A broker may offer a lead by hand to an agent at its cap (the hand offer counts against it, decision 0061): its
    change is not read again for caps, or the agent past its cap would look like a slot another decider took and
    the command would be decided again until it failed."""
    start = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)
    account = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("boss", "Boss", round_robin=False), Agent("a", "A", availability=CAPPED), Agent("b", "B")),
        round_robin=True,
    )
    records, out, capacity = FakeRecords(), Published(), FakeCapacity()
    router = router_on_fakes(account, clock=lambda: start, records=records, publish=out, capacity=capacity)
    one, two = lead(start, 1), lead(start, 2)
    assert not await router.on_leads_received([one, two])  # one to a (now at its cap), two to b
    by_hand = DistributeLeadPayload(
        lead_id=two.event_id, distribution_id=uuid.uuid4(), agent_id="a", mode=DistributionMode.OFFER,
        claim_window_seconds=600, by_user_id="boss",
    )  # fmt: skip
    await router.on_command(DistributeLead.create(account_id="acme", occurred_at=start, payload=by_hand))
    assert sorted(against(records, "a")) == sorted([str(one.event_id), str(two.event_id)])
