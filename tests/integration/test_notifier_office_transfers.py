"""T2 office transfers through the notifier against nx-27017 (or MONGODB_URL) and a real SMTP server.

A transferred lead is a new lead of the target office in its next daily digest, even when it
was in the source office's digest already; a moved team member is emailed to the target's
broker and team-update subscribers once each, and is no new lead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import NoDeadLetters, Recorder, member_moved, plain
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.repository import (
    AccountSchedules,
    AgentDirectory,
    DeliveryLog,
    DigestItems,
    LeadErasure,
    Leases,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import DigestSender, Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    RoutingEvent,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

OFFERED_AT = datetime(2024, 1, 9, 12, tzinfo=UTC)  # in the digest of Wed 10 Jan (07:00 UTC)
MOVED_AT = datetime(2024, 1, 10, 12, tzinfo=UTC)  # after it: in the digest of Thu 11 Jan
DIGEST_HOUR = 7
CONTACT = Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"})
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def agent(agent_id: str, account: str, name: str) -> dict[str, Any]:
    return {
        "_id": agent_id,
        "account_id": account,
        "name": name,
        "email": f"{agent_id}@example.com",
        "phone": "+13125550100",
        "time_zone": "America/Chicago",
    }


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """Two offices of one organisation. North: broker Bea (roster position 1), agent Carl,
    staff Sue (team updates, set the way crm-api sets it), Ned (team updates off), Ola (no
    such field), Dan (digest). South: broker Sam, staff Zed (team updates, digest)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"notifier_t2_{uuid.uuid4().hex[:12]}"
    d = client[name]
    await d["accounts"].insert_many(
        [
            {"_id": "north", "name": "North Office", "roster": ["bea", "carl"]},
            {"_id": "south", "name": "South Office", "roster": ["sam"]},
        ]
    )
    await d["agents"].insert_many(
        [
            agent("bea", "north", "Bea"),
            agent("carl", "north", "Carl"),
            agent("sam", "south", "Sam"),
            agent("tom", "north", "Tom Jones"),
        ]
    )
    prefs = d["notifier_preferences"]
    await prefs.insert_many(
        [
            {"_id": "bea", "account_id": "north", "push_token": "bea-token"},
            {"_id": "carl", "account_id": "north", "team_updates": False},
            {"_id": "sue", "account_id": "north", "name": "Sue", "email": "sue@example.com", "team_updates": False},
            {"_id": "ned", "account_id": "north", "name": "Ned", "email": "ned@example.com", "team_updates": False},
            {"_id": "ola", "account_id": "north", "name": "Ola", "email": "ola@example.com"},
            {"_id": "dan", "account_id": "north", "name": "Dan", "email": "dan@example.com", "digest": True},
            {
                "_id": "zed",
                "account_id": "south",
                "name": "Zed",
                "email": "zed@example.com",
                "team_updates": True,
                "digest": False,
            },
            # The moved member's preferences moved with it: it is not told about its own move.
            {"_id": "tom", "account_id": "north", "team_updates": True},
        ]
    )
    # crm-api `$set`s the flags (nx-27017 then stores true as 1, decision 0018).
    await prefs.update_one({"_id": "sue"}, {"$set": {"team_updates": True}})
    await prefs.update_one({"_id": "zed"}, {"$set": {"digest": True}})
    await ensure_indexes(d)
    yield d
    await client.drop_database(name)
    await client.close()


def notifier(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, other: Recorder) -> Notifier:
    directory = AgentDirectory(db)
    return Notifier(
        directory=directory,
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: other, Channel.PUSH: other},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: MOVED_AT,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
        digest=DigestItems(db),
        staff=directory,
    )


