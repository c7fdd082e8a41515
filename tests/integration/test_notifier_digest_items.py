"""Which digest lists a new lead, and which leads are new (N1; decisions 0013, 0088, amended in session 32).

Real MongoDB wire (nx-27017 or MONGODB_URL) and a real SMTP sink; the `Notifier` files the items from events, the
`DigestSender` sends them, both on a test clock. Found by helper 145's review, fixed by helper 149:

- An item is in exactly one digest, the first its office makes after the item is filed: a lead whose event the
  notifier reads just after its day's digest went out (a notifier restarted or behind at the digest hour) was filed
  under the event's time, in the window already sent, and was in no digest, ever. A digest's list is now sealed when
  it is made, its items marked as taken: an insert committing after the run's read, another replica, or a crash
  between the seal and the mark neither loses an item nor lists it twice.
- A lead given back to the broker pool, or handed to it because its agent left (`LeadAssigned` reasons `returned`,
  `agent_left`: never a lead's first decision), was filed as new once its first item was gone (kept 3 days): the
  next digest listed an old lead as new, and once the new-lead notice's record was gone too (30 days) every
  subscribed admin was emailed "New lead: ..." again. A lead is new at its first decision (`router_version` 1).

Found by helper 152's review of that fix, fixed by helper 156:

- A lead nobody could take when it came (every agent paused, away or off hours: the router's first change emits
  `LeadFellBack` alone, no contact) was in no digest and no new-lead notice, ever: the fall-back files no item, and
  the broker's later hand assignment (version 2) is no first decision. The notifier now notes such a lead and files
  it at its first later event with the contact, that event alone (a lead handed back later is still not new).
- At the upgrade, a day's digest sent by the version before session 32 left no seal: the new worker made it anew,
  sealed a late item filed after the restart into it, and sent nothing (the delivery log had the day). A day sent
  without a seal now takes only what that version could have listed; later items wait for the next digest.
- An item waiting longer than the 3 days `accounts_since` looked back (`NOTIFIER_DIGEST__KEEP_DAYS` more than 3, the
  digest worker down) was in no digest: accounts with waiting items are looked at whatever their age.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import NoDeadLetters, plain
from fakes_shared import Clock
from notifier_harness import digest_sender as digests
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
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.digest import DigestBook, DigestItem, DigestWindow, digest_email, due_window
from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadOffered,
    LeadOfferedPayload,
    RoutingEvent,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"digest_items_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def office(db: AsyncDatabase[dict[str, Any]]) -> tuple[str, str]:
    """An office (digest at 07:00 UTC) with agents ana and bob (the broker), and an admin subscribed to the digest
    and to new-lead notices; returns the account and the admin's address."""
    await ensure_indexes(db)
    tag = uuid.uuid4().hex[:6]
    account, admin, address = f"office-{tag}", f"adm-{tag}", f"adm-{tag}@example.com"
    await db["accounts"].insert_one(
        {"_id": account, "name": "Office", "time_zone": "UTC", "digest_hour": 7, "roster": [f"bob-{tag}"]}
    )
    await db["agents"].insert_many(
        [
            {"_id": f"{who}-{tag}", "account_id": account, "name": who, "email": f"{who}-{tag}@example.com"}
            for who in ("ana", "bob")
        ]
    )
    await db["staff"].insert_one({"_id": admin, "account_id": account, "name": "Ada", "email": address})
    await AgentDirectory(db).save_preferences(
        admin, PreferencesDoc(account_id=account, digest=True, new_lead_notices=True)
    )
    return account, address


def notifier(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, clock: Clock) -> Notifier:
    directory = AgentDirectory(db)
    return Notifier(
        directory=directory,
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=clock,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
        digest=DigestItems(db),
        staff=directory,
    )


SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def offered(account: str, agent: str, lead: uuid.UUID, name: str, at: datetime) -> LeadOffered:
    return LeadOffered.create(
        account_id=account,
        occurred_at=at,
        payload=LeadOfferedPayload(
            lead_id=lead,
            agent_id=agent,
            offer_round=1,
            race_size=1,
            deadline=at + timedelta(minutes=15),
            explanation="rr",
            contact=Contact(first_name=name, email=f"{name.lower()}@example.com"),
            source=SOURCE,
        ),
    )


def assigned(
    account: str, agent: str, lead: uuid.UUID, name: str, at: datetime, reason: AssignmentReason
) -> LeadAssigned:
    return LeadAssigned.create(
        account_id=account,
        occurred_at=at,
        payload=LeadAssignedPayload(
            lead_id=lead,
            agent_id=agent,
            reason=reason,
            explanation="x",
            contact=Contact(first_name=name, email=f"{name.lower()}@example.com"),
            source=SOURCE,
        ),
    )


async def tell(n: Notifier, event: RoutingEvent) -> None:
    await n.notify(event, event.model_dump_json().encode())


def bodies_to(sink: MailSink, address: str, subject_prefix: str) -> list[str]:
    return [
        plain(m) for m in sink.received() if m["X-Envelope-To"] == address and m["Subject"].startswith(subject_prefix)
    ]


async def test_a_lead_read_just_after_its_days_digest_went_out_is_in_a_later_digest(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The office's digest hour is 07:00. Lead Early is offered at 06:50, lead Late at 06:59:50. The SRE restarts the
    notifier at 07:00: its digest worker runs at 07:00:30 and sends the 10th's digest (Early), its consumer reads
    Late's offer at 07:00:40. Late's item was filed at 06:59:50 (the event's time), in the window already sent; the
    11th's window begins at 07:00, and no later run listed it. Expected: some digest lists Late (N1: subscribers get
    new leads in a daily digest); it was in none."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))

    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)  # restarted: the digest worker's first run
    assert await digests(db, mailer, clock).run_once() == 1
    clock.now = datetime(2024, 1, 10, 7, 0, 40, tzinfo=UTC)  # the consumer, behind, reads Late's offer
    await tell(notifier(db, mailer, clock), late)

    # Every later run for three days (each minute's check would do the same).
    for when in (
        datetime(2024, 1, 10, 7, 1, 30, tzinfo=UTC),
        datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 12, 7, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 13, 7, 0, 30, tzinfo=UTC),
    ):
        clock.now = when
        await digests(db, mailer, clock).run_once()

    listed = bodies_to(sink, address, "1 new lead") + bodies_to(sink, address, "2 new leads")
    assert any("Early" in body for body in listed)
    assert any("Late" in body for body in listed), f"Late is in no digest: {len(listed)} digest(s) sent"


