"""Notifier handler with in-memory ports: once per channel, retries, dead letters, isolation, and events that come
again or out of order (an erasure, an offer the batch already ends)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fakes_notifier import (
    Blocking,
    DeadLetters,
    Digest,
    Directory,
    Forgetting,
    Log,
    NoDeadLetters,
    Outbox,
    Provider,
)
from prometheus_client import CollectorRegistry

from leadflow_notifier.adapters.repository import Begin
from leadflow_notifier.domain.delivery import POSTPONE_FIRST_MS, POSTPONE_MAX_MS, Delivery, retry_at
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import EmailContent, PushContent, Recipient, SmsContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Courier, Notifier, Redriver, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    ContactMessaged,
    ContactMessagedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawalReason,
)

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
AGENT = Recipient(agent_id="a-1", name="Ana", email="ana@example.com", phone="+13125550100", push_token="tok")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def event(agent_id: str = "a-1") -> LeadOffered:
    return LeadOffered.create(
        account_id="acme-realty",
        occurred_at=NOW,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(),
            agent_id=agent_id,
            offer_round=1,
            race_size=1,
            deadline=datetime(2024, 1, 10, 12, 15, tzinfo=UTC),
            explanation="rr",
            contact=Contact.model_validate({"first_name": "Jane", "email": "jane@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def make(registry: CollectorRegistry, **providers: Provider) -> tuple[Notifier, Log, DeadLetters]:
    log, dead = Log(), DeadLetters()
    senders = {Channel(name): p for name, p in providers.items()}
    notifier = Notifier(
        directory=Directory(AGENT),
        deliveries=log,
        senders=senders,
        dead_letters=dead,
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.002),
    )
    return notifier, log, dead


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_redelivered_event_sends_nothing_twice(registry: CollectorRegistry) -> None:
    email, sms, push = Provider(), Provider(), Provider()
    notifier, _, _ = make(registry, email=email, sms=sms, push=push)
    e = event()

    await notifier.notify(e, b"{}")
    await notifier.notify(e, b"{}")

    assert (len(email.accepted), len(sms.accepted), len(push.accepted)) == (1, 1, 1)
    assert metric(registry, "notifier_notifications_sent_total", channel="sms") == 1
    assert metric(registry, "notifier_notifications_skipped_total", channel="sms", reason="done") == 1
    assert metric(registry, "notifier_delivery_latency_seconds_count", channel="email") == 1


async def test_a_provider_outage_is_retried_then_succeeds(registry: CollectorRegistry) -> None:
    sms = Provider(TransientDeliveryError("unavailable"), TransientDeliveryError("timeout"))
    notifier, log, dead = make(registry, email=Provider(), sms=sms)
    e = event()

    await notifier.notify(e, b"{}")

    assert (sms.attempts, len(sms.accepted), dead.letters) == (3, 1, [])
    assert log.status[f"{e.event_id}:sms:a-1"] == "sent"
    assert metric(registry, "notifier_delivery_retries_total", channel="sms", reason="timeout") == 1


async def test_a_permanent_failure_is_dead_lettered_at_once_and_counted(registry: CollectorRegistry) -> None:
    email, sms = Provider(), Provider(PermanentDeliveryError("rejected", "HTTP 400 21211"))
    notifier, log, dead = make(registry, email=email, sms=sms)
    e = event()

    await notifier.notify(e, b"{}")
    await notifier.notify(e, b"{}")  # redelivered: the dead-lettered delivery is not tried again

    assert sms.attempts == 1
    assert dead.letters == [("sms", "a-1", "rejected")]
    assert log.status[f"{e.event_id}:sms:a-1"] == "failed:rejected"
    assert len(email.accepted) == 1, "the email went out regardless"
    assert metric(registry, "notifier_notifications_failed_total", channel="sms", reason="rejected") == 1


async def test_exhausted_retries_are_dead_lettered(registry: CollectorRegistry) -> None:
    push = Provider(*[TransientDeliveryError("unavailable")] * 5)
    notifier, _, dead = make(registry, email=Provider(), push=push)

    await notifier.notify(event(), b"{}")

    assert push.attempts == 3
    assert dead.letters == [("push", "a-1", "unavailable")]


async def test_one_hanging_channel_does_not_hold_up_the_others(registry: CollectorRegistry) -> None:
    email, sms = Provider(), Blocking()
    notifier, _, _ = make(registry, email=email, sms=sms)

    task = asyncio.create_task(notifier.notify(event(), b"{}"))
    while not email.accepted:  # the email goes out while the SMS provider still hangs
        assert not task.done()
        await asyncio.sleep(0)
    sms.release.set()
    await task
    assert len(sms.accepted) == 1


async def test_disabled_channels_are_not_attempted_and_unknown_agents_are_poison(registry: CollectorRegistry) -> None:
    email = Provider()
    notifier, log, _ = make(registry, email=email)

    await notifier.notify(event(), b"{}")
    assert [k.split(":")[1] for k in log.status] == ["email"]
    with pytest.raises(PoisonMessage):
        await notifier.notify(event(agent_id="nobody"), b"{}")


async def test_an_agent_who_left_is_told_nothing_of_an_offer_read_late(registry: CollectorRegistry) -> None:
    """An offer (or assignment) read after its agent left the office (T3: inactive) carried the lead's contact to one
    who can no longer sign in, its offers withdrawn and leads handed on by then (an open point of session 37). It is
    not sent, and counted; a staff member, with no agent record, stays as it is."""
    email = Provider()
    log, dead = Log(), DeadLetters()
    notifier = Notifier(
        directory=Directory(dataclasses.replace(AGENT, active=False)),
        deliveries=log,
        senders={Channel.EMAIL: email},
        dead_letters=dead,
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.002),
    )
    await notifier.notify(event(), b"{}")
    assert (log.status, dead.letters) == ({}, []), "nothing begun for an agent who left, nothing dead-lettered"
    assert metric(registry, "notifier_recipients_departed_total", type="LeadOffered") == 1


async def test_an_agent_moved_to_another_office_hears_only_of_what_is_its_own(registry: CollectorRegistry) -> None:
    """An offer of the office it left, read after a team member's move (T2), is not sent to it; a lead share to a
    realtor of its own office (T1), which is another account's by design, still is."""
    email = Provider()
    moved = dataclasses.replace(AGENT, account_id="south-realty")
    log = Log()
    notifier = Notifier(
        directory=Directory(moved),
        deliveries=log,
        senders={Channel.EMAIL: email},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=3, initial_seconds=0.001, max_seconds=0.002),
    )
    await notifier.notify(event(), b"{}")
    assert log.status == {}, "an offer of the office it left"
    shared = LeadShared.create(account_id="acme-realty", occurred_at=NOW, payload=LeadSharedPayload(
        lead_id=uuid.uuid4(), share_id=uuid.uuid4(), agent_id=AGENT.agent_id, realtor_name="Ana", assigned_by="Acme",
        by_user_id="boss",
    ))  # fmt: skip
    await notifier.notify(shared, b"{}")
    assert [key.split(":")[1] for key in log.status] == ["email"], "a share to a realtor of another office is told"


