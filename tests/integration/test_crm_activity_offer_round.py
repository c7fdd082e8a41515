"""crm-api names the offer round an agent acts on in the LeadActivity it publishes (decision 0087), on a real
MongoDB-wire server (nx-27017): the router claims, or declines, that round's offer only, so an action on an
offer that ended, read late, cannot claim the agent's later offer of the lead. The router's side:
unit/test_router_claim_window.py; an accept link's round: integration/test_crm_offer_links.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import crm_harness
import pytest
import pytest_asyncio
from crm_harness import Published
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.api import ActivityCreate
from leadflow_crm_api.domain.claims import ClaimOutlook
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases.leads import account_leads, act_on_lead
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.activity import ActivityAction, LeadActivity
from leadflow_shared.events.routing import LeadOffered, OfferClosedPayload, OfferExpired

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
OFFICE = "north"
NORA, ANA = Principal("nora", Role.BROKER, OFFICE), Principal("ana", Role.REALTOR, OFFICE)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_round_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_one({"_id": OFFICE, "name": "North Realty", "roster": ["nora", "ana"]})
    await database[AGENTS].insert_many(
        [{"_id": a, "account_id": OFFICE, "name": a.title(), "email": f"{a}@north.example"} for a in ("nora", "ana")]
    )
    yield database
    await client.drop_database(database.name)
    await client.close()


def offered(lead: uuid.UUID, *, offer_round: int, at: datetime) -> LeadOffered:
    return crm_harness.offered(OFFICE, lead, "ana", offer_round=offer_round, at=at)


async def offered_again(db: Db) -> uuid.UUID:
    """A lead whose round-1 offer to Ana expired and which is offered to her again, in round 3, open now."""
    lead, t0 = uuid.uuid4(), datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    await project(offered(lead, offer_round=1, at=t0), views=LeadViews(db))
    closed = OfferClosedPayload(lead_id=lead, agent_id="ana", offer_round=1)
    expired = OfferExpired.create(account_id=OFFICE, occurred_at=t0 + timedelta(minutes=15), payload=closed)
    await project(expired, views=LeadViews(db))
    await project(offered(lead, offer_round=3, at=datetime.now(UTC).replace(microsecond=0)), views=LeadViews(db))
    return lead


def published(publish: Published) -> list[LeadActivity]:
    return [LeadActivity.model_validate_json(body) for _, body in publish.records]


@pytest.mark.parametrize("action", ["accept", "note", "call", "decline"])
async def test_an_action_on_an_open_offer_names_its_round(db: Db, action: str) -> None:
    lead, publish = await offered_again(db), Published()
    body = ActivityCreate.model_validate({"action": action})
    answer = await act_on_lead(account_leads(ANA, db, OFFICE), ANA, db, str(lead), body, publish)
    assert answer.claim in {ClaimOutlook.REQUESTED, ClaimOutlook.NOT_A_CLAIM}
    (activity,) = published(publish)
    assert (activity.payload.agent_id, activity.payload.action.value) == ("ana", action)
    assert activity.payload.offer_round == 3, "the round of the offer open now, not the one that ended"


async def test_an_action_on_no_open_offer_names_no_round(db: Db) -> None:
    lead, publish = await offered_again(db), Published()
    view = ActivityCreate.model_validate({"action": "view"})
    await act_on_lead(account_leads(ANA, db, OFFICE), ANA, db, str(lead), view, publish)
    note = ActivityCreate.model_validate({"action": "note", "text": "Called the office."})
    answer = await act_on_lead(account_leads(NORA, db, OFFICE), NORA, db, str(lead), note, publish)
    assert answer.claim is ClaimOutlook.NONE, "the broker was never offered the lead"
    assert [(a.payload.agent_id, a.payload.action, a.payload.offer_round) for a in published(publish)] == [
        ("ana", ActivityAction.VIEW, None),
        ("nora", ActivityAction.NOTE, None),
    ]