@pytest.mark.parametrize("reason", [AssignmentReason.RETURNED, AssignmentReason.AGENT_LEFT])
async def test_a_lead_handed_to_the_broker_pool_days_after_it_arrived_is_not_listed_as_new_again(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer, reason: AssignmentReason
) -> None:
    """Jane's lead arrives on the 10th (a first-round offer): the 11th's digest lists it. On the 15th its agent
    gives it back (`returned`), or leaves the office (`agent_left`), and the broker pool holds it: `digest_item`
    takes any assignment but a claim, a fall-back, a transfer or a share for the lead's arrival, and its first item
    is gone (`NOTIFIER_DIGEST__KEEP_DAYS`, 3: the TTL monitor's deletion is done here by hand). The 16th's digest
    listed Jane as "1 new lead" again. Expected: a lead is new once, at its first decision (digest.py)."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    lead = uuid.uuid4()
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", lead, "Jane", clock.now))
    clock.now = datetime(2024, 1, 11, 7, 1, tzinfo=UTC)
    assert await digests(db, mailer, clock).run_once() == 1
    assert ["Jane" in body for body in bodies_to(sink, address, "1 new lead")] == [True]

    await db["notifier_digest_items"].delete_many({"account_id": account})  # the items' 3 days are over
    clock.now = datetime(2024, 1, 15, 12, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), assigned(account, f"bob-{tag}", lead, "Jane", clock.now, reason))
    clock.now = datetime(2024, 1, 16, 7, 1, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    listed = [body for body in bodies_to(sink, address, "1 new lead") if "Jane" in body]
    assert len(listed) == 1, f"an old lead handed back ({reason}) is listed as new again: {len(listed)} digests"


@pytest.mark.parametrize("reason", [AssignmentReason.RETURNED, AssignmentReason.AGENT_LEFT])
async def test_a_lead_handed_to_the_broker_pool_a_month_on_sends_no_new_lead_notice(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer, reason: AssignmentReason
) -> None:
    """The same, for the immediate new-lead notice (N1: "once per lead arrival"): Jane's lead arrives on the 1st and
    the subscribed admin is told at once. On February 5th its agent gives it back or leaves: its digest item (3 days)
    and the notice's delivery record (`NOTIFIER_DELIVERY__KEEP_DAYS`, 30 days) are gone (deleted here by hand, as the
    TTL monitor does), and the admin was emailed "New lead: Jane" again. Expected: one new-lead notice per lead."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    lead = uuid.uuid4()
    clock = Clock(datetime(2024, 1, 1, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", lead, "Jane", clock.now))
    assert len(bodies_to(sink, address, "New lead: Jane")) == 1

    await db["notifier_digest_items"].delete_many({"account_id": account})
    await db["notifier_deliveries"].delete_many({"status": {"$in": ["sent", "failed"]}})  # their 30 days are over
    clock.now = datetime(2024, 2, 5, 12, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), assigned(account, f"bob-{tag}", lead, "Jane", clock.now, reason))

    assert len(bodies_to(sink, address, "New lead: Jane")) == 1, f"the admin is told of Jane's lead again ({reason})"


def listing(sink: MailSink, address: str, name: str) -> list[str]:
    """The subjects of the digests to `address` that list `name`."""
    return [
        str(m["Subject"])
        for m in sink.received()
        if m["X-Envelope-To"] == address and " new lead" in str(m["Subject"]) and name in plain(m)
    ]


class AfterTheRead:
    """`DigestItems` whose first `digests` read is followed by `then`, before the run makes its digests: what a
    consumer (or another replica) does between the digest worker's read and its seal."""

    def __init__(self, items: DigestItems, then: Callable[[], Awaitable[None]]) -> None:
        self.items, self.then = items, then
        self.done = False

    async def add(self, item: DigestItem) -> None:
        await self.items.add(item)

    async def accounts_since(self, since_ms: int) -> list[str]:
        return await self.items.accounts_since(since_ms)

    async def digests(self, account_id: str, windows: list[DigestWindow]) -> DigestBook:
        book = await self.items.digests(account_id, windows)
        if not self.done:
            self.done = True
            await self.then()
        return book

    async def take(self, account_id: str, window: DigestWindow, items: list[DigestItem]) -> list[DigestItem]:
        return await self.items.take(account_id, window, items)


async def test_an_item_whose_insert_commits_after_the_digests_read_is_in_the_next_digest_once(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The race selecting by time cannot close: the digest worker reads the 10th's window at 07:00:30 (Early), and
    the consumer's insert of Late (offered at 06:59:50) commits right after that read, before the digest is made.
    Late is not in the 10th's digest (made from the read) and is in the 11th's, once; Early in the 10th's only."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))
    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)

    async def consumer() -> None:
        await tell(notifier(db, mailer, clock), late)

    assert await digests(db, mailer, clock, AfterTheRead(DigestItems(db), consumer)).run_once() == 1
    for when in (datetime(2024, 1, 10, 7, 1, 30, tzinfo=UTC), datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)):
        clock.now = when
        await digests(db, mailer, clock).run_once()

    assert listing(sink, address, "Early") == ["1 new lead on Wed 10 Jan"]
    assert listing(sink, address, "Late") == ["1 new lead on Thu 11 Jan"]


