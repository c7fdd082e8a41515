"""The notifier applies and crm-api shows an account's notice settings read the same way
(`leadflow_shared.account_config.NoticeFields`), from the same stored document on nx-27017,
well-formed or not: the settings page never shows what the notifier does not do."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.use_cases import settings as crm_settings
from leadflow_devstack.testing import fresh_database
from leadflow_notifier.adapters.repository import AccountSchedules, OfferContactPolicies
from leadflow_shared.collections import ACCOUNTS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

DEFAULT_HOUR = 7  # the deployment's (NOTIFIER_DIGEST__DEFAULT_HOUR, CRM_API_DIGEST_DEFAULT_HOUR)

STORED = [
    {"offer_contact_details": "shown", "digest_hour": 9, "time_zone": "Asia/Kolkata"},
    {"offer_contact_details": "hidden", "digest_hour": 0, "time_zone": "America/New_York"},
    {},  # nothing set
    {"offer_contact_details": None, "digest_hour": None, "time_zone": None},
    {"offer_contact_details": "SHOWN", "digest_hour": 24, "time_zone": "Mars/Olympus"},  # by hand, wrongly
    {"offer_contact_details": ["shown"], "digest_hour": "8", "time_zone": 5},
]


@pytest_asyncio.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with fresh_database(mongo_url, "notices") as db:
        yield db


@pytest.mark.parametrize("stored", STORED)
async def test_the_notifier_applies_what_crm_api_shows(
    db: AsyncDatabase[dict[str, Any]], stored: dict[str, Any]
) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await db[ACCOUNTS].insert_one({"_id": account, "name": "Notice Realty", **stored})
    settings = AccountSettings(db, account)

    shown = await crm_settings.get_digest(settings, DEFAULT_HOUR)
    hour, zone = await AccountSchedules(db).of(account)
    assert (hour if hour is not None else DEFAULT_HOUR, zone) == (shown.hour, shown.time_zone)
    if stored.get("time_zone") in ("Asia/Kolkata", "America/New_York"):  # well-formed: read as written
        assert (shown.hour, shown.time_zone) == (stored["digest_hour"], stored["time_zone"])
        assert (await crm_settings.get_offer_notices(settings)).contact_details == stored["offer_contact_details"]

    details = (await crm_settings.get_offer_notices(settings)).contact_details
    policies = OfferContactPolicies(db)
    hidden = {race: await policies.hide_contact(account, race) for race in (1, 2)}
    assert (
        hidden
        == {
            "shown": {1: False, 2: False},
            "hidden_for_races": {1: False, 2: True},
            "hidden": {1: True, 2: True},
        }[details.value]
    )


async def test_a_contact_setting_the_notifier_cannot_read_keeps_a_race_s_contact_hidden(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await db[ACCOUNTS].insert_one({"_id": "typo", "offer_contact_details": "Shown"})
    assert await OfferContactPolicies(db).hide_contact("typo", 2)  # not shown by mistake
