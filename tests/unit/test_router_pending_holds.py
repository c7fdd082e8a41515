"""Helper 161's review (session 33) of d8bd169, pending holds (decision 0061, amended in session 33): a late flush
writes no older count over a later change's (each lead's count carries its record version), a batch refused before
it stored anything drops its pending holds, and a crash's leftover pending hold counts against its agent until its
time is past (it cannot be told from a live rival's: helper 162), but is never another lead for the lead it holds
(session 34: a pass or a batch after the crash goes on at once). Each test drives one interleaving
deterministically: a hook in a fake store runs the other decider at the exact point named."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from fakes_router import (
    FakeCapacity,
    FakeContacts,
    FakeErasures,
    FakeRecords,
    FakeRotations,
    Published,
    deciders_sharing,
    router_on_fakes,
)
from test_router_deciders_contended import CAPPED, START, Hook, account_of, against, lead, offers_of

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import counted
from leadflow_router.domain.contacts import contact_keys
from leadflow_router.domain.model import Agent
from leadflow_router.domain.record import Take
from leadflow_router.handlers import ContactErasedMeanwhileError, TurnsContendedError
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import EraseContact, EraseContactPayload
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


def activity(account_id: str, event: LeadReceived, agent: str, action: ActivityAction, at: datetime) -> LeadActivity:
    return LeadActivity.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadActivityPayload(lead_id=event.event_id, agent_id=agent, action=action),
    )


class HookedAdvance(FakeRotations):
    """`advance_many` (the first step of a flush's effects, before `_hold`) that first runs `before_advance` once:
    another decider landing between a decider's store and its flush's count."""

    def __init__(self) -> None:
        super().__init__()
        self.before_advance: Hook | None = None

    async def advance_many(self, positions: dict[str, int]) -> None:
        if self.before_advance is not None:
            hook, self.before_advance = self.before_advance, None
            await hook()
        await super().advance_many(positions)


async def test_a_late_flush_of_a_new_lead_does_not_write_its_count_over_a_later_change_s() -> None:
    """Consumer one routes new lead X to b (day cap 1) and stores it; before its flush reaches `_hold`, b declines X
    on consumer two: two first finishes X's batch document (X held {b} for good, one's pending hold dropped), stores
    the decline (X due at once), and its sweeper offers X on to c (day cap 1), stored and flushed (X held {c}). Then
    one's flush, of the record as it stored it, goes on: since d8bd169 a new lead's count is no longer held at the
    reservation (capacity kept in the effects, written at flush), so `hold_many` writes X {b} over X {c}. X is open
    to c but counts against b only: b is kept from leads it does not have, and c takes a new lead N past its cap (X
    and N). On d8bd169's parent a new lead's count was held at its reservation and its flush wrote none (this test
    passes there). Expected: X's holds are what its stored record counts, and at most one lead counts against c."""
    acme = account_of("acme", Agent("b", "B", availability=CAPPED), Agent("c", "C", availability=CAPPED))
    now = [START]
    records, out, capacity, rotations = FakeRecords(), Published(), FakeCapacity(), HookedAdvance()
    one, two = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, rotations=rotations, capacity=capacity
    )
    x = lead("acme", START, 1)

    async def b_declines_x_on_two() -> None:
        await two.on_activity(activity("acme", x, "b", ActivityAction.DECLINE, now[0]))
        await two.sweep_once()  # X due at once: offered on to c

    rotations.before_advance = b_declines_x_on_two
    assert not await one.on_leads_received([x])
    assert offers_of(out, x)[-1] == "c", f"X declined by b, offered on to c ({offers_of(out, x)})"
    stored = decode_record(records.docs[str(x.event_id)])
    held = sorted(capacity.held.get(str(x.event_id), ("acme", {}))[1])
    n = lead("acme", START + timedelta(minutes=1), 2)
    now[0] = START + timedelta(minutes=1)
    assert not await two.on_leads_received([n])
    assert (held, len(against(records, "c")) <= 1) == (sorted(counted(stored.state)), True), (
        f"X is stored counting {sorted(counted(stored.state))} but held against {held}: a late flush wrote its count"
        f" over the later change's; c has a day cap of 1 and counts {against(records, 'c')} (N offered to"
        f" {offers_of(out, n)})"
    )


