"""A retry of a lead whose first attempt stopped between the claim and the publish, with intake's real
MongoDB adapters (nx-27017, or MongoDB with MONGODB_URL): published once, whatever changed since (decision 0081)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import pytest_asyncio
from fakes_intake import FailingOnce, MonotonicClock, Published
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake import handlers
from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.domain import keys
from leadflow_intake.domain.errors import FieldError, IdempotencyConflict, InvalidLead
from leadflow_intake.domain.lead import Submission, submission_hash
from leadflow_intake.handlers import Accepted, Intake, accept_lead, accept_partner_lead
from leadflow_shared.collections import INTAKE_REQUESTS
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadChannel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

Doc = dict[str, Any]
ACCOUNT = "acme-realty"
NOW = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
LONDON_PHONE = "020 7946 0958"  # +442079460958 read in GB; not a valid number read in the US


@pytest_asyncio.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
    try:
        db = client[f"intake_retries_{uuid.uuid4().hex[:8]}"]
        await db["accounts"].insert_one({"_id": ACCOUNT, "default_region": "GB", "roster": ["blair-chen"]})
        await db["agents"].insert_one({"_id": "blair-chen", "account_id": ACCOUNT, "name": "Blair"})
        yield db
    finally:
        await client.close()


class Parts:
    """The real accounts (cached, on a clock the test moves) and store, and a publisher that fails once."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.db = db
        self.clock = MonotonicClock()
        self.published = Published()
        self.intake = Intake(
            accounts=MongoAccounts(db, fallback_region="US", ttl=60, clock=self.clock),
            store=MongoIdempotencyStore(db),
            publish=FailingOnce(self.published),
        )

    async def stored(self, stored_key: str) -> Doc:
        doc = await self.db[INTAKE_REQUESTS].find_one({"_id": stored_key})
        assert doc is not None
        return doc

    async def set_region(self, region: str) -> None:
        await self.db["accounts"].update_one({"_id": ACCOUNT}, {"$set": {"default_region": region}})
        self.clock.now += 61  # past the cache's hit ttl: intake reads the account afresh
        assert (await self.intake.accounts.find(ACCOUNT)) == handlers.AccountInfo(region)


def form(**overrides: Any) -> Submission:
    fields: dict[str, Any] = {
        "account_id": ACCOUNT, "channel": LeadChannel.BROKERAGE_SITE, "source_name": "Website",
        "first_name": "Jane", "email": "jane@example.com", "phone": LONDON_PHONE,
    }  # fmt: skip
    return Submission(**(fields | overrides))


async def post(parts: Parts, sub: Submission, key: str) -> Accepted:
    return await accept_lead(sub, intake=parts.intake, space=keys.WEBSITE, idempotency_key=key, now=NOW)


async def test_a_lead_claimed_before_a_crash_is_published_once_by_its_retry_after_the_region_changed(
    db: AsyncDatabase[Doc],
) -> None:
    parts, key = Parts(db), str(uuid.uuid4())
    stored_key = keys.stored_key(keys.WEBSITE, ACCOUNT, key)
    with pytest.raises(ConnectionError):
        await post(parts, form(), key)
    left = await parts.stored(stored_key)
    assert left["published"] is False
    assert "+442079460958" in left["event_json"]  # the lead as accepted, kept until published

    await parts.set_region("US")
    with pytest.raises(InvalidLead):  # as a new request, the number is refused in the US now
        await post(parts, form(), str(uuid.uuid4()))
    retry = await post(parts, form(), key)
    assert (str(retry.event_id), retry.duplicate) == (left["event_id"], True)
    assert [(str(e.event_id), e.payload.contact.phone) for e in parts.published] == [
        (left["event_id"], "+442079460958")
    ]
    done = await parts.stored(stored_key)
    assert done["received_hash"] == submission_hash(form())  # how the retry was recognized
    assert done["published"]  # nx-27017 gives back a boolean $set as 1
    assert "event_json" not in done
    assert await post(parts, form(), key) == retry  # again: answered from the record, nothing published
    assert len(parts.published) == 1
    with pytest.raises(IdempotencyConflict):  # a different request under the key still conflicts
        await post(parts, form(message="another lead", phone="+44 20 7946 0958"), key)


async def test_a_partners_resend_a_newer_rule_refuses_is_published_once(db: AsyncDatabase[Doc]) -> None:
    parts, event_id = Parts(db), str(uuid.uuid4())
    event = LeadSubmitted.model_validate({
        "event_id": event_id, "correlation_id": event_id, "type": "LeadSubmitted", "account_id": ACCOUNT,
        "occurred_at": "2026-03-02T09:05:00-05:00",
        "payload": {"contact": {"first_name": "JANE", "phone": LONDON_PHONE},
                    "source": {"partner": "homefinder", "name": "HomeFinder", "assigned_agent_id": "blair-chen"}},
    })  # fmt: skip
    with pytest.raises(ConnectionError):
        await accept_partner_lead(event, intake=parts.intake)
    left = await parts.stored(keys.stored_key(keys.PARTNER, ACCOUNT, event_id))

    def newer_rule(*_: Any, **__: Any) -> Any:
        raise InvalidLead([FieldError("first_name", "refused by a newer rule")])

    with mock.patch.object(handlers, "normalize_submission", newer_rule):
        retry = await accept_partner_lead(event, intake=parts.intake)
    assert (str(retry.event_id), retry.duplicate) == (left["event_id"], True)
    assert [str(e.event_id) for e in parts.published] == [left["event_id"]]
    assert (await parts.stored(keys.stored_key(keys.PARTNER, ACCOUNT, event_id)))["published"]


async def test_a_record_stored_before_0081_is_still_recognized(db: AsyncDatabase[Doc]) -> None:
    """A record written by intake before decision 0081 has no received_hash (kept INTAKE_IDEMPOTENCY_DAYS)."""
    parts, key = Parts(db), str(uuid.uuid4())
    stored_key = keys.stored_key(keys.WEBSITE, ACCOUNT, key)
    with pytest.raises(ConnectionError):
        await post(parts, form(), key)
    await db[INTAKE_REQUESTS].update_one({"_id": stored_key}, {"$unset": {"received_hash": ""}})
    left = await parts.stored(stored_key)
    assert "received_hash" not in left
    with pytest.raises(IdempotencyConflict):
        await post(parts, form(message="another lead"), key)
    retry = await post(parts, form(email="Jane@Example.COM"), key)  # the same lead once normalized
    assert (str(retry.event_id), retry.duplicate) == (left["event_id"], True)
    assert [str(e.event_id) for e in parts.published] == [left["event_id"]]
