"""crm-api's accept links (issue 11.6) on a real MongoDB-wire server (nx-27017): a link claims its own offer only
(an ended offer's link claims nothing though its agent holds a newer offer of the lead: helper 62's review), and a
click that reaches crm-api before the offer is projected waits for it rather than being told to try again.
Through the whole system: e2e/test_offer_links.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import crm_harness
import pytest
import pytest_asyncio
from crm_harness import Published
from fastapi import Request
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.callers import Callers
from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.handlers import project
from leadflow_crm_api.routes import offer_links
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared.collections import AGENTS, CRM_USED_OFFER_LINKS
from leadflow_shared.events.activity import ActivityAction, LeadActivity
from leadflow_shared.events.routing import (
    LeadOffered,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)
from leadflow_shared.offer_links import link_id_of, token_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
OFFICE = "north"
LINK_KEY = "integration-offer-link-key-of-at-least-32-bytes"


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_links_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[AGENTS].insert_many([
        {"_id": a, "account_id": OFFICE, "name": a.title(), "status": "active", "active": True} for a in ("ana", "ben")
    ])  # fmt: skip
    yield database
    await client.drop_database(database.name)
    await client.close()


def offered(lead: uuid.UUID, agent: str, *, offer_round: int, at: datetime) -> LeadOffered:
    return crm_harness.offered(OFFICE, lead, agent, offer_round=offer_round, at=at)


def link_request(publish: Published, db: Db) -> Request:
    """What `POST /v1/offer-links/{token}` reads of its request: the link key, the publisher, who is still an agent
    of the office (`Callers`, uncached), the Accept header."""
    state = SimpleNamespace(runtime=SimpleNamespace(settings=SimpleNamespace(offer_link_secret=LINK_KEY)))
    state.publish_activity = publish
    state.callers = Callers(TokenVerifier(CrmApiSettings()), lambda: db, ttl=0)
    return cast(Request, SimpleNamespace(app=SimpleNamespace(state=state), headers={"accept": "application/json"}))


def link_of(event: LeadOffered) -> str:
    return token_for(link_id_of(event.event_id), LINK_KEY)


async def test_an_ended_offers_link_claims_nothing_when_its_agent_is_offered_the_lead_again(db: Db) -> None:
    # Ana's first offer (round 1) expired; the lead came round to her again (round 2, a new link). The first link
    # ends with its offer: an old text on a shared phone must not claim the new offer.
    lead, t0 = uuid.uuid4(), datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    first = offered(lead, "ana", offer_round=1, at=t0)
    await project(first, views=LeadViews(db))
    closed = OfferClosedPayload(lead_id=lead, agent_id="ana", offer_round=1)
    await project(OfferExpired.create(account_id=OFFICE, occurred_at=t0 + timedelta(minutes=15), payload=closed),
                  views=LeadViews(db))  # fmt: skip
    second = offered(lead, "ana", offer_round=2, at=datetime.now(UTC).replace(microsecond=0))
    await project(second, views=LeadViews(db))

    publish = Published()
    refused = await offer_links.use_link(link_of(first), link_request(publish, db), db)
    assert refused.status_code == 409
    assert b"this link's offer ended" in bytes(refused.body)
    assert publish.records == [], "nothing published for the new offer through the old offer's link"

    claimed = await offer_links.use_link(link_of(second), link_request(publish, db), db)
    assert claimed.status_code == 202, "the newer offer's own link claims it"
    ((_, body),) = publish.records
    claim = LeadActivity.model_validate_json(body)
    assert (claim.payload.agent_id, claim.payload.action) == ("ana", ActivityAction.ACCEPT)
    assert claim.payload.offer_round == 2, "the claim names its link's round: the router claims that offer only"


def raced(
    lead: uuid.UUID, agent: str, *, at: datetime, deadline: datetime, answers: uuid.UUID | None = None
) -> LeadOffered:
    """An offer of round 1 of a race of two (`answers`: the ask it answers, an offer asked back)."""
    event = crm_harness.offered(OFFICE, lead, agent, offer_round=1, at=at)
    payload = event.payload.model_copy(update={"race_size": 2, "deadline": deadline, "answers_activity_id": answers})
    return event.model_copy(update={"payload": payload})


async def test_the_link_of_a_declined_offer_claims_nothing_once_the_agent_asked_the_lead_back(db: Db) -> None:
    """helper 144: crm-api knew a link's offer by agent and round alone, and an offer asked back while its race goes on
    is of the same round: the declined offer's link claimed it. An open offer keeps its link's id."""
    # Ana and Ben race for a lead (round 1). Ana declines; her offer is withdrawn (`declined`), Ben's stays open.
    # Ana asks the lead back: the router offers it to her again in the same round (the race goes on), with a new
    # notice and a new link. The first notice's link is the link of the offer she declined: it ended with that
    # offer, so clicking it now (an old email, a shared phone) must claim nothing, as any ended offer's link.
    lead, now = uuid.uuid4(), datetime.now(UTC).replace(microsecond=0)
    deadline = now + timedelta(minutes=15)
    first = raced(lead, "ana", at=now, deadline=deadline)
    await project(first, views=LeadViews(db))
    await project(raced(lead, "ben", at=now, deadline=deadline), views=LeadViews(db))
    declined = OfferClosedPayload(lead_id=lead, agent_id="ana", offer_round=1, reason=WithdrawalReason.DECLINED)
    await project(
        OfferWithdrawn.create(account_id=OFFICE, occurred_at=now + timedelta(seconds=5), payload=declined),
        views=LeadViews(db),
    )
    again = raced(lead, "ana", at=now + timedelta(seconds=10), deadline=deadline, answers=uuid.uuid4())
    await project(again, views=LeadViews(db))

    publish = Published()
    refused = await offer_links.use_link(link_of(first), link_request(publish, db), db)
    used = await db[CRM_USED_OFFER_LINKS].count_documents({})
    assert (refused.status_code, len(publish.records), used) == (409, 0, 0), (
        "the link of the offer Ana declined claimed the new offer she got by asking the lead back: "
        f"{refused.status_code} {bytes(refused.body)!r}, {len(publish.records)} claim(s) published"
    )

    claimed = await offer_links.use_link(link_of(again), link_request(publish, db), db)
    assert claimed.status_code == 202, "the new offer's own link claims it"


async def test_a_click_before_the_offer_is_projected_waits_for_it(db: Db) -> None:
    # The notice reaches the agent before crm-api projects the offer it announces (both read the same event).
    event = offered(uuid.uuid4(), "ana", offer_round=1, at=datetime.now(UTC).replace(microsecond=0))
    publish = Published()
    click = asyncio.create_task(offer_links.use_link(link_of(event), link_request(publish, db), db))
    await asyncio.sleep(0)  # the click has asked for the offer once, in vain
    assert not click.done()
    await project(event, views=LeadViews(db))
    answer = await asyncio.wait_for(click, timeout=offer_links.PROJECTION_WAIT_SECONDS + 5)
    assert answer.status_code == 202, bytes(answer.body)
    assert len(publish.records) == 1


async def test_a_genuine_link_whose_offer_never_comes_is_answered_after_the_wait(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offer_links, "PROJECTION_WAIT_SECONDS", 0.5)
    event = offered(uuid.uuid4(), "ana", offer_round=1, at=datetime.now(UTC))
    answer = await offer_links.use_link(link_of(event), link_request(Published(), db), db)
    assert answer.status_code == 404
    assert b"not known (yet)" in bytes(answer.body)


async def test_the_link_of_an_agent_made_inactive_since_the_notice_claims_nothing_and_stays_unused(db: Db) -> None:
    """Helper 171's review: the router refuses a claim by an agent who left or was made inactive (decision 0079), but
    crm-api answered "Claim sent" (202) and spent the link. Now it says why at once, and publishes nothing."""
    publish = Published()
    event = offered(uuid.uuid4(), "cy", offer_round=1, at=datetime.now(UTC).replace(microsecond=0))
    await project(event, views=LeadViews(db))
    await db[AGENTS].insert_one(
        {"_id": "cy", "account_id": OFFICE, "name": "Cy", "status": "inactive", "active": False}
    )
    refused = await offer_links.use_link(link_of(event), link_request(publish, db), db)
    assert refused.status_code == 409, bytes(refused.body)
    assert b"no longer an active agent of this office" in bytes(refused.body)
    assert publish.records == []
    assert await db[CRM_USED_OFFER_LINKS].count_documents({"lead_id": str(event.payload.lead_id)}) == 0

    await db[AGENTS].update_one({"_id": "cy"}, {"$set": {"status": "active", "active": True}})
    claimed = await offer_links.use_link(link_of(event), link_request(publish, db), db)
    assert claimed.status_code == 202, "active again: the link claims"
