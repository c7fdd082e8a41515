"""Review of crm-api's tenant isolation, roles and signatures (helper 62), from an attacker's seat, on a real
MongoDB-wire server (nx-27017). Each test shows a defect the review found (now fixed): it fails while the
defect stands. The review's fourth, an ended offer's accept link claiming a newer offer, is in
integration/test_crm_offer_links.py.

- A racer learns who else races for its lead (decision 0076 says it must not) from the other racer's actions:
  the row's `last_activity_by` and the timeline's `LeadActivity` entries (a decline, a view) name it.
- Notification preferences an office wrote for an id of nobody's keep their hold once that id is another
  office's agent: the notifier reads them by id alone, and the agent's own office can no longer change them.
- A team member moved to another office (T2) leaves its push devices with the office it left: that office still
  lists and removes them, its new office does not see them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import pytest_asyncio
from crm_harness import Published
from fakes_crm import Rechecks
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.api import ActivityCreate
from leadflow_crm_api.domain.people import DeviceRegistration, Platform, StaffMember
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.settings import Channel, NotificationPreferences
from leadflow_crm_api.domain.views import LeadQuery
from leadflow_crm_api.errors import NotFound
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases import offices, people, settings
from leadflow_crm_api.use_cases.leads import account_leads, act_on_lead, lead_page, lead_view, realtor_leads
from leadflow_notifier.adapters.repository import AgentDirectory
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
NORTH, SOUTH = "north", "south"
NORA = Principal("nora", Role.BROKER, NORTH)
ANA, BEN = Principal("ana", Role.REALTOR, NORTH), Principal("ben", Role.REALTOR, NORTH)
SAM = Principal("sam", Role.BROKER, SOUTH)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_review_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_many([
        {"_id": NORTH, "name": "North Realty", "roster": ["nora", "ana", "ben"]},
        {"_id": SOUTH, "name": "South Homes", "roster": ["sam"]},
    ])  # fmt: skip
    await database[AGENTS].insert_many(
        [
            {"_id": a, "account_id": NORTH, "name": a.title(), "email": f"{a}@north.example"}
            for a in ("nora", "ana", "ben")
        ]
        + [{"_id": "sam", "account_id": SOUTH, "name": "Sam", "email": "sam@south.example"}]
    )
    yield database
    await client.drop_database(database.name)
    await client.close()


def offered(lead: uuid.UUID, agent: str, *, offer_round: int, at: datetime, race_size: int = 1) -> LeadOffered:
    return LeadOffered.create(
        account_id=NORTH,
        occurred_at=at,
        payload=LeadOfferedPayload(
            lead_id=lead, agent_id=agent, offer_round=offer_round, race_size=race_size,
            deadline=at + timedelta(minutes=15), explanation="R7", source=SOURCE,
            contact=Contact(first_name="Rae", email="rae@x.example"),
        ),
    )  # fmt: skip


async def test_a_racer_learns_nothing_of_the_other_racers_from_the_lead_s_row_or_timeline(db: Db) -> None:
    # Ana and Ben race for a lead. Decision 0076: a racer sees its own open offer only; "who else races for the
    # lead is not the realtor's to know". The open offers hid Ben, but the row's last activity was Ben's later
    # offer (`_actor` of a LeadOffered is its agent), shown on Ana's lead page and in her list (V2,
    # `last_activity_by`); and once Ben looked at the lead and declined it, the timeline named him by those actions.
    lead, now = uuid.uuid4(), datetime.now(UTC).replace(microsecond=0)
    # Ben's offer a second after Ana's: he asked the lead back and joined her race (use_cases/ask_back.py).
    for agent, at in (("ana", now), ("ben", now + timedelta(seconds=1))):
        await project(offered(lead, agent, offer_round=1, at=at, race_size=2), views=LeadViews(db))

    async def ana_sees() -> tuple[set[str | None], list[tuple[str, str | None]]]:
        """The last actors on Ana's lead page and in her list, and what her timeline says Ben did."""
        seen = await lead_view(account_leads(ANA, db, NORTH), ANA, db, str(lead))
        listed = await lead_page(realtor_leads(ANA, db), db, LeadQuery(), 50, None)
        assert {o.agent_id for o in seen.open_offers} <= {"ana"}, "the open offers hide Ben (decision 0076)"
        actors = {seen.last_activity_by, *(i.last_activity_by for i in listed.items if i.lead_id == str(lead))}
        return actors, [(e.type, e.action) for e in seen.timeline if e.agent_id == "ben"]

    last_actors, _ = await ana_sees()
    publish = Published()
    for action in ("view", "decline"):
        body = ActivityCreate.model_validate({"action": action})
        await act_on_lead(account_leads(BEN, db, NORTH), BEN, db, str(lead), body, publish)
    after_decline, named = await ana_sees()
    # The router withdraws Ben's declined offer (its actor: Ben again).
    withdrawn = OfferWithdrawn.create(
        account_id=NORTH,
        occurred_at=datetime.now(UTC) + timedelta(seconds=1),
        payload=OfferClosedPayload(lead_id=lead, agent_id="ben", offer_round=1, reason=WithdrawalReason.DECLINED),
    )
    await project(withdrawn, views=LeadViews(db))
    after_withdrawal, named_after = await ana_sees()
    assert ("ben" in last_actors | after_decline | after_withdrawal, named + named_after) == (False, []), (
        "Ana's lead page and list name Ben as the lead's last actor (his offer, his decline, its withdrawal), and "
        "her timeline names him by his actions (a view, a decline)"
    )
    assert after_withdrawal == {None}, "the last activity shows without its actor, a racer's"

    # The brokerage sees the whole race.
    broker = await lead_view(account_leads(NORA, db, NORTH), NORA, db, str(lead))
    assert broker.last_activity_by == "ben"
    assert {("LeadActivity", "view"), ("LeadActivity", "decline")} <= {
        (e.type, e.action) for e in broker.timeline if e.agent_id == "ben"
    }
    # Ana claims: the holder is known, its claim named on the page and in the list.
    claimed = LeadClaimed.create(
        account_id=NORTH,
        occurred_at=datetime.now(UTC) + timedelta(seconds=2),
        payload=LeadClaimedPayload(lead_id=lead, agent_id="ana", action=ActivityAction.ACCEPT, offer_round=1),
    )
    await project(claimed, views=LeadViews(db))
    holder_actors, _ = await ana_sees()
    held = await lead_view(account_leads(ANA, db, NORTH), ANA, db, str(lead))
    assert holder_actors == {"ana"}
    assert ("LeadClaimed", "accept") in {(e.type, e.action) for e in held.timeline if e.agent_id == "ana"}


