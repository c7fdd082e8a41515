"""Helper 162's review (session 33) of 57ac6a2, 3774cbd and f9b0a79: a lead's count carries its record version, a
decider's line leaves out another decider's pending hold of its own lead once older than `LEFTOVER_SECONDS`, refused
batches drop their pending holds (decision 0061, "Amended (session 33)"). Each test drives one interleaving
deterministically: a hook in a fake store runs the other decider at the exact point named (no sleeps)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fakes_router import (
    FakeCapacity,
    FakeRecords,
    FakeRotations,
    Published,
    deciders_sharing,
    router_on_fakes,
)
from test_router_deciders_contended import CAPPED, START, Hook, account_of, against, lead, offers_of

from leadflow_router.domain.model import Agent
from leadflow_router.domain.record import RoutingRecord
from leadflow_shared.events.commands import TransferLead, TransferLeadPayload

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class StalledWrite(FakeRecords):
    """A compare-and-set of `lead_id` that stalls (`stall`, run once in its place) and lands just before the next
    compare-and-set of the same lead, another decider's: a write in flight lands at any moment of another's pass."""

    def __init__(self) -> None:
        super().__init__()
        self.lead_id = ""
        self.stall: Hook | None = None
        self._parked: tuple[RoutingRecord, int] | None = None
        self._landed: bool | None = None

    async def compare_and_set(self, record: RoutingRecord, expected_version: int) -> bool:
        if record.lead_id == self.lead_id and self.stall is not None:
            hook, self.stall = self.stall, None
            self._parked = (record, expected_version)
            await hook()
            return await self._land()
        if record.lead_id == self.lead_id and self._parked is not None:
            await self._land()  # the stalled write lands first
        return await super().compare_and_set(record, expected_version)

    async def _land(self) -> bool:
        """The stalled write lands (once; after that, what it answered)."""
        if self._parked is not None:
            parked, self._parked = self._parked, None
            self._landed = await super().compare_and_set(*parked)
        return bool(self._landed)


@pytest.mark.parametrize(("stall_seconds", "lag_seconds"), [(60, 0), (0, 31)], ids=["stall", "skew"])
async def test_a_live_rival_s_hold_left_out_as_a_leftover_lets_an_agent_go_past_its_cap(
    stall_seconds: int, lag_seconds: int
) -> None:
    """L2 (Website) was offered to a at 10:00, L1 (Zillow) to d at 10:01; b has a day cap of 1 and nothing counted.
    Sweeper S2's pass (its clock 10:15:30) fires L2 alone and offers it to b (Website's turn): it holds L2 at b
    pending, reads b within its cap, takes the turn, and its compare-and-set of L2 is in flight: `stall` it stalls 60 s
    (a GC pause, a slow primary, a stepped-down primary's retry); `skew` it does not, but S2's clock lags S1's by 31 s.
    Sweeper S1's pass (its clock 10:16:30, or 10:16:01) fires L2 and L1: its usage read leaves out its own leads'
    holds (S2's hold of L2 at b), so it offers L2 to c (Website's next turn) and L1 to b (Zillow's turn); it holds
    them and reads b again: S2's hold of L2 at b is over LEFTOVER_SECONDS old by S1's clock and of one of S1's own
    leads that S1 does not count against b, so since 3774cbd it is left out of b's line as "a crash's leftover": b
    within its cap, S1 goes on. S2's write of L2 then lands (before S1's): S2 wins L2, S1 stores L1 only (its turns
    share nothing with L2's). b is offered L1 and L2 and counts both against a day cap of 1, without any crash: the
    30 s bound reads a live rival's hold as dead by its age alone, on the router's clock of another replica.
    Expected: at most one lead counts against b (with LEFTOVER_SECONDS out of play S1 backs off: this passes). The
    30 s rule was taken out again (session 33): every pending hold stands in line."""
    acme = account_of("acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED), Agent("c", "C"), Agent("d", "D"))
    now = [START]
    records, out, capacity, rotations = StalledWrite(), Published(), FakeCapacity(), FakeRotations()
    s1, s2 = deciders_sharing(
        acme,
        clocks=[lambda: now[0], lambda: now[0] - timedelta(seconds=lag_seconds)],
        records=records,
        publish=out,
        rotations=rotations,
        capacity=capacity,
    )
    l2, l1 = lead("acme", START, 2), lead("acme", START + timedelta(minutes=1), 1, source="Zillow")
    assert not await s1.on_leads_received([l2])
    rotations.positions["acme:Zillow"] = 3
    now[0] = START + timedelta(minutes=1)
    assert not await s1.on_leads_received([l1])
    assert (offers_of(out, l2), offers_of(out, l1)) == (["a"], ["d"])
    rotations.positions["acme:Zillow"] = 5  # other Zillow leads went to a meanwhile: b is next

    async def s1_fires_both_while_s2_s_write_is_in_flight() -> None:
        now[0] += timedelta(seconds=stall_seconds)
        await s1.sweep_once()

    records.lead_id, records.stall = str(l2.event_id), s1_fires_both_while_s2_s_write_is_in_flight
    now[0] = START + timedelta(minutes=15, seconds=30 + lag_seconds)  # by S2's clock L2's offer ran out, L1's not
    await s2.sweep_once()
    assert offers_of(out, l2)[1:2] == ["b"], f"S2 offered L2 to b ({offers_of(out, l2)})"
    assert len(against(records, "b")) <= 1, (
        f"b (day cap 1) counts {against(records, 'b')}: L1 offered to {offers_of(out, l1)}, L2 to"
        f" {offers_of(out, l2)}; a live rival's hold was left out of b's line as a crash's leftover"
    )


async def test_a_lead_moved_to_an_office_without_caps_no_longer_counts_against_the_agent_it_left() -> None:
    """(Not one of the three commits': `_hold` since 5fd28d4.) L is offered to b (acme, day cap 1): it counts against
    b, who is at its cap. L is moved to north (T2), where nobody has a cap: the moved lead is open to nobody (held by
    north's broker), so its record's `capacity` says it counts against nobody, but `_hold` writes counts only for
    leads whose record's account counts leads (north does not), so L's count against b stays in router_capacity for
    good: b stays at its cap for the rest of the day (a weekly or monthly cap: the week, the month) for a lead it no
    longer has, and is skipped. Expected: after the move b can take a lead again."""
    acme = account_of("acme", Agent("b", "B", availability=CAPPED))
    north = account_of("north", Agent("x", "X"))
    now = [START]
    capacity, out = FakeCapacity(), Published()
    service = router_on_fakes(acme, north, clock=lambda: now[0], capacity=capacity, publish=out)
    moved = lead("acme", START, 1)
    assert not await service.on_leads_received([moved])
    assert offers_of(out, moved) == ["b"]
    assert await service.can_take("acme", "b") is not None, "b is at its day cap"
    transfer = TransferLead.create(
        account_id="acme", occurred_at=START,
        payload=TransferLeadPayload(lead_id=moved.event_id, to_account_id="north", by_user_id="boss"),
    )  # fmt: skip
    await service.on_command(transfer)
    assert (await service.can_take("acme", "b"), sorted(capacity.counting(str(moved.event_id)))) == (None, []), (
        "L moved to north still counts against acme's b"
    )
