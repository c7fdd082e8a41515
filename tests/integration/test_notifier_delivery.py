"""The notifier's MongoDB side (nx-27017 or MONGODB_URL) with real SMTP: preferences, the delivery log, N3."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.repository import (
    AgentDirectory,
    Begin,
    DeliveryLog,
    DigestItems,
    PreferencesDoc,
    QuietHoursDoc,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.digest import DigestItem
from leadflow_notifier.domain.errors import DeliveryError
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import DigestSender, Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_notifier.settings import SmtpSettings
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"notifier_{uuid.uuid4().hex[:12]}"
    await client[name]["agents"].insert_one(
        {"_id": "ana", "account_id": "acme", "name": "Ana", "email": "ana@example.com", "phone": "+13125550100",
         "time_zone": "America/Chicago"}
    )
    yield client[name]
    await client.drop_database(name)
    await client.close()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    mail = MailSink(tmp_path / "mail")
    mail.start()
    yield mail
    mail.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def mailer(sink: MailSink) -> AsyncIterator[SmtpMailer]:
    smtp = SmtpMailer(SmtpSettings(port=sink.port))
    yield smtp
    await smtp.close()


class Texts:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002 (the port's signature)
        await asyncio.sleep(0)  # let a concurrent notifier interleave
        self.sent.append(message_id)


class NoDeadLetters:
    async def publish(
        self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError  # noqa: ARG002
    ) -> None:
        raise AssertionError(f"unexpected dead letter {channel} {error}")


def offer() -> LeadOffered:
    return LeadOffered.create(
        account_id="acme", occurred_at=NOON,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(), agent_id="ana", offer_round=1, race_size=1,
            deadline=datetime(2024, 1, 10, 12, 15, tzinfo=UTC), explanation="rr",
            contact=Contact.model_validate({"first_name": "Jane", "email": "jane@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def notifier(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, texts: Texts) -> Notifier:
    return Notifier(
        directory=AgentDirectory(db), deliveries=DeliveryLog(db, lease_ms=60_000),
        senders={Channel.EMAIL: mailer, Channel.SMS: texts},
        dead_letters=NoDeadLetters(), metrics=NotifierMetrics(CollectorRegistry()), crm_base_url="https://crm",
        clock=lambda: NOON, retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
    )


async def test_two_replicas_and_a_redelivery_send_each_channel_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    texts = Texts()
    event = offer()
    a, b = notifier(db, mailer, texts), notifier(db, mailer, texts)

    await asyncio.gather(a.notify(event, b"{}"), b.notify(event, b"{}"))  # a rebalance: both got it
    await a.notify(event, b"{}")  # and a plain redelivery

    assert len([m for m in sink.received() if m["X-Leadflow-Lead-Id"] == str(event.payload.lead_id)]) == 1
    assert texts.sent == [f"{event.event_id}:sms:ana"]


async def test_preferences_from_mongodb_are_honoured(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    directory = AgentDirectory(db)
    # 06:00 in Chicago is inside 22:00-07:00: SMS waits, email goes.
    await directory.save_preferences("ana", PreferencesDoc(quiet_hours=QuietHoursDoc(start=time(22), end=time(7))))
    texts = Texts()
    event = offer()
    try:
        await notifier(db, mailer, texts).notify(event, b"{}")
    finally:
        await directory.save_preferences("ana", PreferencesDoc())
    assert texts.sent == []
    assert [m for m in sink.received() if m["X-Leadflow-Lead-Id"] == str(event.payload.lead_id)]
    who = await directory.get("ana")
    assert who is not None
    assert who.preferences.quiet_hours is None


async def test_a_crashed_delivery_is_taken_over_after_its_lease(db: AsyncDatabase[dict[str, Any]]) -> None:
    log = DeliveryLog(db, lease_ms=1_000)
    key = f"{uuid.uuid4()}:email:ana"

    assert await log.begin(key, channel="email", now_ms=10_000) is Begin.SEND
    assert await log.begin(key, channel="email", now_ms=10_500) is Begin.BUSY  # its owner may still be sending
    assert await log.begin(key, channel="email", now_ms=11_001) is Begin.SEND  # the owner died: take over
    await log.sent(key, now_ms=11_002)
    assert await log.begin(key, channel="email", now_ms=99_000) is Begin.DONE


async def test_the_daily_digest_goes_to_each_subscriber_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    await ensure_indexes(db)
    items, directory = DigestItems(db), AgentDirectory(db)
    account = f"office-{uuid.uuid4().hex[:6]}"
    await directory.save_preferences("staff-1", PreferencesDoc(account_id=account, digest=True, name="Sam",
                                                               email="sam@example.com"))
    await directory.save_preferences("staff-2", PreferencesDoc(account_id=account, digest=False,
                                                               email="no@example.com"))
    day_before = int(datetime(2024, 1, 9, 12, tzinfo=UTC).timestamp() * 1000)
    for i, created in enumerate((day_before, day_before, int(NOON.timestamp() * 1000))):
        await items.add(DigestItem(account, f"{account}-lead-{i % 2 if i < 2 else 9}", f"Lead {i}", "Web", created))
    sender = DigestSender(items=items, subscribers=directory, deliveries=DeliveryLog(db, lease_ms=60_000),
                          mailer=mailer, metrics=NotifierMetrics(CollectorRegistry()),
                          crm_base_url="https://crm", hour_utc=7, clock=lambda: NOON)

    assert await sender.run_once() == 1
    assert await sender.run_once() == 0  # the next check, or another replica: already sent

    digests = [m for m in sink.received() if m["X-Envelope-To"] == "sam@example.com"]
    assert len(digests) == 1
    assert digests[0]["Subject"] == "2 new leads on Wed 10 Jan"  # the redelivered item counted once; today's waits
    assert not [m for m in sink.received() if m["X-Envelope-To"] == "no@example.com"]
