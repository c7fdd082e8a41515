"""The router's state on the real MongoDB-wire server: races (I2), durable timers with several sweepers (I3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from fakes_router import Published
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from router_harness import router_on, router_service

from leadflow_devstack.testing import eventually
from leadflow_router.adapters.account_config import load_account_config
from leadflow_router.adapters.mongo import SET_ASIDE_SECONDS, Erasures, ensure_indexes
from leadflow_router.domain.model import RoutingRejected
from leadflow_router.handlers import STALE_BATCH_SECONDS, SWEEP_RETRY_SECONDS, RouterService
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared.collections import ACCOUNTS, ROUTER_CONTACTS, ROUTER_LEADS, ROUTER_OUTBOXES
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import EraseContact, EraseContactPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import (
    LEAD_EVENT,
    ActivityLogged,
    ContactErased,
    LeadClaimed,
    LeadOffered,
    OfferExpired,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
AGENTS = ["broker", "a", "b", "c", "d"]
CONFIG = {
    "accounts": [
        {
            "account_id": "acme",
            "name": "Acme",
            "time_zone": "America/New_York",
            "round_robin": True,
            "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in AGENTS],
            "roster": AGENTS,
            "sources": [{"name": "Race", "race_count": 3, "claim_window_seconds": 600}],
            "default_source": {"claim_window_seconds": 600},
        }
    ]
}


@dataclass
class Router:
    service: RouterService
    clock: Clock
    published: Published


@pytest_asyncio.fixture(loop_scope="session")
async def db_name(mongo_url: str) -> AsyncIterator[str]:
    name = f"router_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    await load_account_config(client[name], CONFIG)
    await ensure_indexes(client[name])
    yield name
    await client.drop_database(name)
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def routers(mongo_url: str, db_name: str) -> AsyncIterator[list[Router]]:
    """Two router instances, each with its own client (connection pool), on one database."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = []
    instances = []
    for _ in range(2):
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
        clients.append(client)
        db = client[db_name]
        clock, published = Clock(T0), Published()
        service = router_service(db, published, clock, CollectorRegistry())
        instances.append(Router(service, clock, published))
    yield instances
    for client in clients:
        await client.close()


def received(source: str = "Website", n: int = 0, account_id: str = "acme") -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=T0,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Lead", last_name=str(n), email=f"lead-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source),
        ),
    )


def activity(lead_id: uuid.UUID, agent: str, action: ActivityAction = ActivityAction.CALL) -> LeadActivity:
    return LeadActivity.create(
        account_id="acme", occurred_at=T0, payload=LeadActivityPayload(lead_id=lead_id, agent_id=agent, action=action)
    )


def offers(router: Router, lead_id: uuid.UUID) -> list[str]:
    return [
        e.payload.agent_id
        for e in router.published.lead_events()
        if isinstance(e, LeadOffered) and e.payload.lead_id == lead_id
    ]


async def test_redelivered_lead_makes_no_second_decision(routers: list[Router]) -> None:
    router = routers[0]
    lead = received()
    await router.service.on_lead_received(lead)
    await router.service.on_lead_received(lead)
    await routers[1].service.on_lead_received(lead)  # another replica after a rebalance
    all_events = router.published.lead_events() + routers[1].published.lead_events()
    assert [type(e) for e in all_events if e.payload.lead_id == lead.event_id] == [LeadOffered]


