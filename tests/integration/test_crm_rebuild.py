"""Rebuilding crm-api's views (decision 0045) on real servers: the buffered replay means what the projection
means, writers log and wait as the generation's phase says, and a rebuild in process (Tansu, nx-27017)
keeps what requests wrote and brings over what the live projection did meanwhile, in order."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import Doc, Topic, canonical, docs, topic_on
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.buffered_views import BufferedViews
from leadflow_crm_api.adapters.generations import META_TTL_SECONDS, VIEWS, Write, read_meta, replayed_already, writing
from leadflow_crm_api.adapters.leads import LeadViews, ScopedLeads, ensure_indexes, scope_filter
from leadflow_crm_api.adapters.view_commands import ViewCommands
from leadflow_crm_api.domain.generations import Phase, ViewNames, names_of
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import activity_entry
from leadflow_crm_api.handlers import project
from leadflow_crm_api.rebuild import rebuild_views
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_devstack.raw_records import RawRecord, produce_batch, record_batch
from leadflow_devstack.testing import eventually
from leadflow_ops import cli
from leadflow_shared.collections import CRM_META, CRM_REBUILD_LOG
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    ContactMessaged,
    ContactMessagedPayload,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawalReason,
)
from leadflow_shared.settings import KafkaSettings, MongoSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
BROKER = Principal("bea", Role.BROKER, "acme")


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(mongo_url: str) -> AsyncIterator[tuple[AsyncDatabase[Doc], str]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await ensure_indexes(client[name])
    yield client[name], name
    await client.drop_database(name)
    await client.close()


def contact(first: str) -> Contact:
    return Contact(first_name=first, last_name="Doe", email=f"{first.lower()}@example.com", phone="+12125550100")


def assigned(lead: uuid.UUID, at: datetime, agent: str = "ana", account: str = "acme") -> LeadAssigned:
    return LeadAssigned.create(account_id=account, occurred_at=at, payload=LeadAssignedPayload(
        lead_id=lead, agent_id=agent, reason=AssignmentReason.ROSTER_POSITION_1, explanation="R5",
        contact=contact("Al"), source=SOURCE))  # fmt: skip


def offered(lead: uuid.UUID, agent: str, at: datetime, round_: int = 1, account: str = "acme") -> LeadOffered:
    return LeadOffered.create(account_id=account, occurred_at=at, payload=LeadOfferedPayload(
        lead_id=lead, agent_id=agent, offer_round=round_, race_size=2, deadline=at + timedelta(minutes=15),
        explanation="R6", contact=contact("Rae"), source=SOURCE, referral_fee_percent=25))  # fmt: skip


def claimed(lead: uuid.UUID, agent: str, at: datetime) -> LeadClaimed:
    return LeadClaimed.create(account_id="acme", occurred_at=at, payload=LeadClaimedPayload(
        lead_id=lead, agent_id=agent, action=ActivityAction.CALL, offer_round=1, referral_fee_percent=25))  # fmt: skip


def closed(kind: type[OfferExpired | OfferWithdrawn], lead: uuid.UUID, agent: str, at: datetime, round_: int = 1,
           reason: WithdrawalReason | None = None) -> OfferExpired | OfferWithdrawn:  # fmt: skip
    payload = OfferClosedPayload(lead_id=lead, agent_id=agent, offer_round=round_, reason=reason)
    return kind.create(account_id="acme", occurred_at=at, payload=payload)


def lives() -> list[RoutingEvent]:
    """Three leads' lives with every kind of lead event, and two redeliveries."""
    race, held, moved = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t = [T0 + timedelta(minutes=i) for i in range(20)]
    shared = LeadShared.create(account_id="acme", occurred_at=t[6], payload=LeadSharedPayload(
        lead_id=race, share_id=uuid.uuid4(), agent_id="rio", realtor_name="Rio", assigned_by="Acme",
        previous_owner_agent_id="ana", by_user_id="bea"))  # fmt: skip
    race_claimed = claimed(race, "ana", t[2])
    return [
        offered(race, "ana", t[0]), offered(race, "ben", t[0]), race_claimed,
        closed(OfferWithdrawn, race, "ben", t[2], reason=WithdrawalReason.CLAIMED_BY_ANOTHER),
        ActivityLogged.create(account_id="acme", occurred_at=t[4], payload=ActivityLoggedPayload(
            lead_id=race, agent_id="ana", action=ActivityAction.INQUIRY)),
        ContactMessaged.create(account_id="acme", occurred_at=t[5], payload=ContactMessagedPayload(
            lead_id=race, agent_id="ana", channel="email", to="rae@example.com", body="Hello")),
        shared,
        assigned(held, t[1]),
        LeadReleased.create(account_id="acme", occurred_at=t[7], payload=LeadReleasedPayload(
            lead_id=held, agent_id="ana", broker_agent_id="bea", explanation="ana left")),
        offered(held, "cy", t[8], round_=2), closed(OfferExpired, held, "cy", t[9], round_=2),
        LeadFellBack.create(account_id="acme", occurred_at=t[10], payload=LeadFellBackPayload(
            lead_id=held, agent_id="bea", explanation="nobody claimed")),
        race_claimed, shared,  # redelivered
        offered(moved, "ana", t[3]),
        closed(OfferWithdrawn, moved, "ana", t[11], reason=WithdrawalReason.OFFICE_TRANSFER),
        LeadTransferred.create(account_id="acme", occurred_at=t[11], payload=LeadTransferredPayload(
            lead_id=moved, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
            previous_owner_agent_id=None, to_account_id="south", to_account_name="South", agent_id="sol",
            by_user_id="bea", contact=contact("Mo"), source=SOURCE)),
        offered(moved, "sue", t[12], account="south"),
    ]  # fmt: skip