async def test_two_replicas_making_the_same_digest_send_one_list_to_every_subscriber(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """Replica A reads the 10th's window (Early); Late's insert commits; replica B reads both, makes the 10th's
    digest and sends it to the admin; Ops subscribes; then A makes its digest and sends it to Ops. A's list (Early)
    loses to B's sealed one: Ops gets the digest the admin got, listing Early and Late, and no later digest lists
    either (Late is B's digest's: a list of A's own would leave it out of Ops's for good)."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    other = f"ops-{tag}@example.com"
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))
    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)

    async def meanwhile() -> None:
        await tell(notifier(db, mailer, clock), late)
        assert await digests(db, mailer, clock).run_once() == 1, "replica B: the admin"
        await AgentDirectory(db).save_preferences(
            f"ops-{tag}", PreferencesDoc(account_id=account, digest=True, name="Ops", email=other)
        )

    assert await digests(db, mailer, clock, AfterTheRead(DigestItems(db), meanwhile)).run_once() == 1, "A: Ops"
    clock.now = datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    for to in (address, other):
        assert listing(sink, to, "Early") == listing(sink, to, "Late") == ["2 new leads on Wed 10 Jan"], to


class DiesBeforeTheMark(DigestItems):
    """A digest worker killed between its digest's seal and the marks of the items it took."""

    async def _mark(self, keys: list[str], day: str) -> None:  # noqa: ARG002
        raise ConnectionResetError("killed")


async def test_a_digest_made_by_a_run_killed_before_its_marks_is_sent_as_made(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The 10th's digest is made (Early) and the run dies before it marks Early as taken or sends anything. Late is
    filed before the next run: that run sends the 10th's digest as it was made (Early alone, Early marked now), and
    Late is in the 11th's. Nothing twice, nothing lost."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)
    with pytest.raises(ConnectionResetError):
        await digests(db, mailer, clock, DiesBeforeTheMark(db)).run_once()
    assert listing(sink, address, "Early") == [], "killed before any send"

    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    clock.now = datetime(2024, 1, 10, 7, 0, 40, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), late)
    clock.now = datetime(2024, 1, 10, 7, 1, 30, tzinfo=UTC)
    assert await digests(db, mailer, clock).run_once() == 1
    marks = {d["name"]: d.get("digest") async for d in db["notifier_digest_items"].find({"account_id": account})}
    assert marks == {"Early": "2024-01-10", "Late": None}
    clock.now = datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    assert listing(sink, address, "Early") == ["1 new lead on Wed 10 Jan"]
    assert listing(sink, address, "Late") == ["1 new lead on Thu 11 Jan"]


def fell_back_at_arrival(account: str, broker: str, lead: uuid.UUID, at: datetime) -> LeadFellBack:
    """What the router publishes for a new lead nobody can take now (its routing record's first change)."""
    return LeadFellBack.create(
        account_id=account,
        occurred_at=at,
        payload=LeadFellBackPayload(
            lead_id=lead, agent_id=broker, explanation="R9: nobody eligible; back to the broker", router_version=1
        ),
    )


def handed_out(
    account: str,
    agent: str,
    lead: uuid.UUID,
    name: str,
    at: datetime,
    reason: AssignmentReason = AssignmentReason.MANUAL,
    version: int = 2,
) -> LeadAssigned:
    """A later change of the lead's record: by default the broker assigns it by hand (T4)."""
    event = assigned(account, agent, lead, name, at, reason)
    return event.model_copy(update={"payload": event.payload.model_copy(update={"router_version": version})})


async def test_a_lead_that_falls_back_at_arrival_is_listed_in_a_digest(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """Jane's lead arrives on the 10th at 12:00 while every agent is paused: the router's first decision is
    `LeadFellBack` to the broker (version 1). At 12:30 the broker hands it to ana (`manual`, version 2). The 11th's
    and 12th's digests: Jane was in none (before f00d6d3 the hand assignment listed her). Expected (N1: "A lead is
    new for the office once, at its first decision: the events of its routing record's first change"): one
    digest lists Jane. (Helper 152.)"""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    lead = uuid.uuid4()
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), fell_back_at_arrival(account, f"bob-{tag}", lead, clock.now))
    clock.now = datetime(2024, 1, 10, 12, 30, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), handed_out(account, f"ana-{tag}", lead, "Jane", clock.now))
    for when in (datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC), datetime(2024, 1, 12, 7, 0, 30, tzinfo=UTC)):
        clock.now = when
        await digests(db, mailer, clock).run_once()

    assert len(listing(sink, address, "Jane")) == 1, "a lead nobody could take at arrival is in no digest"


