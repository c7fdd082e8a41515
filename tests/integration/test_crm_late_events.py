"""crm-api's projection on a real MongoDB-wire server (nx-27017): a lead's events projected before its row (its first
event dead-lettered, replayed later) are parked in their generation's `crm_parked_events` and applied, in order, when
the row is created (decision 0093, amended). Live (coalesced, several leads at once) and rebuilt (`BufferedViews`)
agree with the events projected in order; a rebuild's generation keeps what its replay parked (helper 93)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import canonical, docs
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.buffered_views import BufferedViews
from leadflow_crm_api.adapters.leads import PARKED_EVENTS, LeadViews, ensure_indexes, ensure_view_indexes
from leadflow_crm_api.adapters.view_commands import ViewCommands
from leadflow_crm_api.domain.generations import names_of
from leadflow_crm_api.handlers import project
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadShared,
    LeadSharedPayload,
    OfferClosedPayload,
    OfferExpired,
    RoutingEvent,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 11, 30, 9, tzinfo=UTC)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await ensure_indexes(client[name])
    yield client[name]
    await client.drop_database(name)
    await client.close()


def life(lead: uuid.UUID, *, released: bool) -> list[RoutingEvent]:
    """Offered to ana (the event dead-lettered), ana's echoed view, her claim, shared with rita, and (`released`)
    rita released."""
    minute = timedelta(minutes=1)
    contact = Contact(first_name="Jane", last_name="Doe", email="jane@example.com")
    events: list[RoutingEvent] = [
        LeadOffered.create(account_id="acme", occurred_at=T0, payload=LeadOfferedPayload(
            lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 15 * minute, explanation="R6",
            contact=contact, source=SOURCE)),
        ActivityLogged.create(account_id="acme", occurred_at=T0 + minute, payload=ActivityLoggedPayload(
            lead_id=lead, agent_id="ana", action=ActivityAction.VIEW, by_agent_id="ana")),
        LeadClaimed.create(account_id="acme", occurred_at=T0 + 2 * minute, payload=LeadClaimedPayload(
            lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1)),
        LeadShared.create(account_id="acme", occurred_at=T0 + 3 * minute, payload=LeadSharedPayload(
            lead_id=lead, share_id=uuid.uuid4(), agent_id="rita", realtor_name="Rita", assigned_by="Acme",
            previous_owner_agent_id="ana", by_user_id="nora")),
    ]  # fmt: skip
    if released:
        events.append(LeadReleased.create(account_id="acme", occurred_at=T0 + 4 * minute, payload=LeadReleasedPayload(
            lead_id=lead, agent_id="rita", broker_agent_id="bea", explanation="rita left")))  # fmt: skip
    return events


async def test_events_before_their_leads_row_are_parked_and_applied_when_the_dead_letter_is_replayed(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Helper 87's defect 1, on nx-27017 through the consumer's coalesced commands, four leads at once: their first
    offers dead-lettered, their later events find no row and write nothing but a parked copy (the same event read
    again is parked once); the replays create the rows with what came after applied, as in order."""
    leads = [uuid.uuid4() for _ in range(4)]
    lives = [life(lead, released=i % 2 == 1) for i, lead in enumerate(leads)]
    in_order, late = names_of(0), names_of(1)
    for events in lives:
        for event in events:
            await project(event, views=LeadViews(db, in_order), side_effects=False)
    commands = ViewCommands(db)

    async def projected(events: list[RoutingEvent]) -> None:
        for event in events:
            await project(event, views=LeadViews(db, late, commands=commands), side_effects=False)

    await asyncio.gather(*(projected([*events[1:], events[2]]) for events in lives))  # the claim read again
    assert await docs(db, late.leads) == []
    assert await docs(db, late.timeline) == [], "no row: no timeline entry either"
    parked = await docs(db, late.parked)
    assert sorted(doc["_id"] for doc in parked) == sorted(str(e.event_id) for events in lives for e in events[1:])
    assert await docs(db, in_order.parked) == [], "each generation parks its own"

    await asyncio.gather(*(projected(events[:1]) for events in lives))  # `leadflow-ops dlq replay`
    rows = await docs(db, late.leads)
    assert len(rows) == 4
    assert {(row["status"], row["owner_agent_id"]) for row in rows} == {("assigned", "rita"), ("unassigned", None)}
    assert canonical(rows) == canonical(await docs(db, in_order.leads))
    assert canonical(await docs(db, late.timeline)) == canonical(await docs(db, in_order.timeline))
    assert await docs(db, late.parked) == []


