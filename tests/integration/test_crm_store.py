"""crm-api's views on a real MongoDB-wire server: projection replay (a share read again, decision 0093), caller
scopes, keyset pages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import views_database
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import (
    CRM_LEADS,
    CRM_TIMELINE,
    LeadViews,
    ScopedLeads,
    realtor_filter,
    scope_filter,
)
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.projection import RowState
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus, LeadTab
from leadflow_crm_api.handlers import project
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
BROKER = Principal("bea", Role.BROKER, "acme")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with views_database(mongo_url) as database:
        yield database


def assigned(account: str, agent: str, at: datetime, name: str = "Jane Doe") -> LeadAssigned:
    first, _, last = name.partition(" ")
    return LeadAssigned.create(
        account_id=account,
        occurred_at=at,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id=agent,
            reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="R5",
            contact=Contact(first_name=first, last_name=last, email=f"{first}@example.com".lower()),
            source=SOURCE,
        ),
    )


def race(lead: uuid.UUID) -> list[LeadEvent]:
    def offered(agent: str) -> LeadOffered:
        payload = LeadOfferedPayload(
            lead_id=lead,
            agent_id=agent,
            offer_round=1,
            race_size=2,
            deadline=T0 + timedelta(minutes=15),
            explanation="R6",
            contact=Contact(first_name="Rae"),
            source=SOURCE,
        )
        return LeadOffered.create(account_id="acme", occurred_at=T0, payload=payload)

    claimed = LeadClaimed.create(
        account_id="acme",
        occurred_at=T0 + timedelta(minutes=1),
        payload=LeadClaimedPayload(lead_id=lead, agent_id="ana", action=ActivityAction.NOTE, offer_round=1),
    )
    withdrawn = OfferWithdrawn.create(
        account_id="acme",
        occurred_at=T0 + timedelta(minutes=1),
        payload=OfferClosedPayload(lead_id=lead, agent_id="ben", offer_round=1),
    )
    return [offered("ana"), offered("ben"), claimed, withdrawn]


async def test_projection_is_idempotent_and_tracks_open_offers(db: AsyncDatabase[dict[str, Any]]) -> None:
    lead = uuid.uuid4()
    events = race(lead)
    views = LeadViews(db)
    for event in events[:2]:
        await project(event, views=views)
    ben = ScopedLeads(db, scope_filter(Principal("ben", Role.REALTOR, "acme"), "acme"))
    row = await ben.get(str(lead))
    assert row is not None, "an offered realtor sees the lead it may claim"
    assert list(row.offered_to) == ["ana", "ben"]
    assert [o.deadline_ms for o in row.open_offers] == [epoch_ms(T0 + timedelta(minutes=15))] * 2

    for event in [*events, *events]:  # redelivery of the whole stream, in order
        await project(event, views=views)
    row = await ScopedLeads(db, scope_filter(BROKER, "acme")).get(str(lead))
    assert row is not None
    assert (row.status, row.owner_agent_id, list(row.open_offers), list(row.offered_to)) == ("assigned", "ana", [], [])
    assert await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == len(events)
    assert await ben.get(str(lead)) is None, "a withdrawn offer takes the lead out of the realtor's scope"
    assert await db[CRM_LEADS].count_documents({"_id": str(lead)}) == 1


CONTACT = Contact(first_name="Mo", last_name="Vers", email="mo@example.com")


def offered_to_ana(lead: uuid.UUID) -> LeadOffered:
    """North offers the lead to ana (round 1)."""
    return LeadOffered.create(account_id="north", occurred_at=T0, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=15),
        explanation="R6", contact=CONTACT, source=SOURCE))  # fmt: skip


def withdrawn_for_sharing(lead: uuid.UUID, at: datetime) -> OfferWithdrawn:
    return OfferWithdrawn.create(account_id="north", occurred_at=at, payload=OfferClosedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, reason=WithdrawalReason.LEAD_SHARING))  # fmt: skip


def shared(lead: uuid.UUID, realtor: str, *, at: datetime, previous: str | None = None) -> LeadShared:
    """T1: north shares the lead with `realtor` (the router's echo; crm-api recorded the share when it took it)."""
    return LeadShared.create(account_id="north", occurred_at=at, payload=LeadSharedPayload(
        lead_id=lead, share_id=uuid.uuid4(), agent_id=realtor, realtor_name=realtor.title(),
        assigned_by="North Realty", previous_owner_agent_id=previous, by_user_id="nora"))  # fmt: skip


def moved_to_south(lead: uuid.UUID, *, at: datetime, previous: str | None) -> LeadTransferred:
    """T2: north -> south, where sol (roster position 1) holds it. Keyed by north, the office it left."""
    return LeadTransferred.create(account_id="north", occurred_at=at, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="north", from_account_name="North Office",
        previous_owner_agent_id=previous, previous_owner_name=None, to_account_id="south",
        to_account_name="South Office", agent_id="sol", by_user_id="nora", contact=CONTACT, source=SOURCE))  # fmt: skip