async def test_claim_racing_expiry_has_exactly_one_winner(routers: list[Router]) -> None:
    claimer, sweeper = routers
    leads = [received(n=n) for n in range(15)]
    for lead in leads:
        await claimer.service.on_lead_received(lead)
    # The claim comes a millisecond before the deadline, the sweeper fires at it: both are valid alone.
    claimer.clock.now = T0 + timedelta(seconds=600) - timedelta(milliseconds=1)
    sweeper.clock.now = T0 + timedelta(seconds=600)

    async def claim(lead: LeadReceived) -> None:
        await claimer.service.on_activity(activity(lead.event_id, offers(claimer, lead.event_id)[0]))

    async def sweep_all() -> None:
        while await sweeper.service.sweep_once():
            pass

    await asyncio.gather(asyncio.gather(*(claim(lead) for lead in leads)), sweep_all())
    events = claimer.published.lead_events() + sweeper.published.lead_events()
    for lead in leads:
        claimed = [e for e in events if isinstance(e, LeadClaimed) and e.payload.lead_id == lead.event_id]
        expired = [e for e in events if isinstance(e, OfferExpired) and e.payload.lead_id == lead.event_id]
        refused = [e for e in events if isinstance(e, ActivityLogged) and e.payload.lead_id == lead.event_id]
        assert len(claimed) + len(expired) == 1, (claimed, expired)
        # A claim that lost to the expiry is logged with the reason, not dead-lettered.
        assert len(refused) == len(expired), refused
        assert all("expired at" in (e.payload.claim_refused or "") for e in refused)


async def test_lead_race_has_one_winner_and_the_others_are_withdrawn(routers: list[Router]) -> None:
    first, second = routers
    lead = received(source="Race")
    await first.service.on_lead_received(lead)
    racers = offers(first, lead.event_id)
    assert len(racers) == 3
    first.clock.now = second.clock.now = T0 + timedelta(seconds=30)

    async def claim(router: Router, agent: str) -> None:
        await router.service.on_activity(activity(lead.event_id, agent, ActivityAction.ACCEPT))

    await asyncio.gather(claim(first, racers[0]), claim(second, racers[1]), claim(first, racers[2]))
    published = first.published.lead_events() + second.published.lead_events()
    # By event id: a router that finds another's unpublished outbox publishes it too (at least once).
    events = list({e.event_id: e for e in published if e.payload.lead_id == lead.event_id}.values())
    kinds = sorted(type(e).__name__ for e in events)
    assert kinds == [
        "ActivityLogged",
        "ActivityLogged",
        "LeadClaimed",
        "LeadOffered",
        "LeadOffered",
        "LeadOffered",
        "OfferWithdrawn",
        "OfferWithdrawn",
    ]
    [winner] = [e.payload.agent_id for e in events if isinstance(e, LeadClaimed)]
    for lost in (e for e in events if isinstance(e, ActivityLogged)):
        refusal = f"the offer to {lost.payload.by_agent_id} was withdrawn; the lead is held by {winner}"
        assert lost.payload.claim_refused == refusal


async def test_two_sweepers_fire_each_expiry_once(routers: list[Router]) -> None:
    leads = [received(n=n) for n in range(30)]
    for lead in leads:
        await routers[0].service.on_lead_received(lead)
    for router in routers:
        router.published.clear()
        router.clock.now = T0 + timedelta(seconds=601)

    async def sweep_all(router: Router) -> None:
        while await router.service.sweep_once():
            pass

    await asyncio.gather(sweep_all(routers[0]), sweep_all(routers[1]))
    raw = [body for _, body in routers[0].published.records + routers[1].published.records]
    expired = [e for e in (LEAD_EVENT.validate_json(r) for r in raw) if isinstance(e, OfferExpired)]
    assert sorted(str(e.payload.lead_id) for e in expired) == sorted(str(lead.event_id) for lead in leads)
    assert len({e.event_id for e in expired}) == len(expired), "no expiry published twice"
    reoffered = [e for e in (LEAD_EVENT.validate_json(r) for r in raw) if isinstance(e, LeadOffered)]
    assert {e.payload.offer_round for e in reoffered} == {2}
    assert len(reoffered) == len(leads)


async def test_deadlines_survive_a_restart(mongo_url: str, db_name: str, routers: list[Router]) -> None:
    lead = received()
    await routers[0].service.on_lead_received(lead)
    # A new process: nothing in memory, only what MongoDB holds.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        db = client[db_name]
        published = Published()
        restarted = router_service(db, published, Clock(T0 + timedelta(seconds=600)), CollectorRegistry())
        while await restarted.sweep_once():
            pass
    finally:
        await client.close()
    assert any(isinstance(e, OfferExpired) and e.payload.lead_id == lead.event_id for e in published.lead_events())


