"""The daily digest: which leads are new, which windows are due, what the email says, and the digests
missed while the notifier was down, sent late (decision 0088)."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fakes_notifier import DeadLetters, Log, Outbox, Provider
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from leadflow_notifier.adapters.repository import Begin
from leadflow_notifier.domain.delivery import POSTPONE_FIRST_MS, Delivery
from leadflow_notifier.domain.digest import (
    DAY_MS,
    DIGEST_LOOK_BACK_MS,
    DigestBook,
    DigestItem,
    DigestWindow,
    digest_email,
    digest_item,
    due_window,
    due_windows,
    new_lead_email,
    takes,
)
from leadflow_notifier.domain.errors import TransientDeliveryError
from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Courier, DigestSender, RetryPolicy, Sender
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadHeld,
    LeadHeldPayload,
    LeadOffered,
    LeadOfferedPayload,
)

pytestmark = pytest.mark.unit

AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)


def assigned(reason: AssignmentReason) -> LeadAssigned:
    return LeadAssigned.create(
        account_id="office-2",
        occurred_at=AT,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id="a",
            reason=reason,
            explanation="x",
            contact=Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "j@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


@pytest.mark.parametrize(
    ("reason", "is_new"),
    [
        (AssignmentReason.ROSTER_POSITION_1, True),
        (AssignmentReason.PRE_ASSIGNED, True),
        (AssignmentReason.CLAIMED, False),
        (AssignmentReason.FALLBACK, False),
    ],
)
def test_a_first_assignment_is_a_new_lead_a_claim_or_fall_back_is_not(reason: AssignmentReason, is_new: bool) -> None:
    item = digest_item(assigned(reason))
    assert (item is not None) is is_new
    if item is not None:
        assert (item.account_id, item.name, item.created_ms) == ("office-2", "Jane Doe", int(AT.timestamp() * 1000))


def offered(offer_round: int, version: int | None) -> LeadOffered:
    return LeadOffered.create(
        account_id="office-2",
        occurred_at=AT,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(),
            agent_id="a",
            offer_round=offer_round,
            race_size=1,
            deadline=AT + timedelta(minutes=15),
            explanation="rr",
            contact=Contact(first_name="Jane", email="j@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            router_version=version,
        ),
    )


def held(version: int | None) -> LeadHeld:
    return LeadHeld.create(
        account_id="office-2",
        occurred_at=AT,
        payload=LeadHeldPayload(
            lead_id=uuid.uuid4(),
            rule_id="hours",
            until=AT + timedelta(days=9),
            explanation="closed",
            contact=Contact(first_name="Jane", email="j@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            router_version=version,
        ),
    )


def versioned(event: LeadAssigned, version: int | None) -> LeadAssigned:
    return event.model_copy(update={"payload": event.payload.model_copy(update={"router_version": version})})


@pytest.mark.parametrize("reason", [AssignmentReason.RETURNED, AssignmentReason.AGENT_LEFT])
@pytest.mark.parametrize("version", [None, 1, 7])
def test_a_lead_given_back_or_left_by_its_agent_is_never_new(reason: AssignmentReason, version: int | None) -> None:
    """The broker pool takes an old lead: whatever the event says of its order (helper 145's review)."""
    assert digest_item(versioned(assigned(reason), version)) is None


@pytest.mark.parametrize(
    ("event", "is_new"),
    [
        # The routing record's first change is the lead's arrival (decision 0093): its offer, assignment or hold.
        (lambda: versioned(assigned(AssignmentReason.ROSTER_POSITION_1), 1), True),
        (lambda: offered(1, 1), True),
        (lambda: held(1), True),
        # Any later change is not: a hand assignment, roster position 1 after a direct period, a round-1 offer
        # after the hold (or an ask-back joining the first round).
        (lambda: versioned(assigned(AssignmentReason.MANUAL), 5), False),
        (lambda: versioned(assigned(AssignmentReason.ROSTER_POSITION_1), 2), False),
        (lambda: offered(1, 2), False),
        (lambda: held(4), False),
        # An older producer's event (no version): as before, by its round or reason; a hold is not listed.
        (lambda: versioned(assigned(AssignmentReason.MANUAL), None), True),
        (lambda: offered(1, None), True),
        (lambda: offered(2, None), False),
        (lambda: held(None), False),
    ],
)
def test_a_lead_is_new_at_its_first_decision_as_its_router_version_says(
    event: Callable[[], LeadAssigned | LeadOffered | LeadHeld], is_new: bool
) -> None:
    assert (digest_item(event()) is not None) is is_new


def test_the_due_window_is_the_24_hours_before_the_latest_digest_hour() -> None:
    before = due_window(datetime(2024, 3, 5, 6, 59, tzinfo=UTC), hour=7)
    after = due_window(datetime(2024, 3, 5, 7, 0, tzinfo=UTC), hour=7)
    assert before.day == date(2024, 3, 4)
    assert after.day == date(2024, 3, 5)
    assert after.end_ms == int(datetime(2024, 3, 5, 7, tzinfo=UTC).timestamp() * 1000)
    assert after.end_ms - after.start_ms == 24 * 3600 * 1000


@pytest.mark.parametrize(
    ("now", "day", "hours"),
    [
        (datetime(2026, 3, 8, 11, 59, tzinfo=UTC), date(2026, 3, 7), 24),  # 07:59 EDT: yesterday's is the due one
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), date(2026, 3, 8), 23),  # 08:00 EDT: the night lost an hour
        (datetime(2026, 11, 1, 13, 0, tzinfo=UTC), date(2026, 11, 1), 25),  # 08:00 EST: the night gained one
    ],
)
def test_each_office_gets_its_digest_at_its_own_hour_across_daylight_saving(
    now: datetime, day: date, hours: int
) -> None:
    window = due_window(now, hour=8, time_zone="America/New_York")
    assert window.day == day
    local_end = datetime.fromtimestamp(window.end_ms / 1000, ZoneInfo("America/New_York"))
    assert (local_end.date(), local_end.hour, local_end.minute) == (day, 8, 0)
    assert window.end_ms - window.start_ms == hours * 3600 * 1000