async def projected(views: LeadViews, *events: RoutingEvent) -> None:
    for event in events:
        await project(event, views=views, side_effects=False)  # the office transfer's bookkeeping is not at issue


async def holder(views: LeadViews, lead: uuid.UUID) -> tuple[str, str | None, str, str | None, list[str]]:
    row = await views.row(str(lead))
    assert row is not None
    return (row.account_id, row.owner_agent_id, row.status, row.assignment_reason, list(row.offered_to))


async def test_a_redelivered_share_does_not_undo_the_office_move_that_followed_it(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """North shares the lead with realtor rita, then moves it to south. The batch that held both is read again
    (the consumer died before committing, a rebalance, or the edge retrying a batch a later record failed): the
    move is on the timeline, the share is not, and both are recognised (decision 0093; helper 80's review)."""
    lead = uuid.uuid4()
    share = shared(lead, "rita", at=T0 + timedelta(minutes=1))
    move = moved_to_south(lead, at=T0 + timedelta(minutes=2), previous="rita")
    views = LeadViews(db)
    await projected(views, offered_to_ana(lead), withdrawn_for_sharing(lead, share.occurred_at))
    await projected(views, share, move)
    assert await holder(views, lead) == ("south", "sol", "assigned", "office_transfer", [])

    await projected(views, share, move)  # the same batch, redelivered

    assert await holder(views, lead) == ("south", "sol", "assigned", "office_transfer", []), (
        "the redelivered share gave the moved lead back to the first office's realtor"
    )


async def test_a_replayed_share_does_not_take_the_lead_from_the_realtor_it_was_shared_with_since(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """The notifier could not email rita about her share: its dead letter goes to leads.events.v1.dlq. Meanwhile
    north shares the lead with rob instead. An operator then replays the dead letters (`leadflow-ops dlq
    replay`), which republishes rita's LeadShared to leads.events.v1, which crm-api's projection reads too."""
    lead = uuid.uuid4()
    to_rita = shared(lead, "rita", at=T0 + timedelta(minutes=1))
    to_rob = shared(lead, "rob", at=T0 + timedelta(days=1), previous="rita")
    views = LeadViews(db)
    await projected(views, offered_to_ana(lead), withdrawn_for_sharing(lead, to_rita.occurred_at))
    await projected(views, to_rita, to_rob)
    assert await holder(views, lead) == ("north", "rob", "assigned", "lead_sharing", [])

    await projected(views, to_rita)  # the replayed dead letter, days later

    assert await holder(views, lead) == ("north", "rob", "assigned", "lead_sharing", []), (
        "the replayed share made rita the holder again"
    )
    assert await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == 2, "shares are not on the timeline"


class _MovedMeanwhile(LeadViews):
    """`LeadViews` of north's consumer: south's consumer (its own `LeadViews`) projects `move` right after this one
    first reads the lead's state, before the update decided on that read is sent."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], move: LeadTransferred) -> None:
        super().__init__(db)
        self.pending: LeadTransferred | None = move

    async def state(self, lead_id: str) -> RowState:
        read = await super().state(lead_id)
        if (move := self.pending) is not None:
            self.pending = None
            await projected(LeadViews(self.db), move)
        return read


def claimed_by_ana(lead: uuid.UUID) -> LeadClaimed:
    return LeadClaimed.create(account_id="north", occurred_at=T0 + timedelta(minutes=1), payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1))  # fmt: skip


async def test_a_move_landing_between_a_claims_read_and_its_update_is_not_undone(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """North offers the lead to ana; ana claims it; nora moves it to south, where sol holds it. The move is keyed by
    north but projected by another consumer (a replayed dead letter, a rebalance): it lands after the claim's read of
    the row and before its update. The claim's update, decided on the row before the move, wrote ana as the holder of
    a lead listed in south (a north agent working a south lead). It holds on the row's last move, misses on MongoDB,
    and is decided again on the moved row: the claim of the office left changes nothing there (helper 134's review)."""
    in_order, raced = uuid.uuid4(), uuid.uuid4()
    views = LeadViews(db)
    await projected(views, offered_to_ana(in_order), claimed_by_ana(in_order))
    await projected(views, moved_to_south(in_order, at=T0 + timedelta(minutes=2), previous="ana"))
    expected = await holder(views, in_order)
    assert expected == ("south", "sol", "assigned", "office_transfer", [])

    racing = _MovedMeanwhile(db, moved_to_south(raced, at=T0 + timedelta(minutes=2), previous="ana"))
    await projected(racing, offered_to_ana(raced))  # the first event makes the row: no state read before it
    await projected(racing, claimed_by_ana(raced))
    assert racing.pending is None, "the move did not land between the claim's read and its update"
    assert await holder(racing, raced) == expected, "the claim's update undid the move that landed under it"


async def test_scopes_keep_accounts_and_realtors_apart(db: AsyncDatabase[dict[str, Any]]) -> None:
    mine, theirs, other_account = assigned("acme", "ana", T0), assigned("acme", "ben", T0), assigned("zeta", "ana", T0)
    for event in (mine, theirs, other_account):
        await project(event, views=LeadViews(db))
    ids = {str(e.payload.lead_id): name for e, name in ((mine, "mine"), (theirs, "theirs"), (other_account, "zeta"))}

    async def visible(scope: dict[str, Any]) -> set[str]:
        docs = await ScopedLeads(db, scope).find_page(LeadQuery(), limit=50, after=None)
        return {ids[d.lead_id] for d in docs}

    ana = Principal("ana", Role.REALTOR, "acme")
    assert await visible(scope_filter(BROKER, "acme")) == {"mine", "theirs"}
    assert await visible(scope_filter(ana, "acme")) == {"mine"}
    assert await visible(realtor_filter(ana)) == {"mine"}, "same agent id in another account is another person"
    assert await visible(scope_filter(ana, "zeta")) == set(), "a realtor's own-account leads only"
    assert await visible(realtor_filter(Principal("ana", Role.REALTOR, "zeta"))) == {"zeta"}


async def test_keyset_pages_are_complete_with_ties_and_filters(db: AsyncDatabase[dict[str, Any]]) -> None:
    # Twelve leads in four milliseconds: ties on the sort key must neither repeat nor skip rows.
    events = [
        assigned("acme", "ana" if i % 2 else "ben", T0 + timedelta(milliseconds=i // 3), f"Pat{i} Zed")
        for i in range(12)
    ]
    for event in events:
        await project(event, views=LeadViews(db))
    await db[CRM_LEADS].update_one({"_id": str(events[0].payload.lead_id)}, {"$set": {"transferred_to": "rio"}})
    leads = ScopedLeads(db, scope_filter(BROKER, "acme"))

    async def pages(query: LeadQuery, limit: int) -> list[str]:
        seen: list[str] = []
        after: tuple[int, str] | None = None
        while docs := await leads.find_page(query, limit=limit, after=after):
            seen += [d.lead_id for d in docs]
            after = (query.sort.key_of(docs[-1]), docs[-1].lead_id)
        return seen

    ordered = sorted((epoch_ms(e.occurred_at), str(e.payload.lead_id)) for e in events)
    for sort in LeadSort:
        expected = [lead_id for _, lead_id in (ordered[::-1] if sort.descending else ordered)]
        for limit in (1, 2, 5):
            assert await pages(LeadQuery(sort=sort), limit) == expected, (sort, limit)

    first = str(events[0].payload.lead_id)
    assert first not in await pages(LeadQuery(tab=LeadTab.MINE), 50), "transferred leads leave My Leads"
    assert len(await pages(LeadQuery(tab=LeadTab.MINE), 50)) == 11, "explicit null transferred_to is 'mine'"
    assert await pages(LeadQuery(assigned_to="rio"), 50) == [first]
    assert len(await pages(LeadQuery(owner_agent_id="ana", status=LeadStatus.ASSIGNED), 3)) == 6
    assert await pages(LeadQuery(search="PAT1"), 50) == [
        lead_id for _, lead_id in ordered[::-1] if lead_id in {str(events[i].payload.lead_id) for i in (1, 10, 11)}
    ]
    assert await pages(LeadQuery(search="p.t"), 50) == [], "the search is literal, not a regex"
    window = LeadQuery(created_from_ms=epoch_ms(T0) + 1, created_to_ms=epoch_ms(T0) + 3)
    assert len(await pages(window, 4)) == 6
