"""crm-api's tenant isolation and roles (S1) on a real MongoDB-wire server, from an attacker's seat: a broker,
an agent or a departed user of one office, or a realtor another brokerage shared leads with, trying to reach
what is not theirs through crm-api's use cases (the JSON routes and the web pages call the same ones).

Each test is a hole that review 0076 found and closed: another office's agent made one's staff member to take
over its notifications; a user who is no manager making itself a staff member (or an admin); a racer reading
who else is offered its lead; a realtor of another brokerage probing the brokerage's user ids. Review 0080 found
the last: a realtor of another brokerage creating labels in the brokerage's account through the lead's profile.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import pytest_asyncio
from fakes_crm import Rechecks
from fastapi.exceptions import RequestValidationError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import CRM_LEADS, LeadViews, ensure_indexes
from leadflow_crm_api.domain.people import DeviceRegistration, Platform, StaffMember, StaffRole
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.rules_and_availability import RoutingRules
from leadflow_crm_api.domain.settings import DEFAULT_PREFERENCES, Channel, NotificationPreferences
from leadflow_crm_api.errors import Forbidden, NotFound
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases import lead_work, offices, people, rules_and_availability, settings
from leadflow_crm_api.use_cases.leads import account_leads, lead_view
from leadflow_notifier.adapters.repository import AgentDirectory
from leadflow_shared.collections import ACCOUNTS, AGENTS, NOTIFIER_PREFERENCES, STAFF
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadOffered,
    LeadOfferedPayload,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
NORTH, SOUTH, SOLO = "north", "south", "solo"  # two offices of two brokerages; a realtor's own account
NORA = Principal("nora", Role.BROKER, NORTH)
ANA, BEN = Principal("ana", Role.REALTOR, NORTH), Principal("ben", Role.REALTOR, NORTH)
SID = Principal("sid", Role.REALTOR, SOUTH)
RIO = Principal("rio", Role.REALTOR, SOLO)  # a realtor of its own, north shared a lead with (T1)
T0 = datetime.now(UTC).replace(microsecond=0)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
STAFF_RECORD = StaffMember(name="Sam Ortiz", email="sam@north.example")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_tenants_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_many([
        {"_id": NORTH, "name": "North Realty", "roster": ["nora", "ana", "ben"]},
        {"_id": SOUTH, "name": "South Homes", "roster": ["sid"]},
        {"_id": SOLO, "name": "Rio Solo", "roster": ["rio"]},
    ])  # fmt: skip
    await database[AGENTS].insert_many(
        [
            {"_id": a, "account_id": NORTH, "name": a.title(), "email": f"{a}@north.example"}
            for a in ("nora", "ana", "ben")
        ]
        + [{"_id": "sid", "account_id": SOUTH, "name": "Sid", "email": "sid@south.example"}]
        + [{"_id": "rio", "account_id": SOLO, "name": "Rio", "email": "rio@solo.example"}]
    )
    yield database
    await client.drop_database(database.name)
    await client.close()


async def test_another_office_s_agent_is_never_made_one_s_staff_member_nor_its_notifications_set(db: Db) -> None:
    # North's broker names South's agent as a staff member of North, then sets "its" notifications: with no channel,
    # South's agent would get no offer notice at all, and South could no longer read or change them (404).
    with pytest.raises(NotFound):
        await people.put_staff_member(
            people.account_people(NORTH, NORA, db), NORA, cast(Any, Rechecks()), "sid", STAFF_RECORD
        )
    assert await db[STAFF].find_one({"_id": "sid"}) is None

    # A staff record made so before this was refused gives North no hold on South's agent either.
    await db[STAFF].insert_one({"_id": "sid", "account_id": NORTH, "name": "Sid", "email": "sid@north.example"})
    with pytest.raises(NotFound):
        await settings.preferences_scope(NORTH, "sid", NORA, db)
    assert await db[NOTIFIER_PREFERENCES].find_one({"_id": "sid"}) is None

    # South's agent keeps its own notifications: it sets them, and the notifier reads them.
    own = await settings.preferences_scope(SOUTH, "sid", SID, db)
    await settings.put_notifications(own, "sid", NotificationPreferences(channels=[Channel.EMAIL, Channel.PUSH]))
    recipient = await AgentDirectory(db).get("sid")
    assert recipient is not None
    assert recipient.preferences.channels == frozenset({Channel.EMAIL.value, Channel.PUSH.value})
    await db[STAFF].delete_one({"_id": "sid"})


async def test_what_an_office_wrote_for_an_id_of_nobody_s_gives_no_hold_once_it_is_another_office_s_agent(
    db: Db,
) -> None:
    # North's broker adds "nell" (an id nobody has yet: a hire South is about to seed) as a staff member of North and
    # turns off its every channel; "nell", signed in to North, registers a phone for push. Then South seeds its agent
    # "nell": neither North's preferences nor North's device count for South's agent (decision 0076).
    await people.put_staff_member(
        people.account_people(NORTH, NORA, db), NORA, cast(Any, Rechecks()), "nell", STAFF_RECORD
    )
    north = await settings.preferences_scope(NORTH, "nell", NORA, db)
    await settings.put_notifications(north, "nell", NotificationPreferences(channels=[], digest=True))
    nell_north = Principal("nell", Role.REALTOR, NORTH)
    phone = DeviceRegistration(token="fcm-nell-north", platform=Platform.IOS)
    await people.put_device(people.account_people(NORTH, nell_north, db), nell_north, "nell", "phone", phone)
    # A push token in the preferences themselves, as stored before devices existed (the notifier still reads it).
    await db[NOTIFIER_PREFERENCES].update_one({"_id": "nell"}, {"$set": {"push_token": "fcm-nell-legacy"}})
    await db[AGENTS].insert_one({"_id": "nell", "account_id": SOUTH, "name": "Nell", "email": "nell@south.example"})

    recipient = await AgentDirectory(db).get("nell")
    assert recipient is not None
    assert (recipient.preferences.channels, recipient.push_devices) == (frozenset(c.value for c in Channel), ()), (
        "the notifier reaches South's agent on every channel, and not on the device registered in North"
    )
    nell = Principal("nell", Role.REALTOR, SOUTH)
    own = await settings.preferences_scope(SOUTH, "nell", nell, db)
    assert await settings.get_notifications(own, "nell") == DEFAULT_PREFERENCES
    assert (await people.list_devices(people.account_people(SOUTH, nell, db), nell, "nell")).items == []
    with pytest.raises(NotFound):
        await settings.preferences_scope(NORTH, "nell", NORA, db)

    # South's agent sets its own: North's record is replaced, nothing of it kept.
    await settings.put_notifications(own, "nell", NotificationPreferences(channels=[Channel.SMS]))
    stored = await db[NOTIFIER_PREFERENCES].find_one({"_id": "nell"})
    assert stored is not None
    assert (stored["account_id"], set(stored)) == (SOUTH, {"_id", "account_id", *NotificationPreferences.model_fields})
    recipient = await AgentDirectory(db).get("nell")
    assert recipient is not None
    assert recipient.preferences.channels == frozenset({Channel.SMS.value})
    await db[STAFF].delete_one({"_id": "nell"})


async def test_only_brokers_and_admins_add_a_staff_member_or_set_its_role(db: Db) -> None:
    # A user of North who is no manager and no agent (an agent removed from the office, say) makes itself a
    # staff member, an admin at that, so that digests and new-lead notices reach it: refused, nothing written.
    gone = Principal("gus", Role.REALTOR, NORTH)
    north = people.account_people(NORTH, gone, db)
    for record in (STAFF_RECORD, STAFF_RECORD.model_copy(update={"role": StaffRole.ADMIN})):
        with pytest.raises(Forbidden):
            await people.put_staff_member(north, gone, cast(Any, Rechecks()), "gus", record)
    assert await db[STAFF].find_one({"_id": "gus"}) is None

    # A staff member the broker added updates its own record, but its role stays the broker's to set.
    await people.put_staff_member(
        people.account_people(NORTH, NORA, db), NORA, cast(Any, Rechecks()), "gus", STAFF_RECORD
    )
    moved = STAFF_RECORD.model_copy(update={"email": "gus@north.example"})
    assert await people.put_staff_member(north, gone, cast(Any, Rechecks()), "gus", moved) == moved
    with pytest.raises(Forbidden):
        await people.put_staff_member(
            north, gone, cast(Any, Rechecks()), "gus", moved.model_copy(update={"role": StaffRole.ADMIN})
        )
    stored = await db[STAFF].find_one({"_id": "gus"})
    assert stored is not None
    assert (stored["email"], stored["role"]) == ("gus@north.example", "staff")
    admin = await people.put_staff_member(
        north, NORA, cast(Any, Rechecks()), "gus", moved.model_copy(update={"role": StaffRole.ADMIN})
    )
    assert admin.role is StaffRole.ADMIN, "the broker sets the role"
    await db[STAFF].delete_one({"_id": "gus"})


def offered(lead: uuid.UUID, agent: str) -> LeadOffered:
    return LeadOffered.create(
        account_id=NORTH,
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=lead, agent_id=agent, offer_round=1, race_size=2, deadline=T0 + timedelta(minutes=15),
            explanation="R7", contact=Contact(first_name="Rae"), source=SOURCE,
        ),
    )  # fmt: skip


async def test_a_racer_sees_its_own_open_offer_and_not_who_else_is_offered_the_lead(db: Db) -> None:
    lead = uuid.uuid4()
    for event in (offered(lead, "ana"), offered(lead, "ben")):
        await project(event, views=LeadViews(db))

    async def offers(caller: Principal) -> list[str]:
        detail = await lead_view(account_leads(caller, db, NORTH), caller, db, str(lead))
        return [o.agent_id for o in detail.open_offers]

    assert await offers(NORA) == ["ana", "ben"], "the broker sees the race"
    assert await offers(ANA) == ["ana"], "a racer sees its own offer (V3: not the offers made to other agents)"
    assert await offers(BEN) == ["ben"]


async def shared_with_rio(db: Db, first_name: str) -> str:
    """A lead of North's that North shared with Rio, a realtor of its own account (T1): Rio holds it."""
    lead = LeadAssigned.create(
        account_id=NORTH,
        occurred_at=T0,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(), agent_id="rio", reason=AssignmentReason.LEAD_SHARING, explanation="T1",
            contact=Contact(first_name=first_name), source=SOURCE,
        ),
    )  # fmt: skip
    await project(lead, views=LeadViews(db))
    lead_id = str(lead.payload.lead_id)
    await db[CRM_LEADS].update_one({"_id": lead_id}, {"$set": {"transferred_to": "rio", "assigned_by": "North"}})
    return lead_id