def office(account_id: str, claim_window_seconds: int) -> dict[str, Any]:
    agents = [f"{account_id}-{n}" for n in ("broker", "a", "b")]
    return {
        "account_id": account_id, "name": account_id.title(), "round_robin": True, "roster": agents,
        "agents": [{"agent_id": a, "name": a, "email": f"{a}@{account_id}.example"} for a in agents],
        "default_source": {"claim_window_seconds": claim_window_seconds},
    }  # fmt: skip


# A newer crm-api during a rolling upgrade writes a source kind this router does not know yet.
UNREADABLE = {"$set": {"sources": [{"name": "Website", "kind": "a-kind-from-the-future"}]}}


@pytest.mark.parametrize("breakage", ["deleted", "unreadable"])
async def test_a_deadline_that_cannot_fire_holds_up_no_other_office_s_deadlines(mongo_url: str, breakage: str) -> None:
    """I3: the sweeper takes the most overdue deadlines first; one whose office is gone or unreadable fails
    alone and is looked at again a minute later, while every other office's offers still expire on time."""
    config = {"accounts": [office("north", 60), office("acme", 600)]}
    async with router_on(mongo_url, config, now=T0) as router:
        north = [received(account_id="north", n=n) for n in range(2)]
        kept = received()
        await router.service.on_leads_received([*north, kept])
        if breakage == "deleted":
            await router.db[ACCOUNTS].delete_one({"_id": "north"})
        else:
            await router.db[ACCOUNTS].update_one({"_id": "north"}, UNREADABLE)
        router.service.sweep_batch = len(north)  # the broken office's deadlines fill a whole pass
        router.published.clear()
        router.clock.advance(601_000)
        for _ in range(5):  # as `sweeper.sweep` does: a full pass is followed by another at once
            if await router.service.sweep_once() < router.service.sweep_batch:
                break
        expired = [e.payload.lead_id for e in router.published.lead_events() if isinstance(e, OfferExpired)]
        assert expired == [kept.event_id]
        retry_ms = router.clock.ms + SWEEP_RETRY_SECONDS * 1000
        for lead in north:  # not lost: due again later, its offer still open
            doc = await router.record(lead)
            assert (doc["next_deadline_ms"], doc["status"], doc["version"]) == (retry_ms, "offered", 1)
        failures = router.registry.get_sample_value("router_deadline_failures_total")
        assert failures == len(north)

        await load_account_config(router.db, {"accounts": [office("north", 60)]})  # the office is back
        router.published.clear()
        router.clock.advance(SWEEP_RETRY_SECONDS * 1000)
        while await router.service.sweep_once():
            pass
        expired = [e.payload.lead_id for e in router.published.lead_events() if isinstance(e, OfferExpired)]
        assert sorted(expired) == sorted(lead.event_id for lead in north)


async def test_a_record_this_version_cannot_read_is_set_aside_and_holds_up_no_other(mongo_url: str) -> None:
    """Decision 0091: a routing record written by a newer version (its lead's contact has a field this version
    does not know) is set aside by the reads the sweeper makes, due deadlines and unflushed outboxes alike; the
    other records go on. It is counted, and logged by lead id and error type only."""
    config = {"accounts": [office("acme", 60)]}
    async with router_on(mongo_url, config, now=T0) as router:
        newer, other = received(), received()
        await router.service.on_leads_received([newer, other])
        since_ms = router.clock.ms
        await router.db[ROUTER_LEADS].update_one(
            {"_id": str(newer.event_id)},
            {"$set": {"summary.contact.second_phone": "+1 555 0100 4242", "outbox_since_ms": since_ms},
             "$inc": {"next_deadline_ms": -1}},  # the most overdue: it heads the pass
        )  # fmt: skip
        router.published.clear()
        router.clock.advance(61_000)

        assert await router.service.sweep_once() == 1, "only the readable record is due"
        expired = [e.payload.lead_id for e in router.published.lead_events() if isinstance(e, OfferExpired)]
        assert expired == [other.event_id]
        assert (await router.record(newer))["next_deadline_ms"] == router.clock.ms + SET_ASIDE_SECONDS * 1000
        await router.service.republish_stale()  # reads its waiting outbox: set aside too, nothing raised
        assert (await router.record(newer))["outbox_since_ms"] == router.clock.ms - 5_000 + SET_ASIDE_SECONDS * 1000
        counted = {read: router.registry.get_sample_value("router_unreadable_records_total", {"read": read})
                   for read in ("due", "unflushed")}  # fmt: skip
        assert counted == {"due": 1.0, "unflushed": 1.0}