def test_the_digest_lists_each_new_lead_with_its_link() -> None:
    items = [DigestItem("office-2", f"lead-{i}", f"Lead {i}", "Website", 0) for i in range(2)]
    who = Recipient(agent_id="admin", name="Ada", email="ada@example.com")
    email = digest_email(items, who, due_window(AT, hour=7), "https://crm")
    assert email is not None
    assert email.subject == "2 new leads on Tue 05 Mar"
    for i in range(2):
        assert f"Lead {i} (Website): https://crm/accounts/office-2/leads/lead-{i}" in email.text
        assert f'href="https://crm/accounts/office-2/leads/lead-{i}"' in email.html
    assert digest_email([], who, due_window(AT, hour=7), "https://crm") is None


def test_a_digest_and_a_new_lead_notice_show_no_contact_name_as_a_link() -> None:
    item = DigestItem("office-2", "lead-1", "www.evil.example", "Website", 0)
    who = Recipient(agent_id="admin", name="Ada", email="ada@example.com")
    digest = digest_email([item], who, due_window(AT, hour=7), "https://crm")
    assert digest is not None
    notice = new_lead_email(item, who, "https://crm")
    for text in (digest.text, digest.html, notice.subject, notice.text, notice.html):
        assert "evil.example" not in text, text
        assert "www[.]evil[.]example" in text, text


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "days"),
    [
        # Right before 07:00 the 3rd's digest was due 47 h 59 min ago: still sent if it was not.
        (utc(2024, 3, 5, 6, 59), [date(2024, 3, 3), date(2024, 3, 4)]),
        # At 07:00 the 5th's is due and the 3rd's was due two days ago: no longer.
        (utc(2024, 3, 5, 7, 0), [date(2024, 3, 4), date(2024, 3, 5)]),
    ],
)
def test_the_digests_due_within_the_last_two_days_are_due_oldest_first(now: datetime, days: list[date]) -> None:
    windows = due_windows(now, hour=7)
    assert [w.day for w in windows] == days
    assert windows[-1] == due_window(now, hour=7)


@pytest.mark.parametrize(
    ("now", "days", "hours"),
    [
        # 08:00 EDT on 9 March: the night of the 7th to the 8th lost an hour, so three digests were due
        # within two days (the 7th's 47 h ago).
        (utc(2026, 3, 9, 12, 0), [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)], [24, 23, 24]),
        # 08:00 EST on 2 November: the night of 31 October to 1 November gained one; the 31st's was due 49 h ago.
        (utc(2026, 11, 2, 13, 0), [date(2026, 11, 1), date(2026, 11, 2)], [25, 24]),
        # 07:30 EST on 3 November: the 1st's (25 h) was due 47.5 h ago, but its first hour's leads may be
        # forgotten (kept 3 days): it is no longer sent rather than sent short.
        (utc(2026, 11, 3, 12, 30), [date(2026, 11, 2)], [24]),
    ],
)
def test_missed_digests_are_the_offices_days_across_daylight_saving(
    now: datetime, days: list[date], hours: list[int]
) -> None:
    windows = due_windows(now, hour=8, time_zone="America/New_York")
    assert [w.day for w in windows] == days
    assert [(w.end_ms - w.start_ms) // 3_600_000 for w in windows] == hours
    for window in windows:
        local_end = datetime.fromtimestamp(window.end_ms / 1000, ZoneInfo("America/New_York"))
        assert (local_end.date(), local_end.hour) == (window.day, 8)


ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kolkata",
         "Pacific/Chatham", "America/Sao_Paulo", "Antarctica/Troll"]  # fmt: skip


