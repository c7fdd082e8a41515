"""A replayed dead letter of one delivery sends that delivery, and nothing else (decision 0044, amended in session 32).

Decision 0044: "Once the cause is fixed, an operator can send a failed notification again, and only that one". A
replay names one channel and recipient (`leadflow-replay-channel`, `-recipient`). Found by helper 145's review:
`Notifier.notify_events` planned every delivery of the replayed event afresh, reopened the covered failed one, and
`begin`s the others: any of them with no record yet went out then. Deliveries have no record when they were never
made: an offer its batch already ended (N1, decision 0094), an SMS or push held back by quiet hours, a device
registered since. So replaying a subscribed admin's failed new-lead email told the offer's agent of an offer that
ended long ago. Now such a replay plans only the deliveries it names, reopens the failed one and begins nothing,
and files no digest item again.

Real MongoDB wire (nx-27017 or MONGODB_URL) and a real SMTP sink refusing the admin's address until "fixed".
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import Recorder
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.repository import (
    AgentDirectory,
    DeliveryLog,
    DigestItems,
    Leases,
    PreferencesDoc,
    QuietHoursDoc,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.errors import DeliveryError
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.domain.replay import Replay
from leadflow_notifier.handlers import Notice, Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload, OfferClosedPayload, OfferExpired

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)  # 06:00 in Chicago


@dataclass
class Letters:
    """The notifier's dead letters as `leadflow-ops dlq replay` gets them back: the raw event and its headers."""

    letters: list[tuple[bytes, str, str, str]] = field(default_factory=list)

    async def publish(self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError) -> None:  # noqa: ARG002
        self.letters.append((raw, channel, agent_id, error.reason))


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"notifier_replay_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def office(db: AsyncDatabase[dict[str, Any]], sink: MailSink) -> tuple[str, str, str, str]:
    """Agent ana (Chicago, with a phone) and an admin subscribed to new-lead notices whose mailbox refuses mail for
    now; returns the account, ana's id and address, and the admin's id."""
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    account, ana, admin = f"office-{tag}", f"ana-{tag}", f"adm-{tag}"
    await db["agents"].insert_one(
        {
            "_id": ana,
            "account_id": account,
            "name": "Ana",
            "email": f"{ana}@example.com",
            "phone": "+13125550100",
            "time_zone": "America/Chicago",
        }
    )
    await db["staff"].insert_one({"_id": admin, "account_id": account, "name": "Ada", "email": f"{admin}@example.com"})
    await AgentDirectory(db).save_preferences(admin, PreferencesDoc(account_id=account, new_lead_notices=True))
    sink.refuse_to[f"{admin}@example.com"] = "552 5.2.2 mailbox full"
    return account, ana, f"{ana}@example.com", admin


def notifier(
    db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, texts: Recorder, letters: Letters, clock: Clock
) -> Notifier:
    directory = AgentDirectory(db)
    deliveries = DeliveryLog(db, leases=Leases(lease_ms=60_000))
    return Notifier(
        directory=directory,
        deliveries=deliveries,
        senders={Channel.EMAIL: mailer, Channel.SMS: texts},
        dead_letters=letters,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=clock,
        retry=RetryPolicy(attempts=1, initial_seconds=0.01, max_seconds=0.02),
        digest=DigestItems(db),
        staff=directory,
        replays=deliveries,
    )