async def test_a_lead_that_falls_back_at_arrival_gets_its_new_lead_notice(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The same lead, for the admin subscribed to new-lead notices: no "New lead: Jane" at the fall-back, nor at
    the broker's hand assignment (version 2, "not new"). Expected: one notice (N1, "once per lead arrival").
    (Helper 152.)"""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    lead = uuid.uuid4()
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), fell_back_at_arrival(account, f"bob-{tag}", lead, clock.now))
    clock.now = datetime(2024, 1, 10, 12, 30, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), handed_out(account, f"ana-{tag}", lead, "Jane", clock.now))

    notices = bodies_to(sink, address, "New lead: ")
    assert len(notices) == 1, f"the admin is never told of a lead nobody could take at arrival: {notices}"


@pytest.mark.parametrize("reason", [AssignmentReason.RETURNED, AssignmentReason.AGENT_LEFT])
async def test_a_lead_listed_at_its_hand_assignment_is_not_new_again_when_it_comes_back_to_the_broker(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer, reason: AssignmentReason
) -> None:
    """Jane's lead falls back at arrival on the 10th and the broker hands it to ana at 12:30 (read twice: a
    redelivery after a crash): one item, one notice, the 11th's digest. On the 15th (the item's 3 days are over)
    ana gives it back, or leaves (version 3, with the contact, as the hand assignment): not filed again, no notice.
    Nor a month on, once the note is gone too (its 30 days, as the delivery records')."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    lead = uuid.uuid4()
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), fell_back_at_arrival(account, f"bob-{tag}", lead, clock.now))
    clock.now = datetime(2024, 1, 10, 12, 30, tzinfo=UTC)
    hand = handed_out(account, f"ana-{tag}", lead, "Jane", clock.now)
    await tell(notifier(db, mailer, clock), hand)
    await tell(notifier(db, mailer, clock), hand)
    assert await db["notifier_digest_items"].count_documents({"account_id": account}) == 1
    clock.now = datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)
    assert await digests(db, mailer, clock).run_once() == 1

    items = db["notifier_digest_items"]
    await items.delete_many({"account_id": account})  # the items' 3 days are over (the note stays 30)
    clock.now = datetime(2024, 1, 15, 12, tzinfo=UTC)
    back = handed_out(account, f"bob-{tag}", lead, "Jane", clock.now, reason, version=3)
    await tell(notifier(db, mailer, clock), back)
    clock.now = datetime(2024, 1, 16, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()
    assert await items.count_documents({"account_id": account}) == 0, "filed again"

    await items.delete_many({"lead_id": str(lead)})  # a month on: the note's 30 days are over
    await db["notifier_deliveries"].delete_many({"status": {"$in": ["sent", "failed"]}})
    clock.now = datetime(2024, 2, 12, 12, tzinfo=UTC)
    await tell(notifier(db, mailer, clock), handed_out(account, f"bob-{tag}", lead, "Jane", clock.now, reason, 4))
    clock.now = datetime(2024, 2, 13, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    assert listing(sink, address, "Jane") == ["1 new lead on Thu 11 Jan"]
    assert len(bodies_to(sink, address, "New lead: Jane")) == 1


async def test_a_lead_that_never_fell_back_is_not_filed_by_a_later_hand_assignment(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """Only a lead noted at a fall-back is filed late: a lead offered at arrival (listed then), and one whose first
    decision this notifier never read, are not filed by a hand assignment (version 2), nor is a lead whose later
    fall-back (version 2: every offer expired) precedes it."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    listed, unknown, expired = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", listed, "Ann", clock.now))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", expired, "Eve", clock.now))
    arrival = fell_back_at_arrival(account, f"bob-{tag}", expired, clock.now)
    again = arrival.model_copy(update={"payload": arrival.payload.model_copy(update={"router_version": 2})})
    await tell(notifier(db, mailer, clock), again)
    clock.now = datetime(2024, 1, 10, 12, 30, tzinfo=UTC)
    for lead, name in ((listed, "Ann"), (unknown, "Uma"), (expired, "Eve")):
        await tell(notifier(db, mailer, clock), handed_out(account, f"ana-{tag}", lead, name, clock.now))
    clock.now = datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    assert [listing(sink, address, name) for name in ("Ann", "Uma", "Eve")] == [
        ["2 new leads on Thu 11 Jan"],
        [],
        ["2 new leads on Thu 11 Jan"],
    ]
    assert len(bodies_to(sink, address, "New lead: ")) == 2


async def sent_by_the_previous_version(
    db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, account: str, to: Recipient, at: datetime
) -> None:
    """The version before session 32's digest run for one subscriber: the window read by time, sent, its record
    marked sent, no seal."""
    window = due_window(at, hour=7)
    book = await DigestItems(db).digests(account, [window])  # only to read the items back as the old run did
    email = digest_email(
        [i for i in book.waiting if window.start_ms <= i.created_ms < window.end_ms], to, window, "https://crm"
    )
    assert email is not None
    key = f"digest:{account}:{window.day.isoformat()}:email:{to.agent_id}"
    log = DeliveryLog(db, leases=Leases(lease_ms=60_000))
    delivery = Delivery(
        key=key,
        channel=Channel.EMAIL,
        agent_id=to.agent_id,
        account_id=account,
        event_type="Digest",
        content=email,
        expires_ms=window.sendable_until_ms,
    )
    await log.begin(delivery, now_ms=epoch_ms(at))
    await mailer.send(email, message_id=key)
    await log.sent(key, now_ms=epoch_ms(at))
    log.release(key)


async def test_a_late_lead_of_a_day_the_previous_version_sent_the_digest_of_is_in_a_later_digest(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The previous version (before session 32) files Early (offered 06:50, no `stored_ms`) and sends the 10th's
    digest at 07:00:30, leaving its delivery record and no seal. The deploy restarts the notifier at 07:01: the new
    consumer, behind, reads Late's offer (06:59:50) at 07:01:00 and files it with `stored_ms`; the new digest worker
    ran at 07:01:30, found the 10th's digest "not made", sealed it with Early and Late (both marked as the 10th's)
    and sent nothing: the delivery log has the 10th for the admin. Late was in no digest, ever, although it was
    filed by this version after that digest went out (N1: "Each new lead is in exactly one digest: the first its
    office makes after the notifier filed it"; a restart at the digest hour is the case the seal was made for).
    (Helper 152.)"""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    admin = f"adm-{tag}"
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))
    items = db["notifier_digest_items"]
    await items.update_many({"account_id": account}, {"$unset": {"stored_ms": ""}})  # as the old version filed it

    # The old version's digest run at 07:00:30: the 10th's window read by time, sent, its record marked sent.
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)
    window = due_window(clock.now, hour=7)
    assert window.day == date(2024, 1, 10)
    book = await DigestItems(db).digests(account, [window])  # only to read the item back as the old run did
    old_list = [i for i in book.waiting if window.start_ms <= i.created_ms < window.end_ms]
    assert [i.name for i in old_list] == ["Early"]
    email = digest_email(old_list, Recipient(agent_id=admin, name="Ada", email=address), window, "https://crm")
    assert email is not None
    key = f"digest:{account}:{window.day.isoformat()}:email:{admin}"
    log = DeliveryLog(db, leases=Leases(lease_ms=60_000))
    delivery = Delivery(
        key=key,
        channel=Channel.EMAIL,
        agent_id=admin,
        account_id=account,
        event_type="Digest",
        content=email,
        expires_ms=window.sendable_until_ms,
    )
    await log.begin(delivery, now_ms=epoch_ms(clock.now))
    await mailer.send(email, message_id=key)
    await log.sent(key, now_ms=epoch_ms(clock.now))
    log.release(key)
    assert listing(sink, address, "Early") == ["1 new lead on Wed 10 Jan"]

    # The upgrade: the new consumer files Late, then the new digest worker runs, and every day after.
    clock.now = datetime(2024, 1, 10, 7, 1, tzinfo=UTC)
    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), late)
    for when in (
        datetime(2024, 1, 10, 7, 1, 30, tzinfo=UTC),
        datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 12, 7, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 12, 7, 0, 30, tzinfo=UTC) + timedelta(days=1),
    ):
        clock.now = when
        await digests(db, mailer, clock).run_once()

    marks = {d["name"]: d.get("digest") async for d in items.find({"account_id": account})}
    assert listing(sink, address, "Early") == ["1 new lead on Wed 10 Jan"], "Early once, by the old version"
    assert listing(sink, address, "Late") != [], f"Late is in no digest (marked as taken by {marks.get('Late')})"


