"""T2 in crm-api's views on a real MongoDB-wire server: a moved lead's row, labels and timeline; a move projected
after what the new office did since (decision 0093)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from fakes_crm import Interleaving
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from test_crm_erasure_races import MINUTE, Views, _move, _run
from test_crm_erasure_races import T0 as RACE_T0
from test_crm_move_and_erasure_races import _offer, _offered, _return_with_a_late_change

from leadflow_crm_api.adapters.leads import CRM_TIMELINE, LeadViews, ScopedLeads, ensure_indexes, scope_filter
from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.generations import LAST_ACTIVITY
from leadflow_crm_api.domain.offices import profile_fields
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery
from leadflow_crm_api.handlers import project
from leadflow_notifier.adapters.repository import AgentDirectory
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import CRM_LABELS, CRM_OFFICE_TRANSFERS
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
MOVED_AT = T0 + timedelta(hours=3)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
CONTACT = Contact(first_name="Mo", last_name="Vers", email="mo@example.com")
PROFILE = {
    "company": "Harbor Lofts LLC",
    "office_address": "1 Main St",
    "home_address": "22 Oak Ave",
    "rating": 4,
    "production_value": "$5M+",
    "labels": ["Hot", "Relocating"],
    "campaigns": ["Spring buyers"],
    "campaign_subscriptions": ["Market report"],
    "campaign_triggers": ["Price drop"],
}


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await ensure_indexes(client[name])
    yield client[name]
    await client.drop_database(name)
    await client.close()


def events(lead: uuid.UUID, transfer: uuid.UUID) -> tuple[LeadOffered, OfferWithdrawn, LeadTransferred]:
    offered = LeadOffered.create(
        account_id="north",
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=lead,
            agent_id="ana",
            offer_round=1,
            race_size=1,
            deadline=T0 + timedelta(minutes=15),
            explanation="R6",
            contact=CONTACT,
            source=SOURCE,
        ),
    )
    withdrawn = OfferWithdrawn.create(
        account_id="north",
        occurred_at=MOVED_AT,
        payload=OfferClosedPayload(
            lead_id=lead, agent_id="ana", offer_round=1, reason=WithdrawalReason.OFFICE_TRANSFER
        ),
    )
    moved = LeadTransferred.create(
        account_id="north",
        occurred_at=MOVED_AT,
        payload=LeadTransferredPayload(
            lead_id=lead,
            transfer_id=transfer,
            from_account_id="north",
            from_account_name="North Office",
            previous_owner_agent_id="ana",
            previous_owner_name="Ana Diaz",
            to_account_id="south",
            to_account_name="South Office",
            agent_id="sol",
            by_user_id="nora",
            contact=CONTACT,
            source=SOURCE,
        ),
    )
    return offered, withdrawn, moved


async def test_a_moved_lead_is_new_in_the_target_keeps_its_profile_and_timeline_and_drops_campaigns(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    lead, transfer = uuid.uuid4(), uuid.uuid4()
    offered, withdrawn, moved = events(lead, transfer)
    views = LeadViews(db)
    north = ScopedLeads(db, scope_filter(Principal("nora", Role.BROKER, "north"), "north"))
    south = ScopedLeads(db, scope_filter(Principal("sam", Role.BROKER, "south"), "south"))
    await project(offered, views=views)
    assert await north.set_profile(str(lead), profile_fields(PROFILE))
    await Labels(db).ensure_named("north", ["Hot", "Relocating"], at=T0)
    await Labels(db).ensure_named("south", ["hot"], at=T0)  # exists in the target, in another case
    await db[CRM_OFFICE_TRANSFERS].insert_one({"_id": str(transfer), "account_id": "north", "status": "pending"})

    for event in (withdrawn, moved, withdrawn, moved):  # a redelivery changes nothing
        await project(event, views=views)

    assert await north.get(str(lead)) is None, "the lead left the first office"
    row = await south.get(str(lead))
    assert row is not None, "and is in the second"
    assert {
        "company": row.company,
        "office_address": row.office_address,
        "home_address": row.home_address,
        "rating": row.rating,
        "production_value": row.production_value,
        "labels": list(row.labels),
        "source": row.source,
    } == {
        **{
            k: PROFILE[k] for k in ("company", "office_address", "home_address", "rating", "production_value", "labels")
        },
        "source": "Website",
    }
    assert (list(row.campaigns), list(row.campaign_subscriptions), list(row.campaign_triggers)) == ([], [], [])
    assert (row.owner_agent_id, row.status, list(row.open_offers), list(row.offered_to)) == ("sol", "assigned", [], [])
    assert row.created_ms == epoch_ms(MOVED_AT), "a new lead in the target: it lists by its arrival"
    assert row.first_created_ms == epoch_ms(T0)
    assert (row.moved_from_account_id, row.moved_from_owner) == ("north", "Ana Diaz")

    listed = await south.find_page(LeadQuery(label="RELOCATING"), limit=10, after=None)
    assert [d.lead_id for d in listed] == [str(lead)], "labels are searchable in the target, in any case"
    labels = {d["key"]: d["name"] async for d in db[CRM_LABELS].find({"account_id": "south"})}
    assert labels == {"hot": "hot", "relocating": "Relocating"}, "missing labels created, existing ones kept"

    timeline = await south.timeline(row)
    by_type = {e.type: e for e in timeline}
    assert len(timeline) == len(by_type) == 3, "the whole timeline, once"
    assert timeline[0].type == "LeadOffered", "the first office's history stays"
    assert "moved to another office" in by_type["OfferWithdrawn"].summary
    assert by_type["LeadTransferred"].summary == (
        "Transferred from North Office (north), owned there by Ana Diaz, to South Office by nora"
    )
    assert by_type["LeadTransferred"].occurred_ms == epoch_ms(MOVED_AT)
    assert await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == 3
    transfer_doc = await db[CRM_OFFICE_TRANSFERS].find_one({"_id": str(transfer)})
    assert transfer_doc is not None
    assert transfer_doc["status"] == "done"


async def test_replaying_an_earlier_event_after_the_move_keeps_the_lead_in_the_target(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    lead = uuid.uuid4()
    offered, withdrawn, moved = events(lead, uuid.uuid4())
    views = LeadViews(db)
    for event in (offered, withdrawn, moved, offered):
        await project(event, views=views)
    row = await ScopedLeads(db, scope_filter(Principal("sam", Role.BROKER, "south"), "south")).get(str(lead))
    assert row is not None
    assert row.owner_agent_id == "sol"


async def test_a_move_projected_after_the_new_offices_release_keeps_the_lead_unassigned(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """North moves the lead to south, where sol holds it. sol is then deactivated in south (`departed_agent_leads`
    `unassigned`): the router releases sol's leads at once with a LeadReleased keyed by south, which needs nothing
    from crm-api's views. The consumer of south's partition projects it before the one of north's partition
    (lagging, or rebalancing) projects the move (helper 80's review)."""
    lead, transfer = uuid.uuid4(), uuid.uuid4()
    offered, withdrawn, move = events(lead, transfer)
    released = LeadReleased.create(
        account_id="south",
        occurred_at=MOVED_AT + timedelta(seconds=30),
        payload=LeadReleasedPayload(lead_id=lead, agent_id="sol", broker_agent_id="sue", explanation="sol left"),
    )
    views = LeadViews(db)
    for event in (offered, withdrawn, released, move):  # south's partition first, then north's
        await project(event, views=views, side_effects=False)

    row = await views.row(str(lead))
    assert row is not None
    assert (row.account_id, row.created_at, row.moved_from_account_id) == ("south", MOVED_AT, "north")
    assert (row.owner_agent_id, row.status, row.assignment_reason) == (None, "unassigned", "agent_left"), (
        "the late move made sol, who left, the holder again"
    )
    assert (row.early_holder_account_id, row.early_holder_ms) == (None, None), "in south now: the release is its own"
    assert row.last_activity_at == released.occurred_at, "the last activity stays the later release's"


async def test_a_moved_team_member_arrives_onboarding_in_the_target_roster_and_a_retry_changes_nothing(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await db["accounts"].insert_many(
        [
            {"_id": "north", "name": "North", "roster": ["nora", "max", "ana"]},
            {"_id": "south", "name": "South", "roster": ["sol"]},
        ]
    )
    await db["agents"].insert_one(
        {
            "_id": "max",
            "account_id": "north",
            "name": "Max",
            "email": "max@north.example",
            "active": True,
            "round_robin": True,
            "offices": ["n1"],
            "lead_groups": ["buyers"],
            "site_hosts": ["max.north.example"],
        }
    )
    await db["notifier_preferences"].insert_one({"_id": "max", "account_id": "north", "digest": True})
    # Max's phone and tablet, registered in North; a device another office registered for the id is not Max's.
    await db["push_devices"].insert_many([
        {"_id": f"max/{d}", "user_id": "max", "device_id": d, "account_id": a, "token": f"fcm-{d}", "platform": "ios"}
        for d, a in (("phone", "north"), ("tablet", "north"), ("other", "west"))
    ])  # fmt: skip
    transfer = {"_id": str(uuid.uuid4()), "account_id": "north", "to_account_id": "south", "agent_id": "max"}
    for _ in range(2):
        await OfficeTransfers(db).move_member(transfer)

    rosters = {d["_id"]: d["roster"] async for d in db["accounts"].find({})}
    assert rosters == {"north": ["nora", "ana"], "south": ["sol", "max"]}, "out of one roster, at the end of the other"
    agent = await db["agents"].find_one({"_id": "max"})
    assert agent is not None
    assert (agent["account_id"], agent["status"], bool(agent["active"]), bool(agent["round_robin"])) == (
        "south",
        "onboarding",
        False,
        False,
    )
    assert (agent["offices"], agent["lead_groups"], agent["site_hosts"]) == ([], [], ["max.north.example"])
    prefs = await db["notifier_preferences"].find_one({"_id": "max"})
    assert prefs is not None
    assert prefs["account_id"] == "south"
    devices = {d["device_id"]: d["account_id"] async for d in db["push_devices"].find({"user_id": "max"})}
    assert devices == {"phone": "south", "tablet": "south", "other": "west"}, "its devices went along, no other"
    assert await AccountSettings(db, "north").devices("max") == [], "the office it left lists none of them"
    recipient = await AgentDirectory(db).get("max")
    assert recipient is not None
    pushed = [d.token for d in recipient.push_devices]
    assert pushed == ["fcm-phone", "fcm-tablet"], "the notifier pushes to them for its new office"


class _MovingViews(Interleaving, LeadViews):
    """`LeadViews` running another office's consumer once, after the move's read of the row."""


def _south_refusal_and_release(lead: uuid.UUID) -> list[RoutingEvent]:
    """South's zed refused a claim (v5), sol gives the lead back (v6), after the move to south (v4)."""
    refused = ActivityLogged.create(account_id="south", occurred_at=RACE_T0 + 5 * MINUTE, payload=ActivityLoggedPayload(
        lead_id=lead, agent_id=None, action=ActivityAction.CALL, by_agent_id="zed", claim_refused="the offer ended",
        router_version=5))  # fmt: skip
    release = LeadReleased.create(account_id="south", occurred_at=RACE_T0 + 6 * MINUTE, payload=LeadReleasedPayload(
        lead_id=lead, agent_id="sol", broker_agent_id="sol", explanation="given back", reason="returned",
        router_version=6))  # fmt: skip
    return [refused, release]


async def test_a_move_whose_row_the_new_office_changed_after_its_read_is_decided_again(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """On nx-27017 (its filters on a field read as missing, `{"state_version": None}`, as MongoDB's): acme offers the
    lead (v1); the lead moves to south, sol holding it (v4); south's zed is refused a claim (v5) and sol gives the lead
    back (v6). South's consumer projects v5 and v6 between the move's read of the row and its update: the update,
    decided on the row it read, does not land (the row's versions moved); the move is decided again on the row as it
    is and leaves south's release, as in order (helper 117's review)."""
    lead, other = uuid.uuid4(), uuid.uuid4()
    direct = LeadViews(db)
    await project(_offer(lead), views=direct, side_effects=False)
    racing = _MovingViews(db)
    racing.at = "row"
    racing.meanwhile = lambda: _project_all(direct, *_south_refusal_and_release(lead))
    await project(_move(lead, RACE_T0 + 4 * MINUTE, 4), views=racing, side_effects=False)
    assert racing.ran(), "the interleaving did not happen"
    await _project_all(direct, _offer(other), _move(other, RACE_T0 + 4 * MINUTE, 4), *_south_refusal_and_release(other))

    row, in_order = await direct.row(str(lead)), await direct.row(str(other))
    assert row is not None
    assert in_order is not None
    fields = ("account_id", "status", "owner_agent_id", "assignment_reason", "state_version", "router_version")
    assert {k: getattr(row, k) for k in fields} == {k: getattr(in_order, k) for k in fields}
    assert (row.account_id, row.status, row.owner_agent_id, row.state_version) == ("south", "unassigned", None, 6)


@pytest.mark.parametrize("late", ["expiry", "release"])
async def test_a_late_change_between_a_moves_read_and_its_update_is_not_undone(
    db: AsyncDatabase[dict[str, Any]], late: str
) -> None:
    """On nx-27017 (the move's update holds on the open offers it rewrites by `$eq` of the list as read, and on the
    late-set fields' versions by their paths: nx-27017 refuses a bare list in an update's filter and matches no
    embedded document): unit `test_crm_move_and_erasure_races.py`'s 14. Acme's partition is read up to bob's offer
    (v9); the move back to acme (v6) reads the row; acme's consumer replays tom's expiry or max's release (v8, older
    than the row: no version changes) before the move's update, which then does not land and is decided again on the
    row as it is (its second update matches the row as read: it lands); the first move (v4) is read last. The row is
    as in order: the expired offer stays ended, the release's reason stays (helper 125's review)."""
    lead = uuid.uuid4()
    in_order, read_first, late_change = _return_with_a_late_change(lead, late)
    there, back = in_order[1], in_order[2]
    memory = Views()
    await _run(memory, in_order)
    expected = memory.rows[str(lead)]
    direct = LeadViews(db)
    await _project_all(direct, *read_first)
    racing = _MovingViews(db)
    racing.at = "row"
    racing.meanwhile = lambda: _project_all(direct, late_change)
    await project(back, views=racing, side_effects=False)
    assert racing.ran(), "the interleaving did not happen"
    await _project_all(direct, there)

    row = await db["crm_leads"].find_one({"_id": str(lead)})
    assert row is not None
    assert (row["moved_from_account_id"], row["moved_ms"]) == ("south", epoch_ms(back.occurred_at)), "the move landed"
    assert _offered(row) == _offered(expected)
    assert [o["agent_id"] for o in row["open_offers"]] == [o["agent_id"] for o in expected["open_offers"]] == ["bob"]


async def _project_all(views: LeadViews, *events: RoutingEvent) -> None:
    for event in events:
        await project(event, views=views, side_effects=False)


async def test_a_move_sets_its_last_activity_as_the_in_memory_views_do(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Acme offers the lead to ana (v1); the lead moves to south, sol holding it (v4, minute 4), nothing between.
    The move's fields op sets `moved_ms` (and raises the versions); its activity op, sent after it in the same ordered
    bulk write, filtered on the same `expect` (the row as read: `moved_ms` missing, versions v1), then matched no row:
    the moved lead kept acme's offer as its last activity on MongoDB, while the rebuild's in-memory views
    (`RowChanges.applied_to`, which checks `expect` once) set the move's."""
    lead = uuid.uuid4()
    move = _move(lead, RACE_T0 + 4 * MINUTE, 4)
    views = LeadViews(db)
    for event in (_offer(lead), move):
        await project(event, views=views, side_effects=False)
    memory = Views()
    await _run(memory, [_offer(lead), move])

    doc = await db["crm_leads"].find_one({"_id": str(lead)})
    assert doc is not None
    assert (doc["account_id"], doc["moved_ms"]) == ("south", epoch_ms(move.occurred_at))
    expected = {k: memory.rows[str(lead)].get(k) for k in LAST_ACTIVITY}
    assert (expected["last_activity_kind"], expected["last_activity_ms"]) == (move.type, epoch_ms(move.occurred_at))
    assert {k: doc.get(k) for k in LAST_ACTIVITY if k != "last_activity_at"} == {
        k: v for k, v in expected.items() if k != "last_activity_at"
    }, "the move's last activity was not set on the stored row"
