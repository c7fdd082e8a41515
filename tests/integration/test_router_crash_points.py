"""A router crash at every point of the intake batch pipeline, on the real MongoDB-wire server (I1, R1).

A router handles a batch of two new contacts and dies at one point: before storing the
records, after storing some of them, after storing them all, after applying the effects
(rotation cursor, contact keys), in the middle of publishing, after publishing, after
clearing the outboxes. Its offsets were not committed, so a new router process receives the
batch again, grown by what arrived meanwhile: a third new contact and a repeat inquiry from
each of the first two. Whatever the point, each repeat is exactly one ActivityLogged on its
first lead, every lead is decided once, and the rotation moves on as if nothing had happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_router import Published
from prometheus_client import CollectorRegistry
from router_harness import Router, router_on

from leadflow_router.adapters.mongo import OUTBOX_DOC_BYTES, AccountSnapshots, Contacts, LeadRecords, Rotations
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.record import Outbox, RoutingRecord
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.collections import ROUTER_CONTACTS, ROUTER_LEADS, ROUTER_OUTBOXES
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ActivityLogged, LeadOffered, RoutingEvent

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
AGENTS = ["a", "b", "c", "d"]
CONFIG = {
    "accounts": [
        {
            "account_id": "acme",
            "name": "Acme",
            "round_robin": True,
            "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in AGENTS],
            "roster": AGENTS,
            "default_source": {"claim_window_seconds": 600},
        }
    ]
}
POINTS = (
    "before store",
    "mid store",
    "after store",
    "after effects",
    "mid publish",
    "after publish",
    "after outbox cleared",
)


class Killed(Exception):  # noqa: N818 (what happened to the process)
    """The simulated SIGKILL: from here on the dead router does nothing at all."""


@dataclass
class Death:
    """Where the router dies; once dead, every further call of its adapters fails."""

    point: str
    dead: bool = False

    def at(self, point: str) -> None:
        if self.dead or point == self.point:
            self.dead = True
            raise Killed(point)

    def alive(self) -> None:
        if self.dead:
            raise Killed("dead")


class DyingRecords(LeadRecords):
    def __init__(self, db: Any, death: Death) -> None:
        super().__init__(db)
        self._death = death

    async def get_many(self, lead_ids: list[str]) -> dict[str, RoutingRecord]:
        self._death.alive()
        return await super().get_many(lead_ids)

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        self._death.at("before store")
        if self._death.point == "mid store":
            # The server stores a prefix of an interrupted insert: the outbox document, one record.
            await super().insert_batch(records[:1], batch_id=batch_id, now_ms=now_ms)
            self._death.at("mid store")
        stored = await super().insert_batch(
            records, batch_id=f"{batch_id}-whole", now_ms=now_ms, before_records=before_records
        )
        self._death.at("after store")
        return stored

    async def end_batch(self, doc_ids: list[str]) -> None:
        self._death.at("after publish")
        await super().end_batch(doc_ids)
        self._death.at("after outbox cleared")


class DyingContacts(Contacts):
    def __init__(self, db: Any, death: Death) -> None:
        super().__init__(db)
        self._death = death

    async def find(self, keys: list[str]) -> dict[str, str]:
        self._death.alive()
        return await super().find(keys)

    async def find_with_erasures(self, keys: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        self._death.alive()
        return await super().find_with_erasures(keys)

    async def register(self, lead_by_key: dict[str, str]) -> None:
        self._death.alive()
        await super().register(lead_by_key)
        self._death.at("after effects")


class DyingRotations(Rotations):
    def __init__(self, db: Any, death: Death) -> None:
        super().__init__(db)
        self._death = death

    async def get(self, key: str) -> int:
        self._death.alive()
        return await super().get(key)

    async def advance(self, key: str, position: int) -> None:
        self._death.alive()
        await super().advance(key, position)

    async def advance_many(self, positions: dict[str, int]) -> None:
        self._death.alive()
        await super().advance_many(positions)


@dataclass
class DyingPublisher:
    published: Published
    death: Death

    async def __call__(self, key: str, body: bytes) -> None:
        self.death.alive()
        if self.published.records and self.death.point == "mid publish":
            self.death.at("mid publish")  # one event out, the rest not
        await self.published(key, body)


def dying_router(router: Router, death: Death) -> tuple[RouterService, Published]:
    published = Published()
    service = RouterService(
        records=DyingRecords(router.db, death),
        accounts=AccountSnapshots(router.db, 0),
        contacts=DyingContacts(router.db, death),
        rotations=DyingRotations(router.db, death),
        publish=DyingPublisher(published, death),
        metrics=RouterMetrics(CollectorRegistry()),
        clock=router.clock,
    )
    return service, published


def inquiry(email: str) -> LeadReceived:
    return LeadReceived.create(
        account_id="acme",
        occurred_at=T0,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=email),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def of_lead(events: Sequence[RoutingEvent], lead: LeadReceived) -> list[RoutingEvent]:
    return [e for e in events if getattr(e.payload, "lead_id", None) == lead.event_id]


@pytest.mark.parametrize("point", POINTS)
async def test_a_crash_anywhere_in_a_batch_leaves_each_repeat_one_activity_on_its_first_lead(
    mongo_url: str, point: str
) -> None:
    first, second, third = (inquiry(f"{n}-{uuid.uuid4().hex}@example.com") for n in ("one", "two", "three"))
    repeats = [(inquiry(lead.payload.contact.email or ""), lead) for lead in (first, second)]
    async with router_on(mongo_url, CONFIG, now=T0) as router:
        death = Death(point)
        dead, before_crash = dying_router(router, death)
        with pytest.raises(Killed):
            await dead.on_leads_received([first, second])
        assert death.dead, "the router died where the test says"

        # A new process gets the uncommitted batch again, with what arrived meanwhile behind it.
        assert not await router.service.on_leads_received([first, second, third, *(r for r, _ in repeats)])

        events = [e for _, e in before_crash.events() + router.published.events()]
        for repeat, lead in repeats:
            assert not of_lead(events, repeat), f"{point}: the repeat became a lead of its own"
            logged = {e.event_id: e for e in events if isinstance(e, ActivityLogged)}
            assert derived_event_id(repeat.event_id, "0") in logged, f"{point}: the repeat was lost"
            assert logged[derived_event_id(repeat.event_id, "0")].payload.lead_id == lead.event_id
        offers = {}
        for lead in (first, second, third):
            decided = [e for e in of_lead(events, lead) if not isinstance(e, ActivityLogged)]
            assert {type(e).__name__ for e in decided} == {"LeadOffered"}, point
            assert {e.event_id for e in decided} == {derived_event_id(lead.event_id, "0")}, "one decision"
            offers[lead.event_id] = {e.payload.agent_id for e in decided if isinstance(e, LeadOffered)}
        # The rotation went on where the dead router left it: three leads, three agents in turn.
        assert [offers[lead.event_id] for lead in (first, second, third)] == [{"a"}, {"b"}, {"c"}], point

        stored = {d["_id"]: d async for d in router.db[ROUTER_LEADS].find({})}
        assert {i for i, d in stored.items() if d["kind"] == "lead"} == {
            str(m.event_id) for m in (first, second, third)
        }
        assert not [i for i, d in stored.items() if d.get("outbox") or d.get("effects")], "every outbox flushed"
        assert await router.db[ROUTER_OUTBOXES].count_documents({}) == 0, "every outbox document dropped"
        keys = {d["_id"]: d["lead_id"] async for d in router.db[ROUTER_CONTACTS].find({})}
        for lead in (first, second, third):
            assert keys[f"acme:email:{lead.payload.contact.email}"] == str(lead.event_id)


async def test_large_outboxes_take_several_documents_each_lead_naming_its_own(mongo_url: str) -> None:
    # A batch whose events pass OUTBOX_DOC_BYTES goes in several outbox documents (MongoDB's 16 MB).
    async with router_on(mongo_url, CONFIG, now=T0) as router:
        store = LeadRecords(router.db)
        big = "x" * (OUTBOX_DOC_BYTES // 2 - 1024)  # two leads' events fill a document
        records = [
            RoutingRecord(f"lead-{n}", "acme", 1, None, f"lead-{n}", outbox=Outbox(events=(big,), since_ms=1))
            for n in range(5)
        ]
        stored, documents = await store.insert_batch(records, batch_id="b", now_ms=1)
        assert documents == ["b/0", "b/1", "b/2"]
        assert [r.outbox.batch for r in stored] == ["b/0", "b/0", "b/1", "b/1", "b/2"]
        found = await store.batch_outboxes(documents)
        assert {d: sorted(doc.outboxes) for d, doc in found.items()} == {
            "b/0": ["lead-0", "lead-1"], "b/1": ["lead-2", "lead-3"], "b/2": ["lead-4"]
        }  # fmt: skip
        assert all(o.events == (big,) for doc in found.values() for o in doc.outboxes.values())
        named = await store.get_many([r.lead_id for r in records])
        assert {r.lead_id: r.outbox.batch for r in named.values()} == {r.lead_id: r.outbox.batch for r in stored}
        assert all(not r.outbox for r in named.values()), "the records keep no outbox of their own"
        await store.end_batch(documents)
        assert await store.batch_outboxes(documents) == {}


async def test_a_batchs_check_reads_after_its_documents_and_a_refusal_stores_nothing(mongo_url: str) -> None:
    """`insert_batch`'s `before_records` (decision 0050: the router reads the leads a batch's repeats merge into
    there) runs once the batch's outbox documents are in `router_outboxes`, where an erasure looks for them, and
    before any record is; when it raises, the documents are dropped and no record is stored."""
    async with router_on(mongo_url, CONFIG, now=T0) as router:
        store = LeadRecords(router.db)
        records = [
            RoutingRecord(f"lead-{n}", "acme", 1, None, f"lead-{n}", outbox=Outbox(events=("e",))) for n in (1, 2)
        ]
        seen: list[tuple[list[str], int]] = []

        async def refusing() -> None:
            ids = [doc["_id"] async for doc in router.db[ROUTER_OUTBOXES].find({}, {"_id": 1})]
            seen.append((ids, await router.db[ROUTER_LEADS].count_documents({})))
            raise RuntimeError("erased meanwhile")

        with pytest.raises(RuntimeError, match="erased meanwhile"):
            await store.insert_batch(records, batch_id="b", now_ms=1, before_records=refusing)
        assert seen == [(["b/0"], 0)], "the check ran before the documents, or after a record"
        assert await router.db[ROUTER_OUTBOXES].count_documents({}) == 0, "the refused batch's document is left"
        assert await router.db[ROUTER_LEADS].count_documents({}) == 0

        async def passing() -> None:
            seen.append(([], await router.db[ROUTER_LEADS].count_documents({})))

        stored, documents = await store.insert_batch(records, batch_id="c", now_ms=1, before_records=passing)
        assert [r.lead_id for r in stored] == ["lead-1", "lead-2"]
        assert documents == ["c/0"]
        assert await router.db[ROUTER_LEADS].count_documents({}) == 2
