"""The daily digest of new leads for subscribed admins and staff (N1, T2).

A lead is new for an account when its first routing decision is made there (`digest_item`): the events
of its routing record's first change (`router_version` 1, decision 0093: an offer, an assignment, or a
hold), or, for a lead nobody could take when it came (its first decision a fall-back, which carries no
contact), its next event there that carries the contact (`late_item`); or when it arrives from another
office of the organisation (T2, `LeadTransferred`: new in the target office, listed in its next digest).
Each account's digest goes out at its `digest_hour` in
its own time zone (the office's); the digest for day D covers the day before D at that hour
(shorter or longer by the change across a daylight-saving change: 23 or 25 hours, 23.5 or 24.5 at
Lord Howe). A digest missed (the notifier, MongoDB or SMTP down at its hour) is still sent for
`DIGEST_CATCH_UP_DAYS` after it was due (`due_windows`, decision 0088).

Each item is in exactly one digest: the first its office sends after the item was filed
(`takes`, decision 0013 amended in session 32). A digest takes the items waiting when it is
first made, and its store seals that list (`DigestStore.take`): a retry, a crash or another
replica sends the same list, and an item filed after the seal (a consumer behind at the digest
hour) waits for the next digest instead of being filed under a day already sent.

An item is keyed per (account, lead, arrival) (`DigestItem.key`): a redelivered event or
the second offer of a race is the same item, while a lead already listed for office A is
a new item for office B, and again for A if it comes back by a later transfer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow_notifier.domain.messages import EmailContent, Notice, Recipient, email_of, lead_link
from leadflow_notifier.domain.templates import render, shown_name
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadFellBack,
    LeadHeld,
    LeadOffered,
    LeadTransferred,
    RoutingEvent,
)

# Assignments that are never a lead's arrival, whatever the event says of its order. An office transfer's
# is not: its LeadTransferred is. A lead share (T1, `LeadShared` or an assignment with its reason) gives a
# lead the brokerage already had to a realtor. A lead given back (`returned`) or whose holder left the office
# (`agent_left`) had a holder before: the broker pool takes an old lead.
NOT_NEW = frozenset(
    {
        AssignmentReason.CLAIMED,
        AssignmentReason.FALLBACK,
        AssignmentReason.OFFICE_TRANSFER,
        AssignmentReason.LEAD_SHARING,
        AssignmentReason.RETURNED,
        AssignmentReason.AGENT_LEFT,
    }
)

# Assignments that never file a noted lead's item (`late_item`): a claim follows the offer that did; a transfer's
# LeadTransferred is the lead's arrival in the office it moved to.
LATE_NEVER = frozenset({AssignmentReason.CLAIMED, AssignmentReason.OFFICE_TRANSFER})


@dataclass(frozen=True, slots=True)
class DigestItem:
    account_id: str
    lead_id: str
    name: str
    source: str
    created_ms: int
    transfer_id: str = ""  # T2: the transfer that brought the lead here; "" for its first decision
    from_account: str = ""  # T2: the office it came from (its name), shown in the digest
    # When the notifier filed it (epoch ms, its clock): it waits for the first digest made after that (`takes`).
    # None: filed by a version before session 32, listed by its day alone, as then. Not part of its identity.
    stored_ms: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """The item's identity: one per (account, lead, arrival); the store's `_id`."""
        base = f"{self.account_id}:{self.lead_id}"
        return f"{base}:{self.transfer_id}" if self.transfer_id else base


@dataclass(frozen=True, slots=True)
class DigestWindow:
    day: date
    start_ms: int
    end_ms: int

    @property
    def sendable_until_ms(self) -> int:
        """Until when this day's digest is sent if it was not (decision 0088): while every item it
        lists is still kept: `DIGEST_LOOK_BACK_MS` after the window began (two days after its send
        time, an hour more or less when the window spans a daylight-saving change)."""
        return self.start_ms + DIGEST_LOOK_BACK_MS


DAY_MS = 24 * 3600 * 1000
# A digest that was due while the notifier, MongoDB or SMTP was down is sent late, for this many days
# after its send time (decision 0088). Its items are kept `NOTIFIER_DIGEST__KEEP_DAYS` (at least 3)
# from their arrival, so a window that began less than `DIGEST_LOOK_BACK_MS` ago has all of them.
DIGEST_CATCH_UP_DAYS = 2
DIGEST_LOOK_BACK_MS = (DIGEST_CATCH_UP_DAYS + 1) * DAY_MS


@dataclass(frozen=True, slots=True)
class DigestBook:
    """An account's digest items as a run reads them for its due windows (`DigestStore.digests`)."""

    taken: dict[date, list[DigestItem]]  # the items each due window's digest took (sealed), by its day
    waiting: list[DigestItem]  # the items no digest took yet, filed before the last window's end


