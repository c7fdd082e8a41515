"""Helper 163's review (session 34) of 36fd55b (a decision reads every lead's counts and holds but its own,
`CountedLeads.seen_by`): a lead a change starts counting counts from now, not from a crash's leftover hold of it (a
leftover of yesterday left today's slot free), and a slot a pass frees for its own later lead is that lead's to take
(the pass deferred itself until the cap's period ended). Each test drives one interleaving deterministically on the
in-memory fakes."""

from __future__ import annotations

from collections.abc import Collection
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
from test_router_deciders_contended import CAPPED, START, account_of, against, lead, offers_of
from test_router_pending_holds import CrashingTake

from leadflow_router.domain.model import Agent

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


async def test_a_slot_a_pass_frees_for_its_own_later_lead_does_not_defer_the_pass_for_ever() -> None:
    """X is offered to a (day cap 1: full), Y to c; both offers run out together. One pass decides X first: on to c,
    a's slot credited in the pass's usage (`_recount`: "a slot freed is a turn too: a later record may take it",
    `_turns`), so Y, next, is decided to a. Its reservation reads a's line: X still held for good (what a change
    stops counting is freed at flush, after its store) and Y pending: past the cap, Y behind X. The account's changes
    (X's too) are deferred and decided the same way at once, pass after pass: X's count is never freed, so the
    sweeper goes round at once and the account's expiries stay stuck until a's period ends (the day here; a week or
    a month for those caps), no TTL ends it. Left by 36fd55b (its parent loops the same way). Expected: both
    re-offered within a few passes, a counting one lead at most."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"), Agent("c", "C"))
    now = [START]
    records, out, capacity = FakeRecords(), Published(), FakeCapacity()
    consumer, sweeper = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, capacity=capacity
    )
    again: list[int | None] = []
    sweeper.on_deadline = again.append
    x, y = lead("acme", START, 1), lead("acme", START, 2)
    assert not await consumer.on_leads_received([x, y])
    assert (offers_of(out, x), offers_of(out, y)) == (["a"], ["c"])
    now[0] = START + timedelta(minutes=16)
    passes, again[:] = 0, [None]
    while again and passes < 5:  # a deferred change asks for another pass at once
        again.clear()
        await sweeper.sweep_once()
        passes += 1
    assert (len(offers_of(out, x)), len(offers_of(out, y))) == (2, 2), (
        f"after {passes} passes X offered to {offers_of(out, x)}, Y to {offers_of(out, y)}"
    )
    assert len(against(records, "a")) <= 1


async def test_a_batch_redelivered_after_midnight_over_its_leftover_does_not_take_an_agent_past_its_day_cap() -> None:
    """A batch (N1 from the Website, N2 from Zillow; b, day cap 1, next in both rotations) is decided at 23:59: N1 to
    b, held pending, N2 to c (b at its cap); the consumer dies before its take (N1's pending hold of b is left, 10
    minutes). Delivered again at 00:01: N1 goes to b again (its own leftover is not another lead: `seen_by`), and
    `_recount`'s `count(b, N1)` keeps the leftover's time (yesterday 23:59), so the batch's usage shows b with no
    lead today and N2 goes to b too. b's line ranks N1 by the leftover (yesterday): one lead today, within the cap.
    Flushed, N1 and N2 are held for good from 00:01: b counts two leads today. Before 36fd55b the batch read usage
    without its own leads' holds, so N1 counted from now and N2 skipped b."""
    acme = account_of("acme", Agent("b", "B", availability=CAPPED), Agent("c", "C"))
    late = START.replace(hour=23, minute=59)
    now = [late]
    records, out, capacity, rotations = FakeRecords(), Published(), FakeCapacity(), CrashingTake()
    consumer = router_on_fakes(
        acme, clock=lambda: now[0], records=records, publish=out, rotations=rotations, capacity=capacity
    )
    n1, n2 = lead("acme", late, 1), lead("acme", late, 2, "Zillow")
    rotations.crash = True
    with pytest.raises(ConnectionError):
        await consumer.on_leads_received([n1, n2])
    left = sorted((lead_id, agent) for lead_id, agent, _ in capacity.pending)
    assert (str(n1.event_id), "b") in left, f"the crashed batch held N1 for b ({left})"
    now[0] = late + timedelta(minutes=2)  # 00:01 the next day: the leftover is not forgotten yet (10 minutes)
    assert not await consumer.on_leads_received([n1, n2])
    midnight_ms = int(now[0].replace(hour=0, minute=0).timestamp() * 1000)
    today = {lead_id for lead_id, (_, agents) in capacity.held.items() if agents.get("b", 0) >= midnight_ms}
    assert max(len(against(records, "b")), len(today)) <= 1, (
        f"b (day cap 1) counts {len(against(records, 'b'))} leads held from today ({len(today)}): N1 offered to"
        f" {offers_of(out, n1)}, N2 to {offers_of(out, n2)}"
    )


class RivalKeepsTheSlot(FakeCapacity):
    """A rival decider (a stalled replica) that holds a's last slot whenever this one reserves, and lets it go when
    this one backs off: every pass finds a past its cap with the rival first in line."""

    async def pend(self, by: str, holds: list[tuple[str, str, tuple[str, ...]]], at_ms: int) -> None:
        await super().pend(by, holds, at_ms)
        await super().pend("rival", [("rival-lead", "acme", ("a",))], at_ms - 1)

    async def unpend(self, by: Collection[str], lead_ids: Collection[str]) -> None:
        await super().unpend(by, lead_ids)
        await super().unpend(["rival"], ["rival-lead"])


async def test_a_pass_deferred_again_and_again_waits_longer_each_time_instead_of_going_round_at_once() -> None:
    """X is offered to b; it runs out and the pass decides it to a (day cap 1). A rival takes a's slot at every
    reservation (and gives it back when this one backs off), so every pass defers X's change. Until session 34 each
    pass asked the sweeper to go round again at once: a hot loop for as long as the rival held on (a core burnt, the
    database with it). Expected: the first retry at once, then pauses growing to `DEFERRED_PAUSE_MAX_MS`; X still
    offered once the rival is gone, and the pauses start over."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"))
    now = [START]
    records, out, capacity, rotations = FakeRecords(), Published(), RivalKeepsTheSlot(), FakeRotations()
    consumer, sweeper = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, rotations=rotations, capacity=capacity
    )
    asked: list[int | None] = []
    sweeper.on_deadline = asked.append
    rotations.positions["acme:Website"] = 1
    x = lead("acme", START, 1)
    assert not await consumer.on_leads_received([x])
    assert offers_of(out, x) == ["b"]
    now[0] = START + timedelta(minutes=16)  # the offer ran out
    now_ms = int(now[0].timestamp() * 1000)
    pauses = []
    for _ in range(9):
        asked.clear()
        await sweeper.sweep_once()
        assert asked, "the deferred change asks for another pass"
        pauses.append(min(at for at in asked if at is not None) - now_ms)
    assert offers_of(out, x) == ["b"], "a is past its cap while the rival holds the slot"
    assert pauses == [0, 50, 100, 200, 400, 800, 1600, 2000, 2000], pauses
    capacity.pend = FakeCapacity.pend.__get__(capacity)  # type: ignore[method-assign]  # the rival is gone
    asked.clear()
    await sweeper.sweep_once()
    assert offers_of(out, x) == ["b", "a"]
    assert sweeper._deferred_passes == 0, "a pass that stored its changes starts the pauses over"