async def test_a_realtor_of_another_brokerage_never_assigns_nor_probes_the_brokerage_s_users(db: Db) -> None:
    # North shared a lead with Rio (T1): Rio holds it and works it under North's path; North's people are not
    # its to assign, nor to find out by trying ids (200 for a user of North, 422 for anyone else).
    lead_id = await shared_with_rio(db, "Tess")
    shared = account_leads(RIO, db, NORTH)
    assert (await lead_view(shared, RIO, db, lead_id)).owner_agent_id == "rio", "Rio works the shared lead"

    for user_ids in (["ana"], ["nobody"]):
        with pytest.raises(Forbidden):
            await lead_work.assign_users(shared, RIO, db, lead_id, lead_work.LeadUsers(user_ids=user_ids))
    row = await db[CRM_LEADS].find_one({"_id": lead_id})
    assert row is not None
    assert row.get("assigned_users", []) == []

    # North's broker assigns its own people; a user of no account of North's is refused, naming the field.
    north = account_leads(NORA, db, NORTH)
    assigned = await lead_work.assign_users(north, NORA, db, lead_id, lead_work.LeadUsers(user_ids=["ana"]))
    assert assigned.user_ids == ["ana"]
    with pytest.raises(RequestValidationError):
        await lead_work.assign_users(north, NORA, db, lead_id, lead_work.LeadUsers(user_ids=["sid"]))


