"""Two deciders of one account at once on the real MongoDB-wire server (decisions 0010, 0061 amended in session 32):
a sweeper re-offering an expired lead and another replica's consumer routing a new lead, both reading the rotation
and the capped agents' usage before either stores (the reads made to meet, with a deadline). Each takes its turns
and slots before it stores (`RouterService._reserve`, `Rotations.take`); the one that finds them taken decides again.
The in-memory proof is `unit/test_router_concurrent_deciders.py`; this one runs the adapters' commands."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_router import FakeCapacity, FakeRotations, Published
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from router_harness import router_on, router_service

from leadflow_router.adapters.mongo import Capacity, Rotations, ensure_indexes
from leadflow_router.domain.availability import Place
from leadflow_router.domain.record import Take, Taken
from leadflow_shared.collections import ROUTER_CAPACITY, ROUTER_ROTATIONS
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York


def config(caps: dict[str, Any] | None) -> dict[str, Any]:
    agents: list[dict[str, Any]] = [
        {"agent_id": "broker", "name": "Broker", "email": "broker@acme.example", "round_robin": False},
        {"agent_id": "ana", "name": "Ana", "email": "ana@acme.example", **({"caps": caps} if caps else {})},
        {"agent_id": "ben", "name": "Ben", "email": "ben@acme.example"},
        {"agent_id": "cy", "name": "Cy", "email": "cy@acme.example"},
    ]
    return acme(agents)


def acme(agents: list[dict[str, Any]]) -> dict[str, Any]:
    """Acme, round robin on over these agents in this order."""
    account = {"account_id": "acme", "name": "Acme", "round_robin": True, "time_zone": "America/New_York",
               "agents": agents, "roster": [a["agent_id"] for a in agents],
               "sources": [{"name": "Website", "claim_window_seconds": 600}]}  # fmt: skip
    return {"accounts": [account]}


def lead(at: datetime) -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=Contact(first_name="Lead", email=f"l-{uuid.uuid4().hex[:8]}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
    )
    return LeadReceived.create(account_id="acme", payload=payload, occurred_at=at)


class Meeting:
    """Reads that wait for each other, `readers` of them, at most 2 s (a decider reading after the other stored
    does not wait for ever)."""

    def __init__(self, readers: int) -> None:
        self.readers, self._arrived, self._all_in = readers, 0, asyncio.Event()

    async def wait(self) -> None:
        self._arrived += 1
        if self._arrived >= self.readers:
            self._all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), timeout=2.0)


class MeetingRotations(Rotations):
    def __init__(self, db: Any, meeting: Meeting) -> None:
        super().__init__(db)
        self.meeting = meeting

    async def get_many(self, keys: list[str]) -> dict[str, int]:  # a sweep's read
        await self.meeting.wait()
        return await super().get_many(keys)

    async def read_many(self, keys: list[str]) -> dict[str, Taken]:  # a batch of new leads' read
        await self.meeting.wait()
        return await super().read_many(keys)


class MeetingCapacity(Capacity):
    def __init__(self, db: Any, meeting: Meeting) -> None:
        super().__init__(db)
        self.meeting = meeting

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        await self.meeting.wait()  # each decider's first read of them is its usage's
        return await super().places(account_id, agent_ids, since_ms)


def offers(published: Published, *leads: LeadReceived) -> list[tuple[str, str]]:
    ids = {event.event_id: n for n, event in enumerate(leads, 1)}
    return sorted((f"lead {ids[e.payload.lead_id]}", e.payload.agent_id) for e in published.lead_events()
                  if isinstance(e, LeadOffered) and e.payload.lead_id in ids)  # fmt: skip


async def test_a_re_offer_and_a_new_lead_decided_at_once_take_two_turns(mongo_url: str) -> None:
    async with router_on(mongo_url, config(None), now=NOW) as router:
        one = lead(NOW)
        assert not await router.service.on_leads_received([one])
        assert offers(router.published, one) == [("lead 1", "ana")]
        router.clock.now = NOW + timedelta(minutes=11)  # ana's offer ran out
        meeting = Meeting(2)
        sweeper = replace(router.service, rotations=MeetingRotations(router.db, meeting))
        other = router_service(router.db, router.published, router.clock, CollectorRegistry())  # another replica
        consumer = replace(other, rotations=MeetingRotations(router.db, meeting))
        two = lead(router.clock.now)
        await asyncio.gather(sweeper.sweep_once(), consumer.on_leads_received([two]))
        await router.service.sweep_once()  # a sweep that found its turn taken goes round again at once
        taken = [agent for _, agent in offers(router.published, one, two)[1:]]
        assert sorted(taken) == ["ben", "cy"], f"two turns at once went to {taken}: one turn taken twice"
        cursor = await router.db[ROUTER_ROTATIONS].find_one({"_id": "acme:Website"})
        assert cursor is not None
        assert cursor["position"] == 3


async def _ana_next(router: Any) -> LeadReceived:
    """Lead 1 offered to ben, whose offer ran out; the rotation's next is ana (ana, ben, cy; ana's day cap 1)."""
    await router.db[ROUTER_ROTATIONS].insert_one({"_id": "acme:Website", "position": 1})  # next: ben
    one = lead(NOW)
    assert not await router.service.on_leads_received([one])
    assert offers(router.published, one) == [("lead 1", "ben")]
    router.clock.now = NOW + timedelta(minutes=11)  # ben's offer ran out: lead 1 goes on to cy, or ana
    await router.db[ROUTER_ROTATIONS].update_one({"_id": "acme:Website"}, {"$set": {"position": 3}})  # next: ana
    return one


async def test_a_sweep_and_a_new_lead_decided_at_once_give_a_capped_agent_one_lead(mongo_url: str) -> None:
    async with router_on(mongo_url, config({"day": 1}), now=NOW) as router:
        one = await _ana_next(router)
        meeting = Meeting(2)
        sweeper = replace(router.service, capacity=MeetingCapacity(router.db, meeting))
        other = router_service(router.db, router.published, router.clock, CollectorRegistry())
        consumer = replace(other, capacity=MeetingCapacity(router.db, meeting))
        two = lead(router.clock.now)
        await asyncio.gather(sweeper.sweep_once(), consumer.on_leads_received([two]))
        await router.service.sweep_once()  # a sweep that found its slot taken goes round again at once
        held = [doc["lead_id"] async for doc in router.db[ROUTER_CAPACITY].find({"agent_id": "ana"})]
        assert len(held) <= 1, f"ana (a day cap of 1) counts {len(held)} leads: {offers(router.published, one, two)}"
        assert len(held) == 1, "one of them still went to ana: a slot is not left unused"


class SweeperCapacity(MeetingCapacity):
    """The sweeper's reads: the first meets the consumer's; its third (first in line, `_past_caps` reads ana's line
    again) waits until the consumer has taken a turn, or 0.2 s: the interleaving a loaded machine gave once."""

    def __init__(self, db: Any, meeting: Meeting, consumer_took: asyncio.Event) -> None:
        super().__init__(db, meeting)
        self.consumer_took, self.calls = consumer_took, 0

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        self.calls += 1
        if self.calls >= 3:  # 1: its usage (the meeting), 2: ana's line after its hold, 3: ana's line again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.consumer_took.wait(), timeout=0.2)
        return await super().places(account_id, agent_ids, since_ms)


class ConsumerRotations(Rotations):
    """The consumer's turns, telling when it took one."""

    def __init__(self, db: Any, took: asyncio.Event) -> None:
        super().__init__(db)
        self.took = took

    async def take(self, moves: dict[str, Take]) -> set[str]:
        lost = await super().take(moves)
        if not lost:
            self.took.set()
        return lost