async def test_a_buffered_replay_writes_what_the_projection_writes(mongo: tuple[AsyncDatabase[Doc], str]) -> None:
    db, _ = mongo
    events = lives()
    direct, buffered = names_of(0), names_of(1)
    for event in events:
        await project(event, views=LeadViews(db, direct), side_effects=False)
    buffer = BufferedViews(db, buffered)
    for start in range(0, len(events), 4):  # batch boundaries inside every lead's life
        batch = events[start : start + 4]
        leads = {str(lead) for e in batch if (lead := getattr(e.payload, "lead_id", None)) is not None}
        await buffer.load(leads, {str(e.event_id) for e in batch})
        for event in batch:
            await project(event, views=buffer, side_effects=False)
        await buffer.flush()
    rows = await docs(db, direct.leads)
    assert len(rows) == 3
    assert {row["status"] for row in rows} == {"assigned", "fell_back", "offered"}
    assert canonical(rows) == canonical(await docs(db, buffered.leads))
    assert canonical(await docs(db, direct.timeline)) == canonical(await docs(db, buffered.timeline))


async def test_the_coalesced_projection_writes_what_the_projection_writes(
    mongo: tuple[AsyncDatabase[Doc], str],
) -> None:
    """crm-api's consumer (entrypoints/kafka.py): leads concurrently, each lead's events in order, their
    reads and writes coalesced into a few commands (adapters/view_commands.py); same views as one by one."""
    db, _ = mongo
    events = lives()
    direct, coalesced = names_of(0), names_of(1)  # generation 2 would be 0's collections again
    for event in events:
        await project(event, views=LeadViews(db, direct), side_effects=False)
    commands = ViewCommands(db)
    by_lead: dict[str, list[RoutingEvent]] = {}
    for event in events:
        by_lead.setdefault(str(getattr(event.payload, "lead_id", event.event_id)), []).append(event)

    async def one_lead(lives_events: list[RoutingEvent]) -> None:
        for event in lives_events:
            await project(event, views=LeadViews(db, coalesced, commands=commands), side_effects=False)

    await asyncio.gather(*(one_lead(e) for e in by_lead.values()))
    rows = await docs(db, direct.leads)
    assert len(rows) == 3
    assert canonical(rows) == canonical(await docs(db, coalesced.leads))
    assert canonical(await docs(db, direct.timeline)) == canonical(await docs(db, coalesced.timeline))


async def set_meta(db: AsyncDatabase[Doc], **fields: Any) -> None:
    await db[CRM_META].update_one({"_id": VIEWS}, {"$set": fields}, upsert=True)
    await read_meta(db)  # this process's cache too