async def test_an_outbox_that_cannot_be_published_keeps_no_deadline_from_firing(mongo_url: str) -> None:
    """I3: the sweeper's loop also republishes outboxes a failure left; one that fails every time (its office
    unreadable) is retried each round, and the deadlines still fire in between."""
    config = {"accounts": [office("north", 60), office("acme", 600)]}
    async with router_on(mongo_url, config, now=T0) as router:
        north, kept = received(account_id="north"), received()
        await router.service.on_leads_received([north, kept])
        router.clock.advance(61_000)
        router.published.failing = True  # the broker away while north's expiry is stored: its outbox stays
        with pytest.raises(ConnectionError):
            await router.service.sweep_once()
        router.published.failing = False
        await router.db[ACCOUNTS].update_one({"_id": "north"}, UNREADABLE)
        router.clock.advance(540_000)  # acme's offer is due now

        def kept_expired() -> bool:
            events = router.published.lead_events()
            return any(isinstance(e, OfferExpired) and e.payload.lead_id == kept.event_id for e in events)

        stopping = asyncio.Event()
        sweeper = asyncio.create_task(
            sweep(router.service, stopping, alarm=Alarm(), idle_seconds=0.05, republish_every_seconds=0.2)
        )
        try:
            await eventually(kept_expired, timeout=10, what="acme's offer to expire")
        finally:
            stopping.set()
            await sweeper
        assert (await router.record(north))["outbox"], "north's events wait for its office to read again"


async def test_activity_for_unknown_lead_is_rejected_and_without_offer_is_logged(routers: list[Router]) -> None:
    router = routers[0]
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_activity(activity(uuid.uuid4(), "a"))
    lead = received()
    await router.service.on_lead_received(lead)
    outsider = next(a for a in AGENTS if a not in offers(router, lead.event_id))
    await router.service.on_activity(activity(lead.event_id, outsider))
    [logged] = [e for e in router.published.lead_events() if not isinstance(e, LeadOffered)]
    assert isinstance(logged, ActivityLogged)
    assert (logged.payload.by_agent_id, logged.payload.claim_refused) == (outsider, None)
    with pytest.raises(RoutingRejected, match="unknown account"):
        await router.service.on_lead_received(
            LeadReceived.create(account_id="nobody", occurred_at=T0, payload=received().payload)
        )


async def test_a_crashed_batch_s_unreadable_record_holds_up_no_other_lead_of_it(mongo_url: str) -> None:
    """Decision 0068, 0091: a batch whose publishing failed leaves its outbox document for the sweeper. One of its
    records this version cannot read (written by a newer one) must not stop the sweeper publishing the others:
    it is skipped and counted, and its document kept until it is an orphan."""
    config = {"accounts": [office("acme", 600)]}
    async with router_on(mongo_url, config, now=T0) as router:
        newer, other = received(), received()
        router.published.failing = True  # the broker away: the batch's outbox document stays
        with pytest.raises(ConnectionError):
            await router.service.on_leads_received([newer, other])
        router.published.failing = False
        assert not router.published.lead_events()
        await router.db[ROUTER_LEADS].update_one(
            {"_id": str(newer.event_id)}, {"$set": {"summary.contact.second_phone": "+1 555 0100 4242"}}
        )
        await router.db[ROUTER_OUTBOXES].update_many({}, {"$set": {"since_ms": 0}})  # long stale

        await router.service.republish_stale()

        offered = [e.payload.lead_id for e in router.published.lead_events() if isinstance(e, LeadOffered)]
        assert offered == [other.event_id]
        assert router.registry.get_sample_value("router_unreadable_records_total", {"read": "batch"}) == 1.0