async def test_a_decider_that_backed_off_does_not_pass_an_agent_by_for_a_rival_s_pending_hold(mongo_url: str) -> None:
    """Helper 182's review (session 38) of the test above, which failed once under load: the sweeper's pending hold of
    ana is first in line (held 1 ms before the consumer's); the consumer, not first, gave its hold back and decided
    again at once, read the sweeper's pending hold as ana's lead of the day, passed her by and took the turn; the
    sweeper, reading ana within her cap then, found its turn taken and gave its hold back too: ana got neither lead.
    A decider that backed off now waits for the rival's pending holds to be stored or given back
    (`RouterService._let_rivals_settle`)."""
    async with router_on(mongo_url, config({"day": 1}), now=NOW) as router:
        one = await _ana_next(router)
        meeting, consumer_took = Meeting(2), asyncio.Event()
        sweeper = replace(router.service, capacity=SweeperCapacity(router.db, meeting, consumer_took))
        later = Clock(router.clock.now + timedelta(milliseconds=1))  # its pending holds rank after the sweeper's
        other = router_service(router.db, router.published, later, CollectorRegistry())
        consumer = replace(other, capacity=MeetingCapacity(router.db, meeting),
                           rotations=ConsumerRotations(router.db, consumer_took))  # fmt: skip
        two = lead(router.clock.now)
        await asyncio.gather(sweeper.sweep_once(), consumer.on_leads_received([two]))
        await router.service.sweep_once()  # a sweep that found its turn or slot taken goes round again at once
        held = [doc["lead_id"] async for doc in router.db[ROUTER_CAPACITY].find({"agent_id": "ana"})]
        assert len(held) <= 1, f"ana (a day cap of 1) counts {len(held)} leads: {offers(router.published, one, two)}"
        assert len(held) == 1, f"neither lead went to ana (day cap 1, her turn): {offers(router.published, one, two)}"