async def test_a_batch_rejects_poison_and_keeps_each_leads_events_in_order(registry: CollectorRegistry) -> None:
    email = Provider()
    notifier, _, _ = make(registry, email=email)
    first, unknown, second = event(), event(agent_id="nobody"), event()
    same_lead = LeadOffered.create(
        account_id="acme-realty", occurred_at=NOW, payload=first.payload.model_copy(update={"offer_round": 2})
    )
    bodies = [e.model_dump_json().encode() for e in (first, unknown, second, same_lead)] + [b"{not json"]

    rejections = await notifier.notify_batch(bodies, concurrency=4)

    assert sorted(index for index, _ in rejections) == [1, 4]
    assert isinstance(dict(rejections)[1], PoisonMessage)
    assert len(email.ids) == 3
    order = [i.split(":")[0] for i in email.ids]
    assert order.index(str(first.event_id)) < order.index(str(same_lead.event_id)), "one lead's events in order"


class Unmarkable(Log):
    """The delivery log goes away between the provider's acceptance and the mark."""

    async def sent(self, key: str, *, now_ms: int) -> None:  # noqa: ARG002 (the port's signature)
        raise ConnectionError("mongodb unreachable")


async def test_every_started_delivery_stops_renewing_its_lease(registry: CollectorRegistry) -> None:
    email, sms = Provider(), Provider(PermanentDeliveryError("rejected"))
    notifier, log, _ = make(registry, email=email, sms=sms)
    await notifier.notify(event(), b"{}")
    assert len(log.status) == 2
    assert log.held == set(), "sent and dead-lettered deliveries hold no lease"

    broken = Unmarkable()
    notifier = Notifier(
        directory=Directory(AGENT),
        deliveries=broken,
        senders={Channel.EMAIL: Provider()},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(ConnectionError):
        await notifier.notify(event(), b"{}")
    assert list(broken.status.values()) == ["pending"]
    assert broken.held == set(), "left pending, its lease runs out and the re-driver finishes it"


def redriver(registry: CollectorRegistry, log: Log, dead: DeadLetters, **senders: Provider) -> Redriver:
    metrics = NotifierMetrics(registry)
    courier = Courier(
        deliveries=log,
        senders={Channel(c): p for c, p in senders.items()},
        dead_letters=dead,
        metrics=metrics,
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=2, initial_seconds=0.001),
    )
    return Redriver(deliveries=log, courier=courier, metrics=metrics, max_drives=3)