def takes(window: DigestWindow, waiting: list[DigestItem], *, sent_unsealed: bool = False) -> list[DigestItem]:
    """The waiting items the digest of `window` takes when it is made: those of its day or before.

    An item is listed by the first digest its office makes after the item was filed, oldest due window
    first: its own day's when that digest is made after it, else the next one made (a lead filed after its
    day's digest was sealed, or whose day is no longer sendable, is in the next digest, never in none). An
    item of a later day waits for that day's digest. An item filed before session 32 (`stored_ms` None),
    which no digest marked as taken, is listed by its own day's window alone, as it was then: its day's
    digest may have been sent before the upgrade.

    `sent_unsealed`: the delivery log has this day's digest but no seal: a version before session 32 sent it
    (this one seals before it begins any). That digest listed its day's items by their time, read when it ran,
    so it takes only what it could have listed, the items that version filed (no `stored_ms`) of its day: the
    subscribers it did not reach get that list. An item this version filed is in no digest sent yet, whatever
    its time: it waits for the next one (listed twice, at worst, if the old version read it: never in none).
    """
    if sent_unsealed:
        return [i for i in waiting if i.stored_ms is None and window.start_ms <= i.created_ms < window.end_ms]
    return [
        item
        for item in waiting
        if item.created_ms < window.end_ms and (item.stored_ms is not None or item.created_ms >= window.start_ms)
    ]


@dataclass(frozen=True, slots=True)
class Unlisted:
    """A lead whose first decision in an account could file no digest item: the router's fall-back at its arrival
    (`LeadFellBack`, `router_version` 1, the only event of that change) carries no contact or source. The notifier
    notes it (`unlisted_arrival`); the lead's next event there that carries them files its item (`late_item`)."""

    account_id: str
    lead_id: str

    @property
    def key(self) -> str:
        """The note's identity (its `_id` in the digest store), one per (account, lead)."""
        return f"unlisted:{self.account_id}:{self.lead_id}"


def unlisted_arrival(event: RoutingEvent) -> Unlisted | None:
    """The lead `event` notes as arrived but not listed (N1), or None: a fall-back that is its record's first change.

    Nobody could take the lead when it came (every agent paused, away or off hours): the router's only event is
    `LeadFellBack` to the broker, without the contact a digest item lists. A later fall-back (version 2 on: every
    offer expired) is no arrival; one without a version (an older router) is not noted, its hand assignment being
    new by the older rule (`digest_item`)."""
    if isinstance(event, LeadFellBack) and event.payload.router_version == 1:
        return Unlisted(event.account_id, str(event.payload.lead_id))
    return None


def late_item(event: RoutingEvent) -> DigestItem | None:
    """The item `event` would file for its lead if the lead is noted `Unlisted` in its account and no event filed it
    yet (the store decides, `DigestFiling.file_noted`), or None.

    It is the lead's first later event there that carries the contact: the broker's hand assignment (`manual`),
    as a rule; an offer (an ask-back's answer), a hold, or an assignment for any other reason as well. Not a
    claim (the claimed offer came first, and a claim is the commonest later event: no store read for it), nor an
    office transfer's assignment (its `LeadTransferred` is an item of its own), nor an event of the record's first
    change (`digest_item` judges those) or without a version (an older router: none was noted)."""
    if not isinstance(event, LeadAssigned | LeadOffered | LeadHeld):
        return None
    if isinstance(event, LeadAssigned) and event.payload.reason in LATE_NEVER:
        return None
    version = event.payload.router_version
    if version is None or version == 1:
        return None
    return _item_of(event)


def digest_item(event: RoutingEvent) -> DigestItem | None:
    """The digest item of a lead's arrival in an account, or None when `event` is none (N1).

    A lead is new at its first decision. A lead event says which it is: `router_version` 1 is its routing
    record's first change, all of whose events are the lead's arrival (decision 0093): an offer (a race's
    first round, a direct-to-user offer), an assignment (R2-R5), or a hold until its rule's hours open
    (`LeadHeld`). A later version is never the arrival: a round-1 offer after the hold, an assignment by hand
    (`manual`), roster position 1 once a direct period ended, an ask-back joining the first round. Events of
    a producer before that field (None) are judged as then: a first-round offer, or an assignment whose
    reason is not in `NOT_NEW` (`manual` included); a hold is not listed (its first offer is). A claim, a
    fall-back, a transfer's or a share's assignment, a lead given back or left by its agent is never new. A lead
    whose first decision is a fall-back (`LeadFellBack`, no contact) is listed at its next event that carries the
    contact (`unlisted_arrival`, `late_item`; decision 0013, amended in session 32).
    """
    if isinstance(event, LeadTransferred):
        t = event.payload
        return DigestItem(
            account_id=t.to_account_id,
            lead_id=str(t.lead_id),
            name=t.contact.full_name,
            source=t.source.name,
            created_ms=epoch_ms(event.occurred_at),
            transfer_id=str(t.transfer_id),
            from_account=t.from_account_name or t.from_account_id,
        )
    if not isinstance(event, LeadAssigned | LeadOffered | LeadHeld):
        return None
    if isinstance(event, LeadAssigned) and event.payload.reason in NOT_NEW:
        return None
    version = event.payload.router_version
    if version is not None:
        new = version == 1
    else:  # an older producer's event: no order to go by
        new = isinstance(event, LeadAssigned) or (isinstance(event, LeadOffered) and event.payload.offer_round == 1)
    if not new:
        return None
    return _item_of(event)


