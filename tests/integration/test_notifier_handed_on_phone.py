"""A handed-on phone gets no more of its previous user's pushes through the legacy token (helper 174's review;
the first test failed before).

An FCM token belongs to an app install, not to a person: when a phone is handed on (an agent leaves, a colleague
signs in on the same app), the new user registers the same token. crm-api's `AccountSettings.put_device` moves the
token for that reason ("its token leaves any other user's device (a handed-on phone)", crm-api/adapters/settings.py):
it deletes every other `push_devices` record holding it. But the token of a preferences document from before
devices existed (`notifier_preferences.push_token`, which crm-api keeps on every write) is not cleared, and the
notifier still pushes to it for its old user (`Recipient.push_devices`, notifier/domain/messages.py:59-63;
`AgentDirectory._load`, notifier/adapters/repository.py). So the new holder of the phone, in another office here,
reads the old user's offers: lead names and deadlines of an account it has nothing to do with. Now crm-api clears
another user's legacy token when a device registers it, and the notifier ignores a legacy token another user has
registered (the handovers from before).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from test_notifier_channels import offered

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_notifier.adapters.repository import AgentDirectory
from leadflow_notifier.domain.messages import PushContent, messages_for
from leadflow_notifier.domain.preferences import Channel

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
PHONE_TOKEN = "fcm-token-of-the-phone-handed-on"


def agent(agent_id: str, account: str, name: str) -> dict[str, Any]:
    return {"_id": agent_id, "account_id": account, "name": name, "email": f"{agent_id}@example.com",
            "phone": "+13125550100", "time_zone": "America/Chicago", "active": True}  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    d = client[f"review174_{uuid.uuid4().hex[:12]}"]
    await d["accounts"].insert_many([{"_id": "north", "roster": ["pat"]}, {"_id": "south", "roster": ["quinn"]}])
    await d["agents"].insert_many([agent("pat", "north", "Pat"), agent("quinn", "south", "Quinn")])
    # Pat's preferences from before devices existed: the phone's token in the legacy field.
    await d["notifier_preferences"].insert_one({"_id": "pat", "account_id": "north", "push_token": PHONE_TOKEN})
    yield d
    await client.drop_database(d.name)
    await client.close()


async def pushed_to_the_phone(db: AsyncDatabase[dict[str, Any]]) -> list[str]:
    """The titles of north's offer to Pat pushed to the phone's token."""
    pat = await AgentDirectory(db).get("pat")
    assert pat is not None
    offer = offered(name="Jane").model_copy(update={"account_id": "north"})
    return [
        m.content.title
        for m in messages_for(offer, pat, "https://crm/app", now=NOW)
        if m.channel is Channel.PUSH and isinstance(m.content, PushContent) and m.content.token == PHONE_TOKEN
    ]


async def test_a_phone_handed_on_to_another_offices_agent_gets_no_more_pushes_of_its_previous_user(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    # Quinn (south) signs in on the phone Pat (north) used, and registers it: the token moves to Quinn's device.
    await AccountSettings(db, "south").put_device(
        "quinn", "phone", {"token": PHONE_TOKEN, "platform": "android", "registered_at": NOW}
    )
    assert [d["user_id"] async for d in db["push_devices"].find({"token": PHONE_TOKEN})] == ["quinn"]

    assert await pushed_to_the_phone(db) == [], "north's offer to Pat is pushed to the phone Quinn now holds"
    assert (await db["notifier_preferences"].find_one({"_id": "pat"}) or {}).get("push_token") is None


async def test_a_phone_handed_on_before_the_fix_is_no_longer_pushed_to_for_its_previous_user(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    # The handover stored as it was before: Quinn's device holds the token, Pat's legacy field still does too.
    await db["notifier_preferences"].update_one({"_id": "pat"}, {"$set": {"push_token": PHONE_TOKEN}})
    await db["push_devices"].delete_many({})
    assert await pushed_to_the_phone(db) == ["Lead offer: Jane Doe"], "Pat's own phone, as long as nobody else has it"
    await db["push_devices"].insert_one({"_id": "quinn/phone", "user_id": "quinn", "device_id": "phone",
                                         "account_id": "south", "token": PHONE_TOKEN})  # fmt: skip
    assert await pushed_to_the_phone(db) == [], "the notifier pushes Pat's offers to the phone Quinn registered"