async def test_a_rebuild_parks_and_applies_as_the_live_projection_does(db: AsyncDatabase[dict[str, Any]]) -> None:
    """`BufferedViews` (a rebuild's buffer) parks in memory, across its flushes, and writes what the live
    projection writes."""
    lead = uuid.uuid4()
    events = life(lead, released=True)
    late_order = [*events[1:], events[0]]
    live, rebuilt = names_of(0), names_of(1)
    for event in late_order:
        await project(event, views=LeadViews(db, live), side_effects=False)
    buffer = BufferedViews(db, rebuilt)
    for start in range(0, len(late_order), 2):  # a flush between the parked events and the replay
        batch = late_order[start : start + 2]
        await buffer.load({str(lead)}, {str(e.event_id) for e in batch})
        for event in batch:
            await project(event, views=buffer, side_effects=False)
        await buffer.flush()
    rows = await docs(db, live.leads)
    assert [(row["status"], row["owner_agent_id"]) for row in rows] == [("unassigned", None)]
    assert canonical(await docs(db, rebuilt.leads)) == canonical(rows)
    assert canonical(await docs(db, rebuilt.timeline)) == canonical(await docs(db, live.timeline))
    assert await db[live.parked].count_documents({"lead_id": str(lead)}) == 0
    assert await db[rebuilt.parked].count_documents({"lead_id": str(lead)}) == 0, "stored at a flush, then deleted"


async def test_parked_events_are_forgotten_after_the_dead_letters_keep_time(db: AsyncDatabase[dict[str, Any]]) -> None:
    """A dead letter never replayed leaves its lead's parked events for as long as the dead letters are kept, in
    either generation (a rebuild indexes its own: `ensure_view_indexes`)."""
    await ensure_view_indexes(db, names_of(1))
    for parked in (PARKED_EVENTS, names_of(1).parked):
        ttl = {tuple(index["key"]): index.get("expireAfterSeconds") async for index in await db[parked].list_indexes()}
        assert ttl[("parked_at",)] == 30 * 24 * 3600, parked  # nx-27017 names indexes its own way: found by key


def versioned_life(lead: uuid.UUID) -> list[LeadEvent]:
    """As the router stamps them (`router_version`): offered to ana (v1); expired to bob (v2, one change); bob's
    claim (v3); released (v4)."""
    minute = timedelta(minutes=1)
    contact = Contact(first_name="Jane", last_name="Doe", email="jane@example.com")

    def offer(agent: str, round_: int, version: int) -> LeadOffered:
        return LeadOffered.create(account_id="acme", occurred_at=T0 + version * minute, payload=LeadOfferedPayload(
            lead_id=lead, agent_id=agent, offer_round=round_, race_size=1, deadline=T0 + (version + 15) * minute,
            explanation="R6", contact=contact, source=SOURCE, router_version=version))  # fmt: skip

    return [
        offer("ana", 1, 1),
        OfferExpired.create(account_id="acme", occurred_at=T0 + 2 * minute, payload=OfferClosedPayload(
            lead_id=lead, agent_id="ana", offer_round=1, router_version=2)),
        offer("bob", 2, 2),
        LeadClaimed.create(account_id="acme", occurred_at=T0 + 3 * minute, payload=LeadClaimedPayload(
            lead_id=lead, agent_id="bob", action=ActivityAction.CALL, offer_round=2, router_version=3)),
        LeadReleased.create(account_id="acme", occurred_at=T0 + 4 * minute, payload=LeadReleasedPayload(
            lead_id=lead, agent_id="bob", broker_agent_id="bea", explanation="bob left", router_version=4)),
    ]  # fmt: skip


