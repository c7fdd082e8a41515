"""Two deciders of one account at once, contended (helper 157's review of 37c05e9, session 32; decisions 0010 and 0061
amended): a lost key gives back the others taken with it, one account's contention holds back its own changes only, a
change frees a slot only once stored, two deciders at one pace do not both give up (the first in line waits for the
other to give its hold back, one order over every agent), and a decider that backs off drops only its own pending
holds (session 33), never what a stored record counts.

Each test drives one interleaving deterministically: a hook in a fake store runs the other decider at the exact
point named (no sleeps), or a barrier with a deadline makes two deciders read at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import (
    FakeCapacity,
    FakeContacts,
    FakeRecords,
    FakeRotations,
    Published,
    deciders_sharing,
    router_on_fakes,
)

from leadflow_router.adapters.codec import decode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.availability import Place, counted
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.domain.record import RoutingRecord, Take
from leadflow_router.handlers import RouterService
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import DistributeLead, DistributeLeadPayload, DistributionMode
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

CAPPED = AgentAvailability.model_validate({"caps": {"day": 1}})
START = datetime(2026, 5, 5, 10, 0, tzinfo=UTC)

Hook = Callable[[], Awaitable[None]]


def account_of(account_id: str, *agents: Agent) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=account_id,
        name=account_id.title(),
        roster=(Agent("boss", "Boss", round_robin=False), *agents),
        round_robin=True,
    )


def lead(account_id: str, at: datetime, n: int, source: str = "Website") -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=f"pat{n}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source),
        ),
    )


def offers_of(out: Published, event: LeadReceived) -> list[str]:
    return [
        e.payload.agent_id
        for e in out.lead_events()
        if isinstance(e, LeadOffered) and e.payload.lead_id == event.event_id
    ]


def against(records: FakeRecords, agent: str) -> list[str]:
    return sorted(i for i, doc in records.docs.items() if agent in counted(decode_record(doc).state))


class HookedRotations(FakeRotations):
    """`take`s that first run `before_take` (when set), as another decider that takes its turn just before."""

    def __init__(self) -> None:
        super().__init__()
        self.before_take: Hook | None = None

    async def take(self, moves: dict[str, Take]) -> set[str]:
        if self.before_take is not None:
            hook, self.before_take = self.before_take, None
            await hook()
        return await super().take(moves)


async def test_a_sweep_that_loses_one_account_s_turn_does_not_skip_another_account_s_turn() -> None:
    """Two due leads in two accounts, each offered to a (cursor 1 in each: next is b). The sweeper decides both
    (acme's A1 at acme's turn 1, beta's B1 at beta's turn 1); just before its take, a consumer routes a new acme lead
    and takes acme's turn 1. The sweeper's one `take` then moves beta's cursor 1 -> 2 and loses acme's, so `_reserve`
    answers None and the pass leaves both changes out ("decided again at once"), but nothing gives beta's turn back
    (`sweep_once` skips `_give_back` when contended). The next pass reads beta at 2 and re-offers B1 to c: b's turn in
    beta is skipped although nothing crashed and nobody else decided in beta. Expected: B1 to b, beta's cursor at 2."""
    acme, beta = (
        account_of("acme", Agent("a", "A"), Agent("b", "B"), Agent("c", "C")),
        account_of("beta", Agent("a", "A"), Agent("b", "B"), Agent("c", "C")),
    )
    now = [START]
    records, out, rotations = FakeRecords(), Published(), HookedRotations()
    shared = {"records": records, "publish": out, "rotations": rotations, "contacts": FakeContacts()}
    sweeper = router_on_fakes(acme, beta, clock=lambda: now[0], **shared)
    consumer = router_on_fakes(acme, beta, clock=lambda: now[0], **shared)
    a1, b1 = lead("acme", START, 1), lead("beta", START, 2)
    assert not await consumer.on_leads_received([a1, b1])
    assert offers_of(out, a1) == ["a"]
    assert offers_of(out, b1) == ["a"]
    now[0] = START + timedelta(minutes=16)  # both offers ran out
    a2 = lead("acme", now[0], 3)

    async def consumer_takes_acme_s_turn() -> None:
        assert not await consumer.on_leads_received([a2])

    rotations.before_take = consumer_takes_acme_s_turn
    await sweeper.sweep_once()
    assert offers_of(out, a2) == ["b"]
    for _ in range(3):  # the sweeper goes round again (on_deadline): no contention now
        await sweeper.sweep_once()
    assert offers_of(out, b1) == ["a", "b"], (
        f"beta's turn 1 (b) was skipped by a pass that lost acme's turn: B1 offered to {offers_of(out, b1)}; "
        f"cursors {rotations.positions}"
    )
    assert rotations.positions["beta:Website"] == 2