async def test_a_subscriber_the_previous_version_did_not_reach_gets_its_list_and_late_leads_the_next_day(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """The previous version sends the 10th's digest (Early) to the admin and dies before Ops's. The new worker, after
    Late is filed, makes the 10th's digest of what that version could list: Ops gets Early alone, on the 10th; Late
    is in the 11th's, to both; Early in no other digest."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    ops = f"ops-{tag}@example.com"
    await AgentDirectory(db).save_preferences(
        f"ops-{tag}", PreferencesDoc(account_id=account, digest=True, name="Ops", email=ops)
    )
    clock = Clock(datetime(2024, 1, 10, 6, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Early", clock.now))
    await db["notifier_digest_items"].update_many({"account_id": account}, {"$unset": {"stored_ms": ""}})
    clock.now = datetime(2024, 1, 10, 7, 0, 30, tzinfo=UTC)
    admin = Recipient(agent_id=f"adm-{tag}", name="Ada", email=address)
    await sent_by_the_previous_version(db, mailer, account, admin, clock.now)

    clock.now = datetime(2024, 1, 10, 7, 1, tzinfo=UTC)
    late = offered(account, f"ana-{tag}", uuid.uuid4(), "Late", datetime(2024, 1, 10, 6, 59, 50, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), late)
    for when in (datetime(2024, 1, 10, 7, 1, 30, tzinfo=UTC), datetime(2024, 1, 11, 7, 0, 30, tzinfo=UTC)):
        clock.now = when
        await digests(db, mailer, clock).run_once()

    for to in (address, ops):
        assert listing(sink, to, "Early") == ["1 new lead on Wed 10 Jan"], to
        assert listing(sink, to, "Late") == ["1 new lead on Thu 11 Jan"], to


async def test_an_item_waiting_longer_than_the_look_back_is_in_the_next_digest(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """`NOTIFIER_DIGEST__KEEP_DAYS=7`: Jane is filed on the 10th at 12:00 and the digest worker is down until the
    14th at 07:00:30. The 11th's and 12th's digests are no longer sendable; the run looked only at accounts with
    items created or filed in the last 3 days, and Jane, kept 7 days, was in no digest. Expected: the 13th's,
    the oldest still sendable (decision 0088, amended in session 32)."""
    account, address = await office(db)
    tag = account.removeprefix("office-")
    clock = Clock(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await tell(notifier(db, mailer, clock), offered(account, f"ana-{tag}", uuid.uuid4(), "Jane", clock.now))
    clock.now = datetime(2024, 1, 14, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()
    clock.now = datetime(2024, 1, 15, 7, 0, 30, tzinfo=UTC)
    await digests(db, mailer, clock).run_once()

    assert listing(sink, address, "Jane") == ["1 new lead on Sat 13 Jan"]