async def test_preferences_set_for_an_id_of_nobody_s_have_no_hold_once_it_is_another_office_s_agent(db: Db) -> None:
    # North's broker adds "newbie" (an id nobody has yet: a hire South is about to seed) as a staff member of North,
    # and turns every notification channel of "newbie" off. Then South seeds its new agent "newbie". The check of
    # decision 0076 (`agent_elsewhere`) runs when North writes, and "newbie" was nobody's agent then.
    await people.put_staff_member(
        people.account_people(NORTH, NORA, db),
        NORA,
        cast(Any, Rechecks()),
        "newbie",
        StaffMember(name="New Bie", email="nb@north.example"),
    )
    north = await settings.preferences_scope(NORTH, "newbie", NORA, db)
    await settings.put_notifications(north, "newbie", NotificationPreferences(channels=[]))
    await db[AGENTS].insert_one({"_id": "newbie", "account_id": SOUTH, "name": "New Bie", "email": "nb@south.example"})

    # South's agent gets its offers by the channels North chose (none), and neither it nor its broker can change
    # them: its own office is told it has no such user.
    newbie = Principal("newbie", Role.REALTOR, SOUTH)
    refused: list[str] = []
    for caller in (newbie, SAM):
        try:
            own = await settings.preferences_scope(SOUTH, "newbie", caller, db)
            await settings.put_notifications(own, "newbie", NotificationPreferences(channels=[Channel.EMAIL]))
        except NotFound:
            refused.append(caller.sub)
    recipient = await AgentDirectory(db).get("newbie")
    assert recipient is not None
    assert (refused, recipient.preferences.channels) == ([], frozenset({Channel.EMAIL.value})), (
        "South's agent and broker manage its notifications; North's choice has no hold on another office's agent"
    )


async def test_a_member_moved_to_another_office_takes_its_push_devices_along(db: Db) -> None:
    # Ben registers his phone for push in North; North's broker then moves him to North's sister office East (T2).
    # His agent record and notification preferences go to East (`OfficeTransfers.move_member`); his devices stay
    # North's: North's broker still lists them and removes them (Ben's pushes from East stop), while Ben cannot see
    # or remove them in the office he now works for.
    await db[ACCOUNTS].update_one({"_id": NORTH}, {"$set": {"organisation_id": "org"}})
    await db[ACCOUNTS].insert_one({"_id": "east", "name": "North East", "roster": ["eve"], "organisation_id": "org"})
    phone = DeviceRegistration(token="fcm-ben-phone", platform=Platform.ANDROID)
    await people.put_device(people.account_people(NORTH, BEN, db), BEN, "ben", "phone", phone)
    move = offices.OfficeTransferCreate(agent_id="ben", to_account_id="east")
    north = account_leads(NORA, db, NORTH)
    await offices.transfer_to_office(NORTH, move, north, NORA, db, Published(), cast(Any, Rechecks()))
    agent = await db[AGENTS].find_one({"_id": "ben"})
    assert agent is not None
    assert agent["account_id"] == "east", "Ben works for East now"

    moved = Principal("ben", Role.REALTOR, "east")
    own = (await people.list_devices(people.account_people("east", moved, db), moved, "ben")).items
    kept = (await people.list_devices(people.account_people(NORTH, NORA, db), NORA, "ben")).items
    assert ([d.device_id for d in own], [d.device_id for d in kept]) == (["phone"], []), (
        "Ben's devices are listed by his office now, not by the office he left"
    )