def pending(channel: Channel, drives: int) -> Delivery:
    return Delivery(
        key=f"{uuid.uuid4()}:{channel}:a-1",
        channel=channel,
        agent_id="a-1",
        account_id="acme-realty",
        event_type="LeadOffered",
        content=SmsContent(to="+13125550100", body="hi", lead_id="l"),
        event=b'{"the": "event"}',
        occurred_ms=int(NOW.timestamp() * 1000),
        drives=drives,
    )


async def test_the_redriver_sends_with_the_same_key_or_dead_letters(registry: CollectorRegistry) -> None:
    sms = Provider()
    log, dead = Log(), DeadLetters()
    again, crashing, switched_off = pending(Channel.SMS, 2), pending(Channel.SMS, 4), pending(Channel.PUSH, 2)
    log.due = [again, crashing, switched_off]

    assert await redriver(registry, log, dead, sms=sms).run_once() == 3

    assert sms.ids == [again.key], "sent once, under the key the first attempt used"
    assert sorted(dead.letters) == [("push", "a-1", "disabled"), ("sms", "a-1", "abandoned")]
    assert log.status == {again.key: "sent", crashing.key: "failed:abandoned", switched_off.key: "failed:disabled"}
    assert log.held == set()
    assert metric(registry, "notifier_deliveries_redriven_total", channel="sms") == 2


async def test_a_round_claims_no_more_than_it_sends_at_once(registry: CollectorRegistry) -> None:
    """A claim counts a drive: a record claimed but left queued behind the concurrency limit would
    gain drives in a crash loop without ever being tried, then be dead-lettered as `abandoned`."""
    sms = Provider()
    log, dead = Log(), DeadLetters()
    log.due = [pending(Channel.SMS, 2) for _ in range(5)]
    metrics = NotifierMetrics(registry)
    courier = Courier(
        deliveries=log,
        senders={Channel.SMS: sms},
        dead_letters=dead,
        metrics=metrics,
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1),
    )
    redriver = Redriver(deliveries=log, courier=courier, metrics=metrics, batch=100, concurrency=2)

    assert await redriver.run_once() == 2 == redriver.round_size, "a full round: the caller goes on at once"
    assert len(log.due) == 3, "the rest stay unclaimed, their drives untouched"
    assert len(sms.ids) == 2


def digest(expires_ms: int | None, postponed: int = 0) -> Delivery:
    return Delivery(
        key=f"digest:acme:{uuid.uuid4()}:email:a-1",
        channel=Channel.EMAIL,
        agent_id="a-1",
        account_id="acme",
        event_type="Digest",
        content=SmsContent(to="+13125550100", body="hi", lead_id=""),
        expires_ms=expires_ms,
        postponed=postponed,
    )