async def test_one_account_s_contention_does_not_hold_back_every_other_account_s_expiries() -> None:
    """A busy account (a new lead taking acme's rotation while each sweep pass decides) makes every pass contended,
    and a contended pass leaves out every turn-taking change of the pass, of every account: beta's expired offer is
    never re-offered while acme stays busy (here five passes). Expected: beta's lead re-offered by the first pass,
    whatever another account's rotation did meanwhile."""
    acme, beta = (
        account_of("acme", Agent("a", "A"), Agent("b", "B"), Agent("c", "C")),
        account_of("beta", Agent("a", "A"), Agent("b", "B"), Agent("c", "C")),
    )
    now = [START]
    records, out, rotations = FakeRecords(), Published(), HookedRotations()
    shared = {"records": records, "publish": out, "rotations": rotations, "contacts": FakeContacts()}
    sweeper = router_on_fakes(acme, beta, clock=lambda: now[0], **shared)
    consumer = router_on_fakes(acme, beta, clock=lambda: now[0], **shared)
    a1, b1 = lead("acme", START, 1), lead("beta", START, 2)
    assert not await consumer.on_leads_received([a1, b1])
    now[0] = START + timedelta(minutes=16)
    passes = 0
    for n in range(5):
        busy = lead("acme", now[0], 10 + n)

        async def a_new_acme_lead(event: LeadReceived = busy) -> None:
            assert not await consumer.on_leads_received([event])

        rotations.before_take = a_new_acme_lead
        await sweeper.sweep_once()
        passes += 1
        if len(offers_of(out, b1)) == 2:
            break
    assert len(offers_of(out, b1)) == 2, (
        f"beta's expired lead was not re-offered in {passes} passes: acme's contention held back the whole pass"
    )
    assert passes == 1


class HookedRecords(FakeRecords):
    """`compare_and_set` and `get_many` that run a hook (when set) first, or after a compare-and-set (`after_cas`):
    another writer landing just then."""

    def __init__(self) -> None:
        super().__init__()
        self.before_cas: Hook | None = None
        self.after_cas: Hook | None = None
        self.after_get_many: Hook | None = None

    async def compare_and_set(self, record: RoutingRecord, expected_version: int) -> bool:
        if self.before_cas is not None:
            hook, self.before_cas = self.before_cas, None
            await hook()
        stored = await super().compare_and_set(record, expected_version)
        if self.after_cas is not None:
            hook, self.after_cas = self.after_cas, None
            await hook()
        return stored

    async def get_many(self, lead_ids: list[str]) -> dict[str, RoutingRecord]:
        found = await super().get_many(lead_ids)  # read before the other writer lands
        if self.after_get_many is not None:
            hook, self.after_get_many = self.after_get_many, None
            await hook()
        return found


def activity(
    account_id: str, event: LeadReceived, agent: str, action: ActivityAction, made_at: datetime
) -> LeadActivity:
    return LeadActivity.create(
        account_id=account_id,
        occurred_at=made_at,
        payload=LeadActivityPayload(lead_id=event.event_id, agent_id=agent, action=action),
    )