async def test_a_batch_refused_before_it_stores_anything_is_routed_when_tried_again() -> None:
    """A batch (repeat R of an erased lead F, whose contact key a late registration left naming F, and new lead N) is
    decided: N to b (day cap 1), held pending. `_store` then refuses the batch before anything of it is stored
    (`ContactErasedMeanwhileError`, decision 0050: the consumer tries it again a moment later), and nothing drops the
    batch's pending holds: N's hold is left counting against b until the TTL forgets it (10 minutes). Tried again, R
    is a new lead and takes b's turn: the batch reads usage without its own leads' holds (b: 0), so it decides R to
    b, holds it and reads b again: R and N's leftover hold, past b's cap, and N's leftover (held earlier) is first in
    line. It backs off and decides the same again, TURN_ATTEMPTS times: TurnsContendedError, at every try until the
    leftover is forgotten (the edge then dead-letters). A crash between the holds and the store, followed by a
    redelivery that decides a lead elsewhere, ends the same way. Passes on d8bd169's parent (its retry's hold replaced
    N's). Expected: the batch tried again is routed, and no
    pending hold is left."""
    acme = account_of(
        "acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED), Agent("c", "C", availability=CAPPED)
    )
    now = [START]
    capacity, contacts, records, out = FakeCapacity(), FakeContacts(), FakeRecords(), Published()
    service = router_on_fakes(acme, clock=lambda: now[0], records=records, contacts=contacts, publish=out,
                              capacity=capacity, erasures=FakeErasures())  # fmt: skip
    first = lead("acme", START, 1)
    assert not await service.on_leads_received([first])
    assert offers_of(out, first) == ["a"]
    erase = EraseContactPayload(by_user_id="boss", reason="ticket 7", email="pat1@example.com")
    await service.on_command(EraseContact.create(account_id="acme", occurred_at=START, payload=erase))
    key = next(iter(contact_keys("acme", "pat1@example.com", None)))
    contacts.leads[key] = str(first.event_id)  # registered again after the erasure's last pass (decision 0050)
    repeat, n = lead("acme", START, 1), lead("acme", START, 9)
    with pytest.raises(ContactErasedMeanwhileError):
        await service.on_leads_received([repeat, n])
    assert not records.docs.keys() & {str(repeat.event_id), str(n.event_id)}, "nothing of the batch stored"
    left = dict(capacity.pending)
    now[0] = START + timedelta(seconds=1)  # the consumer tries the batch again
    try:
        assert not await service.on_leads_received([repeat, n])
        tried_again = "routed"
    except TurnsContendedError as exc:
        tried_again = repr(exc)
    assert (tried_again, capacity.pending) == ("routed", {}), (
        f"tried again: {tried_again}; pending holds the refused batch left: {left}, after: {capacity.pending}"
    )


class CrashingTake(FakeRotations):
    """A `take` that fails once (`crash`): the process dies after its pending holds, before its turns are taken."""

    def __init__(self) -> None:
        super().__init__()
        self.crash = False

    async def take(self, moves: dict[str, Take]) -> set[str]:
        if self.crash and moves:
            self.crash = False
            raise ConnectionError("the process died")
        return await super().take(moves)


def b_line(capacity: FakeCapacity) -> set[str]:
    """The leads counting against b now, held for good or pending (a lead once)."""
    return {
        lead_id for lead_id in {*capacity.held, *(k[0] for k in capacity.pending)} if "b" in capacity.counting(lead_id)
    }