async def test_an_old_offer_replayed_after_the_claim_changes_nothing_but_its_timeline_live_and_rebuilt(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Helper 87's defect 2 on nx-27017: bob's round-2 offer dead-lettered by crm-api and replayed after his claim
    (and, for a second lead, after the release) is older than the row's router version: no offer re-opens. The
    live projection (coalesced commands) and a rebuild's buffer leave what the events in order leave."""
    leads = [uuid.uuid4(), uuid.uuid4()]
    lives = [versioned_life(lead) for lead in leads]
    in_order, live, rebuilt = names_of(0), names_of(1), names_of(2)
    for events in lives:
        for event in events:
            await project(event, views=LeadViews(db, in_order), side_effects=False)
    late: list[list[LeadEvent]] = [[*events[:2], events[3], events[2], events[4]] for events in lives[:1]]
    late += [[*events[:2], *events[3:], events[2]] for events in lives[1:]]
    commands = ViewCommands(db)

    async def projected(events: list[LeadEvent]) -> None:
        for event in events:
            await project(event, views=LeadViews(db, live, commands=commands), side_effects=False)

    await asyncio.gather(*(projected(events) for events in late))
    buffer = BufferedViews(db, rebuilt)
    for events in late:
        await buffer.load({str(events[0].payload.lead_id)}, {str(e.event_id) for e in events})
        for event in events:
            await project(event, views=buffer, side_effects=False)
        await buffer.flush()
    expected = await docs(db, in_order.leads)
    assert [(row["status"], row["open_offers"], row["router_version"]) for row in expected] == [
        ("unassigned", [], 4)
    ] * 2
    for names in (live, rebuilt):
        rows = await docs(db, names.leads)
        assert [(r["status"], r["open_offers"]) for r in rows] == [("unassigned", [])] * 2
        assert canonical(_sorted_links(rows)) == canonical(_sorted_links(expected))
        assert canonical(await docs(db, names.timeline)) == canonical(await docs(db, in_order.timeline))


def _sorted_links(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their accept links in any order (a late offer's link is added when it comes)."""
    return [
        {**row, "offer_links": sorted(row["offer_links"], key=lambda link: link["link_id"]),
         "offer_link_ids": sorted(row["offer_link_ids"])}
        for row in rows
    ]  # fmt: skip


async def test_a_dead_letter_replayed_during_a_rebuild_leaves_the_new_generation_without_the_parked_events(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Helper 92's review (`test_review_s26_crm_rebuild_parking.py`, moved): the lead's first offer is a dead letter;
    its view, claim and share were parked by the live projection (generation 0) and replayed by a rebuild of
    generation 1 (parked in its buffer, stored in generation 1's parked events at its flush). The dead letter is
    replayed before the switch: the live projection applies it with generation 0's parked events, the rebuild's
    catch-up with generation 1's. Both read assigned to rita."""
    lead = uuid.uuid4()
    events = life(lead, released=False)
    live, rebuilt = names_of(0), names_of(1)
    for event in events[1:]:  # live: the first offer dead-lettered, the others parked
        await project(event, views=LeadViews(db, live), side_effects=False)
    buffer = BufferedViews(db, rebuilt)  # the rebuild's replay of the log as it was when it began
    await buffer.load({str(lead)}, {str(e.event_id) for e in events[1:]})
    for event in events[1:]:
        await project(event, views=buffer, side_effects=False)
    await buffer.flush()
    assert len(await docs(db, rebuilt.parked)) == len(events) - 1

    await project(events[0], views=LeadViews(db, live), side_effects=False)  # `dlq replay`: live first
    await project(events[0], views=LeadViews(db, rebuilt), side_effects=False)  # then the rebuild's catch-up

    live_rows = await docs(db, live.leads)
    assert [(row["status"], row["owner_agent_id"]) for row in live_rows] == [("assigned", "rita")]
    rebuilt_rows = await docs(db, rebuilt.leads)
    assert [(r["status"], r.get("owner_agent_id")) for r in rebuilt_rows] == [("assigned", "rita")], (
        "the rebuilt generation lost the events parked before the replay"
    )
    assert canonical(rebuilt_rows) == canonical(live_rows)
    assert await docs(db, live.parked) == await docs(db, rebuilt.parked) == []