def _item_of(event: LeadAssigned | LeadOffered | LeadHeld) -> DigestItem:
    contact, source = event.payload.contact, event.payload.source
    return DigestItem(
        account_id=event.account_id,
        lead_id=str(event.payload.lead_id),
        name=contact.full_name,
        source=source.name,
        created_ms=epoch_ms(event.occurred_at),
    )


DIGEST_ROWS = 100  # leads listed in one digest email (at most ~0.5 MB of names); the rest counted, with the list


def distinct_leads(items: list[DigestItem]) -> list[DigestItem]:
    """One row per lead, its earliest arrival: a lead that came, left and came back within one
    window, or an item stored under an older key, is listed once."""
    seen: set[str] = set()
    out = []
    for item in sorted(items, key=lambda i: (i.created_ms, i.key)):
        if item.lead_id not in seen:
            seen.add(item.lead_id)
            out.append(item)
    return out


def due_window(now: datetime, *, hour: int, time_zone: str = "UTC") -> DigestWindow:
    """The latest digest that is due at `now`: the one whose send time, `hour` o'clock in
    `time_zone`, has passed; it covers the local day before that send time."""
    zone = ZoneInfo(time_zone)
    # Today's, once its send time has passed (compared as instants: a send time in a daylight-saving gap
    # is later than the local hour says); before that, yesterday's.
    today = _window(now.astimezone(zone).date(), hour, zone)
    return today if today.end_ms <= epoch_ms(now) else _window(today.day - timedelta(days=1), hour, zone)


def due_windows(now: datetime, *, hour: int, time_zone: str = "UTC") -> list[DigestWindow]:
    """The digests a run at `now` sends if they were not sent, oldest first: the latest due one and those
    before it still sendable (`DigestWindow.sendable_until_ms`): two days' digests, three when a
    daylight-saving night was among them. Each day is computed in `time_zone`, so the windows meet
    (one's end is the next one's start)."""
    zone = ZoneInfo(time_zone)
    latest = due_window(now, hour=hour, time_zone=time_zone)
    # A window is nearly a day, so none more than this many days before the latest is still sendable.
    earlier = (_window(latest.day - timedelta(days=back), hour, zone) for back in range(DIGEST_CATCH_UP_DAYS, 0, -1))
    return [w for w in earlier if w.sendable_until_ms > epoch_ms(now)] + [latest]


def _window(day: date, hour: int, zone: ZoneInfo) -> DigestWindow:
    """Day `day`'s digest: from `hour` o'clock the day before to `hour` o'clock that day, local time."""
    before = day - timedelta(days=1)
    end = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
    start = datetime(before.year, before.month, before.day, hour, tzinfo=zone)
    return DigestWindow(day, epoch_ms(start), epoch_ms(end))


def new_lead_email(item: DigestItem, who: Recipient, pages_url: str) -> EmailContent:
    """N1's immediate new-lead notice for a subscribed admin or staff member: the digest's line, at once."""
    came = f", transferred from {item.from_account}" if item.from_account else ""
    name = shown_name(item.name)
    notice = Notice(
        lead_id=item.lead_id,
        subject=f"New lead: {name}",
        greeting=f"Hi {who.name},",
        lines=(f"A new lead arrived: {name} ({item.source}{came}).",),
        link=lead_link(pages_url, item.account_id, item.lead_id),
        headline=f"New lead: {name}",
    )
    return email_of(notice, who.email)


def digest_email(items: list[DigestItem], who: Recipient, window: DigestWindow, pages_url: str) -> EmailContent | None:
    """The day's digest: its first DIGEST_ROWS leads, each with its link, and how many more with the office's list.
    Unbounded, a day of 10,000 form posts made one email of 3-50 MB that a relay refused for good, and the day's
    real leads were in no digest (helper 176)."""
    if not items:
        return None
    rows = [(item, lead_link(pages_url, item.account_id, item.lead_id)) for item in items[:DIGEST_ROWS]]
    subject = f"{len(items)} new lead{'s' if len(items) != 1 else ''} on {window.day:%a %d %b}"
    more = len(items) - len(rows)
    leads_page = f"{pages_url.rstrip('/')}/accounts/{items[0].account_id}/leads"
    context = {"who": who, "rows": rows, "subject": subject, "more": more, "leads_page": leads_page}
    return EmailContent(
        to=who.email,
        subject=subject,
        text=render("digest.txt.j2", **context),
        html=render("digest.html.j2", **context),
        lead_id="",
    )