async def test_each_pass_over_stale_outbox_documents_takes_the_oldest_first(mongo_url: str) -> None:
    """Decision 0068 (helper 88): documents a crash left whose leads have no record yet are kept up to an hour;
    the sweeper's read of stale documents is bounded (`limit`), so it reads the oldest first: the oldest are
    finished or dropped as orphans and each pass makes progress, never rereading the same kept documents while an
    older one waits behind them. (nx-27017 answers this range in index order even unsorted; MongoDB promises no
    order without a sort, and a collection scan reads in natural order: the oldest written last.)"""
    async with router_on(mongo_url, {"accounts": [office("acme", 600)]}, now=T0) as router:
        wall_ms = int(time.time() * 1000)

        def waiting(doc_id: str, age_ms: int) -> dict[str, Any]:  # lists a lead with no record: kept until an orphan
            lead = {"lead_id": str(uuid.uuid4()), "events": [], "effects": {}}
            return {"_id": doc_id, "since_ms": wall_ms - age_ms, "leads": [lead]}

        kept = [waiting(f"kept-{n}/0", 5 * 60_000 + n) for n in range(3)]  # 5 minutes: stale, not yet orphans
        orphan = waiting("orphan/0", 2 * 3_600_000)  # two hours: dropped when looked at
        await router.db[ROUTER_OUTBOXES].insert_many([*kept, orphan])  # the oldest written last

        assert await router.service.records.stale_batches(wall_ms - 60_000, 2) == ["orphan/0", "kept-2/0"]
        await router.service.republish_stale(limit=2)
        left = sorted([doc["_id"] async for doc in router.db[ROUTER_OUTBOXES].find({}, {"_id": 1})])
        assert left == ["kept-0/0", "kept-1/0", "kept-2/0"], "the orphan behind the kept documents was never looked at"


async def test_an_erasure_takes_the_leads_a_crash_left_in_a_stale_outbox_document_out_of_it(mongo_url: str) -> None:
    """Decision 0068 (helper 94), on the MongoDB-wire server: a writer died after its outbox document and before its
    records (nothing stores them: their LeadReceived dead-lettered). An erasure older than STALE_BATCH_SECONDS's
    bound does not wait: it stores an erased placeholder under the lead (insert) and takes its outbox out of the
    document (compare-and-set on `rev`, twice: two erasures of the document's two leads); the sweeper then drops the
    document, and the batch's redelivery publishes nothing carrying either contact."""
    async with router_on(mongo_url, {"accounts": [office("acme", 600)]}, now=T0) as router:
        router.service.erasures = Erasures(router.db)
        first, second = received(n=1), received(n=2)
        router.published.failing = True
        with pytest.raises(ConnectionError):
            await router.service.on_leads_received([first, second])
        router.published.failing = False
        ids = [str(first.event_id), str(second.event_id)]
        await router.db[ROUTER_LEADS].delete_many({"_id": {"$in": ids}})  # as if the writer died before these
        await router.db[ROUTER_CONTACTS].delete_many({})
        await router.db[ROUTER_OUTBOXES].update_many({}, {"$inc": {"since_ms": -2 * STALE_BATCH_SECONDS * 1000}})
        (listing,) = (await router.service.records.pending_contacts()).listed[ids[0]]
        assert listing.account_id == "acme"

        for lead in (first, second):
            email = lead.payload.contact.email
            assert email is not None
            await router.service.on_command(erase_contact(email))
        erased = [e for _, e in router.published.events() if isinstance(e, ContactErased)]
        assert [e.payload.lead_ids for e in erased] == [[first.event_id], [second.event_id]]
        (document,) = [doc async for doc in router.db[ROUTER_OUTBOXES].find({})]
        assert document["leads"] == [], "an erased lead's outbox stays in the document"
        assert document["rev"] == 2
        placeholders = [doc async for doc in router.db[ROUTER_LEADS].find({"_id": {"$in": ids}})]
        assert [(d["kind"], d["erased"]) for d in placeholders] == [("merged", True)] * 2

        await router.service.republish_stale()
        assert await router.db[ROUTER_OUTBOXES].count_documents({}) == 0
        assert not await router.service.on_leads_received([first, second])  # the crashed batch redelivered
        emails = [str(lead.payload.contact.email).encode() for lead in (first, second)]
        assert not [body for _, body in router.published.records if any(e in body for e in emails)]
        # No contact key (the erasures' marks, hashes, live beside the keys: decision 0106).
        assert await router.db[ROUTER_CONTACTS].count_documents({"lead_id": {"$exists": True}}) == 0