async def test_a_digest_out_of_retries_waits_for_a_later_try_until_its_day_is_over(
    registry: CollectorRegistry,
) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    log, dead = Log(), DeadLetters()
    down = Provider(*[TransientDeliveryError("unavailable")] * 4)
    courier = Courier(
        deliveries=log,
        senders={Channel.EMAIL: down},
        dead_letters=dead,
        metrics=NotifierMetrics(registry),
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=2, initial_seconds=0.001),
    )
    today, over = digest(now_ms + 3_600_000), digest(now_ms)
    for delivery in (today, over):
        await log.begin(delivery, now_ms=now_ms)
        await courier.drive(delivery)

    assert log.status == {today.key: f"pending:until {now_ms + POSTPONE_FIRST_MS}", over.key: "failed:unavailable"}
    assert dead.letters == [], "a digest has no event to dead-letter"
    assert log.held == set()


async def test_a_later_try_backs_off_and_never_passes_the_deadline() -> None:
    assert retry_at(now_ms=0, postponed=0, expires_ms=None) is None, "no deadline: not left for later"
    assert retry_at(now_ms=10, postponed=0, expires_ms=10) is None, "the day is over"
    assert retry_at(now_ms=0, postponed=0, expires_ms=10**9) == POSTPONE_FIRST_MS
    assert retry_at(now_ms=0, postponed=2, expires_ms=10**9) == 4 * POSTPONE_FIRST_MS
    assert retry_at(now_ms=0, postponed=10**6, expires_ms=10**9) == POSTPONE_MAX_MS
    assert retry_at(now_ms=0, postponed=10, expires_ms=1_000) == 1_000


class SlowMarks(Log):
    """Marks `sent` only when released: a busy database while a batch of emails goes out."""

    def __init__(self) -> None:
        super().__init__()
        self.marking = asyncio.Event()

    async def sent(self, key: str, *, now_ms: int) -> None:
        await self.marking.wait()
        await super().sent(key, now_ms=now_ms)


class PooledProvider(Provider):
    """A sender over two connections (as SmtpMailer): `unmarked` is the handler's to hold until the mark."""

    def __init__(self) -> None:
        super().__init__()
        self.unmarked = asyncio.Semaphore(2)


async def test_a_pooled_sender_has_at_most_one_unmarked_message_per_connection(registry: CollectorRegistry) -> None:
    """A crash between a provider's acceptance and the mark resends; with marks slow, a connection's next
    message waits for the previous one's mark, so a crash resends at most one message per connection."""
    email, log = PooledProvider(), SlowMarks()
    courier = Courier(
        deliveries=log,
        senders={Channel.SMS: email},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(registry),
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1),
    )
    drives = [asyncio.create_task(courier.drive(pending(Channel.SMS, 1))) for _ in range(5)]
    for _ in range(20):  # every drive gets as far as it can while no mark is stored
        await asyncio.sleep(0)
    assert len(email.ids) == 2, "accepted and not marked: one per connection"
    log.marking.set()
    await asyncio.gather(*drives)
    assert len(email.ids) == 5
    assert sorted(log.status.values()) == ["sent"] * 5


# --- events out of order: an erasure, an offer the batch already ends (decision 0094) ---------------
# Moved from helper 80's review (test_review_order_notifier.py); each batch gets its own Notifier, as the
# Kafka edge builds one per batch, so what one batch learns reaches the next through the markers only.

AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
JANE = Contact(first_name="Jane", last_name="Doe", email="jane@example.com")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
ANA = Recipient(agent_id="ana", name="Ana", email="ana@north.example", push_token="tok-ana")
BOB = Recipient(agent_id="bob", name="Bob", email="bob@north.example", push_token="tok-bob")
SOL = Recipient(agent_id="sol", name="Sol", email="sol@south.example")
OFFICE_STAFF = {"north": Recipient(agent_id="nia", name="Nia", email="nia@north.example"),
                "south": Recipient(agent_id="sue", name="Sue", email="sue@south.example")}  # fmt: skip


