"""The notifier's MongoDB side (nx-27017 or MONGODB_URL) with real SMTP: preferences, the delivery log, N3,
and the re-driver that finishes a delivery whose process died (decision 0021)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import DeadLetters, Gate, NoDeadLetters, Recorder, Stuck, plain
from fakes_shared import Clock
from notifier_harness import digest_sender
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from leadflow_devstack.servers import MailSink
from leadflow_devstack.testing import eventually
from leadflow_notifier.adapters import repository
from leadflow_notifier.adapters.repository import (
    AccountSchedules,
    AgentDirectory,
    Begin,
    DeliveryLog,
    DigestItems,
    LeadErasure,
    Leases,
    PreferencesDoc,
    QuietHoursDoc,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer, message_id_header
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.digest import DigestItem, Unlisted
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Courier, DigestSender, Notice, Notifier, Redriver, RetryPolicy, Sender
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    RoutingEvent,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"notifier_{uuid.uuid4().hex[:12]}"
    await client[name]["agents"].insert_one(
        {
            "_id": "ana",
            "account_id": "acme",
            "name": "Ana",
            "email": "ana@example.com",
            "phone": "+13125550100",
            "time_zone": "America/Chicago",
        }
    )
    yield client[name]
    await client.drop_database(name)
    await client.close()


def offer() -> LeadOffered:
    return LeadOffered.create(
        account_id="acme",
        occurred_at=NOON,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(),
            agent_id="ana",
            offer_round=1,
            race_size=1,
            deadline=datetime(2024, 1, 10, 12, 15, tzinfo=UTC),
            explanation="rr",
            contact=Contact.model_validate({"first_name": "Jane", "email": "jane@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def notifier(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, texts: Recorder) -> Notifier:
    return Notifier(
        directory=AgentDirectory(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: texts},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOON,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
    )


async def test_two_replicas_and_a_redelivery_send_each_channel_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    texts = Recorder()
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
    texts = Recorder()
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


async def test_a_pending_delivery_is_the_redrivers_once_its_lease_runs_out(db: AsyncDatabase[dict[str, Any]]) -> None:
    crashed, alive = Leases(lease_ms=1_000), Leases(lease_ms=1_000)
    delivery = Delivery(
        key=f"{uuid.uuid4()}:email:ana",
        channel=Channel.EMAIL,
        agent_id="ana",
        account_id="acme",
        event_type="LeadOffered",
        content=EmailContent(to="ana@example.com", subject="s", text="t", lead_id="l"),
        event=b'{"x": 1}',
    )
    assert await DeliveryLog(db, leases=crashed).begin(delivery, now_ms=10_000) is Begin.SEND
    log = DeliveryLog(db, leases=alive)

    assert await log.begin(delivery, now_ms=10_500) is Begin.BUSY  # its owner may still be sending
    assert await log.begin(delivery, now_ms=11_001) is Begin.BUSY  # a redelivery never takes it over ...
    assert not await log.claim_due(now_ms=10_999, limit=10)
    claimed = await log.claim_due(now_ms=11_001, limit=10)  # ... the re-driver does, once the lease ran out
    assert claimed.deliveries == [replace(delivery, drives=2)], "the record holds all a re-drive needs"
    assert alive.held == {delivery.key}
    assert not await log.claim_due(now_ms=11_500, limit=10), "claimed: leased again"

    await log.sent(delivery.key, now_ms=11_600)
    assert await log.begin(delivery, now_ms=99_000) is Begin.DONE
    done = await db["notifier_deliveries"].find_one({"_id": delivery.key})
    assert done is not None
    assert "content" not in done, "a finished record keeps no personal data"
    assert "event" not in done


async def test_the_daily_digest_goes_to_each_subscriber_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    await ensure_indexes(db)
    items, directory = DigestItems(db), AgentDirectory(db)
    account = f"office-{uuid.uuid4().hex[:6]}"
    await directory.save_preferences(
        "staff-1", PreferencesDoc(account_id=account, digest=True, name="Sam", email="sam@example.com")
    )
    await directory.save_preferences(
        "staff-2", PreferencesDoc(account_id=account, digest=False, email="no@example.com")
    )
    day_before = int(datetime(2024, 1, 9, 12, tzinfo=UTC).timestamp() * 1000)
    for i, created in enumerate((day_before, day_before, int(NOON.timestamp() * 1000))):
        await items.add(DigestItem(account, f"{account}-lead-{i % 2 if i < 2 else 9}", f"Lead {i}", "Web", created))
    sender = digest_sender(db, mailer, lambda: NOON, items)

    assert await sender.run_once() == 1
    assert await sender.run_once() == 0  # the next check, or another replica: already sent

    digests = [m for m in sink.received() if m["X-Envelope-To"] == "sam@example.com"]
    assert len(digests) == 1
    assert digests[0]["Subject"] == "2 new leads on Wed 10 Jan"  # the redelivered item counted once; today's waits
    assert not [m for m in sink.received() if m["X-Envelope-To"] == "no@example.com"]


async def test_a_digest_missed_while_the_notifier_was_down_is_sent_once_on_its_return(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # N1, decision 0088: the office sends at 07:00 in Chicago (13:00 UTC). The notifier is down from before
    # the 9th's digest until after the 10th's; back, it sends the 9th's, then the 10th's, once each.
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    account, address = f"away-{tag}", f"away-{tag}@example.com"
    await db["accounts"].insert_one(
        {"_id": account, "name": "Away", "time_zone": "America/Chicago", "digest_hour": 7, "roster": []}
    )
    await AgentDirectory(db).save_preferences(
        f"{account}-staff", PreferencesDoc(account_id=account, digest=True, name="Sam", email=address)
    )
    items = DigestItems(db)
    for name, arrived in [
        ("Old Lead", datetime(2024, 1, 7, 18, tzinfo=UTC)),  # the 8th's digest: due 51 h before the return
        ("Missed Lead", datetime(2024, 1, 8, 18, tzinfo=UTC)),  # the 9th's: due while down
        ("Next Lead", datetime(2024, 1, 9, 18, tzinfo=UTC)),  # the 10th's: due while down too
        ("Later Lead", datetime(2024, 1, 10, 15, tzinfo=UTC)),  # the 11th's
    ]:
        await items.add(DigestItem(account, f"{account}-{name}", name, "Web", int(arrived.timestamp() * 1000)))
    clock = Clock(datetime(2024, 1, 10, 16, tzinfo=UTC))

    def replica() -> DigestSender:
        return digest_sender(db, mailer, clock, items)

    def digests() -> list[tuple[str, str]]:
        return [(str(m["Subject"]), plain(m)) for m in sink.received() if m["X-Envelope-To"] == address]

    back = replica()
    assert await back.run_once() == 2
    assert [subject for subject, _ in digests()] == ["1 new lead on Tue 09 Jan", "1 new lead on Wed 10 Jan"]
    assert "Missed Lead" in digests()[0][1]
    assert "Next Lead" in digests()[1][1]
    assert await back.run_once() == 0, "the next check: both are in the delivery log"
    assert await replica().run_once() == 0, "nor does another replica send them again"

    clock.now = datetime(2024, 1, 11, 13, tzinfo=UTC)  # the 11th's digest hour
    assert await back.run_once() == 1
    assert [subject for subject, _ in digests()] == [
        "1 new lead on Tue 09 Jan",
        "1 new lead on Wed 10 Jan",
        "1 new lead on Thu 11 Jan",
    ], "each day's once; the 8th's, due more than two days before the return, never"
    assert "Later Lead" in digests()[2][1]
    assert not [body for _, body in digests() if "Old Lead" in body]
    statuses = {d["_id"]: d["status"] async for d in db["notifier_deliveries"].find({}, {"status": 1})}
    assert statuses == {f"digest:{account}:2024-01-{day}:email:{account}-staff": "sent" for day in ("09", "10", "11")}


async def test_a_staff_member_gets_the_digest_at_the_offices_hour_in_its_time_zone(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # Issue 11.4: an admin or staff member who is not an agent (crm-api's `staff`) is reached, and
    # the digest goes out at the hour the account sets, in the office's time zone.
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    account, staff_id, address = f"west-{tag}", f"west-{tag}-ops", f"ops-{tag}@example.com"
    await db["accounts"].insert_one(
        {"_id": account, "name": "West", "time_zone": "America/Los_Angeles", "digest_hour": 9, "roster": []}
    )
    await db["staff"].insert_one(
        {
            "_id": staff_id,
            "account_id": account,
            "name": "Ops Lee",
            "email": address,
            "time_zone": "America/Los_Angeles",
            "role": "staff",
        }
    )
    await AgentDirectory(db).save_preferences(staff_id, PreferencesDoc(account_id=account, digest=True))
    items = DigestItems(db)
    created = datetime(2026, 6, 1, 20, tzinfo=UTC)  # 13:00 in Los Angeles, the day before
    await items.add(DigestItem(account, f"{account}-lead", "Lead One", "Web", int(created.timestamp() * 1000)))
    clock = Clock(NOON)
    sender = digest_sender(db, mailer, clock, items)

    def to_staff() -> list[Any]:
        return [m for m in sink.received() if m["X-Envelope-To"] == address]

    clock.now = datetime(2026, 6, 2, 15, 59, tzinfo=UTC)  # 08:59 there: the default 7 UTC hour has long passed
    await sender.run_once()
    assert to_staff() == []
    clock.now = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)  # 09:00 in Los Angeles
    await sender.run_once()
    [digest] = to_staff()
    assert digest["Subject"] == "1 new lead on Tue 02 Jun"
    assert "Ops Lee" in digest.get_body(("plain",)).get_content()


async def test_a_subscribed_admin_is_told_of_each_new_lead_at_once_and_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # N1: "subscribed admins get new-lead notices (immediate or daily digest)". A race offers the lead
    # to two agents (two events), one of them is redelivered, two replicas run: one email per lead.
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    account, admin, address = f"now-{tag}", f"now-{tag}-adm", f"adm-{tag}@example.com"
    await db["staff"].insert_one({"_id": admin, "account_id": account, "name": "Ada Min", "email": address})
    await AgentDirectory(db).save_preferences(admin, PreferencesDoc(account_id=account, new_lead_notices=True))
    await AgentDirectory(db).save_preferences(f"{admin}-no", PreferencesDoc(account_id=account, email="no@x.example"))
    racers = [f"ana-{tag}", f"ben-{tag}"]
    await db["agents"].insert_many([{"_id": a, "account_id": account, "name": a, "email": f"{a}@example.com"}
                                    for a in racers])  # fmt: skip
    lead = uuid.uuid4()
    race = [
        LeadOffered.create(
            account_id=account,
            occurred_at=NOON,
            payload=LeadOfferedPayload(
                lead_id=lead,
                agent_id=agent,
                offer_round=1,
                race_size=2,
                deadline=NOON + timedelta(minutes=15),
                explanation="rr",
                contact=Contact.model_validate({"first_name": "Nia", "email": "nia@example.com"}),
                source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            ),
        )
        for agent in racers
    ]
    replicas = []
    for _ in range(2):
        built = notifier(db, mailer, Recorder())
        replicas.append(dataclasses.replace(built, digest=DigestItems(db), staff=AgentDirectory(db)))
    await asyncio.gather(*(r.notify(e, e.model_dump_json().encode()) for r in replicas for e in race))
    await replicas[0].notify(race[0], race[0].model_dump_json().encode())  # a redelivery

    told = [m for m in sink.received() if m["X-Envelope-To"] == address]
    assert [str(m["Subject"]) for m in told] == ["New lead: Nia"]
    body = told[0].get_body(("plain",))
    assert body is not None
    assert f"https://crm/accounts/{account}/leads/{lead}" in body.get_content()
    assert not [m for m in sink.received() if m["X-Envelope-To"] == "no@x.example"]


async def test_only_the_offices_broker_reads_the_routers_explanation_in_its_email(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # N5: the router's explanation names the other agents and why they were passed by (routing info, decisions
    # 0062 and 0076). Through real SMTP: an agent's assignment says why in words about itself, a lead released
    # to the broker pool's agent who is not position 1 of the stored roster carries no explanation, and the
    # broker (position 1) reads the whole line of a lead that fell back to it.
    tag = uuid.uuid4().hex[:6]
    account, boss, agent = f"n5-{tag}", f"boss-{tag}", f"ana-{tag}"
    rivals = [f"bo-{tag}", f"cy-{tag}"]
    await db["accounts"].insert_one({"_id": account, "roster": [boss, agent, *rivals]})
    await db["agents"].insert_many([{"_id": a, "account_id": account, "name": a, "email": f"{a}@example.com"}
                                    for a in (boss, agent)])  # fmt: skip
    why = (f"R6: offered to {agent} (next in rotation, race of 1) until 2024-01-10T12:15:00+00:00; eligible: "
           f"{agent}, {rivals[0]}; skipped {rivals[1]}: paused until 2024-01-11T09:00:00+00:00.")  # fmt: skip
    contact = Contact.model_validate({"first_name": "Nia", "email": "nia@example.com"})
    source = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
    leads = {name: uuid.uuid4() for name in ("assigned", "released", "fell back")}
    events: list[RoutingEvent] = [
        LeadAssigned.create(account_id=account, occurred_at=NOON, payload=LeadAssignedPayload(
            lead_id=leads["assigned"], agent_id=agent, reason=AssignmentReason.PRE_ASSIGNED, explanation=why,
            contact=contact, source=source,
        )),
        LeadReleased.create(account_id=account, occurred_at=NOON, payload=LeadReleasedPayload(
            lead_id=leads["released"], agent_id=rivals[0], broker_agent_id=agent, explanation=f"Idle: {why}",
            reason="idle",
        )),
        LeadFellBack.create(account_id=account, occurred_at=NOON, payload=LeadFellBackPayload(
            lead_id=leads["fell back"], agent_id=boss, explanation=why,
        )),
    ]  # fmt: skip
    told = dataclasses.replace(notifier(db, mailer, Recorder()), brokers=AgentDirectory(db))
    for event in events:
        await told.notify(event, event.model_dump_json().encode())

    async def sent() -> dict[str, EmailMessage] | None:
        by_lead = {m["X-Leadflow-Lead-Id"]: m for m in sink.received() if m["X-Leadflow-Lead-Id"]}
        found = {name: by_lead[str(lead)] for name, lead in leads.items() if str(lead) in by_lead}
        return found if len(found) == len(leads) else None

    mails = await eventually(sent, what="the three emails at the SMTP server")
    assert [m["X-Envelope-To"] for m in mails.values()] == [f"{agent}@example.com"] * 2 + [f"{boss}@example.com"]
    for name in ("assigned", "released"):
        html = mails[name].get_body(("html",))
        assert html is not None
        seen = (str(mails[name]["Subject"]), plain(mails[name]), str(html.get_content()))
        assert not [r for r in rivals if any(r in part for part in seen)], (name, seen)
    assert "Why you: the lead provider assigned the lead to you." in plain(mails["assigned"])
    assert f"Why: {why}" in plain(mails["fell back"]), "the broker reads the whole line"


class Updates(monitoring.CommandListener):
    """Counts the `update` commands on the delivery log."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "notifier_deliveries":
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_batchs_emails_are_marked_sent_in_one_command_each_once(
    db: AsyncDatabase[dict[str, Any]],
    mongo_url: str,
    sink: MailSink,
    mailer: SmtpMailer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Decision 0072: the emails of a batch end one by one; each mark waits for those of the other sends
    in progress (the SMTP connections' permits held), so the batch is marked in one command. Each email
    still goes once and its record ends `sent`."""
    monkeypatch.setattr(repository, "MARK_LINGER_SECONDS", 30.0)  # the marks wait for each other, not the clock
    updates = Updates()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[updates])
    try:
        log = DeliveryLog(client[db.name], leases=Leases(lease_ms=60_000),
                          marks_on_the_way=lambda: mailer.unmarked.held)  # fmt: skip
        only_email = {Channel.EMAIL: mailer}
        batch = dataclasses.replace(notifier(db, mailer, Recorder()), deliveries=log, replays=log, senders=only_email)
        events = [offer() for _ in range(4)]  # fewer than the mailer's connections: all sent at once
        notices = [Notice(e, e.model_dump_json().encode()) for e in events]
        assert await batch.notify_events(notices, concurrency=8) == []
    finally:
        await client.close()
    assert updates.count == 1
    for event in events:
        emails = [m for m in sink.received() if m["X-Leadflow-Lead-Id"] == str(event.payload.lead_id)]
        assert len(emails) == 1
        record = await db["notifier_deliveries"].find_one({"_id": f"{event.event_id}:email:ana"})
        assert record is not None
        assert record["status"] == "sent"
    assert mailer.unmarked.held == 0


# The re-driver: a delivery whose process died (decision 0021)

LEASE_MS = 1_000


class Replica:
    """One notifier process: its leases, its consumer-side notifier and its re-driver."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        clock: Clock,
        email: Sender,
        *,
        dead_letters: Any = None,
        max_drives: int = 5,
        concurrency: int = 16,
        texts: Sender | None = None,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self.leases = Leases(lease_ms=lease_ms)
        self.log = DeliveryLog(db, leases=self.leases)
        self.metrics = NotifierMetrics(CollectorRegistry())
        retry = RetryPolicy(attempts=3, initial_seconds=0.01, max_seconds=0.02)
        letters = dead_letters or NoDeadLetters()
        senders: dict[Channel, Sender] = {Channel.EMAIL: email} | ({Channel.SMS: texts} if texts else {})
        self.notifier = Notifier(
            directory=AgentDirectory(db),
            deliveries=self.log,
            senders=senders,
            dead_letters=letters,
            metrics=self.metrics,
            pages_url="https://crm",
            clock=clock,
            retry=retry,
        )
        courier = Courier(
            deliveries=self.log,
            senders=senders,
            dead_letters=letters,
            metrics=self.metrics,
            clock=clock,
            retry=retry,
        )
        self.redriver = Redriver(
            deliveries=self.log, courier=courier, metrics=self.metrics, max_drives=max_drives, concurrency=concurrency
        )

    def digests(self, db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, clock: Clock, **more: Any) -> DigestSender:
        """This process's daily digest run, on its delivery log (`more`: e.g. the erasure markers)."""
        return DigestSender(
            items=DigestItems(db),
            subscribers=AgentDirectory(db),
            deliveries=self.log,
            mailer=mailer,
            metrics=self.metrics,
            pages_url="https://crm",
            default_hour=7,
            schedules=AccountSchedules(db),
            clock=clock,
            **more,
        )


def about(sink: MailSink, event: LeadOffered) -> list[EmailMessage]:
    return [m for m in sink.received() if m["X-Leadflow-Lead-Id"] == str(event.payload.lead_id)]


async def crash_mid_send(db: AsyncDatabase[dict[str, Any]], clock: Clock, event: LeadOffered) -> None:
    """A notifier starts the email and dies before the provider answers: the record stays pending."""
    gate = Gate()
    dying = Replica(db, clock, gate)
    task = asyncio.create_task(dying.notifier.notify(event, event.model_dump_json().encode()))
    await asyncio.wait_for(gate.entered.wait(), timeout=10)
    task.cancel()  # no mark, no more lease renewals: what SIGKILL leaves
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_delivery_left_by_a_crashed_notifier_is_redriven_exactly_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    await crash_mid_send(db, clock, event)
    restarted, other = Replica(db, clock, mailer), Replica(db, clock, mailer)

    # The restarted notifier gets the uncommitted event again inside the dead one's lease: busy, skipped.
    clock.advance(LEASE_MS // 2)
    await restarted.notifier.notify(event, event.model_dump_json().encode())
    assert about(sink, event) == []
    assert await restarted.redriver.run_once() == 0, "the lease is still live"

    # Once the lease has run out, the re-drivers of two replicas race for it: one sends it.
    clock.advance(LEASE_MS)
    claimed = await asyncio.gather(restarted.redriver.run_once(), other.redriver.run_once())
    assert sorted(claimed) == [0, 1]
    sent = about(sink, event)
    assert len(sent) == 1
    key = f"{event.event_id}:email:ana"
    assert sent[0]["Message-ID"] == mailer.message(EmailContent("x", "x", "x", "x"), message_id=key)["Message-ID"], (
        "a re-drive carries the Message-ID the first attempt had"
    )
    assert "Lead offer: Jane" in str(sent[0]["Subject"])

    clock.advance(10 * LEASE_MS)
    assert await other.redriver.run_once() == 0
    await restarted.notifier.notify(event, event.model_dump_json().encode())  # and a late redelivery
    assert len(about(sink, event)) == 1
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert (record["status"], record["drives"]) == ("sent", 2)


async def test_a_live_lease_is_renewed_and_not_stolen(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    slow = Gate(then=mailer)
    owner, other = Replica(db, clock, slow), Replica(db, clock, mailer)
    sending = asyncio.create_task(owner.notifier.notify(event, event.model_dump_json().encode()))
    await asyncio.wait_for(slow.entered.wait(), timeout=10)

    # The provider is slow, well past the first lease; the owner's renewer keeps the lease live.
    for _ in range(5):
        clock.advance(LEASE_MS // 2)
        await owner.log.renew(now_ms=clock.ms)
        assert await other.redriver.run_once() == 0, "a live lease was stolen"
        await other.notifier.notify(event, event.model_dump_json().encode())  # a rebalance's copy: busy
    slow.release.set()
    await sending

    clock.advance(10 * LEASE_MS)
    assert await other.redriver.run_once() == 0
    assert len(about(sink, event)) == 1
    assert owner.leases.held == set(), "nothing left to renew once it is sent"


async def test_a_redriven_delivery_keeps_the_retry_bound_and_the_dead_letter_exit(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    await crash_mid_send(db, clock, event)
    letters = DeadLetters()
    restarted = Replica(db, clock, mailer, dead_letters=letters)
    sink.refusals.extend(["451 4.3.0 try later"] * 3)  # every attempt of the re-drive (attempts=3)

    clock.advance(2 * LEASE_MS)
    assert await restarted.redriver.run_once() == 1
    assert letters.reasons == ["unavailable"]
    record = await db["notifier_deliveries"].find_one({"_id": f"{event.event_id}:email:ana"})
    assert record is not None
    assert (record["status"], record["reason"]) == ("failed", "unavailable")
    clock.advance(10 * LEASE_MS)
    assert await restarted.redriver.run_once() == 0
    assert about(sink, event) == []


async def test_a_delivery_whose_every_drive_crashed_is_dead_lettered_as_abandoned(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    await crash_mid_send(db, clock, event)  # drive 1
    for _ in range(2):  # drives 2 and 3 die too
        clock.advance(2 * LEASE_MS)
        dying = Replica(db, clock, mailer)
        [claimed] = (await dying.log.claim_due(now_ms=clock.ms, limit=10)).deliveries
        assert claimed.key == f"{event.event_id}:email:ana"
    letters = DeadLetters()
    last = Replica(db, clock, mailer, dead_letters=letters, max_drives=3)

    clock.advance(2 * LEASE_MS)
    assert await last.redriver.run_once() == 1
    assert letters.reasons == ["abandoned"]
    assert about(sink, event) == []


def stranded(event: LeadOffered, clock: Clock) -> dict[str, Any]:
    """A pending email record whose process died: its lease ran out a lease ago."""
    return {
        "_id": f"{event.event_id}:email:ana",
        "channel": "email",
        "status": "pending",
        "created_ms": clock.ms,
        "lease_until_ms": clock.ms - LEASE_MS,
        "owner": "dead",
        "drives": 1,
        "agent_id": "ana",
        "account_id": "acme",
        "event_type": "LeadOffered",
        "occurred_ms": clock.ms,
        "event": event.model_dump_json().encode(),
        "content": {
            "kind": "EmailContent",
            "to": "ana@example.com",
            "subject": "s",
            "text": "t",
            "lead_id": str(event.payload.lead_id),
        },
    }


async def test_an_unreadable_pending_record_is_dead_lettered_and_the_rest_is_driven(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, broken, fine = Clock(NOON), offer(), offer()
    await ensure_indexes(db)
    bad = stranded(broken, clock) | {"content": {"kind": "Fax", "to": "x"}}  # e.g. written by a newer version
    await db["notifier_deliveries"].insert_many([bad, stranded(fine, clock)])
    letters = DeadLetters()
    replica = Replica(db, clock, mailer, dead_letters=letters)

    assert await replica.redriver.run_once() == 2
    assert letters.reasons == ["unreadable"]
    record = await db["notifier_deliveries"].find_one({"_id": bad["_id"]})
    assert record is not None
    assert (record["status"], record["reason"]) == ("failed", "unreadable")
    assert len(about(sink, fine)) == 1
    assert replica.leases.held == set(), "nothing held that nobody drives"


class Blip:
    """The delivery collection, whose `find_one_and_update` fails once after `ok` calls (a MongoDB blip)."""

    def __init__(self, real: Any, ok: int) -> None:
        self.real, self.ok = real, ok

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> Any:
        if self.ok == 0:
            self.ok = -1
            raise AutoReconnect("primary stepped down")
        self.ok -= 1
        return await self.real.find_one_and_update(*args, **kwargs)


async def test_a_mongodb_blip_mid_claim_lets_go_of_what_it_claimed(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock, first, second = Clock(NOON), offer(), offer()
    await ensure_indexes(db)
    records = [stranded(first, clock), stranded(second, clock)]
    records[1]["lease_until_ms"] += 1  # claimed second
    await db["notifier_deliveries"].insert_many(records)
    replica = Replica(db, clock, mailer)
    replica.log._deliveries = Blip(replica.log._deliveries, ok=1)  # type: ignore[assignment]

    with pytest.raises(AutoReconnect):
        await replica.redriver.run_once()
    assert replica.leases.held == set(), "a claimed record held but never driven would be renewed forever"
    await replica.log.renew(now_ms=clock.ms)  # the renewer's next round extends nothing

    clock.advance(2 * LEASE_MS)
    assert await replica.redriver.run_once() == 2, "both are driven once the first one's lease ran out"
    assert (len(about(sink, first)), len(about(sink, second))) == (1, 1)


class MarksFail:
    """The delivery collection, whose `sent` marks (not the lease renewals) fail while `left` > 0: a MongoDB blip
    (`left` 1), or an outage the test ends by setting `left` to 0."""

    def __init__(self, real: Any, left: int) -> None:
        self.real, self.left, self.failed = real, left, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def update_many(self, query: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        if self.left > 0 and update.get("$set", {}).get("status") == "sent":
            self.left -= 1
            self.failed += 1
            raise AutoReconnect("primary stepped down")
        return await self.real.update_many(query, update, *args, **kwargs)


async def test_a_mongodb_blip_on_the_sent_mark_sends_the_offer_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """N3: the provider accepted the message, then the `sent` mark met a MongoDB blip. The mark is tried
    again (it was left pending, and the re-driver sent the offer a second time: 2 SMS for one offer)."""
    clock, event, texts = Clock(NOON), offer(), Recorder()
    await ensure_indexes(db)
    replica = Replica(db, clock, mailer, texts=texts)
    marks = MarksFail(replica.log._deliveries, left=1)
    replica.log._deliveries = marks  # type: ignore[assignment]
    raw = event.model_dump_json().encode()

    await replica.notifier.notify(event, raw)
    assert marks.failed == 1
    await replica.notifier.notify(event, raw)  # a redelivery: done, skipped
    for _ in range(2):
        clock.advance(2 * LEASE_MS)
        assert await replica.redriver.run_once() == 0, "nothing left pending for the re-driver"

    assert (len(about(sink, event)), texts.sent) == (1, [f"{event.event_id}:sms:ana"])
    keys = [f"{event.event_id}:email:ana", f"{event.event_id}:sms:ana"]
    statuses = {d["_id"]: d["status"] async for d in db["notifier_deliveries"].find({"_id": {"$in": keys}})}
    assert statuses == dict.fromkeys(keys, "sent")
    assert replica.leases.held == set()


async def test_a_delivery_whose_sent_mark_is_retried_keeps_its_lease(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """While its mark is tried again, the delivery is still this drive's: renewed, so no re-driver takes it."""
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    lease_ms = 10_000  # the marks are tried again for a lease of real time: more than this test takes
    owner, other = Replica(db, clock, mailer, lease_ms=lease_ms), Replica(db, clock, mailer, lease_ms=lease_ms)
    marks = MarksFail(owner.log._deliveries, left=1_000_000)
    owner.log._deliveries = marks  # type: ignore[assignment]
    sending = asyncio.create_task(owner.notifier.notify(event, event.model_dump_json().encode()))
    await eventually(lambda: marks.failed >= 2, timeout=5, what="the mark failed and was tried again")

    for _ in range(4):  # two leases of the test's clock
        clock.advance(lease_ms // 2)
        await owner.log.renew(now_ms=clock.ms)
        assert await other.redriver.run_once() == 0, "a delivery whose mark was being retried was taken over"
        await other.notifier.notify(event, event.model_dump_json().encode())  # a rebalance's copy: busy
    assert not sending.done()
    marks.left = 0  # MongoDB is back
    await asyncio.wait_for(sending, timeout=5)

    clock.advance(10 * lease_ms)
    assert await other.redriver.run_once() == 0
    assert len(about(sink, event)) == 1
    record = await db["notifier_deliveries"].find_one({"_id": f"{event.event_id}:email:ana"})
    assert record is not None
    assert record["status"] == "sent"
    assert owner.leases.held == set()


async def test_a_sent_mark_failing_for_longer_than_a_lease_leaves_the_delivery_to_the_redriver(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The bound, and the window N3 leaves open: marks failing for a whole lease (LEASE_MS of real time) give
    up; the record stays pending, no longer held, and once MongoDB is back the re-driver sends it again, with
    the first copy's Message-ID."""
    clock, event = Clock(NOON), offer()
    await ensure_indexes(db)
    replica = Replica(db, clock, mailer)
    marks = MarksFail(replica.log._deliveries, left=1_000_000)
    replica.log._deliveries = marks  # type: ignore[assignment]

    with pytest.raises(AutoReconnect):
        await asyncio.wait_for(replica.notifier.notify(event, event.model_dump_json().encode()), timeout=10)
    assert marks.failed > 2, "tried again before giving up"
    assert replica.leases.held == set()
    key = f"{event.event_id}:email:ana"
    assert await db["notifier_deliveries"].count_documents({"_id": key, "status": "pending"}) == 1

    marks.left = 0
    clock.advance(2 * LEASE_MS)
    assert await replica.redriver.run_once() == 1
    sent = about(sink, event)
    assert len(sent) == 2
    assert sent[0]["Message-ID"] == sent[1]["Message-ID"]
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert record["status"] == "sent"


async def test_a_crash_counts_a_drive_only_for_records_whose_send_started(db: AsyncDatabase[dict[str, Any]]) -> None:
    clock = Clock(NOON)
    await ensure_indexes(db)
    await db["notifier_deliveries"].insert_many([stranded(offer(), clock) for _ in range(6)])
    stuck = Stuck()
    dying = Replica(db, clock, stuck, concurrency=2)
    task = asyncio.create_task(dying.redriver.run_once())
    await eventually(lambda: len(stuck.started) == 2, timeout=10, what="two sends in flight")
    task.cancel()  # SIGKILL
    with contextlib.suppress(asyncio.CancelledError):
        await task

    driven = [d["_id"] async for d in db["notifier_deliveries"].find({"owner": {"$ne": "dead"}, "drives": 2})]
    assert sorted(driven) == sorted(stuck.started), "a drive counted without a send would abandon it untried"


async def digest_office(
    db: AsyncDatabase[dict[str, Any]], clock: Clock, leads: list[tuple[str, str]]
) -> tuple[str, str]:
    """A new office whose staff member takes the daily digest by email, with `leads` (id suffix, name) new six hours
    ago: the office's id and the staff member's address."""
    await ensure_indexes(db)
    account = f"office-{uuid.uuid4().hex[:6]}"
    email = f"{account}@example.com"
    await AgentDirectory(db).save_preferences(
        f"{account}-staff", PreferencesDoc(account_id=account, digest=True, email=email)
    )
    for suffix, name in leads:
        await DigestItems(db).add(DigestItem(account, f"{account}-{suffix}", name, "Web", clock.ms - 6 * 3_600_000))
    return account, email


async def test_a_digest_refused_for_now_is_retried_later_that_day(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    clock = Clock(NOON)
    account, email = await digest_office(db, clock, [("lead", "Lead")])
    replica = Replica(db, clock, mailer)
    sender = replica.digests(db, mailer, clock)
    key = f"digest:{account}:{clock.now.date().isoformat()}:email:{account}-staff"

    sink.refusals.extend(["451 4.3.0 try later"] * 4)  # the run, then every attempt of a re-drive (3)
    assert await sender.run_once() == 0
    assert await db["notifier_deliveries"].count_documents({"_id": key, "status": "pending"}) == 1
    clock.advance(2 * LEASE_MS)
    assert await replica.redriver.run_once() == 1
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert record["status"] == "pending", "a digest has no other way out: it is tried again later"
    assert record["lease_until_ms"] > clock.ms + LEASE_MS, "backed off, not re-driven at once"
    assert record["drives"] == 0, "an orderly end of its drive, not a crash"

    clock.advance(LEASE_MS)
    assert await replica.redriver.run_once() == 0, "not before its backoff"
    clock.now = datetime.fromtimestamp(record["lease_until_ms"] / 1000 + 1, tz=UTC)
    assert await replica.redriver.run_once() == 1
    assert len([m for m in sink.received() if m["X-Envelope-To"] == email]) == 1
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert record["status"] == "sent"


async def test_a_digest_waiting_for_a_retry_when_one_of_its_leads_is_erased_goes_once_with_the_others(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # Decision 0094: the day's digest lists Ann and Bob; SMTP refuses it for now (4xx), so it waits pending for a
    # retry. Ann's contact is erased meanwhile: her erasure ends that delivery unsent. Bob is still new for the
    # office: the next runs send the day's digest once, with Bob only, under the same key and Message-ID.
    clock = Clock(NOON)
    account, email = await digest_office(db, clock, [("ann", "Ann Erased"), ("bob", "Bob Kept")])
    ann, bob = f"{account}-ann", f"{account}-bob"
    replicas = [Replica(db, clock, mailer) for _ in range(2)]

    def run(replica: Replica) -> DigestSender:
        return replica.digests(db, mailer, clock, erasures=LeadErasure(db))

    def digests() -> list[EmailMessage]:
        return [m for m in sink.received() if m["X-Envelope-To"] == email]

    key = f"digest:{account}:{clock.now.date().isoformat()}:email:{account}-staff"
    sink.refusals.extend(["451 4.3.0 try later"] * 4)  # the run, then every attempt of a re-drive (3)
    assert await run(replicas[0]).run_once() == 0
    clock.advance(2 * LEASE_MS)
    assert await replicas[0].redriver.run_once() == 1
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert (record["status"], record["drives"]) == ("pending", 0), "left for a later try"

    assert await LeadErasure(db).erase([ann], now_ms=clock.ms) == 1, "Ann's erasure ends the pending digest"
    clock.advance(LEASE_MS)
    sent = await asyncio.gather(*(run(replica).run_once() for replica in replicas))  # two replicas' runs at once
    assert sorted(sent) == [0, 1], "the day's digest begun again by one replica"
    assert len(digests()) == 1
    assert digests()[0]["Subject"] == "1 new lead on Wed 10 Jan"
    assert "Bob Kept" in plain(digests()[0])
    assert "Ann Erased" not in plain(digests()[0]), "nothing of Ann"
    assert ann not in plain(digests()[0])
    assert digests()[0]["Message-ID"] == message_id_header(key), "the day's one digest, under its one Message-ID"

    clock.advance(20 * 60_000)  # later runs and re-drives: nothing more
    assert [await run(replica).run_once() for replica in replicas] == [0, 0]
    assert [await replica.redriver.run_once() for replica in replicas] == [0, 0]
    assert len(digests()) == 1
    record = await db["notifier_deliveries"].find_one({"_id": key})
    assert record is not None
    assert (record["status"], record["lead_ids"]) == ("sent", [bob])
    assert "content" not in record


async def test_only_a_digest_an_erasure_ended_unsent_is_begun_again_and_only_once_nothing_can_still_send_it(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    # Decision 0094, the delivery log's side: begun again under its key by one replica, with the new content.
    erasure, tag = LeadErasure(db), uuid.uuid4().hex[:6]
    logs = [DeliveryLog(db, leases=Leases(lease_ms=LEASE_MS)) for _ in range(2)]

    def digest(key: str, *leads: str) -> Delivery:
        content = EmailContent(to="sam@example.com", subject=f"{len(leads)} new", text=" ".join(leads), lead_id="")
        return Delivery(key=f"{tag}-{key}", channel=Channel.EMAIL, agent_id="sam", account_id="acme",
                        event_type="Digest", content=content, expires_ms=10**13, lead_ids=leads,
                        again_after_erasure=True)  # fmt: skip

    t0 = 1_000_000
    for key in ("in-flight", "failed", "notice"):
        assert await logs[0].begin(digest(key, f"{tag}-{key}-a", "b"), now_ms=t0) is Begin.SEND
    await logs[0].failed(f"{tag}-failed", reason="rejected", now_ms=t0)  # the digest's end, before the erasure
    notice = replace(digest("notice", f"{tag}-notice-a"), event=b'{"x": 1}', again_after_erasure=False)
    await erasure.erase([f"{tag}-{key}-a" for key in ("in-flight", "failed", "notice")], now_ms=t0 + 1)

    again = digest("in-flight", "b")
    assert await logs[1].begin(again, now_ms=t0 + LEASE_MS // 2) is Begin.BUSY, "its drive may still be sending"
    assert await logs[1].begin(digest("failed", "b"), now_ms=t0 + 2 * LEASE_MS) is Begin.DONE
    assert await logs[1].begin(notice, now_ms=t0 + 2 * LEASE_MS) is Begin.DONE, "an event's delivery: never again"

    began = await asyncio.gather(*(log.begin(again, now_ms=t0 + 2 * LEASE_MS) for log in logs))
    assert sorted(began) == sorted([Begin.SEND, Begin.BUSY])
    record = await db["notifier_deliveries"].find_one({"_id": again.key})
    assert record is not None
    assert (record["status"], record["lead_ids"], record["content"]["text"]) == ("pending", ["b"], "b")
    assert "done_at" not in record, "a pending record is no TTL's"
    assert record["lease_until_ms"] == t0 + 3 * LEASE_MS
    for log, state in zip(logs, began, strict=True):
        if state is Begin.SEND:
            await log.sent(again.key, now_ms=t0 + 2 * LEASE_MS)
    assert await logs[0].begin(again, now_ms=t0 + 9 * LEASE_MS) is Begin.DONE, "sent: the day's digest went"


async def test_finished_deliveries_and_digest_items_are_forgotten_by_ttl_indexes(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await ensure_indexes(db, delivery_days=30, digest_days=3)
    log = DeliveryLog(db, leases=Leases(lease_ms=60_000))
    content = EmailContent(to="ana@example.com", subject="s", text="t", lead_id="l")
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    month_ago_ms = now_ms - 31 * 86_400_000
    keys = ["ttl-recent", "ttl-old", "ttl-pending"]
    for key in keys:
        delivery = Delivery(key=key, channel=Channel.EMAIL, agent_id="ana", account_id="acme",
                            event_type="LeadOffered", content=content, event=b'{"x": 1}')  # fmt: skip
        assert await log.begin(delivery, now_ms=month_ago_ms) is Begin.SEND
    await log.sent("ttl-recent", now_ms=now_ms)
    await log.failed("ttl-old", reason="rejected", now_ms=month_ago_ms)
    # As if written a month ago (the TTL counts real time since the record was finished).
    await db["notifier_deliveries"].update_one(
        {"_id": "ttl-old"}, {"$set": {"done_at": datetime.now(UTC) - timedelta(days=31)}}
    )

    # A lead noted unlisted a month ago (decision 0013, amended in session 32): its own TTL, as the records'.
    await DigestItems(db).note(Unlisted("acme", "l-noted"))
    noted = {"_id": "unlisted:acme:l-noted"}
    await db["notifier_digest_items"].update_one(noted, {"$set": {"noted_at": datetime.now(UTC) - timedelta(days=31)}})

    async def left() -> dict[str, Any] | None:
        done = {d["_id"]: d.get("done_at") async for d in db["notifier_deliveries"].find({"_id": {"$in": keys}})}
        forgotten = await db["notifier_digest_items"].find_one(noted) is None
        return done if "ttl-old" not in done and forgotten else None

    # Done a month ago: gone once the server's TTL monitor ran (nx-27017 and MongoDB alike, within a minute).
    done = await eventually(left, timeout=90, what="the month-old delivery record and note forgotten")
    assert done["ttl-recent"] is not None  # a date (nx-27017 reads back a `$set` date as its text)
    assert done["ttl-pending"] is None  # a delivery still to finish is never forgotten
    await DigestItems(db).add(DigestItem(account_id="acme", lead_id="l1", name="Jo", source="Website", created_ms=1))
    item = await db["notifier_digest_items"].find_one({"lead_id": "l1"})
    assert item is not None
    assert isinstance(item["created_at"], datetime)

    async def ttl(collection: str) -> list[tuple[dict[str, Any], int]]:  # by key: nx-27017 renames indexes
        return [(dict(i["key"]), i["expireAfterSeconds"]) async for i in await db[collection].list_indexes()
                if "expireAfterSeconds" in i]  # fmt: skip

    assert await ttl("notifier_deliveries") == [({"done_at": 1}, 30 * 86_400)]
    assert await ttl("notifier_digest_items") == [({"created_at": 1}, 3 * 86_400), ({"noted_at": 1}, 30 * 86_400)]