def digests(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, now: datetime) -> DigestSender:
    return DigestSender(
        items=DigestItems(db),
        subscribers=AgentDirectory(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        mailer=mailer,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        default_hour=DIGEST_HOUR,
        schedules=AccountSchedules(db),
        clock=lambda: now,
        erasures=LeadErasure(db),
    )


def to(sink: MailSink, address: str) -> list[EmailMessage]:
    return [m for m in sink.received() if m["X-Envelope-To"] == address]


def first_offer(lead_id: uuid.UUID) -> LeadOffered:
    return offered(lead_id, "south", "sam", OFFERED_AT, CONTACT)


def offered(lead_id: uuid.UUID, account_id: str, agent_id: str, at: datetime, contact: Contact) -> LeadOffered:
    """A first offer to `agent_id`, 15 minutes to claim."""
    return LeadOffered.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadOfferedPayload(
            lead_id=lead_id,
            agent_id=agent_id,
            offer_round=1,
            race_size=1,
            deadline=at + timedelta(minutes=15),
            explanation="rr",
            contact=contact,
            source=SOURCE,
        ),
    )


def lead_moved(lead_id: uuid.UUID) -> LeadTransferred:
    return LeadTransferred.create(
        account_id="south",
        occurred_at=MOVED_AT,
        payload=LeadTransferredPayload(
            lead_id=lead_id,
            transfer_id=uuid.uuid4(),
            from_account_id="south",
            from_account_name="South Office",
            previous_owner_agent_id="sam",
            previous_owner_name="Sam",
            to_account_id="north",
            to_account_name="North Office",
            agent_id="bea",
            by_user_id="admin-1",
            contact=CONTACT,
            source=SOURCE,
        ),
    )