class Subscribed:
    """Each office's staff member subscribes to new-lead notices."""

    async def team_staff(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        return []

    async def new_lead_subscribers(self, account_id: str) -> list[Recipient]:
        return [OFFICE_STAFF[account_id]] if account_id in OFFICE_STAFF else []


class Stored(Log):
    """The delivery log, keeping the event each begun delivery stores (for its dead letter)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[bytes] = []

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:
        self.events.append(delivery.event or b"")
        return await super().begin(delivery, now_ms=now_ms)


class Office:
    """The notifier's stores and senders across batches; `batch()` is the Notifier of one batch."""

    def __init__(self) -> None:
        self.log, self.outbox, self.kept = Stored(), Outbox(), Forgetting()

    def batch(self) -> Notifier:
        return Notifier(
            directory=Directory(ANA, BOB, SOL),
            deliveries=self.log,
            senders={Channel.EMAIL: self.outbox, Channel.PUSH: self.outbox},
            dead_letters=NoDeadLetters(),
            metrics=NotifierMetrics(CollectorRegistry()),
            pages_url="https://crm",
            clock=lambda: AT,
            retry=RetryPolicy(attempts=1),
            digest=self.kept,
            staff=Subscribed(),
            erasure=self.kept,
            erasures=self.kept,
        )

    async def read(self, *events: RoutingEvent) -> None:
        """One batch, as the Kafka edge hands it over."""
        assert await self.batch().notify_batch([e.model_dump_json().encode() for e in events], concurrency=8) == []

    def naming_jane(self) -> list[str]:
        return [c.subject for _, c in self.outbox.sent if isinstance(c, EmailContent) and "Jane" in c.subject + c.text]


def offered_to(lead: uuid.UUID, agent: str = "ana", race_size: int = 1, round_: int = 1) -> LeadOffered:
    return LeadOffered.create(account_id="north", occurred_at=AT, payload=LeadOfferedPayload(
        lead_id=lead, agent_id=agent, offer_round=round_, race_size=race_size, deadline=AT + timedelta(minutes=15),
        explanation="R6", contact=JANE, source=SOURCE))  # fmt: skip


def moved(lead: uuid.UUID) -> LeadTransferred:
    """T2: north -> south; keyed by north, the office the lead left."""
    return LeadTransferred.create(account_id="north", occurred_at=AT + timedelta(minutes=5),
        payload=LeadTransferredPayload(
            lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="north", from_account_name="North Office",
            previous_owner_agent_id=None, to_account_id="south", to_account_name="South Office", agent_id="sol",
            by_user_id="nora", contact=JANE, source=SOURCE))  # fmt: skip


def erased(lead: uuid.UUID) -> ContactErased:
    """South, where the lead is now, erases the contact: keyed by south."""
    payload = ContactErasedPayload(erasure_id=uuid.uuid4(), lead_ids=[lead], by_user_id="sue", reason="ticket 9")
    return ContactErased.create(account_id="south", occurred_at=AT + timedelta(minutes=10), payload=payload)


async def test_a_move_read_after_the_new_offices_erasure_files_and_sends_nothing_of_the_contact() -> None:
    """The consumer of north's partition lags (or rebalances) past south's erasure of the moved lead."""
    lead, office = uuid.uuid4(), Office()
    await office.read(offered_to(lead))  # long ago, in north
    office.outbox.sent.clear()

    await office.read(erased(lead))  # south's partition
    await office.read(moved(lead))  # north's, later: another batch, another Notifier

    assert [i.name for i in office.kept.items if i.lead_id == str(lead)] == [], "the contact is back in the digest"
    assert office.naming_jane() == [], "a new-lead notice named the erased contact"
    assert office.kept.reads == 2, "one read of the markers per batch that carries a contact"


async def test_a_batch_read_again_after_the_erasure_files_nothing_of_the_contact() -> None:
    """The notifier read north's batch (the offer, the move), then south's erasure; north's batch is read again
    after a rebalance (its offset was not committed). Its deliveries are skipped as done, its digest items too."""
    lead, office = uuid.uuid4(), Office()
    north_batch = (offered_to(lead), moved(lead))
    await office.read(*north_batch)
    await office.read(erased(lead))
    assert office.kept.items == []
    sent = len(office.outbox.sent)

    await office.read(*north_batch)  # redelivered

    assert len(office.outbox.sent) == sent, "no delivery twice"
    assert [(i.account_id, i.name) for i in office.kept.items] == [], "the erased contact is back in the digest"


async def test_an_erased_leads_event_read_late_is_told_without_the_contact() -> None:
    """An offer of the lead read for the first time after its erasure (a lagging partition, a replayed dead letter)
    is still the agent's offer, told as the router would tell it now: without the contact, in the message and in
    the event its delivery stores; it files no digest item and sends no new-lead notice. A message an agent wrote
    to the contact is not sent. The erasure's own batch reads its later events the same way."""
    lead, office = uuid.uuid4(), Office()
    await office.read(erased(lead))
    to_jane = ContactMessagedPayload(
        lead_id=lead, agent_id="ana", channel="email", to="jane@example.com", subject="Hi", body="Dear Jane"
    )
    written = ContactMessaged.create(account_id="north", occurred_at=AT, payload=to_jane)

    await office.read(offered_to(lead), written)

    [(_, email)] = [(k, c) for k, c in office.outbox.sent if isinstance(c, EmailContent)]
    assert email.to == ANA.email
    assert "Jane" not in email.subject + email.text + email.html
    assert "jane@example.com" not in email.text + email.html
    assert all(b"Jane" not in raw and b"jane@example.com" not in raw for raw in office.log.events)
    assert office.kept.items == []
    other, again = uuid.uuid4(), Office()
    await again.read(offered_to(other, "bob"), erased(other), offered_to(other, "ana"))
    assert again.kept.reads == 1
    assert sorted(again.naming_jane()) == ["Lead offer: Jane Doe", "New lead: Jane Doe"], "only before the erasure"


async def test_a_batch_without_the_contact_reads_no_marker_and_a_busy_one_reads_once() -> None:
    office = Office()
    leads = [uuid.uuid4() for _ in range(5)]
    await office.read(*(offered_to(lead) for lead in leads))
    assert office.kept.reads == 1
    expiries = [OfferExpired.create(account_id="north", occurred_at=AT, payload=OfferClosedPayload(
        lead_id=lead, agent_id="ana", offer_round=1)) for lead in leads]  # fmt: skip
    await office.read(*expiries)
    assert office.kept.reads == 1, "nothing of a contact to check"


def race(lead: uuid.UUID) -> tuple[LeadOffered, LeadOffered, LeadClaimed, OfferWithdrawn]:
    """A race of ana and bob: bob claims, ana's offer is withdrawn."""
    later = AT + timedelta(minutes=1)
    claimed = LeadClaimed.create(account_id="north", occurred_at=later, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="bob", action=ActivityAction.CALL, offer_round=1))  # fmt: skip
    closed = OfferWithdrawn.create(account_id="north", occurred_at=later, payload=OfferClosedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, reason=WithdrawalReason.CLAIMED_BY_ANOTHER))  # fmt: skip
    return offered_to(lead, "ana", race_size=2), offered_to(lead, "bob", race_size=2), claimed, closed