async def test_a_slot_a_sweep_frees_is_not_given_away_before_the_sweep_s_change_is_stored() -> None:
    """a (day cap 1) has lead X on offer; the offer runs out. The sweeper decides X on to b and `_reserve` writes X's
    hold as {b} before X's compare-and-set: a's slot looks free from then on. Before that compare-and-set, a consumer
    routes new lead N: a is next and, by the holds, under its cap, so N goes to a (its own read-again sees one lead).
    Then a's claim of X, made before X's deadline and read late (consumer lag: in time, R8), is stored; the sweeper's
    compare-and-set loses and the holds are put back as stored (X: {a}). a now counts X and N: past its cap, the
    very race 0061 (amended) says cannot happen. Before 37c05e9 the freeing hold was written only at flush, after
    the store. Expected: at most one lead counts against a."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"))
    now = [START]
    records, out, capacity = HookedRecords(), Published(), FakeCapacity()
    sweeper, consumer = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, capacity=capacity
    )
    x = lead("acme", START, 1)
    assert not await consumer.on_leads_received([x])
    assert offers_of(out, x) == ["a"]
    now[0] = START + timedelta(minutes=16)  # X's offer (15 min) ran out
    n = lead("acme", now[0], 2)
    claim = activity("acme", x, "a", ActivityAction.CALL, START + timedelta(minutes=14))

    async def a_new_lead_then_a_s_late_claim() -> None:
        assert not await consumer.on_leads_received([n])
        await consumer.on_activity(claim)

    records.before_cas = a_new_lead_then_a_s_late_claim
    await sweeper.sweep_once()
    claimed = decode_record(records.docs[str(x.event_id)]).state
    assert claimed is not None
    assert claimed.holder == "a", "a's claim made in time is stored"
    assert len(against(records, "a")) <= 1, (
        f"a has a day cap of 1 but counts {against(records, 'a')} (X claimed, N offered: {offers_of(out, n)})"
    )


class LockstepCapacity(FakeCapacity):
    """Usage reads, pending holds, their reads again and their put-backs that meet in pairs (a cyclic barrier with a
    deadline): two deciders going at one pace, each reading when the other reads and writing when the other writes."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs = False
        self._waiting: asyncio.Event | None = None

    async def _meet(self) -> None:
        if not self.pairs:
            return
        if self._waiting is None:
            self._waiting = met = asyncio.Event()
            with contextlib.suppress(TimeoutError):  # the other gave up or finished: go on alone
                await asyncio.wait_for(met.wait(), timeout=2.0)
            if self._waiting is met:
                self._waiting = None
        else:
            met, self._waiting = self._waiting, None
            met.set()

    async def at_one_pace(self, *deciders: Awaitable[object]) -> list[object]:
        """Run the deciders paired until the first is done (the other goes on alone: nobody left to meet)."""

        async def until_done(decider: Awaitable[object]) -> object:
            try:
                return await decider
            finally:
                self.pairs = False
                if self._waiting is not None:
                    self._waiting.set()

        self.pairs = True
        return await asyncio.gather(*(until_done(d) for d in deciders), return_exceptions=True)

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        await self._meet()
        return await super().places(account_id, agent_ids, since_ms)

    async def pend(self, by: str, holds: list[tuple[str, str, tuple[str, ...]]], at_ms: int) -> None:
        await self._meet()
        await super().pend(by, holds, at_ms)

    async def hold_many(self, holds: list[tuple[str, str, tuple[str, ...], int]], at_ms: int) -> None:
        await self._meet()
        await super().hold_many(holds, at_ms)

    async def unpend(self, by: Collection[str], lead_ids: Collection[str]) -> None:
        await self._meet()
        await super().unpend(by, lead_ids)