async def test_a_transferred_lead_is_in_the_target_offices_next_digest_after_the_source_offices(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    lead_id = uuid.uuid4()
    other = Recorder()
    offer, moved = first_offer(lead_id), lead_moved(lead_id)
    n = notifier(db, mailer, other)
    await n.notify(offer, offer.model_dump_json().encode())
    # Wed 10 Jan 08:00: South's digest lists Jane (Zed subscribed through a `$set`).
    assert await digests(db, mailer, datetime(2024, 1, 10, 8, tzinfo=UTC)).run_once() == 1
    [south] = to(sink, "zed@example.com")
    assert f"https://crm/accounts/south/leads/{lead_id}" in plain(south)
    sent_before = len(sink.received())

    # Noon: the lead moves to North; the transfer is redelivered, and the old offer too.
    for event in (moved, moved, offer):
        await n.notify_batch([event.model_dump_json().encode()], concurrency=2)
    assert len(sink.received()) == sent_before  # nobody is emailed at once
    assert other.sent == [f"{offer.event_id}:sms:sam"]  # the offer's, once; none for the transfer

    # Thu 11 Jan 08:00: North's digest lists Jane once, linked in North, naming South.
    assert await digests(db, mailer, datetime(2024, 1, 11, 8, tzinfo=UTC)).run_once() == 1
    [north] = to(sink, "dan@example.com")
    assert north["Subject"] == "1 new lead on Thu 11 Jan"
    text = plain(north)
    assert f"Jane Doe (Website, transferred from South Office): https://crm/accounts/north/leads/{lead_id}" in text
    assert text.count("Jane Doe") == 1
    assert len(to(sink, "zed@example.com")) == 1  # South has no new lead that day
    assert await digests(db, mailer, datetime(2024, 1, 11, 9, tzinfo=UTC)).run_once() == 0  # the next check


async def test_a_moved_team_member_is_emailed_to_the_target_staff_once_each_and_is_no_new_lead(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    other = Recorder()
    event = member_moved(MOVED_AT)
    raw = event.model_dump_json().encode()
    a, b = notifier(db, mailer, other), notifier(db, mailer, other)

    await asyncio.gather(a.notify_batch([raw], concurrency=2), b.notify_batch([raw], concurrency=2))  # a rebalance
    await a.notify_batch([raw, raw], concurrency=2)  # and plain redeliveries

    received = sink.received()
    assert sorted(m["X-Envelope-To"] for m in received) == ["bea@example.com", "sue@example.com"]
    subject = "Tom Jones joined North Office from South Office (Onboarding)"
    for message in received:
        assert message["Subject"] == subject
        assert message["X-Leadflow-Lead-Id"] is None
        assert "Open the team settings: https://crm/accounts/north/team" in plain(message)
        assert "status Onboarding" in plain(message)
    assert other.sent == []  # email only
    mine = {"_id": {"$regex": str(event.event_id)}}
    log = {d["_id"]: d["status"] async for d in db["notifier_deliveries"].find(mine)}
    assert log == {f"{event.event_id}:email:bea": "sent", f"{event.event_id}:email:sue": "sent"}

    # No new lead: nothing for the digest, and no new-lead digest for North the next day.
    assert await db["notifier_digest_items"].count_documents({"account_id": "north"}) == 0
    assert await digests(db, mailer, datetime(2024, 1, 11, 8, tzinfo=UTC)).run_once() == 0
    assert not [m for m in sink.received() if "new lead" in str(m["Subject"]).lower()]


class MarkerReads(monitoring.CommandListener):
    """Counts the reads of the erasure markers."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "notifier_erasures":
            self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_an_erased_moved_lead_read_late_or_again_files_and_sends_nothing_of_the_contact(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer, mongo_url: str
) -> None:
    """Decision 0094 on MongoDB: north erases the lead south moved to it; south's partition is read after that (the
    move for the first time, then the offer and the move again after a rebalance). The marker the erasure left
    keeps the contact out of the digest items and out of north's new-lead notices; one read of the markers per
    batch that carries a contact; the marker holds no personal data and is forgotten with the delivery records."""
    prefs = db["notifier_preferences"]
    await prefs.insert_one({"_id": "una", "account_id": "north", "name": "Una", "email": "una@example.com"})
    await prefs.update_one({"_id": "una"}, {"$set": {"new_lead_notices": True}})
    await ensure_indexes(db, delivery_days=30)
    reads = MarkerReads()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[reads])
    watched = client[db.name]

    async def read(*events: RoutingEvent) -> None:
        """One batch, with its own Notifier, as the Kafka edge runs it."""
        erasure = LeadErasure(watched)
        n = dataclasses.replace(notifier(watched, mailer, Recorder()), erasure=erasure, erasures=erasure)
        assert await n.notify_batch([e.model_dump_json().encode() for e in events], concurrency=8) == []

    lead_id = uuid.uuid4()
    offer, moved = first_offer(lead_id), lead_moved(lead_id)
    erasure = ContactErased.create(account_id="north", occurred_at=MOVED_AT, payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=[lead_id], by_user_id="bea", reason="ticket 9"))  # fmt: skip
    try:
        await read(offer)  # south, before the move
        await read(erasure)  # north's partition, ahead of south's
        await read(moved)  # south's, lagging: read for the first time after the erasure
        await read(offer, moved)  # south's batch again after a rebalance
    finally:
        await client.close()

    assert reads.count == 3, "one read per batch that carries the contact, none for the erasure's"
    assert [d async for d in db["notifier_digest_items"].find({"lead_id": str(lead_id)})] == []
    assert to(sink, "una@example.com") == [], "no new-lead notice named the erased contact"
    assert len(to(sink, "sam@example.com")) == 1, "the offer, once, before the erasure"
    marker = await db["notifier_erasures"].find_one({"_id": str(lead_id)})
    assert marker is not None
    assert set(marker) == {"_id", "erased_ms", "created_at"}, "a lead id and times: nothing of the person"
    first = marker["erased_ms"]
    await LeadErasure(db).erase([str(lead_id)], now_ms=first + 60_000)  # the erasure redelivered
    again = await db["notifier_erasures"].find_one({"_id": str(lead_id)})
    assert again is not None
    assert again["erased_ms"] == first, "the first erasure's marker is kept"
    assert await LeadErasure(db).erased([str(lead_id), str(uuid.uuid4())]) == {str(lead_id)}
    ttl = [(dict(i["key"]), i["expireAfterSeconds"]) async for i in await db["notifier_erasures"].list_indexes()
           if "expireAfterSeconds" in i]  # fmt: skip
    assert ttl == [({"created_at": 1}, 30 * 86_400)]


class ErasedMeanwhile:
    """Replica A's view of the markers (decision 0094): it reads them, and replica B's erasure runs right after that
    read, before A files anything: the race, made deterministic."""

    def __init__(self, markers: LeadErasure, meanwhile: Callable[[], Awaitable[object]]) -> None:
        self.markers, self.meanwhile = markers, meanwhile

    async def erased(self, lead_ids: list[str]) -> set[str]:
        seen = await self.markers.erased(lead_ids)
        await self.meanwhile()
        return seen


def north_offer(lead_id: uuid.UUID, contact: Contact) -> LeadOffered:
    return offered(lead_id, "north", "carl", MOVED_AT, contact)  # in North's digest of Thu 11 Jan


async def test_a_lead_erased_by_another_replica_while_one_files_it_is_not_in_the_digest_nor_kept(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer, mongo_url: str
) -> None:
    """Decision 0094's race, closed at the digest: replica A reads the markers of its batch (none), replica B applies
    the `ContactErased` (marker, items deleted, deliveries ended), then A files the lead's digest item and sends its
    offer. North's next digest (one read of the markers per run) lists the other lead only, and after that run no
    document of the erased lead in the notifier's collections holds the person's name, email or phone."""
    reads = MarkerReads()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[reads])
    watched = client[db.name]
    person = Contact.model_validate(
        {"first_name": "Wilhelmina", "last_name": "Quist", "email": "w.quist@example.org", "phone": "+13125550177"}
    )
    other = Contact.model_validate({"first_name": "Kim", "last_name": "Park", "email": "kim@example.com"})
    erased_id, kept_id = uuid.uuid4(), uuid.uuid4()
    offers = [north_offer(erased_id, person), north_offer(kept_id, other)]
    erasure = ContactErased.create(account_id="north", occurred_at=MOVED_AT, payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=[erased_id], by_user_id="bea", reason="ticket 11"))  # fmt: skip

    def replica(markers: Any = None) -> Notifier:
        erasure_store = LeadErasure(watched)
        n = notifier(watched, mailer, Recorder())
        return dataclasses.replace(n, erasure=erasure_store, erasures=markers or erasure_store)

    b = replica()
    a = replica(ErasedMeanwhile(LeadErasure(watched), lambda: b.notify_batch([erasure.model_dump_json().encode()],
                                                                             concurrency=1)))  # fmt: skip
    try:
        assert await a.notify_batch([o.model_dump_json().encode() for o in offers], concurrency=8) == []
        marker = await db["notifier_erasures"].find_one({"_id": str(erased_id)})
        assert marker is not None, "B's erasure ran between A's read of the markers and A's writes"
        filed = await db["notifier_digest_items"].count_documents({"lead_id": str(erased_id)})
        assert filed == 1, "A filed the erased lead's item after B's erasure (the race this test is about)"

        before = reads.count
        assert await digests(watched, mailer, datetime(2024, 1, 11, 8, tzinfo=UTC)).run_once() == 1
        assert reads.count - before == 1, "one read of the markers per digest run"
    finally:
        await client.close()

    [digest] = to(sink, "dan@example.com")
    text = plain(digest)
    assert digest["Subject"] == "1 new lead on Thu 11 Jan"
    assert f"https://crm/accounts/north/leads/{kept_id}" in text
    assert str(erased_id) not in text
    held = ("Wilhelmina", "Quist", "w.quist@example.org", "+13125550177")
    whole = str(digest["Subject"]) + "".join(str(p.get_content()) for p in digest.walk() if not p.is_multipart())
    for part in held:
        assert part not in whole, f"the digest carries {part!r}"
    for collection in ("notifier_digest_items", "notifier_deliveries", "notifier_erasures"):
        async for doc in db[collection].find({}):
            found = [part for part in held if part in repr(doc)]
            assert not found, f"{collection} {doc['_id']} still holds {found}"
    assert await db["notifier_digest_items"].count_documents({"lead_id": str(erased_id)}) == 0
