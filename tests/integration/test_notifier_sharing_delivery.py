"""T1 lead sharing through the notifier against nx-27017 (or MONGODB_URL) and a real SMTP server.

A LeadShared delivered twice emails the realtor once (N3), names the brokerage and links the
lead; it files no digest item; a share to a realtor the directory does not know is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import NoDeadLetters, Recorder, plain
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog, DigestItems, Leases, ensure_indexes
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.routing import LeadShared, LeadSharedPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SHARED_AT = datetime(2024, 1, 10, 12, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """Brokerage Acme Realty (broker Bea) and Rita, a realtor who accepted its invitation."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"notifier_t1_{uuid.uuid4().hex[:12]}"
    d = client[name]
    await d["accounts"].insert_one({"_id": "acme", "name": "Acme Realty", "roster": ["bea"]})
    await d["agents"].insert_many(
        [
            {"_id": "bea", "account_id": "acme", "name": "Bea", "email": "bea@example.com"},
            {
                "_id": "rita",
                "account_id": "rita-realty",
                "name": "Rita",
                "email": "rita@example.com",
                "phone": "+13125550100",
                "time_zone": "America/Chicago",
            },
        ]
    )
    await d["notifier_preferences"].insert_many(
        [
            {"_id": "rita", "account_id": "rita-realty", "push_token": "rita-token"},
            {"_id": "dan", "account_id": "acme", "name": "Dan", "email": "dan@example.com", "digest": True},
        ]
    )
    await ensure_indexes(d)
    yield d
    await client.drop_database(name)
    await client.close()


def notifier(
    db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, other: Recorder, registry: CollectorRegistry
) -> Notifier:
    return Notifier(
        directory=AgentDirectory(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: other, Channel.PUSH: other},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: SHARED_AT,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
        digest=DigestItems(db),
    )


def shared(lead_id: uuid.UUID, agent_id: str = "rita") -> LeadShared:
    return LeadShared.create(
        account_id="acme",
        occurred_at=SHARED_AT,
        payload=LeadSharedPayload(
            lead_id=lead_id,
            share_id=uuid.uuid4(),
            agent_id=agent_id,
            realtor_name="Rita",
            assigned_by="Acme Realty",
            previous_owner_agent_id="bea",
            by_user_id="bea",
        ),
    )


async def test_a_share_delivered_twice_emails_the_realtor_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    lead_id = uuid.uuid4()
    other, registry = Recorder(), CollectorRegistry()
    event, stranger = shared(lead_id), shared(uuid.uuid4(), agent_id="outside-realtor")
    raw = event.model_dump_json().encode()
    n = notifier(db, mailer, other, registry)

    assert await n.notify_batch([raw, stranger.model_dump_json().encode()], concurrency=2) == []
    assert await n.notify_batch([raw], concurrency=2) == []  # redelivered

    [email] = sink.received()
    assert email["X-Envelope-To"] == "rita@example.com"
    assert email["Subject"] == "Acme Realty assigned you a lead"
    text = plain(email)
    assert "Hi Rita," in text
    assert f"Open the lead: https://crm/accounts/acme/leads/{lead_id}" in text
    assert other.sent == [f"{event.event_id}:push:rita"]  # push once, no SMS
    mine = {"_id": {"$regex": str(event.event_id)}}
    log = {d["_id"]: d["status"] async for d in db["notifier_deliveries"].find(mine)}
    assert log == {f"{event.event_id}:email:rita": "sent", f"{event.event_id}:push:rita": "sent"}
    # The outside realtor is skipped and counted; a share is no new lead for the digest.
    assert registry.get_sample_value("notifier_recipients_unknown_total", {"type": "LeadShared"}) == 1
    assert await db["notifier_digest_items"].count_documents({}) == 0