async def test_writers_log_while_building_and_wait_out_a_switch(mongo: tuple[AsyncDatabase[Doc], str]) -> None:
    db, _ = mongo
    lead = uuid.uuid4()
    for generation in (0, 1):
        await project(assigned(lead, T0), views=LeadViews(db, names_of(generation)), side_effects=False)
    leads = ScopedLeads(db, scope_filter(BROKER, "acme"))
    await set_meta(db, active=0, phase=Phase.BUILDING.value, building=1, ticket=40)

    assert await leads.set_profile(str(lead), {"crm_status": "contacted"})
    note = activity_entry(event_id=str(uuid.uuid4()), lead_id=str(lead), account_id="acme", agent_id="ana",
                          action="note", occurred_at=T0)  # fmt: skip
    await LeadViews(db).record(note)
    assert await docs(db, CRM_REBUILD_LOG) == [
        {"_id": 41, "lead_ids": [str(lead)]},
        {"_id": 42, "lead_ids": [str(lead)]},
    ]
    assert (await db[names_of(0).leads].find_one({"_id": str(lead)}) or {})["crm_status"] == "contacted"
    assert await db[names_of(1).timeline].count_documents({"_id": note["_id"]}) == 0, "the rebuild copies it"

    await set_meta(db, phase=Phase.SWITCHING.value, switch_by_ms=int(time.time() * 1000) + 60_000)
    waiting = asyncio.create_task(leads.set_profile(str(lead), {"assigned_users": ["bo"]}))
    done, _ = await asyncio.wait({waiting}, timeout=2 * META_TTL_SECONDS)
    assert not done, "a write during a switch waits for it"
    await set_meta(db, active=1, phase=Phase.IDLE.value, building=None)
    assert await asyncio.wait_for(waiting, 5)
    assert (await db[names_of(1).leads].find_one({"_id": str(lead)}) or {}).get("assigned_users") == ["bo"]
    assert "assigned_users" not in (await db[names_of(0).leads].find_one({"_id": str(lead)}) or {})
    assert await db[CRM_REBUILD_LOG].count_documents({}) == 2, "no ticket outside a build"

    # A switch whose rebuild died: past its deadline the first writer aborts it and goes on.
    await set_meta(db, phase=Phase.SWITCHING.value, building=2, switch_by_ms=int(time.time() * 1000) - 1)
    assert await asyncio.wait_for(leads.set_profile(str(lead), {"crm_status": "lost"}), 5)
    meta = await read_meta(db)
    assert (meta.active, meta.phase, meta.building) == (1, Phase.IDLE, None)
    assert (await db[names_of(1).leads].find_one({"_id": str(lead)}) or {})["crm_status"] == "lost"


@pytest_asyncio.fixture(loop_scope="session")
async def topic(kafka_bootstrap: str) -> AsyncIterator[Topic]:
    async with topic_on(kafka_bootstrap, "crm-rebuild") as log:
        yield log


async def row(db: AsyncDatabase[Doc], names: ViewNames, lead: uuid.UUID) -> Doc:
    found = await db[names.leads].find_one({"_id": str(lead)})
    assert found is not None, lead
    return found