async def test_a_realtor_of_another_brokerage_creates_no_label_in_the_brokerage_s_account(db: Db) -> None:
    # North shared a lead with Rio (T1). Rio may fill in the lead's profile, but North's labels are North's filing:
    # through the profile, Rio could create labels in North's account (shown on North's label list and filters).
    lead_id = await shared_with_rio(db, "Lou")
    north, shared = account_leads(NORA, db, NORTH), account_leads(RIO, db, NORTH)
    await offices.put_profile(north, NORA, db, lead_id, offices.LeadProfile(labels=["Hot"]))

    async def north_labels() -> list[str]:
        return [label.name for label in (await offices.list_labels(NORTH, NORA, db)).items]

    for labels in (["Hot", "Rio's pick"], ["Rio's pick"], [], ["hot"]):  # adding, replacing, removing, renaming
        with pytest.raises(Forbidden) as refused:
            await offices.put_profile(shared, RIO, db, lead_id, offices.LeadProfile(labels=labels, company="Rio Co"))
        assert refused.value.detail == offices.FOREIGN_LABELS
    assert await north_labels() == ["Hot"], "no label created in North's account"
    row = await db[CRM_LEADS].find_one({"_id": lead_id})
    assert row is not None
    assert (row["labels"], row.get("company")) == (["Hot"], None), "nothing saved"

    # The labels as they are, and the rest of the profile is Rio's to fill in; North's own people add labels.
    await offices.put_profile(shared, RIO, db, lead_id, offices.LeadProfile(labels=["Hot"], company="Rio Co"))
    await offices.put_profile(north, NORA, db, lead_id, offices.LeadProfile(labels=["Hot", "Vip"], company="Rio Co"))
    assert await north_labels() == ["Hot", "Vip"]
    row = await db[CRM_LEADS].find_one({"_id": lead_id})
    assert row is not None
    assert (row["labels"], row["company"]) == (["Hot", "Vip"], "Rio Co")