async def test_an_erasure_takes_a_repeat_a_crash_left_in_a_later_stale_outbox_document_out_of_it(
    mongo_url: str,
) -> None:
    """Helper 98, on the MongoDB-wire server: a lead is routed; a later batch holds an R1 repeat of its contact, and
    its writer died after the outbox document, before the records. The erasure past the stale bound places an erased
    placeholder under the repeat too and takes its outbox out of the document: the batch's redelivery does not route
    the repeat as a new lead carrying the erased contact (the keys are forgotten by then)."""
    async with router_on(mongo_url, {"accounts": [office("acme", 600)]}, now=T0) as router:
        router.service.erasures = Erasures(router.db)
        first, other = received(n=1), received(n=2)
        repeat = LeadReceived.create(account_id="acme", occurred_at=T0, payload=first.payload)
        assert not await router.service.on_leads_received([first])
        router.published.failing = True
        with pytest.raises(ConnectionError):
            await router.service.on_leads_received([repeat, other])
        router.published.failing = False
        ids = [str(repeat.event_id), str(other.event_id)]
        await router.db[ROUTER_LEADS].delete_many({"_id": {"$in": ids}})  # as if the writer died before these
        await router.db[ROUTER_CONTACTS].delete_many({"lead_id": str(other.event_id)})
        await router.db[ROUTER_OUTBOXES].update_many({}, {"$inc": {"since_ms": -2 * STALE_BATCH_SECONDS * 1000}})
        router.published.clear()

        email = first.payload.contact.email
        assert email is not None
        await router.service.on_command(erase_contact(email))
        (erased,) = [e for _, e in router.published.events() if isinstance(e, ContactErased)]
        assert erased.payload.lead_ids == [first.event_id], "a repeat is not one of the erasure's leads"
        (document,) = [doc async for doc in router.db[ROUTER_OUTBOXES].find({})]
        assert [item["lead_id"] for item in document["leads"]] == [str(other.event_id)]
        placeholder = await router.db[ROUTER_LEADS].find_one({"_id": str(repeat.event_id)})
        assert placeholder is not None
        assert (placeholder["kind"], placeholder["erased"]) == ("merged", True)

        router.published.clear()
        assert not await router.service.on_leads_received([repeat, other])  # the crashed batch redelivered
        assert not [body for _, body in router.published.records if email.encode() in body], "the contact came out"
        assert [body for _, body in router.published.records if str(other.payload.contact.email).encode() in body]
        gone = {"lead_id": {"$in": [str(first.event_id), str(repeat.event_id)]}}
        assert not await router.db[ROUTER_CONTACTS].count_documents(gone), "a key of the erased contact is kept"


def erase_contact(email: str) -> EraseContact:
    payload = EraseContactPayload(by_user_id="acme-broker", reason="ticket 9", email=email)
    return EraseContact.create(account_id="acme", occurred_at=T0, payload=payload)