async def test_two_deciders_at_one_pace_do_not_both_give_up_a_capped_agent_s_last_slot() -> None:
    """Two consumers (two replicas, two partitions) each route one lead of one account at the same moment: one from
    the Website, one from Zillow (two rotations, each at a). a has a day cap of 1. Each reads a's usage (0), decides
    a, writes its hold, reads a again and finds 2: each thinks the other took the slot, puts its hold back and
    decides again, at the same pace, TURN_ATTEMPTS times, then raises TurnsContendedError: neither lead is routed
    (the edge retries, then dead-letters). 0061 (amended) says "whichever reads second sees both holds, so at most
    one goes on: the other ... decides again"; here none goes on. Expected: both leads routed, at most one to a."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"))
    records, out, capacity = FakeRecords(), Published(), LockstepCapacity()
    one, two = deciders_sharing(acme, clocks=[lambda: START] * 2, records=records, publish=out, capacity=capacity)
    web, zillow = lead("acme", START, 1, "Website"), lead("acme", START, 2, "Zillow")
    results = await capacity.at_one_pace(one.on_leads_received([web]), two.on_leads_received([zillow]))
    failed = [repr(r) for r in results if isinstance(r, BaseException)]
    assert not failed, f"two deciders at one pace both gave up: {failed}"
    assert offers_of(out, web)
    assert offers_of(out, zillow)
    assert len(against(records, "a")) <= 1


async def test_holds_put_back_after_a_lost_sweep_are_not_older_than_the_stored_record() -> None:
    """The sweeper's change of X (a's offer ran out: on to b) loses to a broker's hand offer of X to b; before its
    `_give_back` puts back what it reserved, a's ask-back of its missed offer is stored (X open to b and a, its count
    {a, b} held at its flush). Session 32's put-back wrote X's holds "as the stored record says", read before the
    ask-back landed ({b}: X no longer counting against a, open to a); since session 33 a put-back drops only the
    sweeper's own pending holds. Expected: X's holds are what its stored record counts, and no pending hold is
    left."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"))
    now = [START]
    records, out, capacity = HookedRecords(), Published(), FakeCapacity()
    sweeper, consumer = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 2, records=records, publish=out, capacity=capacity
    )
    x = lead("acme", START, 1)
    assert not await consumer.on_leads_received([x])
    assert offers_of(out, x) == ["a"]
    now[0] = START + timedelta(minutes=16)
    by_hand = DistributeLeadPayload(
        lead_id=x.event_id, distribution_id=uuid.uuid4(), agent_id="b", mode=DistributionMode.OFFER,
        claim_window_seconds=600, by_user_id="boss",
    )  # fmt: skip
    ask_back = activity("acme", x, "a", ActivityAction.ASK_BACK, now[0])

    async def a_s_ask_back() -> None:
        await consumer.on_activity(ask_back)

    async def a_hand_offer_to_b() -> None:
        await consumer.on_command(DistributeLead.create(account_id="acme", occurred_at=now[0], payload=by_hand))
        records.after_cas = a_s_ask_back  # lands after the sweeper's compare-and-set lost, before its put-back

    records.before_cas = a_hand_offer_to_b
    await sweeper.sweep_once()
    stored = decode_record(records.docs[str(x.event_id)])
    assert "a" in counted(stored.state), f"a's ask-back was stored (X counts {sorted(counted(stored.state))})"
    held = sorted(capacity.held.get(str(x.event_id), ("acme", {}))[1])
    assert held == sorted(counted(stored.state)), (
        f"X's holds {held}, its stored record counts {sorted(counted(stored.state))}"
    )
    assert not capacity.pending, f"pending holds left: {capacity.pending}"


# Helper 160's review (session 32) of 6d8d5b3: two deciders at one pace whose batches are each first in line at
# another agent (closed in session 33: the line orders pending holds by decider, `Place.rank`).


def crossed() -> tuple[list[LeadReceived], list[LeadReceived]]:
    """Two batches of two leads, (Y1, Y2) from the Website and (W1, W2) from Zillow, whose ids order Y1 before W1 and
    W2 before Y2 (the line's tie-break when both were counted at the same moment)."""
    n = 0
    while True:
        n += 4
        y1, y2 = lead("acme", START, n, "Website"), lead("acme", START, n + 1, "Website")
        w1, w2 = lead("acme", START, n + 2, "Zillow"), lead("acme", START, n + 3, "Zillow")
        if str(y1.event_id) < str(w1.event_id) and str(w2.event_id) < str(y2.event_id):
            return [y1, y2], [w1, w2]