FROM, TO = datetime(2015, 1, 1), datetime(2035, 1, 1)  # noqa: DTZ001 (hypothesis takes naive bounds)


@given(
    now=st.datetimes(min_value=FROM, max_value=TO, timezones=st.just(UTC)),
    hour=st.integers(0, 23),
    zone=st.sampled_from(ZONES),
)
def test_every_digest_still_sendable_is_due_and_none_is_left_out(now: datetime, hour: int, zone: str) -> None:
    windows = due_windows(now, hour=hour, time_zone=zone)
    now_ms = epoch_ms(now)
    assert windows[-1] == due_window(now, hour=hour, time_zone=zone)
    for earlier, later in itertools.pairwise(windows):
        assert earlier.end_ms == later.start_ms, "the windows meet: each new lead is in one digest"
        assert later.day - earlier.day == timedelta(days=1)
    for window in windows:
        assert window.end_ms <= now_ms < window.sendable_until_ms
        assert window.start_ms > now_ms - DIGEST_LOOK_BACK_MS, "every item it lists is still kept"
    # The day before the oldest: the digest that fell due as the oldest one's window began.
    before = due_window(datetime.fromtimestamp(windows[0].start_ms / 1000, UTC), hour=hour, time_zone=zone)
    assert before.end_ms == windows[0].start_ms
    assert before.sendable_until_ms <= now_ms, "the day before the oldest is no longer sendable"
    if before.end_ms - before.start_ms <= DAY_MS:
        assert before.end_ms <= now_ms - 2 * DAY_MS, "every digest due within the last two days is sent"


# --- the sender ---------------------------------------------------------------------------------------

ADA = Recipient(agent_id="ada", name="Ada", email="ada@example.com")


class Items:
    """The digest items kept, by account, and the digests made (`DigestItems` in memory): `taken` marks each item
    with the day of the digest that took it, `sealed` each digest's items; reads (of an account's digests) count."""

    def __init__(self, *items: DigestItem) -> None:
        self.items = list(items)
        self.taken: dict[str, date] = {}  # item key -> the day of the digest that took it
        self.sealed: dict[tuple[str, date], list[str]] = {}  # (account, day) -> the keys its digest took
        self.reads = 0

    async def add(self, item: DigestItem) -> None:
        if all(i.key != item.key for i in self.items):
            self.items.append(item)

    async def accounts_since(self, since_ms: int) -> list[str]:
        return sorted({i.account_id for i in self.items if max(i.created_ms, i.stored_ms or 0) >= since_ms})

    async def digests(self, account_id: str, windows: list[DigestWindow]) -> DigestBook:
        self.reads += 1
        mine = sorted((i for i in self.items if i.account_id == account_id), key=lambda i: i.created_ms)
        taken = {
            w.day: [i for i in mine if i.key in self.sealed[account_id, w.day]]
            for w in windows
            if (account_id, w.day) in self.sealed
        }
        end = windows[-1].end_ms
        return DigestBook(taken, [i for i in mine if i.key not in self.taken and i.created_ms < end])

    async def take(self, account_id: str, window: DigestWindow, items: list[DigestItem]) -> list[DigestItem]:
        keys = self.sealed.setdefault((account_id, window.day), [i.key for i in items])
        self.taken.update(dict.fromkeys(keys, window.day))
        return [i for i in self.items if i.key in keys]


class Schedules:
    """Every office sends at 08:00 New York time."""

    async def of(self, account_id: str) -> tuple[int | None, str]:  # noqa: ARG002
        return 8, "America/New_York"