async def test_an_offer_read_with_its_end_in_the_same_batch_is_not_announced() -> None:
    """N1 (decision 0094): a notifier catching up (an outage, a rebalance, a backlog) reads a race's offers with the
    claim that ended it in one batch. Neither ana nor bob is offered the lead; ana is told her offer ended (the
    batch may be one read again, whose offer she was told before); the lead is still new for the office."""
    lead, office = uuid.uuid4(), Office()

    await office.read(*race(lead))

    assert [c.to for _, c in office.outbox.sent if isinstance(c, EmailContent)] == ["nia@north.example"]
    assert [c.token for _, c in office.outbox.sent if isinstance(c, PushContent)] == ["tok-ana"], "its end only"
    assert [i.lead_id for i in office.kept.items] == [str(lead)]


async def test_an_offer_told_before_and_read_again_with_its_end_still_gets_its_end_told() -> None:
    """Ana's offer was sent (batch 1), its offset not committed; after a rebalance the batch is read again with
    bob's claim and ana's withdrawal: the offers are done already, and ana hears hers is gone (helper 86)."""
    lead, office = uuid.uuid4(), Office()
    to_ana, to_bob, claimed, closed = race(lead)
    await office.read(to_ana, to_bob)

    await office.read(to_ana, to_bob, claimed, closed)  # redelivered, with what came after

    pushed = [c.token for _, c in office.outbox.sent if isinstance(c, PushContent)]
    assert pushed == ["tok-ana", "tok-bob", "tok-ana"], "the offers, then ana's withdrawal"