async def test_a_rebuild_keeps_request_data_repairs_rows_and_brings_over_what_happened_meanwhile(
    mongo: tuple[AsyncDatabase[Doc], str], topic: Topic, kafka_bootstrap: str, mongo_url: str
) -> None:
    db, name = mongo
    gen0, gen1 = names_of(0), names_of(1)
    worked, racing, corrupted, deleted, late = (uuid.uuid4() for _ in range(5))
    history = [await topic.live(db, event) for event in (
        assigned(worked, T0), offered(racing, "ana", T0), assigned(corrupted, T0), assigned(deleted, T0))]  # fmt: skip
    leads = ScopedLeads(db, scope_filter(BROKER, "acme"))
    assert await leads.set_profile(str(worked), {"labels": ["Hot"], "search_labels": ["hot"], "company": "Acme"})
    note = activity_entry(
        event_id=str(uuid.uuid4()),
        lead_id=str(worked),
        account_id="acme",
        agent_id="ana",
        action="note",
        occurred_at=T0 + timedelta(hours=1),
        content={"text": "Pre-approved"},
    )
    await leads.record(note)
    await leads.touch(str(worked), at=T0 + timedelta(hours=1), kind="note", by="ana")
    assert await leads.set_profile(str(corrupted), {"crm_status": "closed"})
    before = {lead: await row(db, gen0, lead) for lead in (worked, corrupted, deleted)}
    timeline_before = await docs(db, gen0.timeline)
    await db[gen0.leads].update_one({"_id": str(corrupted)}, {"$set": {"name": "CORRUPT", "status": "offered"}})
    await db[gen0.leads].delete_one({"_id": str(deleted)})
    lost = next(e["_id"] for e in timeline_before if e["lead_id"] == str(worked) and e["type"] == "LeadAssigned")
    await db[gen0.timeline].delete_one({"_id": lost})

    progress: list[str] = []
    background: list[asyncio.Task[Any]] = []

    async def meanwhile(step: str) -> None:
        """As crm-api would while the rebuild runs: a request during the build; an event after the
        rebuild's snapshot (the claim of an offer in it) whose write is still going when the switch
        begins; a request and a new lead during the switch."""
        progress.append(step)
        if step.startswith("replaying"):
            assert await leads.set_profile(str(worked), {"crm_status": "contacted"})
            ticketed = asyncio.Event()
            background.append(asyncio.create_task(slow_claim(ticketed)))
            await ticketed.wait()
        elif step.startswith("switching"):
            background.append(asyncio.create_task(leads.set_profile(str(corrupted), {"assigned_users": ["bo"]})))
            background.append(asyncio.create_task(topic.live(db, assigned(late, T0 + timedelta(hours=2)))))

    async def slow_claim(ticketed: asyncio.Event) -> None:
        claim = claimed(racing, "ana", T0 + timedelta(minutes=1))
        body, partition, offset = await topic.publish(claim)
        async with writing(db, Write(event=body, partition=partition, offset=offset)) as names:
            ticketed.set()
            await project(claim, views=LeadViews(db, names))
            await eventually(lambda: _phase_is(db, Phase.SWITCHING), what="the switch waiting for this write")

    settings = CrmApiSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, producer_idempotence=False),
        mongo=MongoSettings(url=SecretStr(mongo_url), database=name),
    )
    report = await rebuild_views(settings, progress=meanwhile, topic=topic.name)
    await asyncio.gather(*background)

    assert (report.generation, report.previous_generation, report.previous_dropped) == (1, 0, True)
    assert report.events_replayed == 4
    assert report.events_caught_up == 1, progress  # the claim; the late lead was written after the switch
    assert (report.leads, report.rows_without_events, report.records_skipped) == (5, 0, 0)
    assert report.entries_carried == 1
    meta = await read_meta(db)
    assert (meta.active, meta.phase, meta.building) == (1, Phase.IDLE, None)
    # A consumer that lagged behind the snapshot meets these events after the switch: not applied again.
    assert all([await replayed_already(db, write) for write in history])
    assert not await replayed_already(db, Write(event=b"{}", partition=0, offset=meta.replayed.get(0, 0)))
    assert gen0.leads not in await db.list_collection_names()
    assert await db[CRM_REBUILD_LOG].count_documents({}) == 0

    assert canonical(await row(db, gen1, worked)) == canonical(before[worked] | {"crm_status": "contacted"})
    assert canonical(await row(db, gen1, corrupted)) == canonical(before[corrupted] | {"assigned_users": ["bo"]})
    assert canonical(await row(db, gen1, deleted)) == canonical(before[deleted])
    claim = await row(db, gen1, racing)
    assert (claim["status"], claim["owner_agent_id"], claim["open_offers"]) == ("assigned", "ana", [])
    assert (await row(db, gen1, late))["status"] == "assigned"
    timeline = await docs(db, gen1.timeline)
    claims = [e for e in timeline if e["type"] == "LeadClaimed"]
    assert [e["lead_id"] for e in claims] == [str(racing)], "the claim from the log, once"
    assert [e for e in timeline if e["lead_id"] != str(late) and e not in claims] == timeline_before
    raced = sorted((e for e in timeline if e["lead_id"] == str(racing)), key=lambda e: e["occurred_ms"])
    assert [e["type"] for e in raced] == ["LeadOffered", "LeadClaimed"]
    indexes = await db[gen1.leads].index_information()
    assert len(indexes) >= 8, indexes

    # Once more, keeping the previous generation: back to today's names.
    again = await rebuild_views(settings, keep_old=True, topic=topic.name)
    assert (again.generation, again.previous_dropped, again.leads) == (2, False, 5)
    assert canonical(await docs(db, names_of(2).leads)) == canonical(await docs(db, gen1.leads))
    assert canonical(await docs(db, names_of(2).timeline)) == canonical(await docs(db, gen1.timeline))


async def _phase_is(db: AsyncDatabase[Doc], phase: Phase) -> bool:
    return (await read_meta(db)).phase is phase


