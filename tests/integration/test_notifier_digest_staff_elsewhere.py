"""Whose digest and new-lead notices a staff member gets (N1; decisions 0076, 0079, 0105; helper 176, failed before).

Real MongoDB wire (nx-27017 or MONGODB_URL), crm-api's own settings code (`preferences_scope`, `AccountSettings`) and
the notifier's directory and digest run, with the real SMTP sink.

The notifier reads an office's subscribers from `notifier_preferences` by the document's `account_id` and, for a user
who is no agent, takes the preferences' word for it (`AgentDirectory._subscribers`, `hears_account(None, ...)` is
True), then reaches the user through whatever staff record it has (`AgentDirectory.get`), of any office. It never
checks that the staff record is the office's. crm-api removes a staff member's preferences with the record
(`delete_staff_member`), but a preferences write that was checked before the removal lands after it
(`preferences_scope` reads the staff record, then `set_preferences` inserts the document afresh) and leaves office A's
subscription behind; nothing removes it later. Once the user is another office's staff member (B may add it: it is
nobody's), it gets A's daily digest and A's new-lead notices, every lead's name and link, for as long as that
document lives.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from fakes_shared import Clock
from notifier_harness import digest_sender as digests
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.settings import NotificationPreferences
from leadflow_crm_api.use_cases.settings import preferences_scope
from leadflow_devstack.servers import MailSink
from leadflow_devstack.testing import fresh_database
from leadflow_notifier.adapters.repository import AgentDirectory, DigestItems, ensure_indexes
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.digest import DigestItem
from leadflow_shared.clock import epoch_ms

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with fresh_database(mongo_url, "digest_staff") as database:
        yield database


async def test_a_staff_member_removed_while_saving_its_preferences_gets_no_digest_of_that_office_from_another(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    north, south, sam = f"north-{tag}", f"south-{tag}", f"sam-{tag}"
    for office in (north, south):
        await db["accounts"].insert_one({"_id": office, "name": office, "time_zone": "UTC", "digest_hour": 7})
    north_settings, south_settings = AccountSettings(db, north), AccountSettings(db, south)
    # North's broker adds Sam as staff.
    await north_settings.put_staff_member(sam, {"name": "Sam", "email": f"sam-{tag}@north.example", "role": "staff"})

    # Sam saves its notification preferences (PUT .../settings/notifications/sam): the request's scope is checked...
    sams_own = SimpleNamespace(account_id=north, sub=sam, sees_whole_account=False)
    scope = await preferences_scope(north, sam, sams_own, db)  # type: ignore[arg-type]
    # ...while North's broker removes Sam (DELETE .../staff/sam: the record, the mark, the preferences)...
    assert await north_settings.delete_staff_member(sam, by=f"broker-{tag}")
    # ...and the preferences write lands after the removal.
    body = NotificationPreferences(channels=["email"], digest=True, new_lead_notices=True)
    await scope.set_preferences(sam, body.model_dump(mode="json"))

    # Sam joins South: nobody's staff member or agent now, South's broker may add it.
    assert not await south_settings.staff_id_taken(sam)
    assert not await south_settings.agent_elsewhere(sam)
    await south_settings.put_staff_member(sam, {"name": "Sam", "email": f"sam-{tag}@south.example", "role": "staff"})

    # North's new leads of the 9th; its digest goes out at 07:00 on the 10th.
    day = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    await DigestItems(db).add(
        DigestItem(north, str(uuid.uuid4()), "Nora North", "Website", epoch_ms(day), stored_ms=epoch_ms(day))
    )
    clock = Clock(day + timedelta(hours=22, seconds=30))
    await digests(db, mailer, clock).run_once()

    north_news = [m["Subject"] for m in sink.received() if m["X-Envelope-To"] == f"sam-{tag}@south.example"]
    told_at_once = [w.agent_id for w in await AgentDirectory(db).new_lead_subscribers(north)]
    assert (north_news, told_at_once) == ([], []), (
        "South's staff member Sam, removed from North, gets North's digest and new-lead notices"
    )