async def test_two_batches_first_in_line_for_different_agents_do_not_both_give_up_for_ever() -> None:
    """a and b have a day cap of 1. Two consumers route a batch each at one pace (reading and holding together, same
    clock): the Website batch (Y1, Y2) and the Zillow batch (W1, W2), each rotation at a, so Y1 and W1 go to a, Y2 and
    W2 to b. Each holds, reads a and b again: both past their cap. The line (same time, then lead id) puts Y1 first
    at a but W2 first at b: each batch is first in line for one agent and not for the other, so `_first_in_line` is
    False for both and both give their holds back at once; neither is waited for. They decide again the same way,
    TURN_ATTEMPTS times, and both raise TurnsContendedError: no lead routed, although a and b each had a slot for
    one of them. Expected: both batches routed (two of them to the boss: caps), at most one lead
    counted against each of a and b. Since session 33 pending holds stand in line by decider (when it held, then its
    token), one order at every agent: one batch is first at both, waits, and goes on; the other decides again."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B", availability=CAPPED))
    records, out, capacity = FakeRecords(), Published(), LockstepCapacity()
    one, two = deciders_sharing(acme, clocks=[lambda: START] * 2, records=records, publish=out, capacity=capacity)
    web, zillow = crossed()
    results = await capacity.at_one_pace(one.on_leads_received(web), two.on_leads_received(zillow))
    failed = [repr(r) for r in results if isinstance(r, BaseException)]
    assert not failed, f"two deciders at one pace both gave up: {failed}"
    assert all(str(event.event_id) in records.docs for event in web + zillow), (
        "each lead routed (offered or fallen back)"
    )
    assert len(against(records, "a")) <= 1
    assert len(against(records, "b")) <= 1


# Helper 160's review (session 32) of 6d8d5b3: holds put back by a decider that backs off wiped another decider's
# hold of the same lead (closed in session 33: pending holds are owned by their decider, `CapacityLog.pend`).


class PairedRotations(FakeRotations):
    """The first two `take`s meet (a barrier with a deadline): both deciders read the cursors before either took.
    The first to arrive takes, then lets the other take (it loses), waits until the other is done (`other_done`),
    runs `then` and returns; the second takes once the first did."""

    def __init__(self, capacity: LockstepCapacity) -> None:
        super().__init__()
        self.capacity = capacity
        self.arrived = 2  # paired once the test sets it to 0
        self.both, self.first_took, self.other_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.then: Hook | None = None

    async def take(self, moves: dict[str, Take]) -> set[str]:
        if not moves or self.arrived >= 2:
            return await super().take(moves)
        self.arrived += 1
        self.capacity.pairs = False  # both read and held at one pace: from here on, one at a time
        if self.arrived == 1:
            with contextlib.suppress(TimeoutError):  # the other took no turn: go on alone
                await asyncio.wait_for(self.both.wait(), timeout=2.0)
            lost = await super().take(moves)
            self.first_took.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.other_done.wait(), timeout=2.0)
            if self.then is not None:
                await self.then()
            return lost
        self.both.set()
        await asyncio.wait_for(self.first_took.wait(), timeout=2.0)
        return await super().take(moves)


async def test_a_replica_s_put_back_does_not_wipe_the_hold_of_a_change_another_sweeper_is_storing() -> None:
    """X is offered to a; the offer runs out. Two sweepers (two replicas) fire X at once, reading and holding at one
    pace: each decides it on to b (day cap 1) and holds X {a, b}, and each reads b within its cap. Sweeper one takes
    the Website turn; sweeper two's take then loses it, and two puts X's holds back "as the stored record says": X is
    still stored offered to a (one has not stored yet), so X's hold becomes {a}: one's hold of b is wiped. A Zillow
    lead N is routed now (b next in Zillow's rotation): b reads 0 leads, N goes to b (its read-again sees N alone).
    Then one stores X offered to b, and its flush holds X {b}. b counts X and N, past its day cap of 1, although each
    decider that went on read b within it (the safety argument of 0061 amended). Expected: at most one lead counts
    against b. Since session 33 each sweeper's hold is its own (pending, in its name) and two drops only its own."""
    acme = account_of("acme", Agent("a", "A"), Agent("b", "B", availability=CAPPED))
    now = [START]
    records, out, capacity = FakeRecords(), Published(), LockstepCapacity()
    rotations = PairedRotations(capacity)
    one, two, consumer = deciders_sharing(
        acme, clocks=[lambda: now[0]] * 3, records=records, publish=out, rotations=rotations, capacity=capacity
    )
    x = lead("acme", START, 1)
    assert not await consumer.on_leads_received([x])
    assert offers_of(out, x) == ["a"]
    rotations.arrived, capacity.pairs = 0, True
    now[0] = START + timedelta(minutes=16)  # X's offer ran out
    n = lead("acme", now[0], 2, "Zillow")
    rotations.positions["acme:Zillow"] = 1  # Zillow's earlier lead went to a: b is next
    seen: dict[str, list[str]] = {}

    async def a_lead_for_b() -> None:  # after the other sweeper put X's holds back, before the first stores X
        seen["X held after the put-back"] = sorted(capacity.held[str(x.event_id)][1])
        assert not await consumer.on_leads_received([n])

    async def sweep(router: RouterService) -> None:
        try:
            await router.sweep_once()
        finally:
            if rotations.first_took.is_set():
                rotations.other_done.set()

    rotations.then = a_lead_for_b
    await asyncio.gather(sweep(one), sweep(two))
    assert offers_of(out, x) == ["a", "b"], f"X re-offered to b once ({seen})"
    assert len(against(records, "b")) <= 1, (
        f"b has a day cap of 1 but counts {against(records, 'b')}: X (to b) and N (offered to {offers_of(out, n)}); "
        f"{seen}"
    )


class StoredMeanwhile(FakeRecords):
    """`insert_batch` that first runs a hook (when set): another replica storing the same leads just before."""

    def __init__(self) -> None:
        super().__init__()
        self.before_insert: Hook | None = None

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if self.before_insert is not None:
            hook, self.before_insert = self.before_insert, None
            await hook()
        return await super().insert_batch(records, batch_id=batch_id, now_ms=now_ms, before_records=before_records)


async def test_a_batch_another_replica_stored_meanwhile_leaves_no_pending_hold_behind() -> None:
    """A rebalance gives one batch of new leads to two consumers at once: the first decides Y (to a, day cap 1) and
    holds it pending; just before it stores, the other consumer routes and stores the same batch (Y to a as well),
    so the first's insert finds Y stored and finishes the other's record instead. Its pending hold of Y is in no
    record it flushes: dropped all the same (session 33), not left counting for 10 minutes. Expected: Y counts
    against a once, for good, and nothing is pending."""
    acme = account_of("acme", Agent("a", "A", availability=CAPPED), Agent("b", "B"))
    records, out, capacity = StoredMeanwhile(), Published(), FakeCapacity()
    first, other = deciders_sharing(acme, clocks=[lambda: START] * 2, records=records, publish=out, capacity=capacity)
    y = lead("acme", START, 1)

    async def the_other_replica_stores_it() -> None:
        assert not await other.on_leads_received([y])

    records.before_insert = the_other_replica_stores_it
    assert not await first.on_leads_received([y])
    assert offers_of(out, y)[:1] == ["a"]
    assert capacity.held == {str(y.event_id): ("acme", {"a": capacity.held[str(y.event_id)][1]["a"]})}
    assert not capacity.pending, f"pending holds left behind: {capacity.pending}"