async def test_a_rebuild_replays_every_event_of_a_batch_of_several_the_last_one_too(
    mongo: tuple[AsyncDatabase[Doc], str], topic: Topic, kafka_bootstrap: str, mongo_url: str
) -> None:
    """The router publishes a batch's events together: aiokafka sends them as one record batch. Tansu (0.6) lists a
    partition's end offset as the last batch's base offset + 1, so a rebuild read to that end left out all but the
    first event of the log's last batch: leads without rows in the new generation, and a watermark below them (helper
    137's review found it in `leadflow-ops dlq`; `leadflow_shared.kafka.log_end`)."""
    db, name = mongo
    leads = [uuid.uuid4() for _ in range(5)]
    batch = record_batch(
        [RawRecord(e.model_dump_json().encode(), b"acme", []) for e in (assigned(lead, T0) for lead in leads)]
    )
    await produce_batch(kafka_bootstrap, topic.name, b"acme", batch)
    settings = CrmApiSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, producer_idempotence=False),
        mongo=MongoSettings(url=SecretStr(mongo_url), database=name),
    )
    report = await rebuild_views(settings, topic=topic.name)
    assert report.events_replayed == len(leads), "events of the log's last batch were left out"
    rows = {doc["_id"] for doc in await docs(db, names_of(report.generation).leads)}
    assert rows == {str(lead) for lead in leads}


async def test_the_command_refuses_a_second_rebuild_and_abandons_one_whose_process_died(
    mongo: tuple[AsyncDatabase[Doc], str],
    mongo_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db, name = mongo
    monkeypatch.setenv("OPS_MONGO__URL", mongo_url)
    monkeypatch.setenv("OPS_MONGO__DATABASE", name)
    await set_meta(db, active=0, phase=Phase.BUILDING.value, building=1, ticket=3)
    await db[names_of(1).leads].insert_one({"_id": "half-built"})
    await db[CRM_REBUILD_LOG].insert_one({"_id": 3, "lead_ids": []})

    def ops(*argv: str) -> int:  # `leadflow-ops crm rebuild-views ...`, in a thread: it runs its own loop
        return cli.run(cli.parser().parse_args(["crm", "rebuild-views", *argv]))

    assert await asyncio.to_thread(ops) == 1, "refused: generation 1 is being built"
    assert "is being rebuilt already" in capsys.readouterr().err
    assert (await read_meta(db)).phase is Phase.BUILDING
    assert await asyncio.to_thread(ops, "--abandon", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"abandoned": True}
    meta = await read_meta(db)
    assert (meta.active, meta.phase, meta.building) == (0, Phase.IDLE, None)
    assert names_of(1).leads not in await db.list_collection_names()
    assert await db[CRM_REBUILD_LOG].count_documents({}) == 0


async def test_a_rebuild_keeps_the_events_parked_for_a_row_and_the_live_ones_of_its_catch_up(
    mongo: tuple[AsyncDatabase[Doc], str], topic: Topic, kafka_bootstrap: str, mongo_url: str
) -> None:
    """Decision 0093 amended (helper 93): each generation parks its own events. Two leads' claims came while their
    first offers were dead letters (parked by the live projection); a rebuild replays the claims (parking them in
    the new generation). One offer is replayed while the rebuild builds: the live projection applies it with its
    generation's claim, the rebuild's catch-up with its own. The other comes after the switch, and finds its claim
    where the rebuild left it."""
    db, name = mongo
    gen0, gen1 = names_of(0), names_of(1)
    during, after = uuid.uuid4(), uuid.uuid4()
    offers = {lead: offered(lead, "ana", T0) for lead in (during, after)}
    for lead in (during, after):
        await topic.live(db, claimed(lead, "ana", T0 + timedelta(minutes=1)))  # the offer a dead letter
    assert await db[gen0.parked].count_documents({}) == 2

    async def meanwhile(step: str) -> None:
        if step.startswith("replaying"):  # `leadflow-ops dlq replay` while the rebuild builds
            await topic.live(db, offers[during])

    settings = CrmApiSettings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, producer_idempotence=False),
        mongo=MongoSettings(url=SecretStr(mongo_url), database=name),
    )
    report = await rebuild_views(settings, progress=meanwhile, topic=topic.name)
    assert (report.generation, report.events_replayed, report.events_caught_up) == (1, 2, 1)
    assert [doc["lead_id"] for doc in await docs(db, gen1.parked)] == [str(after)], "kept by the switch"
    assert gen0.parked not in await db.list_collection_names(), "dropped with its generation"
    await topic.live(db, offers[after])  # replayed after the switch
    for lead in (during, after):
        found = await row(db, gen1, lead)
        assert (found["status"], found["owner_agent_id"], found["open_offers"]) == ("assigned", "ana", []), lead
    assert await docs(db, gen1.parked) == []