async def test_a_rule_set_with_a_pond_is_saved_and_its_pond_names_only_agents_of_the_roster(db: Db) -> None:
    # A pond's agents are checked against the roster as a rule's are (another office's agent is refused, naming
    # the pond), and a rule set whose rules put leads in a pond is saved: it once failed its own check (a 500).
    scope = await rules_and_availability.rules_scope(NORTH, NORA, db)
    pond = {"id": "open-house", "name": "Open house", "agents": ["ana", "sid"]}
    ponded = {"id": "ponded", "name": "Pond leads", "action": {"kind": "pond", "pond": "open-house"}}
    draft = {"version": 0, "rules": [ponded], "ponds": [pond]}
    with pytest.raises(RequestValidationError) as refused:
        await rules_and_availability.put_routing_rules(scope, RoutingRules.model_validate(draft))
    assert [(e["loc"], "'sid'" in e["msg"]) for e in refused.value.errors()] == [(("body", "ponds", 0), True)]
    account = await db[ACCOUNTS].find_one({"_id": NORTH})
    assert account is not None
    assert "routing_rules" not in account, "nothing saved"

    saved = await rules_and_availability.put_routing_rules(
        scope, RoutingRules.model_validate(draft | {"ponds": [pond | {"agents": ["ana", "ben"]}]})
    )
    assert (saved.version, [p.id for p in saved.ponds]) == (1, ["open-house"])