class Subscribers:
    def __init__(self, *people: Recipient) -> None:
        self.people = list(people)
        self.reads = 0

    async def digest_subscribers(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        self.reads += 1
        return self.people


class Begun(Log):
    """The delivery log, keeping each delivery begun."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[Delivery] = []

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:
        self.begun.append(delivery)
        return await super().begin(delivery, now_ms=now_ms)


def lead(at: datetime, name: str, account: str = "north") -> DigestItem:
    return DigestItem(account, f"{account}-{name}", name, "Website", epoch_ms(at))


def digest_sender(
    items: Items, log: Log, mailer: Sender, now: datetime, subscribers: Subscribers | None = None
) -> DigestSender:
    return DigestSender(
        items=items,
        subscribers=subscribers or Subscribers(ADA),
        schedules=Schedules(),
        deliveries=log,
        mailer=mailer,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        default_hour=7,
        clock=lambda: now,
    )


# Back at 14:00 EST on 19 November, down since before 08:00 on the 18th: the 18th's digest was missed.
BACK = utc(2026, 11, 19, 19, 0)


@pytest.mark.asyncio
async def test_a_digest_missed_while_down_is_sent_on_return_before_the_days_own_and_once() -> None:
    items = Items(
        lead(utc(2026, 11, 16, 15), "too-old"),  # the 17th's digest, due 59 h ago
        lead(utc(2026, 11, 17, 15), "first"),  # the 18th's, missed
        lead(utc(2026, 11, 18, 15), "second"),  # the 19th's, due at 08:00 while still down
        lead(utc(2026, 11, 19, 15), "today"),  # tomorrow's
        lead(utc(2026, 11, 17, 15), "south", account="south"),  # the 18th's of another office
    )
    log, outbox = Begun(), Outbox()
    sender = digest_sender(items, log, outbox, BACK)

    assert await sender.run_once() == 3
    assert [key for key, _ in outbox.sent] == [
        "digest:north:2026-11-18:email:ada",
        "digest:north:2026-11-19:email:ada",
        "digest:south:2026-11-18:email:ada",
    ], "each office's oldest first"
    subjects = [content.subject for _, content in outbox.sent]
    assert subjects == ["1 new lead on Wed 18 Nov", "1 new lead on Thu 19 Nov", "1 new lead on Wed 18 Nov"]
    assert "first (Website)" in outbox.sent[0][1].text
    assert "second (Website)" in outbox.sent[1][1].text
    assert items.reads == 2, "one read of each office's items for all its due days"

    assert await sender.run_once() == 0, "the delivery log decides: nothing twice"
    assert len(outbox.sent) == 3


@pytest.mark.asyncio
async def test_a_day_with_nothing_new_sends_nothing_and_nobody_is_looked_up_for_it() -> None:
    items, subscribers = Items(lead(utc(2026, 11, 2, 15), "old")), Subscribers(ADA)
    outbox = Outbox()
    assert await digest_sender(items, Log(), outbox, BACK, subscribers).run_once() == 0
    assert outbox.sent == []
    assert subscribers.reads == 0


@pytest.mark.asyncio
async def test_a_caught_up_digest_refused_for_now_is_tried_again_later_not_given_up(
    registry: CollectorRegistry,
) -> None:
    items = Items(lead(utc(2026, 11, 17, 15), "first"))
    log = Begun()
    down = Provider(*[TransientDeliveryError("unavailable")] * 3)
    assert await digest_sender(items, log, down, BACK).run_once() == 0
    [late] = log.begun
    assert late.key == "digest:north:2026-11-18:email:ada"
    assert late.expires_ms is not None
    assert late.expires_ms > epoch_ms(BACK), "not born expired (its day's end + 24 h passed at 13:00 today)"
    assert log.status[late.key] == "pending"

    # The re-driver takes it once its lease ran out: out of retries, it is left for later, not failed.
    dead = DeadLetters()
    courier = Courier(
        deliveries=log,
        senders={Channel.EMAIL: down},
        dead_letters=dead,
        metrics=NotifierMetrics(registry),
        clock=lambda: BACK,
        retry=RetryPolicy(attempts=2, initial_seconds=0.001),
    )
    await courier.drive(late)
    assert log.status[late.key] == f"pending:until {epoch_ms(BACK) + POSTPONE_FIRST_MS}"
    assert dead.letters == []


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class Markers:
    """The erasure markers over `Items` (decision 0094): `forget` deletes the leads' items; reads and forgets count."""

    def __init__(self, items: Items, erased: set[str]) -> None:
        self.items, self.markers = items, erased
        self.reads = 0
        self.forgotten: list[list[str]] = []

    async def erased(self, lead_ids: list[str]) -> set[str]:
        self.reads += 1
        return self.markers & set(lead_ids)

    async def forget(self, lead_ids: list[str], *, now_ms: int) -> int:  # noqa: ARG002
        self.forgotten.append(lead_ids)
        self.items.items = [i for i in self.items.items if i.lead_id not in lead_ids]
        return 0


NAMES = ["first", "second", "third", "south"]


@pytest.mark.asyncio
@given(erased=st.sets(st.sampled_from(NAMES)))
async def test_the_digest_run_leaves_out_and_forgets_the_items_of_erased_leads_with_one_read(erased: set[str]) -> None:
    """A replica that read the markers before another applied the erasure filed the item after it (decision 0094): the
    run reads the markers of every due item once, after the items, sends the rest and deletes the erased ones."""
    filed = [
        lead(utc(2026, 11, 17, 15), "first"),  # the 18th's digest, missed
        lead(utc(2026, 11, 18, 15), "second"),  # the 19th's
        lead(utc(2026, 11, 18, 16), "third"),
        lead(utc(2026, 11, 17, 15), "south", account="south"),
    ]
    items = Items(*filed)
    markers = Markers(items, {f"{i.account_id}-{i.name}" for i in filed if i.name in erased})
    outbox = Outbox()
    sender = dataclasses.replace(digest_sender(items, Log(), outbox, BACK), erasures=markers)

    sent = await sender.run_once()

    assert markers.reads == 1, "one read of the markers per run"
    listed = {name for _, content in outbox.sent for name in NAMES if f"{name} (Website)" in content.text}
    assert listed == set(NAMES) - erased
    windows = {("north", 18): {"first"}, ("north", 19): {"second", "third"}, ("south", 18): {"south"}}
    assert sent == sum(1 for names in windows.values() if names - erased), "a digest with every lead erased: none"
    assert markers.forgotten == ([sorted(markers.markers)] if erased else [])
    assert {i.name for i in items.items} == set(NAMES) - erased


@pytest.mark.asyncio
async def test_a_run_with_no_due_item_reads_no_markers() -> None:
    items = Items(lead(utc(2026, 11, 2, 15), "old"))
    markers = Markers(items, {"north-old"})
    sender = dataclasses.replace(digest_sender(items, Log(), Outbox(), BACK), erasures=markers)
    assert await sender.run_once() == 0
    assert markers.reads == 0
    assert markers.forgotten == []


def filed(at: datetime, name: str, stored: datetime) -> DigestItem:
    return dataclasses.replace(lead(at, name), stored_ms=epoch_ms(stored))


def test_a_digest_takes_the_waiting_items_of_its_day_and_before_and_an_old_item_its_own_days_only() -> None:
    window = due_window(utc(2026, 11, 19, 13), hour=8, time_zone="America/New_York")  # the 18th 08:00 to the 19th
    waiting = [
        filed(utc(2026, 11, 18, 15), "today", utc(2026, 11, 18, 15)),
        filed(utc(2026, 11, 16, 15), "late", utc(2026, 11, 19, 12, 59)),  # filed days late: the next digest made
        filed(utc(2026, 11, 19, 13, 30), "tomorrow", utc(2026, 11, 19, 13, 30)),
        lead(utc(2026, 11, 18, 15), "before-32"),  # filed by an older version: its own day's
        lead(utc(2026, 11, 16, 15), "old-before-32"),
    ]
    assert [i.name for i in takes(window, waiting)] == ["today", "late", "before-32"]


@pytest.mark.asyncio
async def test_an_item_filed_after_its_days_digest_was_made_is_in_the_next_one_and_once() -> None:
    """The 19th's digest (08:00 New York) is made at 13:00:30 UTC; an item of 07:59:50 filed at 13:00:40 waits for
    the 20th's (helper 145's review: it was in none). The same run again, or another replica, sends nothing."""
    items = Items(filed(utc(2026, 11, 19, 12, 50), "early", utc(2026, 11, 19, 12, 50)))
    outbox = Outbox()
    log = Log()
    assert await digest_sender(items, log, outbox, datetime(2026, 11, 19, 13, 0, 30, tzinfo=UTC)).run_once() == 1
    await items.add(
        filed(datetime(2026, 11, 19, 12, 59, 50, tzinfo=UTC), "late", datetime(2026, 11, 19, 13, 0, 40, tzinfo=UTC))
    )
    assert await digest_sender(items, log, outbox, datetime(2026, 11, 19, 13, 1, 30, tzinfo=UTC)).run_once() == 0
    assert await digest_sender(items, log, outbox, datetime(2026, 11, 20, 13, 0, 30, tzinfo=UTC)).run_once() == 1
    assert [(key, content.subject) for key, content in outbox.sent] == [
        ("digest:north:2026-11-19:email:ada", "1 new lead on Thu 19 Nov"),
        ("digest:north:2026-11-20:email:ada", "1 new lead on Fri 20 Nov"),
    ]
    assert "early (Website)" in outbox.sent[0][1].text
    assert "late (Website)" in outbox.sent[1][1].text
    assert items.taken == {"north:north-early": date(2026, 11, 19), "north:north-late": date(2026, 11, 20)}
