"""A last activity stored as a double, on nx-27017 (helper 143's review of 351924e): `RowChanges.applied_to` (in
memory) and `adapters.leads._update_ops` (MongoDB) must agree on the activity rule. A `last_activity_ms` stored as a
double (a hand fix in mongosh, which writes numbers as doubles, as `state_version` in helper 140's review): `RowState`
reads it as unknown, so the pruning (`_activity_may_apply`) sends the op and leaves it to MongoDB, whose `$lt`
compares numbers across types; the in-memory rule said a non-int never matches, and compares a double as MongoDB
does now."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import views_database
from fakes_crm import CONTACT, SOURCE
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import CRM_LEADS, LeadViews
from leadflow_crm_api.domain.projection import RowState, row_changes
from leadflow_crm_api.handlers import project
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import LeadClaimed, LeadClaimedPayload, LeadOffered, LeadOfferedPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with views_database(mongo_url) as database:
        yield database


async def test_a_double_last_activity_is_compared_alike_in_memory_and_on_nx_27017(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Offered to ana (v1, minute 0); a hand fix rewrites the row's `last_activity_ms` as the same time, a double;
    ana claims it (v2, minute 1). On nx-27017 the claim's activity op (`{"last_activity_ms": {"$lt": minute 1}}`)
    meets 0.0 + minute 0 as a number; `applied_to` must say what the store does."""
    lead = uuid.uuid4()
    views = LeadViews(db)
    offer = LeadOffered.create(account_id="acme", occurred_at=T0, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 15 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=1))  # fmt: skip
    await project(offer, views=views, side_effects=False)
    await db[CRM_LEADS].update_one({"_id": str(lead)}, {"$set": {"last_activity_ms": float(epoch_ms(T0))}})
    before = await db[CRM_LEADS].find_one({"_id": str(lead)})
    assert before is not None
    assert isinstance(before["last_activity_ms"], float)
    claim = LeadClaimed.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    in_memory = row_changes(claim, RowState.of(before)).holding(RowState.of(before)).applied_to(before)
    await project(claim, views=views, side_effects=False)
    stored = await db[CRM_LEADS].find_one({"_id": str(lead)})
    assert stored is not None
    assert stored["owner_agent_id"] == in_memory["owner_agent_id"] == "ana"
    assert (stored["last_activity_ms"], stored["last_activity_kind"]) == (
        in_memory["last_activity_ms"], in_memory["last_activity_kind"]), (
        "nx-27017 and `RowChanges.applied_to` disagree on a double last activity"
    )  # fmt: skip