async def test_a_rotation_moves_only_from_where_it_was_read(mongo_url: str) -> None:
    """`Rotations.take` on nx-27017: a key with no document read at 0 is created; a key moved since it was read is
    lost and left as it is; of two takes from the same position, one wins."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"router_take_{uuid.uuid4().hex[:8]}"]
    try:
        rotations = Rotations(db)
        assert await rotations.take({"a:new": Take(0, 2, 0)}) == set()
        assert await rotations.get_many(["a:new"]) == {"a:new": 2}
        assert await rotations.take({"a:new": Take(0, 5, 0), "a:other": Take(0, 1, 0)}) == {"a:new"}
        assert await rotations.get_many(["a:new", "a:other"]) == {"a:new": 2, "a:other": 1}
        outcomes = await asyncio.gather(*(rotations.take({"a:new": Take(2, to, 2)}) for to in (3, 4)))
        assert sorted(len(lost) for lost in outcomes) == [0, 1]
        assert (await rotations.get_many(["a:new"]))["a:new"] in (3, 4)
        assert await rotations.take({"a:fresh": Take(0, 1, 0)}) == set()
        racing = await asyncio.gather(*(rotations.take({"a:race": Take(0, n, 0)}) for n in (1, 2, 3)))
        assert sorted(len(lost) for lost in racing) == [0, 1, 1]
        # A take is noted with its start and leads while the position is its own; moved on by `advance_many`, not.
        assert await rotations.take({"a:fresh": Take(1, 3, 1, (("l1", 2), ("l2", 3)))}) == set()
        assert await rotations.read_many(["a:fresh"]) == {"a:fresh": Taken(3, 1, (("l1", 2), ("l2", 3)))}
        await rotations.advance_many({"a:fresh": 4})
        assert await rotations.read_many(["a:fresh", "a:none"]) == {"a:fresh": Taken(4), "a:none": Taken(0)}
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_take_from_a_position_a_key_without_a_document_no_longer_has_is_lost(mongo_url: str) -> None:
    """A decider read a rule's rotation at 3; the rule was deleted meanwhile and its keys dropped
    (`drop_rule_keys`). Its take from 3 finds no document: the key moved since it was read (the docstring: only "a
    key read at 0 may have no document"), and `FakeRotations.take` answers it lost. On nx-27017 the upsert's filter
    `{_id, position: 3}` misses, nothing stands in the way of its insert, and the dropped key is created again at 4:
    the take "wins" and a deleted rule's cursor comes back. Expected: lost, as the fake says, and no document."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"router_take_gone_{uuid.uuid4().hex[:8]}"]
    try:
        rotations, fake = Rotations(db), FakeRotations()
        key = "acme:rule:gone"
        for store in (rotations, fake):
            assert await store.take({key: Take(0, 3, 0)}) == set()
            await store.drop([key])
        assert await fake.take({key: Take(3, 4, 3)}) == {key}
        lost = await rotations.take({key: Take(3, 4, 3)})
        left = await rotations.get_many([key])
        assert lost == {key}, f"a take from 3 of a dropped key won on nx-27017 (now {left}); the fake says lost"
        assert left == {key: 0}
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_pending_holds_on_the_wire_are_each_decider_s_own_and_stand_in_line_by_decider(mongo_url: str) -> None:
    """`Capacity.pend`, `places`, `unpend` and `hold_many` on nx-27017, beside `FakeCapacity` doing the same (the
    unit tests' stand-in, session 33): a pending hold counts like a stored one; a lead pending with two deciders
    counts once, in the place of the first by `Place.rank`; held-for-good leads stand before pending ones, and each
    decider's pending ones stand together; `hold_many` leaves pending holds alone; a decider drops only its own; one
    a crash left is forgotten once its time is past (the TTL index `forget_pending`)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"router_pending_{uuid.uuid4().hex[:8]}"]
    try:
        await ensure_indexes(db)
        real, fake = Capacity(db), FakeCapacity()
        for capacity in (real, fake):
            await capacity.hold_many([("x", "acme", ("a",), 1)], 300)
            await capacity.pend("t2", [("y", "acme", ("a",))], 100)
            await capacity.pend("t1", [("z", "acme", ("a",)), ("x", "acme", ("b",))], 100)
            await capacity.pend("t2", [("x", "acme", ("b",))], 100)
        for capacity in (real, fake):
            places = await capacity.places("acme", ["a", "b"], 0)
            assert places == {
                "a": {"x": Place(300), "y": Place(100, "t2"), "z": Place(100, "t1")},
                "b": {"x": Place(100, "t1")},
            }
            line = places["a"]
            assert sorted(line, key=lambda lead: line[lead].rank(lead)) == ["x", "z", "y"]
            await capacity.hold_many([("x", "acme", ("a",), 2)], 400)  # held for good again: pending ones stay
            await capacity.hold_many([("x", "acme", ("b",), 1)], 450)  # a late flush of version 1: not written
            await capacity.unpend(["t2"], ["x", "y"])  # another decider's hold of x is not t2's to drop
            assert await capacity.places("acme", ["a", "b"], 0) == {
                "a": {"x": Place(300), "z": Place(100, "t1")},
                "b": {"x": Place(100, "t1")},
            }
            await capacity.unpend(["t1"], ["x", "z"])
            assert await capacity.places("acme", ["a", "b"], 0) == {"a": {"x": Place(300)}, "b": {}}
        await real.pend("crashed", [("w", "acme", ("a",))], 500)
        await db[ROUTER_CAPACITY].update_many({"by": "crashed"}, {"$set": {"pending_until": datetime.now(UTC)}})
        deadline = asyncio.get_running_loop().time() + 90  # MongoDB's TTL monitor runs once a minute
        while "w" in (await real.places("acme", ["a"], 0))["a"]:
            assert asyncio.get_running_loop().time() < deadline, "a pending hold past its time is never forgotten"
            await asyncio.sleep(0.5)
    finally:
        await client.drop_database(db.name)
        await client.close()


# Helper 161's review (session 33) of d8bd169: a crash's leftover pending hold of a pass's own lead, on the wire
# (session 34: the pass goes on at once).
AGENTS_B_CAPPED: list[dict[str, Any]] = [
    {"agent_id": "broker", "name": "Broker", "email": "broker@acme.example", "round_robin": False},
    {"agent_id": "a", "name": "A", "email": "a@acme.example"},
    {"agent_id": "b", "name": "B", "email": "b@acme.example", "caps": {"day": 1}},
    {"agent_id": "c", "name": "C", "email": "c@acme.example"},
    {"agent_id": "d", "name": "D", "email": "d@acme.example"},
]


async def test_a_pass_after_a_crash_goes_on_at_once_within_the_caps_on_the_wire(mongo_url: str) -> None:
    """As the unit test of the same name: P1 offered to d, P2 to a, both run out; a pass decides P1 to b (day cap 1)
    and P2 to c, holds them pending (`router_capacity`, `<lead>|<agent>|<token>`) and dies before its take. Two new
    leads are routed (b skipped: P1's leftover counts). Until session 34 the next passes read usage without their
    own leads' holds (b at 0), decided P2 to b and found P1's leftover ahead of it in b's line: deferred and decided
    again at once until the TTL index forgot the leftover (10 minutes). Expected: the next pass re-offers P1 and
    P2, and b counts one lead at most."""
    async with router_on(mongo_url, acme(AGENTS_B_CAPPED), now=NOW) as router:
        service, db = router.service, router.db
        await db[ROUTER_ROTATIONS].update_one({"_id": "acme:Website"}, {"$set": {"position": 3}}, upsert=True)
        p1, p2 = lead(NOW), lead(NOW)
        assert not await service.on_leads_received([p1])
        assert not await service.on_leads_received([p2])

        def offers(event: LeadReceived) -> list[str]:
            return [
                e.payload.agent_id
                for e in router.published.lead_events()
                if isinstance(e, LeadOffered) and e.payload.lead_id == event.event_id
            ]

        assert (offers(p1), offers(p2)) == (["d"], ["a"])
        router.clock.now = NOW + timedelta(minutes=16)  # both offers ran out
        take = service.rotations.take

        async def dies(_moves: dict[str, Take]) -> set[str]:
            raise ConnectionError("the process died")

        service.rotations.take = dies  # type: ignore[method-assign,assignment]
        with pytest.raises(ConnectionError):
            await service.sweep_once()
        service.rotations.take = take  # type: ignore[method-assign]
        left = [(d["lead_id"], d["agent_id"]) async for d in db[ROUTER_CAPACITY].find({}) if d.get("by")]
        assert (str(p1.event_id), "b") in left, f"the crashed pass held P1 for b ({left})"
        for _ in range(2):
            assert not await service.on_leads_received([lead(router.clock.now)])
        await service.sweep_once()
        assert (len(offers(p1)), len(offers(p2))) == (2, 2), f"P1 offered to {offers(p1)}, P2 to {offers(p2)}"
        counted_b = {d["lead_id"] async for d in db[ROUTER_CAPACITY].find({"agent_id": "b"})}  # all of one day
        assert len(counted_b) <= 1, f"b past its day cap of 1: {sorted(counted_b)}"
