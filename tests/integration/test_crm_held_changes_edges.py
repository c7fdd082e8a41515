"""What the projection's held changes (decision 0093, session 31: every change holds on the row's `moved_ms` and
`state_version` as read) must also cover, on nx-27017 (helper 140's review of 12e6cdc): an assignment whose insert meets
a row another office's consumer made after its read, and a row whose held fields are stored as another type."""

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

from leadflow_crm_api.adapters.leads import CRM_LEADS, LeadViews, ensure_indexes
from leadflow_crm_api.handlers import project
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
    LeadTransferred,
    LeadTransferredPayload,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 12, 3, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
CONTACT = Contact(first_name="Ria", last_name="Held", email="ria@example.com")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await ensure_indexes(client[name])
    yield client[name]
    await client.drop_database(name)
    await client.close()


def _offer(lead: uuid.UUID, agent: str, version: int, at: datetime, office: str = "acme") -> LeadOffered:
    return LeadOffered.create(account_id=office, occurred_at=at, payload=LeadOfferedPayload(
        lead_id=lead, agent_id=agent, offer_round=1, race_size=1, deadline=at + 15 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


def _claim(lead: uuid.UUID, agent: str, version: int, at: datetime, office: str = "acme") -> LeadClaimed:
    return LeadClaimed.create(account_id=office, occurred_at=at, payload=LeadClaimedPayload(
        lead_id=lead, agent_id=agent, action=ActivityAction.CALL, offer_round=1, router_version=version))  # fmt: skip


def _assigned(lead: uuid.UUID) -> LeadAssigned:
    """Acme's broker assigns the lead to dan by hand (v2)."""
    return LeadAssigned.create(account_id="acme", occurred_at=T0 + 2 * MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=2))  # fmt: skip


def _moved(lead: uuid.UUID) -> LeadTransferred:
    """The lead moves from acme to south, sol holding it there (v4; keyed by acme)."""
    return LeadTransferred.create(account_id="acme", occurred_at=T0 + 4 * MINUTE, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
        previous_owner_agent_id="dan", to_account_id="south", to_account_name="South", agent_id="sol",
        by_user_id="nora", contact=CONTACT, source=SOURCE, router_version=4))  # fmt: skip


async def _outcome(db: AsyncDatabase[dict[str, Any]], lead: uuid.UUID) -> dict[str, Any]:
    row = await LeadViews(db).row(str(lead))
    assert row is not None
    return {"office": row.account_id, "holder": row.owner_agent_id, "status": row.status,
            "offered": sorted(o.agent_id for o in row.open_offers)}  # fmt: skip


async def _in_turn(db: AsyncDatabase[dict[str, Any]], events: list[LeadEvent]) -> None:
    for event in events:
        await project(event, views=LeadViews(db), side_effects=False)


class _Meanwhile(Interleaving, LeadViews):
    pass


async def test_an_assignment_whose_row_another_consumer_made_after_its_read_does_not_undo_that_office(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Acme offers ana (v1: dead-lettered, so the lead has no row), assigns dan by hand (v2), moves the lead to south
    (v4, sol); south offers tom (v5, on south's partition). South's consumer is ahead: tom's offer makes the row
    (a first offer) between the assignment's read (no row) and its insert. The insert meets that row, and
    `_applied` then upserted the assignment over it, holding on nothing and not asking whether the row's state (v5)
    is newer: acme's lead again, dan holding it, tom's offer gone, state version 2. Projected one at a time in the
    same order of arrival (south's offer before the assignment), the assignment is older than the row and changes
    no holder. Now a row made meanwhile with a newer state takes the assignment as any late change (`_changed`)."""
    lead, one_at_a_time, before_move = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    south = _offer(lead, "tom", 5, T0 + 5 * MINUTE, office="south")
    await _in_turn(db, [_offer(before_move, "tom", 5, T0 + 5 * MINUTE, office="south"), _assigned(before_move)])
    assigned_late = await _outcome(db, before_move)
    assert assigned_late == {"office": "south", "holder": None, "status": "offered", "offered": ["tom"]}
    await _in_turn(db, [_offer(one_at_a_time, "tom", 5, T0 + 5 * MINUTE, office="south"), _assigned(one_at_a_time),
                        _moved(one_at_a_time)])  # fmt: skip
    expected = await _outcome(db, one_at_a_time)
    assert expected["office"] == "south", expected
    assert "tom" in expected["offered"], expected

    views = _Meanwhile(db)

    async def south_consumer() -> None:
        await project(south, views=LeadViews(db), side_effects=False)

    views.at, views.meanwhile = "state", south_consumer
    await project(_assigned(lead), views=views, side_effects=False)
    assert views.ran(), "the interleaving did not happen"
    assert await _outcome(db, lead) == assigned_late, "the assignment's upsert undid south's offer made under it"
    await project(_moved(lead), views=LeadViews(db), side_effects=False)
    assert await _outcome(db, lead) == expected, "and the move then kept acme's holder"


async def test_a_change_on_a_row_whose_state_version_is_stored_as_a_double_is_not_dropped_silently(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """A row whose `state_version` is a double (a hand fix or migration in mongosh, which writes numbers as
    doubles): `RowState` reads it as unknown (None, `projection._ms`), and the held update filtered on
    `state_version: null`, which the stored 1.0 never matches; the state read again was the same (None), so
    `_changed` took the miss for "held" and returned: ana's claim recorded on the timeline, the row never changed,
    nor any later change of the lead. The hold is now on the values as stored (`RowState.stored`)."""
    lead = uuid.uuid4()
    await _in_turn(db, [_offer(lead, "ana", 1, T0)])
    await db[CRM_LEADS].update_one({"_id": str(lead)}, {"$set": {"state_version": 1.0}})
    assert isinstance((await db[CRM_LEADS].find_one({"_id": str(lead)}) or {}).get("state_version"), float)
    claim = _claim(lead, "ana", 2, T0 + MINUTE)
    await _in_turn(db, [claim])
    assert await LeadViews(db).recorded(str(claim.event_id)), "the claim was not taken as applied"
    assert (await _outcome(db, lead))["holder"] == "ana", "the claim was recorded but never written"