async def test_a_pass_after_a_crash_between_its_holds_and_its_store_goes_on_at_once_within_the_caps() -> None:
    """P1 is offered to d, P2 to a; both offers run out. A sweep pass decides P1 to b (day cap 1) and P2 to c, holds
    them pending and dies before its take (nothing stored: P1's pending hold of b is left, 10 minutes). A consumer
    routes two new leads meanwhile (b skipped as at its cap: documented). Until session 34 the next pass read usage
    without all its own leads' holds (P1's leftover not counted: b at 0) and decided P1 to a, P2 to b; holding P2 it
    found P1's leftover ahead of it in b's line, past the cap: the account's changes were deferred and decided again
    at once, the same way, pass after pass, until the TTL forgot the leftover (ten minutes of a sweeper going round
    at once, the account's expiries stuck). A decision now reads every lead's holds but its own (P1's leftover is
    not another lead for P1; it is one for P2: `CountedLeads.seen_by`). Expected: P1 and P2 re-offered by the next
    pass, none deferred, b counting one lead at most; once the leftover is forgotten, b is offered leads again."""
    acme = account_of("acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED), Agent("c", "C"), Agent("d", "D"))
    now = [START]
    records, out, capacity, rotations = FakeRecords(), Published(), FakeCapacity(), CrashingTake()
    sweeper, consumer = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, rotations=rotations, capacity=capacity
    )
    again: list[int | None] = []
    sweeper.on_deadline = again.append  # a deferred change asks the sweeper to go round again at once
    rotations.positions["acme:Website"] = 3
    p1, p2 = lead("acme", START, 1), lead("acme", START, 2)
    assert not await consumer.on_leads_received([p1])
    assert not await consumer.on_leads_received([p2])
    assert (offers_of(out, p1), offers_of(out, p2)) == (["d"], ["a"])
    now[0] = START + timedelta(minutes=16)  # both offers ran out
    rotations.crash = True
    with pytest.raises(ConnectionError):
        await sweeper.sweep_once()
    left = sorted((lead_id, agent) for lead_id, agent, _ in capacity.pending)
    assert (str(p1.event_id), "b") in left, f"the crashed pass held P1 for b ({left})"
    for k in range(2):
        assert not await consumer.on_leads_received([lead("acme", now[0], 10 + k)])
    again.clear()
    await sweeper.sweep_once()
    deferred = [at for at in again if at == int(now[0].timestamp() * 1000)]  # due again now: decided again at once
    assert (len(offers_of(out, p1)), len(offers_of(out, p2)), deferred) == (2, 2, []), (
        f"P1 offered to {offers_of(out, p1)}, P2 to {offers_of(out, p2)}; deferred {deferred}; pending holds {left}"
    )
    assert len(b_line(capacity)) <= 1, f"b past its day cap of 1: {sorted(b_line(capacity))}"
    for key in [key for key in capacity.pending if key[0] == str(p1.event_id) and key[1] == "b"]:
        del capacity.pending[key]  # the TTL index forgets the crash's leftover
    later = [lead("acme", now[0], 20 + k) for k in range(4)]  # a whole round of the rotation: b's turn among them
    for new in later:
        assert not await consumer.on_leads_received([new])
    assert "b" in {agent for new in later for agent in offers_of(out, new)}, "b is free again once it is forgotten"


async def test_a_batch_redelivered_after_a_crash_between_its_holds_and_its_store_is_routed_within_the_caps() -> None:
    """A batch of new leads N1, N2 is decided (N1 to b, day cap 1), held pending, and the consumer dies before its
    take: N1's pending hold of b is left (10 minutes), nothing stored, the offsets not committed. Another consumer
    routes two leads meanwhile (b skipped: at its cap), so the rotation stands elsewhere when the batch is delivered
    again. Until session 34 the batch read usage without all its own leads' holds: b at 0, N1 decided to a and N2
    to b, behind N1's leftover in b's line, past the cap: backed off and decided the same TURN_ATTEMPTS
    times, TurnsContendedError at every delivery until the TTL (the edge then dead-letters the leads). Expected: the
    batch delivered again is routed, b counting one lead at most."""
    acme = account_of("acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED), Agent("c", "C"))
    now = [START]
    records, out, capacity, rotations = FakeRecords(), Published(), FakeCapacity(), CrashingTake()
    first, other = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, rotations=rotations, capacity=capacity
    )
    rotations.positions["acme:Website"] = 1  # b is next
    n1, n2 = lead("acme", START, 1), lead("acme", START, 2)
    rotations.crash = True
    with pytest.raises(ConnectionError):
        await first.on_leads_received([n1, n2])
    left = sorted((lead_id, agent) for lead_id, agent, _ in capacity.pending)
    assert (str(n1.event_id), "b") in left, f"the crashed batch held N1 for b ({left})"
    for k in (3, 4):  # to c and a: b skipped, at its cap with N1's leftover
        assert not await other.on_leads_received([lead("acme", START, k)])
    try:
        assert not await first.on_leads_received([n1, n2])
        delivered_again = "routed"
    except TurnsContendedError as exc:
        delivered_again = repr(exc)
    assert delivered_again == "routed", f"delivered again: {delivered_again}; pending holds left: {left}"
    assert (len(offers_of(out, n1)), len(offers_of(out, n2))) == (1, 1)
    assert len(b_line(capacity)) <= 1, f"b past its day cap of 1: {sorted(b_line(capacity))}"