def offer(account: str, agent: str, at: datetime) -> LeadOffered:
    return LeadOffered.create(
        account_id=account,
        occurred_at=at,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(),
            agent_id=agent,
            offer_round=1,
            race_size=1,
            deadline=at + timedelta(minutes=15),
            explanation="rr",
            contact=Contact(first_name="Jane", email="jane@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def to(sink: MailSink, address: str, subject_prefix: str) -> int:
    return len(
        [m for m in sink.received() if m["X-Envelope-To"] == address and m["Subject"].startswith(subject_prefix)]
    )


async def test_replaying_an_admins_new_lead_email_does_not_announce_the_offer_its_batch_had_ended(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """A notifier catching up reads Jane's offer to Ana with its expiry in one batch: the offer is not announced
    (N1), the expiry is; the lead is new for the office, and the subscribed admin's new-lead email is refused for
    good (mailbox full): dead-lettered, the offer event in it. A day later the mailbox is fixed and the operator
    replays that dead letter (channel email, recipient the admin). Expected: the admin gets the new-lead email, and
    nothing else is sent. Found: Ana was emailed and texted "Lead offer: Jane. Claim it before" a deadline a day
    past, with a one-click accept link, for an offer that expired before she could hear of it."""
    account, ana, ana_address, admin = await office(db, sink)
    texts, letters, clock = Recorder(), Letters(), Clock(NOON)
    event = offer(account, ana, NOON - timedelta(minutes=20))
    expired = OfferExpired.create(
        account_id=account,
        occurred_at=NOON - timedelta(minutes=5),
        payload=OfferClosedPayload(lead_id=event.payload.lead_id, agent_id=ana, offer_round=1),
    )
    batch = [Notice(e, e.model_dump_json().encode()) for e in (event, expired)]
    assert await notifier(db, mailer, texts, letters, clock).notify_events(batch, concurrency=4) == []
    assert to(sink, ana_address, "Lead offer") == 0, "the batch ended the offer: not announced"
    [(raw, channel, recipient, reason)] = letters.letters
    assert (channel, recipient, reason) == ("email", admin, "rejected")

    sink.refuse_to.clear()  # the admin's mailbox is fixed; the operator replays its dead letter a day later
    clock.now = NOON + timedelta(days=1)
    replay = Replay("leads.events.v1.dlq/0:7#f00d", channel, recipient)
    await notifier(db, mailer, texts, letters, clock).notify(LeadOffered.model_validate_json(raw), raw, replay=replay)

    assert to(sink, f"{admin}@example.com", "New lead: Jane") == 1, "the failed notice, sent again"
    assert to(sink, ana_address, "Lead offer") == 0, "the replay announced an offer that had ended a day before"
    assert texts.sent == [], "the replay texted the agent an ended offer"


async def test_replaying_an_admins_new_lead_email_does_not_send_the_agent_what_quiet_hours_held_back(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """Ana's quiet hours (22:00-07:00 Chicago) hold back the offer's SMS at 06:00; her email goes. The admin's
    new-lead email is refused for good and dead-lettered. At 08:00, after the offer's 06:15 deadline, the operator
    replays the admin's dead letter: Ana was texted the two-hour-old offer ("Claim it before 06:15")."""
    account, ana, ana_address, admin = await office(db, sink)
    await AgentDirectory(db).save_preferences(
        ana, PreferencesDoc(account_id=account, quiet_hours=QuietHoursDoc(start=time(22), end=time(7)))
    )
    texts, letters, clock = Recorder(), Letters(), Clock(NOON)
    event = offer(account, ana, NOON)
    await notifier(db, mailer, texts, letters, clock).notify(event, event.model_dump_json().encode())
    assert to(sink, ana_address, "Lead offer") == 1
    assert texts.sent == [], "quiet hours"
    [(raw, channel, recipient, _)] = letters.letters

    sink.refuse_to.clear()
    clock.now = NOON + timedelta(hours=2)  # 08:00 in Chicago: quiet hours over, the offer's deadline long past
    replay = Replay("leads.events.v1.dlq/0:8#beef", channel, recipient)
    await notifier(db, mailer, texts, letters, clock).notify(LeadOffered.model_validate_json(raw), raw, replay=replay)

    assert to(sink, f"{admin}@example.com", "New lead: Jane") == 1
    assert texts.sent == [], "replaying the admin's email texted the agent an offer two hours old"
    assert to(sink, ana_address, "Lead offer") == 1


async def test_replaying_an_admins_new_lead_email_after_the_items_keep_files_no_digest_item_again(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The admin's failed new-lead email is replayed four days on, after the lead's digest item was forgotten (kept
    3 days): the email goes, and no item is filed again (a replay sends one delivery: a new item would be listed in
    the office's next digest as a new lead)."""
    account, ana, _, admin = await office(db, sink)
    texts, letters, clock = Recorder(), Letters(), Clock(NOON)
    event = offer(account, ana, NOON)
    await notifier(db, mailer, texts, letters, clock).notify(event, event.model_dump_json().encode())
    [(raw, channel, recipient, _)] = letters.letters
    assert await db["notifier_digest_items"].delete_many({"account_id": account}) is not None  # the TTL's work

    sink.refuse_to.clear()
    clock.now = NOON + timedelta(days=4)
    replay = Replay("leads.events.v1.dlq/0:9#cafe", channel, recipient)
    await notifier(db, mailer, texts, letters, clock).notify(LeadOffered.model_validate_json(raw), raw, replay=replay)

    assert to(sink, f"{admin}@example.com", "New lead: Jane") == 1
    assert await db["notifier_digest_items"].count_documents({"account_id": account}) == 0
