"""Every channel end to end: a lead posted to intake reaches the agent by email (SMTP), SMS and push
(local provider servers); an SMS outage is retried, an unregistered device is dead-lettered, and a
redelivered event sends nothing twice.

A second notifier process, with SMS and push enabled, runs beside the stack's (which has them off);
both share the delivery log, so every email still goes out once.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord
from pymongo import AsyncMongoClient

from leadflow_devstack.processes import ManagedProcess, free_port
from leadflow_devstack.providers import ProviderApi
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord, eventually
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "notify-realty"
AGENT = "nt-ana"


@dataclass
class Channels:
    sms: ProviderApi
    push: ProviderApi
    sms_outages: dict[str, int]  # lead id -> SMS requests still to fail with 503


@pytest.fixture(scope="module")
def channels(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Channels]:
    outages: dict[str, int] = {}

    def sms_reply(request: dict[str, Any]) -> int:
        for lead_id, left in outages.items():
            if lead_id in request["body"].get("Body", "") and left > 0:
                outages[lead_id] = left - 1
                return 503
        return 201

    def push_reply(request: dict[str, Any]) -> int:
        return 404 if request["body"]["message"]["token"] == "unregistered" else 200

    sms, push = ProviderApi(sms_reply), ProviderApi(push_reply)
    config = {
        "accounts": [
            {
                "account_id": ACCOUNT,
                "name": "Notify Realty",
                "round_robin": True,
                "time_zone": "America/Chicago",
                "agents": [
                    {
                        "agent_id": AGENT,
                        "name": "Ana",
                        "email": "ana@notify.example",
                        "phone": "+13125550142",
                        "time_zone": "America/Chicago",
                    }
                ],
                "roster": [AGENT],
                "sources": [
                    {"name": "Website", "race_count": 1, "claim_window_seconds": 600},
                    {"name": "Quick", "race_count": 1, "claim_window_seconds": 10},
                ],
            }
        ]
    }
    path = tmp_path_factory.mktemp("notify") / "accounts.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    port = free_port()
    env = stack.service_env("notifier") | {
        "NOTIFIER_HTTP__PORT": str(port),
        "NOTIFIER_CONSUMER_GROUP": "leadflow-notifier-channels",
        "NOTIFIER_SMS__ENABLED": "true",
        "NOTIFIER_SMS__BASE_URL": sms.url,
        "NOTIFIER_SMS__ACCOUNT_SID": "AC42",
        "NOTIFIER_PUSH__ENABLED": "true",
        "NOTIFIER_PUSH__BASE_URL": push.url,
        "NOTIFIER_DELIVERY__RETRY_INITIAL_SECONDS": "0.05",
        "NOTIFIER_DIRECTORY_CACHE_SECONDS": "0",  # the tests change push tokens between leads
    }
    proc = ManagedProcess(
        "notifier-channels", [str(Path(sys.executable).parent / "leadflow-notifier")], log_dir=stack.log_dir, env=env
    )
    proc.start()
    stack.ports["notifier-channels"] = port
    stack.services["notifier-channels"] = proc
    stack.wait_ready("notifier-channels", timeout=60)
    yield Channels(sms, push, outages)
    proc.stop()
    del stack.services["notifier-channels"]
    for provider in (sms, push):
        provider.close()


@pytest_asyncio.fixture(loop_scope="session")
async def set_push_token(stack: Stack) -> AsyncIterator[Callable[[str], Any]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    prefs = client["leadflow"]["notifier_preferences"]

    async def set_token(token: str) -> None:
        await prefs.replace_one({"_id": AGENT}, {"_id": AGENT, "account_id": ACCOUNT, "push_token": token}, upsert=True)

    yield set_token
    await client.close()


def mails(stack: Stack, lead_id: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return [m for m in stack.mail.received() if m["X-Leadflow-Lead-Id"] == lead_id]


async def post_lead(client: httpx.AsyncClient, stack: Stack, source: str = "Website") -> str:
    body = {
        "account_id": ACCOUNT,
        "first_name": "Nia",
        "email": f"nia-{uuid.uuid4().hex[:8]}@example.com",
        "source_name": source,
    }
    response = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


@pytest.mark.asyncio(loop_scope="session")
async def test_an_offer_reaches_the_agent_on_every_channel_once_despite_an_sms_outage_and_a_redelivery(
    stack: Stack, channels: Channels, set_push_token: Callable[[str], Any], wait_for_record: WaitForRecord
) -> None:
    await set_push_token("device-ana")
    async with httpx.AsyncClient() as client:
        lead_id = await post_lead(client, stack)
        channels.sms_outages[lead_id] = 2  # the SMS provider is down for the first two tries

        await eventually(lambda: mails(stack, lead_id), what="the offer email")
        await eventually(lambda: channels.sms.about(lead_id, 201), what="the SMS, after the outage")
        await eventually(lambda: channels.push.about(lead_id, 200), what="the push notification")

        [sms] = channels.sms.about(lead_id, 201)
        assert sms["path"] == "/2010-04-01/Accounts/AC42/Messages.json"
        assert sms["auth"].startswith("Basic ")
        assert sms["body"]["To"] == "+13125550142"
        assert "Claim it before" in sms["body"]["Body"]
        assert "CST" in sms["body"]["Body"] or "CDT" in sms["body"]["Body"]
        assert len(channels.sms.about(lead_id, 503)) == 2
        [push] = channels.push.about(lead_id)
        assert push["auth"].startswith("Bearer ")
        assert push["body"]["message"]["token"] == "device-ana"
        plain = mails(stack, lead_id)[0].get_body(("plain",))
        assert plain is not None
        assert f"/app/accounts/{ACCOUNT}/leads/{lead_id}" in plain.get_content()  # the lead's page in the web app

        # Redeliver the offer itself, then wait for a later lead: the first sends nothing again.
        def is_offer(record: ConsumerRecord[bytes, bytes]) -> bool:
            event = ROUTING_EVENT.validate_json(record.value or b"")
            return isinstance(event, LeadOffered) and str(event.payload.lead_id) == lead_id

        offer = await wait_for_record(topics.LEADS_EVENTS, is_offer)
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topics.LEADS_EVENTS, offer.value, key=offer.key)
        finally:
            await producer.stop()
        later = await post_lead(client, stack)
        await eventually(lambda: channels.push.about(later, 200), what="the later lead's push")
        await eventually(lambda: mails(stack, later), what="the later lead's email")

    assert len(mails(stack, lead_id)) == 1
    assert len(channels.sms.about(lead_id, 201)) == 1
    assert len(channels.push.about(lead_id)) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_an_unregistered_device_is_dead_lettered_while_email_and_sms_go_out(
    stack: Stack, channels: Channels, set_push_token: Callable[[str], Any], wait_for_record: WaitForRecord
) -> None:
    await set_push_token("unregistered")
    try:
        async with httpx.AsyncClient() as client:
            lead_id = await post_lead(client, stack)

        def dead_push(record: ConsumerRecord[bytes, bytes]) -> bool:
            headers = {k: v.decode() for k, v in record.headers}
            event = ROUTING_EVENT.validate_json(record.value or b"")
            return headers.get("dlq-channel") == "push" and str(getattr(event.payload, "lead_id", "")) == lead_id

        dead = await wait_for_record(topics.dlq(topics.LEADS_EVENTS), dead_push)
        headers = {k: v.decode() for k, v in dead.headers}
        assert headers["dlq-error-type"] == "PermanentDeliveryError"
        assert headers["dlq-recipient"] == AGENT
        assert "HTTP 404" in headers["dlq-reason"]
        assert len(channels.push.about(lead_id)) == 1, "a permanent failure is not retried"
        await eventually(lambda: mails(stack, lead_id), what="the email, regardless of push")
        await eventually(lambda: channels.sms.about(lead_id, 201), what="the SMS, regardless of push")

        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{stack.url('notifier-channels')}/metrics")).text
        assert 'notifier_notifications_failed_total{channel="push",reason="unregistered"}' in metrics
        assert "notifier_delivery_latency_seconds_bucket" in metrics
    finally:
        await set_push_token("device-ana")


@pytest.mark.asyncio(loop_scope="session")
async def test_each_registered_device_gets_the_push_and_an_unregistered_one_is_forgotten(
    stack: Stack, channels: Channels, set_push_token: Callable[[str], Any]
) -> None:
    await set_push_token("")  # devices only: no token from before devices existed
    ana = stack.auth(AGENT, "realtor", ACCOUNT)
    devices = f"/v1/accounts/{ACCOUNT}/users/{AGENT}/devices"
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm, httpx.AsyncClient() as client:
        for device, token in (("phone", "device-phone"), ("tablet", "device-tablet"), ("old-phone", "unregistered")):
            registered = await crm.put(f"{devices}/{device}", headers=ana, json={"token": token, "platform": "android"})
            assert registered.status_code == 200, registered.text
            assert "token" not in registered.json(), "a token is never shown again"
        other = stack.auth("nt-someone", "realtor", ACCOUNT)
        assert (await crm.put(f"{devices}/x", headers=other, json={"token": "t", "platform": "ios"})).status_code == 403
        bad = await crm.put(f"{devices}/x", headers=ana, json={"token": "has spaces", "platform": "fridge"})
        assert {p["name"] for p in bad.json()["invalid_params"]} == {"body.token", "body.platform"}

        lead_id = await post_lead(client, stack)
        await eventually(lambda: len(channels.push.about(lead_id)) >= 3, what="a push to each device")
        tokens = sorted(r["body"]["message"]["token"] for r in channels.push.about(lead_id))
        assert tokens == ["device-phone", "device-tablet", "unregistered"]

        async def listed() -> list[str]:
            return sorted(d["device_id"] for d in (await crm.get(devices, headers=ana)).json()["items"])

        # The provider answered 404 for the old phone: the notifier forgot it; the next lead skips it.
        await eventually(lambda: _without(listed, "old-phone"), what="the unregistered device forgotten")
        later = await post_lead(client, stack)
        await eventually(lambda: len(channels.push.about(later)) >= 2, what="the next lead's pushes")
        assert sorted(r["body"]["message"]["token"] for r in channels.push.about(later)) == [
            "device-phone",
            "device-tablet",
        ]
        assert (await crm.delete(f"{devices}/tablet", headers=ana)).status_code == 204
        assert await listed() == ["phone"]
    await set_push_token("device-ana")


async def _without(listed: Callable[[], Any], device: str) -> bool:
    return device not in await listed()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_agent_whose_offer_expired_is_told_by_push(
    stack: Stack, channels: Channels, set_push_token: Callable[[str], Any]
) -> None:
    # The Quick source gives 10 s to claim; nobody does. The agent's phone hears that the offer is gone
    # (push only: an email for every expiry would bury the inbox, N2), then that the lead fell back to them.
    await set_push_token("device-ana")
    async with httpx.AsyncClient() as client:
        lead_id = await post_lead(client, stack, source="Quick")

    def expired() -> list[dict[str, Any]]:
        return [r for r in channels.push.about(lead_id, 200)
                if r["body"]["message"]["notification"]["title"] == "Your offer expired"]  # fmt: skip

    # One push per device, each its own request: wait for the one to this token (and any device an
    # earlier test registered for the agent), not just the first to arrive.
    await eventually(lambda: "device-ana" in [r["body"]["message"]["token"] for r in expired()], timeout=45,
                     what="the expiry's push to the agent's token")  # fmt: skip
    tokens = [r["body"]["message"]["token"] for r in expired()]
    assert len(tokens) == len(set(tokens)), f"one push per device: {tokens}"
    assert all(r["body"]["message"]["notification"]["body"].startswith("Your offer expired.") for r in expired())
    assert not [m for m in mails(stack, lead_id) if str(m["Subject"]) == "Your offer expired"], "push only"