def _moved_blank(lead: uuid.UUID) -> LeadTransferred:
    """An erased lead moved north -> south afterwards: the router publishes it blank (decision 0050)."""
    return LeadTransferred.create(account_id="north", occurred_at=AT + timedelta(minutes=20),
        payload=LeadTransferredPayload(
            lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="north", from_account_name="North Office",
            previous_owner_agent_id=None, to_account_id="south", to_account_name="South Office", agent_id="sol",
            by_user_id="nora", contact=Contact(first_name=""), source=SOURCE))  # fmt: skip


async def test_a_blank_move_after_an_erasure_files_nothing_whatever_the_batch() -> None:
    """The same blank move, published after the erasure, read alone (no marker read: nothing of a contact) or in
    the erasure's batch: either way an erased lead files no digest item and sends no new-lead notice (decision
    0094; helper 86 found it depended on where the consumer cut the batch)."""
    alone, together = Office(), Office()
    lead_a, lead_b = uuid.uuid4(), uuid.uuid4()
    await alone.read(erased(lead_a))
    await alone.read(_moved_blank(lead_a))
    await together.read(erased(lead_b), _moved_blank(lead_b))

    def to_sue(office: Office) -> list[str]:
        return [c.to for _, c in office.outbox.sent if isinstance(c, EmailContent) and c.to == "sue@south.example"]

    assert to_sue(alone) == to_sue(together) == []
    assert alone.kept.items == together.kept.items == []


async def test_an_offer_and_its_end_in_two_batches_are_both_told() -> None:
    lead, office = uuid.uuid4(), Office()
    to_ana, to_bob, claimed, closed = race(lead)

    await office.read(to_ana, to_bob)
    await office.read(claimed, closed)

    emailed = sorted(c.to for _, c in office.outbox.sent if isinstance(c, EmailContent))
    assert emailed == ["ana@north.example", "bob@north.example", "nia@north.example"]
    pushed = [(c.token, c.title) for _, c in office.outbox.sent if isinstance(c, PushContent)]
    assert [token for token, _ in pushed] == ["tok-ana", "tok-bob", "tok-ana"], "the offers, then ana's withdrawal"


class NewLeadSubscriber:
    """`ADMIN` subscribes to every office's new-lead notices; no team staff."""

    async def team_staff(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        return []

    async def new_lead_subscribers(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        return [ADMIN]


ADMIN = Recipient(agent_id="nia", name="Nia", email="nia@north.example")


async def test_an_offer_whose_deadline_the_agents_zone_cannot_show_is_told_in_utc_with_the_other_notices() -> None:
    """`LeadOfferedPayload.deadline` has no range (review, session 28): 9999-12-31T23:00Z has no date in Tokyo
    (UTC+9), and `astimezone` raised OverflowError in `_planned`, so the batch was retried, then dead-lettered as
    `failed`, the admin's new-lead notice with it. The deadline is shown in UTC then, and every notice goes out."""
    kenji = Recipient(agent_id="kenji", name="Kenji", email="kenji@north.example", time_zone="Asia/Tokyo")
    offer = LeadOffered.create(
        account_id="north",
        occurred_at=NOW,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(),
            agent_id="kenji",
            offer_round=1,
            race_size=1,
            deadline=datetime(9999, 12, 31, 23, tzinfo=UTC),
            explanation="R6",
            contact=Contact(first_name="Jane", email="jane@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )
    outbox, dead = Outbox(), DeadLetters()
    notifier = Notifier(
        directory=Directory(kenji),
        deliveries=Log(),
        senders={Channel.EMAIL: outbox},
        dead_letters=dead,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1),
        digest=Digest(),
        staff=NewLeadSubscriber(),
    )

    rejections = await notifier.notify_batch([offer.model_dump_json().encode()], concurrency=1)

    assert rejections == []
    sent = {content.to: content for _, content in outbox.sent}
    assert sorted(sent) == [kenji.email, ADMIN.email]
    assert "Claim it before Fri 31 Dec 23:00 UTC" in sent[kenji.email].text
    assert dead.letters == []
