"""Notifier use cases: who is told what, once per (event, channel, recipient) (N1, N3).

Each channel of an event is delivered on its own: its own delivery-log record, its own
bounded retries with exponential backoff and jitter, its own dead letter. The channels
run concurrently, so an SMS provider outage delays neither the email nor the push.
A delivery whose process died mid-send is finished by the `Redriver` (decision 0021). A failed one
is final, unless an operator replays its dead letter (decision 0044): then it is attempted again.
A ContactErased (decision 0050) forgets its leads' digest items and ends their open deliveries unsent, and
leaves a marker per lead: an event of an erased lead read after it (another partition, a redelivery, a replayed
dead letter) is read without the contact, and files no digest item; the digest run leaves out, and forgets, an item a
replica filed after the erasure, having read the markers before it; a day's digest the erasure ended while it waited
for a retry goes once with the other leads (decision 0094). An offer the same batch
already ends is not announced, nor is its end (N1, decision 0094).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from leadflow_notifier.adapters.repository import Begin, Claimed
from leadflow_notifier.domain.delivery import Delivery, Unreadable, delivery_key, retry_at
from leadflow_notifier.domain.digest import (
    DIGEST_LOOK_BACK_MS,
    DigestBook,
    DigestItem,
    DigestWindow,
    Unlisted,
    digest_email,
    digest_item,
    distinct_leads,
    due_windows,
    late_item,
    new_lead_email,
    takes,
    unlisted_arrival,
)
from leadflow_notifier.domain.errors import (
    UNREGISTERED,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from leadflow_notifier.domain.messages import (
    AcceptLinks,
    Content,
    EmailContent,
    PushContent,
    Recipient,
    contact_message,
    invitation_email,
    messages_for,
    recipient_of,
    team_member_email,
)
from leadflow_notifier.domain.order import carries_contact, ended_in_batch, lead_of, published_blank, without_contact
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.domain.replay import Replay
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.clock import epoch_ms
from leadflow_shared.consumers import BatchRejections
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    ContactErased,
    ContactMessaged,
    LeadAssigned,
    LeadFellBack,
    LeadOffered,
    LeadReleased,
    LeadShared,
    OfferExpired,
    OfferWithdrawn,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
)

log = logging.getLogger(__name__)

# Events whose recipient may be unknown to the directory: skipped and counted, not poison.
SKIP_UNKNOWN = (LeadShared,)
# Events whose recipient is one of the event's office: told only while it still is (a realtor holding a shared lead,
# T1, is of its own office, and hears of the lead's share and inquiries).
OF_THE_OFFICE = (LeadOffered, LeadAssigned, LeadFellBack, OfferExpired, OfferWithdrawn, LeadReleased)


def _departed(who: Recipient, event: RoutingEvent) -> bool:
    """Whether `who`, told of an event only the office's own people hear, left that office since: not active, or of
    another office. A realtor's share and inquiries (T1) go to it whatever its own office says of it (onboarding
    there after a move is not active: helper 187's review)."""
    return isinstance(event, OF_THE_OFFICE) and (not who.active or who.account_id not in (None, event.account_id))


class Directory(Protocol):
    async def get(self, agent_id: str) -> Recipient | None: ...


class Staff(Protocol):
    async def team_staff(self, account_id: str) -> list[Recipient]: ...
    async def new_lead_subscribers(self, account_id: str) -> list[Recipient]: ...


class Brokers(Protocol):
    async def broker_of(self, account_id: str) -> str | None:
        """The office's broker: its roster's position 1 (None: no roster)."""
        ...


class Deliveries(Protocol):
    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin: ...
    async def sent(self, key: str, *, now_ms: int) -> None: ...
    async def failed(self, key: str, *, reason: str, now_ms: int) -> None: ...
    async def postpone(self, key: str, *, until_ms: int) -> None: ...
    def release(self, key: str) -> None: ...


class DigestDeliveries(Deliveries, Protocol):
    async def recorded(self, keys: list[str]) -> list[str]:
        """Which of `keys` the log has a record of, whatever its status."""
        ...


class Replays(Protocol):
    async def reopen(self, delivery: Delivery, *, marker: str, now_ms: int) -> bool:
        """Put a failed delivery back to pending for this process, once per replay `marker`; True if it did."""
        ...


class DueDeliveries(Deliveries, Protocol):
    async def claim_due(self, *, now_ms: int, limit: int) -> Claimed: ...


class Sender(Protocol):
    async def send(self, content: Any, *, message_id: str) -> None: ...


class Pooled(Protocol):
    """A sender over a pool of connections (SMTP): `unmarked` has one permit per connection, held from a send
    until its delivery is marked sent, so a crash leaves at most one accepted, unmarked message per connection."""

    unmarked: asyncio.Semaphore


def _unmarked(sender: Sender) -> contextlib.AbstractAsyncContextManager[Any]:
    """The sender's `unmarked` permits if it is `Pooled`; read as an attribute, not with a runtime-checkable
    Protocol, whose isinstance walks the protocol's members on every call (4 % of the notifier's CPU)."""
    permits = getattr(sender, "unmarked", None)
    return permits if isinstance(permits, asyncio.Semaphore) else contextlib.nullcontext()


class DigestFiling(Protocol):
    """Where the notifier files new leads for the digest (N1)."""

    async def add(self, item: DigestItem) -> None: ...
    async def note(self, lead: Unlisted) -> None:
        """Note a lead whose first decision filed no item (a fall-back at its arrival), once."""
        ...

    async def file_noted(self, item: DigestItem, *, by: str, write: bool = True) -> bool:
        """File `item` if its lead was noted unlisted and no event but `by` filed it; whether `by` filed it."""
        ...


class DigestStore(Protocol):
    async def add(self, item: DigestItem) -> None: ...
    async def accounts_since(self, since_ms: int) -> list[str]:
        """Accounts with items filed or created since `since_ms`."""
        ...

    async def digests(self, account_id: str, windows: list[DigestWindow]) -> DigestBook:
        """What the digests of `windows` took (those made), and the items no digest took yet."""
        ...

    async def take(self, account_id: str, window: DigestWindow, items: list[DigestItem]) -> list[DigestItem]:
        """Make `window`'s digest of `items` unless it was made (once: a seal); the items of the digest made."""
        ...


class DigestSchedules(Protocol):
    async def of(self, account_id: str) -> tuple[int | None, str]:
        """The account's digest hour (None: the default) and its time zone."""
        ...


class Subscribers(Protocol):
    async def digest_subscribers(self, account_id: str) -> list[Recipient]: ...


class OfferPolicies(Protocol):
    async def hide_contact(self, account_id: str, race_size: int) -> bool:
        """Whether an offer's notice hides the contact's email and phone until the lead is claimed."""
        ...


class Devices(Protocol):
    async def forget_token(self, user_id: str, token: str) -> None: ...


class Erasure(Protocol):
    async def erase(self, lead_ids: list[str], *, now_ms: int) -> int:
        """Forget the leads' digest items and end their open deliveries unsent; how many it ended."""
        ...


class ErasureMarkers(Protocol):
    async def erased(self, lead_ids: list[str]) -> set[str]:
        """Which of `lead_ids` had their contact erased (the markers `Erasure.erase` leaves), in one read."""
        ...


class DigestErasures(ErasureMarkers, Protocol):
    async def forget(self, lead_ids: list[str], *, now_ms: int) -> int:
        """Delete the erased leads' digest items and end their open deliveries (`LeadErasure.forget`)."""
        ...


class DeadLetters(Protocol):
    async def publish(
        self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_seconds: float = 0.2
    max_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Courier:
    """Takes one delivery to its end: sent, or dead-lettered after bounded retries."""

    deliveries: Deliveries
    senders: Mapping[Channel, Sender]
    dead_letters: DeadLetters
    metrics: NotifierMetrics
    clock: Callable[[], datetime]
    retry: RetryPolicy
    devices: Devices | None = None
    replays: Replays | None = None  # reopens failed deliveries of a replayed dead letter; None: never

    async def drive(
        self, delivery: Delivery, *, begin: bool = False, replay: Replay | None = None,
        after: asyncio.Future[None] | None = None,
    ) -> None:  # fmt: skip
        """Deliver once per key (N3): the delivery record, then the send, then its `sent` mark. `after`: the drive of
        the notice before it to the same recipient on the same channel, ended first, however (their order kept).

        `begin`: the record is written first (`Deliveries.begin`), and the delivery goes on only if this
        process now holds it; a failed one the operator's `replay` covers is attempted once more
        (decision 0044), a sent one never again. Without `begin`: what `begin` or `claim_due` handed
        this process already. Its lease is released at the end.

        An error here that is not the provider's (MongoDB, Kafka, cancellation) leaves the record
        pending: once its lease runs out, the re-driver finishes it. After the send, that means a second
        copy (same key, same Message-ID), so the `sent` mark rides out a MongoDB blip: `DeliveryLog.sent`
        tries it again for up to one lease while this drive still holds the delivery (its lease renewed).
        What remains at-least-once: a process killed between the provider's acceptance and the mark, and
        a MongoDB outage longer than a lease.
        """
        if after is not None:
            await asyncio.wait([after])
        if begin and not await self._begun(delivery, replay):
            return
        channel = delivery.channel
        try:
            sender = self.senders.get(channel)
            if sender is None:  # the channel was switched off since this delivery started
                await self._dead_letter(delivery, PermanentDeliveryError("disabled", f"{channel} is off"))
                return
            unmarked = _unmarked(sender)
            try:
                async for attempt in self._retrying(channel):
                    with attempt:
                        async with unmarked:
                            await sender.send(delivery.content, message_id=delivery.key)
                            # Right after the provider's acceptance: a crash before this line resends (same
                            # Message-ID). Marked before the connection's permit is free (marks are batched),
                            # and before the lease is released: a blip's retries keep the delivery this drive's.
                            await self.deliveries.sent(delivery.key, now_ms=self._now_ms())
            except DeliveryError as exc:
                if isinstance(exc, TransientDeliveryError) and await self._postpone(delivery, exc):
                    return
                await self._dead_letter(delivery, exc)
                return
        finally:
            self.deliveries.release(delivery.key)
        self.metrics.sent.labels(channel).inc()
        if delivery.occurred_ms is not None:
            self.metrics.latency.labels(channel).observe(max(0.0, (self._now_ms() - delivery.occurred_ms) / 1000))
        log.info("%s %s sent", delivery.event_type, channel, extra={"delivery": delivery.key, "channel": channel})

    async def _begun(self, delivery: Delivery, replay: Replay | None) -> bool:
        """Whether this process now holds the delivery: its record begun, or reopened for a replay."""
        now_ms = self._now_ms()
        if replay is not None and await self._reopen(delivery, replay, now_ms):
            return True
        if replay is not None and replay.names_delivery:
            # One delivery's dead letter replayed: it reopens that failed delivery and begins nothing. A delivery of
            # the event that was never made (an offer its batch ended, an SMS quiet hours held back, a device
            # registered since) stays unmade (decision 0044, amended in session 32).
            return False
        state = await self.deliveries.begin(delivery, now_ms=now_ms)
        if state is not Begin.SEND:
            self.metrics.skipped.labels(delivery.channel, state).inc()
            return False
        return True

    async def _reopen(self, delivery: Delivery, replay: Replay, now_ms: int) -> bool:
        """Whether the replayed dead letter covers this delivery and it was failed: then it is pending again."""
        if self.replays is None or not replay.covers(delivery.channel, delivery.agent_id):
            return False
        if not await self.replays.reopen(delivery, marker=replay.marker, now_ms=now_ms):
            return False
        self.metrics.replayed.labels(delivery.channel).inc()
        log.info(
            "%s %s failed before: attempted again (replayed dead letter)",
            delivery.event_type,
            delivery.channel,
            extra={"delivery": delivery.key, "channel": delivery.channel, "replay": replay.marker},
        )
        return True

    def _retrying(self, channel: Channel) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientDeliveryError),
            before_sleep=lambda s: self._count_retry(channel, s),
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        """The pause before the next attempt: exponential with jitter, or what a throttling provider asked for
        (`Retry-After`) when longer; never past the policy's longest pause (helper 186's review: a throttle of a few
        seconds was hit by every attempt and the offer dead-lettered)."""
        backoff = wait_exponential_jitter(multiplier=self.retry.initial_seconds, max=self.retry.max_seconds)(state)
        error = state.outcome.exception() if state.outcome is not None else None
        told = error.retry_after if isinstance(error, TransientDeliveryError) else None
        return min(self.retry.max_seconds, max(backoff, told or 0.0))

    async def give_up(self, delivery: Delivery, error: DeliveryError) -> None:
        """Dead-letter a started delivery without sending it; its lease is released."""
        try:
            await self._dead_letter(delivery, error)
        finally:
            self.deliveries.release(delivery.key)

    async def end_unreadable(self, record: Unreadable) -> None:
        """Dead-letter (if it still has its event) and fail a claimed record that no longer reads."""
        error = PermanentDeliveryError("unreadable", "the pending record's message does not read")
        if record.event is not None and record.account_id is not None:
            await self.dead_letters.publish(
                record.event,
                account_id=record.account_id,
                channel=record.channel,
                agent_id=record.agent_id,
                error=error,
            )
        await self.deliveries.failed(record.key, reason=error.reason, now_ms=self._now_ms())
        self.metrics.failed.labels(record.channel, error.reason).inc()
        log.warning(
            "a pending %s delivery is unreadable: dead-lettered",
            record.channel,
            extra={"delivery": record.key, "channel": record.channel},
        )

    async def _postpone(self, delivery: Delivery, error: TransientDeliveryError) -> bool:
        """A digest (no event to dead-letter, nothing re-sends it) out of retries stays pending
        for a later try, with backoff, until it is no longer sendable (`expires_ms`, decision 0088);
        True if it was left for later."""
        if delivery.event is not None:
            return False
        until = retry_at(now_ms=self._now_ms(), postponed=delivery.postponed, expires_ms=delivery.expires_ms)
        if until is None:
            return False
        await self.deliveries.postpone(delivery.key, until_ms=until)
        self.metrics.retries.labels(delivery.channel, error.reason).inc()
        log.info(
            "%s %s left for a later try: %s",
            delivery.event_type,
            delivery.channel,
            error,
            extra={"delivery": delivery.key, "channel": delivery.channel},
        )
        return True

    async def _dead_letter(self, delivery: Delivery, error: DeliveryError) -> None:
        if error.reason == UNREGISTERED and isinstance(delivery.content, PushContent) and self.devices is not None:
            # The provider no longer knows the device: never push to it again.
            await self.devices.forget_token(delivery.agent_id, delivery.content.token)
        if delivery.event is not None:
            await self.dead_letters.publish(
                delivery.event,
                account_id=delivery.account_id,
                channel=delivery.channel,
                agent_id=delivery.agent_id,
                error=error,
            )
        await self.deliveries.failed(delivery.key, reason=error.reason, now_ms=self._now_ms())
        self.metrics.failed.labels(delivery.channel, error.reason).inc()
        log.warning(
            "%s %s dead-lettered: %s",
            delivery.event_type,
            delivery.channel,
            error,
            extra={"delivery": delivery.key, "channel": delivery.channel},
        )

    def _count_retry(self, channel: Channel, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = error.reason if isinstance(error, DeliveryError) else "unknown"
        self.metrics.retries.labels(channel, reason).inc()

    def _now_ms(self) -> int:
        return epoch_ms(self.clock())


@dataclass(frozen=True, slots=True)
class Notice:
    """An event to tell people about, as it came on the topic (stored with failed deliveries)."""

    event: RoutingEvent
    raw: bytes
    replay: Replay | None = None


@dataclass(frozen=True, slots=True)
class Notifier:
    """Plans each event's deliveries (who, which channels, what) and has its `Courier` drive them."""

    directory: Directory
    deliveries: Deliveries
    senders: Mapping[Channel, Sender]  # enabled channels only
    dead_letters: DeadLetters
    metrics: NotifierMetrics
    pages_url: str
    clock: Callable[[], datetime]
    retry: RetryPolicy = RetryPolicy()
    digest: DigestFiling | None = None
    staff: Staff | None = None  # who hears of a team member's transfer (T2); None: nobody
    devices: Devices | None = None  # forgets a device its push provider no longer knows
    accept_links: AcceptLinks | None = None  # one-click accept links in offer notices
    offer_policies: OfferPolicies | None = None  # whether offers show the contact before a claim
    replays: Replays | None = None  # reopens failed deliveries of a replayed dead letter; None: never
    erasure: Erasure | None = None  # forgets erased leads (decision 0050); None: keeps them
    # Which leads were erased before this batch (decision 0094); None: only those this notifier erased.
    erasures: ErasureMarkers | None = None
    brokers: Brokers | None = None  # who reads the router's explanation in its notices (N5); None: nobody
    _courier: Courier = field(init=False, repr=False, compare=False)
    # The erased leads this notifier knows of: read once per batch, and those its ContactErased events name.
    _erased: set[str] = field(init=False, repr=False, compare=False, default_factory=set)

    def __post_init__(self) -> None:
        courier = Courier(
            deliveries=self.deliveries,
            senders=self.senders,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            clock=self.clock,
            retry=self.retry,
            devices=self.devices,
            replays=self.replays,
        )
        object.__setattr__(self, "_courier", courier)  # frozen: set once, here

    async def notify_batch(
        self, bodies: list[bytes], *, concurrency: int, replays: Mapping[int, Replay] | None = None
    ) -> BatchRejections:
        """`notify_events` for raw events; what does not parse is rejected too."""
        rejections: BatchRejections = []
        events: list[Notice] = []
        positions: list[int] = []
        for index, body in enumerate(bodies):
            try:
                events.append(Notice(ROUTING_EVENT.validate_json(body), body, (replays or {}).get(index)))
                positions.append(index)
            except ValidationError as exc:
                rejections.append((index, exc))
        notified = await self.notify_events(events, concurrency=concurrency)
        return rejections + [(positions[index], exc) for index, exc in notified]

    async def notify_events(self, notices: list[Notice], *, concurrency: int) -> BatchRejections:
        """A batch of events: one lead's events in order, different leads concurrently.

        An event about no lead (a team member's transfer) is a group of its own. A ContactErased
        waits for the events before it and holds up those after it: nothing about its leads is sent
        after it is applied. A notice's `replay`: a replayed dead letter of the notifier, with what
        to attempt again.

        For each event: its deliveries planned (`_planned`), then driven together by the `Courier`,
        each finishing (or failing) on its own before an error is raised. Before any is planned, one read
        says which of the batch's leads were erased (`_recall_erasures`); an offer a later event of the
        batch ends is not announced, nor is its end (`ended_in_batch`). Returns the poison
        messages (unknown agent) for the dead-letter queue; any other error propagates (re-raised so
        the batch is processed again; the deliveries made are skipped by their log record), and the
        consumers' edge then runs the messages one by one.
        """
        rejections: BatchRejections = []
        limit = asyncio.Semaphore(concurrency)
        quiet = ended_in_batch([notice.event for notice in notices])
        await self._recall_erasures(notices)
        for by_lead in _segments(notices):
            # Every lead of the segment finished before an error is raised: no other lead's send left running.
            outcomes = await asyncio.gather(
                *(self._one_lead(group, quiet, limit) for group in by_lead.values()), return_exceptions=True
            )
            _raise_first(outcomes)
            rejections += [r for found in outcomes if isinstance(found, list) for r in found]
        return rejections

    async def _one_lead(
        self, group: list[tuple[int, Notice]], quiet: set[int], limit: asyncio.Semaphore
    ) -> BatchRejections:
        """One lead's events in order: each planned, its deliveries started, each driven once the one before it to
        the same recipient on the same channel ended (their order kept), not after the whole event before it: a
        race's offers reach their agents together though an SMS provider hangs on the first (helper 174). Nothing
        of the lead is left sending when this returns or raises (helper 178): a later plan failing waits for the
        drives started, a stop cancels them. Returns the poison found, in the events' order."""
        rejections: BatchRejections = []
        chains: dict[tuple[str, Channel], asyncio.Future[None]] = {}
        driven: list[tuple[int, list[asyncio.Future[None]], PoisonMessage | None]] = []
        async with limit:
            try:
                for index, notice in group:
                    try:
                        deliveries, poison = await self._planned(
                            notice.event, notice.raw, announce=index not in quiet, replay=notice.replay
                        )
                    except PoisonMessage as exc:
                        rejections.append((index, exc))
                        continue
                    for d in deliveries:
                        after = chains.get((d.agent_id, d.channel))
                        chains[(d.agent_id, d.channel)] = asyncio.ensure_future(
                            self._courier.drive(d, begin=True, replay=notice.replay, after=after)
                        )
                    driven.append((index, [chains[(d.agent_id, d.channel)] for d in deliveries], poison))
            finally:
                await _ended([task for _, started, _ in driven for task in started])
        for index, started, poison in driven:
            try:
                _raise_first([_outcome(task) for task in started], poison)
            except PoisonMessage as exc:
                rejections.append((index, exc))
        return sorted(rejections, key=lambda rejection: rejection[0])

    async def notify(self, event: RoutingEvent, raw: bytes, *, replay: Replay | None = None) -> None:
        """One event, as a batch of one: raises PoisonMessage if it is poison (an unknown agent)."""
        for _, poison in await self.notify_events([Notice(event, raw, replay)], concurrency=1):
            raise poison

    async def _recall_erasures(self, notices: list[Notice]) -> None:
        """Learn, in one read, which of the batch's leads whose events carry the contact were erased."""
        leads = {lead for n in notices if carries_contact(n.event) and (lead := lead_of(n.event)) is not None}
        unknown = sorted(leads - self._erased)
        if self.erasures is not None and unknown:
            self._erased.update(await self.erasures.erased(unknown))

    async def _planned(
        self, event: RoutingEvent, raw: bytes, *, announce: bool = True, replay: Replay | None = None
    ) -> tuple[list[Delivery], PoisonMessage | None]:
        """The deliveries `event` asks for, not begun yet, and the poison it is (or None).

        What is no delivery is done here: an erasure, a digest item. The new-lead notices of an
        event whose recipient is unknown still go out: the poison is returned with them. An erased
        lead's event is read without the contact and files no digest item, nor does one the router published
        blank after the erasure (decision 0094); without
        `announce` (the batch ends the offer), its recipient is not told.

        A replayed dead letter of one delivery (`Replay.names_delivery`: a channel, a recipient) asks for that
        delivery only: the others are not planned, nor is the digest item filed again (decision 0044, amended in
        session 32); the `Courier` then reopens it if it failed, and begins nothing.
        """
        if replay is not None and replay.names_delivery:
            deliveries, poison = await self._plan(event, raw, announce=announce, file=False)
            return [d for d in deliveries if replay.covers(d.channel, d.agent_id)], poison
        return await self._plan(event, raw, announce=announce, file=True)

    async def _plan(
        self, event: RoutingEvent, raw: bytes, *, announce: bool, file: bool
    ) -> tuple[list[Delivery], PoisonMessage | None]:
        """`_planned` without the replay: `file`, whether the digest item is filed."""
        erased = lead_of(event) in self._erased
        if erased:
            blank = self._without_contact(event)
            if blank is None:
                return [], None
            event, raw = blank, raw if blank is event else blank.model_dump_json().encode()
        other = await self._other(event, raw)
        if other is not None:
            return other, None
        erased = erased or published_blank(event)
        deliveries = [] if self.digest is None or erased else await self._new_lead(self.digest, event, raw, file=file)
        if not announce:
            log.info("%s: ended in the same batch, not announced", event.type, extra={"event_id": str(event.event_id)})
            return deliveries, None
        try:
            deliveries += await self._to_recipient(event, raw)
        except PoisonMessage as poison:
            return deliveries, poison
        return deliveries, None

    async def _new_lead(self, digest: DigestFiling, event: RoutingEvent, raw: bytes, *, file: bool) -> list[Delivery]:
        """N1: the digest item `event` files, if it is a lead's arrival, and its new-lead notices (none else).

        A lead's first decision is its arrival (`digest_item`). A lead nobody could take when it came (a fall-back,
        no contact) is noted (`unlisted_arrival`) and filed, and announced, at its first later event there with the
        contact (`late_item`), by that event alone: a later one (the lead handed back, its agent gone) files
        nothing (decision 0013, amended in session 32). Without `file` (a replayed delivery's dead letter) nothing
        is written: the notices are planned if the event filed the item."""
        now_ms = epoch_ms(self.clock())
        if (item := digest_item(event)) is not None:
            if file:
                await digest.add(replace(item, stored_ms=now_ms))
            return await self._new_lead_notices(item, event, raw)
        if (lead := unlisted_arrival(event)) is not None:
            if file:
                await digest.note(lead)
            return []
        late = late_item(event)
        if late is None or not await digest.file_noted(
            replace(late, stored_ms=now_ms), by=str(event.event_id), write=file
        ):
            return []
        return await self._new_lead_notices(late, event, raw)

    @staticmethod
    def _without_contact(event: RoutingEvent) -> RoutingEvent | None:
        """An erased lead's event without the contact (None: nothing to send); logged when it had it."""
        blank = without_contact(event)
        if blank is not event:
            log.info("%s of an erased lead: read without the contact", event.type,
                     extra={"event_id": str(event.event_id)})  # fmt: skip
        return blank

    async def _other(self, event: RoutingEvent, raw: bytes) -> list[Delivery] | None:
        """The deliveries of an event that is not about telling a lead's recipient; None for any other event."""
        if isinstance(event, TeamMemberTransferred):
            return await self._staff_notices(event, raw)
        if isinstance(event, ContactErased):
            lead_ids = [str(i) for i in event.payload.lead_ids]
            if self.erasure is not None:
                ended = await self.erasure.erase(lead_ids, now_ms=epoch_ms(self.clock()))
                log.info("contact erased", extra={"event_id": str(event.event_id), "ended": ended})
            self._erased.update(lead_ids)  # the batch's later events of these leads
            return []
        if isinstance(event, ContactMessaged):
            # The holder's own email or text to the contact (R8's qualifying actions), on that one channel.
            # On a channel that is off, it is begun all the same and dead-lettered `disabled` (Courier.drive): a
            # message someone wrote is never dropped without a trace (helper 174); replayed once the channel is on.
            content = contact_message(event, await self.directory.get(event.payload.agent_id))
            channel = Channel.EMAIL if isinstance(content, EmailContent) else Channel.SMS
            return [_delivery(event, raw, f"contact:{event.payload.lead_id}", channel, content)]
        if isinstance(event, RealtorInvited):
            if Channel.EMAIL not in self.senders:  # to the invited address: the realtor may be no user yet
                return []
            email = invitation_email(event, self.pages_url)
            return [_delivery(event, raw, event.payload.realtor_id, Channel.EMAIL, email)]
        return None

    async def _to_recipient(self, event: RoutingEvent, raw: bytes) -> list[Delivery]:
        """The deliveries to the one agent the event concerns, on its channels (N1, N2)."""
        agent_id = recipient_of(event)
        if agent_id is None:
            return []
        who = await self.directory.get(agent_id)
        if who is None and isinstance(event, SKIP_UNKNOWN):
            # T1: a realtor may be an outside agent invited by email only, unknown here. Not
            # poison: the share happened; nobody to tell. Counted, logged without the id.
            self.metrics.unknown_recipients.labels(event.type).inc()
            log.info("%s: recipient not in the directory, not notified", event.type,
                     extra={"event_id": str(event.event_id)})  # fmt: skip
            return []
        if who is None:
            raise PoisonMessage(f"unknown agent {agent_id!r}")
        if _departed(who, event):
            # Left the office since the event (inactive, T3, or moved to another, T2): an offer or assignment read
            # late carries a contact it must no longer be given (its offers were withdrawn, its leads handed on).
            # Counted, logged by id alone.
            self.metrics.departed_recipients.labels(event.type).inc()
            log.info("%s: recipient left the office, not notified", event.type,
                     extra={"event_id": str(event.event_id)})  # fmt: skip
            return []
        accept_link, hide_contact = "", False
        if isinstance(event, LeadOffered):
            accept_link = self.accept_links.url_for(event.event_id) if self.accept_links else ""
            if self.offer_policies is not None:
                hide_contact = await self.offer_policies.hide_contact(event.account_id, event.payload.race_size)
        messages = messages_for(
            event,
            who,
            self.pages_url,
            now=self.clock(),
            accept_link=accept_link,
            hide_contact=hide_contact,
            routing_info=await self._reads_routing_info(event, agent_id),
        )
        return [
            _delivery(event, raw, agent_id, m.channel, m.content, m.device_id)
            for m in messages
            if m.channel in self.senders
        ]

    async def _reads_routing_info(self, event: RoutingEvent, agent_id: str) -> bool:
        """N5: whether `agent_id`'s notice of `event` carries the router's explanation: only a lead released or
        fallen back to the broker pool, and only when its recipient is the office's broker (roster position 1)
        as the `accounts` roster says now. The broker pool's agent may be another agent, or the one who gave the
        lead back: the explanation names other agents and why they were passed by (decisions 0062, 0076)."""
        if not isinstance(event, LeadReleased | LeadFellBack) or self.brokers is None:
            return False
        return await self.brokers.broker_of(event.account_id) == agent_id

    async def _new_lead_notices(self, item: DigestItem, event: RoutingEvent, raw: bytes) -> list[Delivery]:
        """N1: subscribed admins and staff get a new lead at once; once per lead arrival (the digest item's
        key), whichever of a race's offers carried it."""
        if self.staff is None or Channel.EMAIL not in self.senders:
            return []
        return [
            _delivery(
                event,
                raw,
                who.agent_id,
                Channel.EMAIL,
                new_lead_email(item, who, self.pages_url),
                key=f"new-lead:{item.key}:email:{who.agent_id}",
            )
            for who in await self.staff.new_lead_subscribers(item.account_id)
            if who.email
        ]

    async def _staff_notices(self, event: TeamMemberTransferred, raw: bytes) -> list[Delivery]:
        """T2: email the target office's broker and team-update subscribers; no new-lead notice, no digest.

        Email only, whatever the recipient's lead-notification channels: it is not a lead
        notification and arrives once per transfer. The moved member is not told about itself.
        """
        if self.staff is None or Channel.EMAIL not in self.senders:
            return []
        staff = [w for w in await self.staff.team_staff(event.account_id) if w.agent_id != event.payload.agent_id]
        return [
            _delivery(event, raw, who.agent_id, Channel.EMAIL, team_member_email(event, who, self.pages_url))
            for who in staff
            if who.email
        ]


def _delivery(
    event: RoutingEvent,
    raw: bytes,
    agent_id: str,
    channel: Channel,
    content: Content,
    device_id: str = "",
    *,
    key: str | None = None,
) -> Delivery:
    """A delivery of `event`, once per key (N3): by default (event, channel, recipient, device)."""
    lead_id = getattr(event.payload, "lead_id", None)
    return Delivery(
        key=key or delivery_key(event.event_id, channel, agent_id, device_id),
        channel=channel,
        agent_id=agent_id,
        account_id=event.account_id,
        event_type=event.type,
        content=content,
        event=raw,
        occurred_ms=epoch_ms(event.occurred_at),
        lead_ids=() if lead_id is None else (str(lead_id),),
    )


def _segments(notices: list[Notice]) -> list[dict[str, list[tuple[int, Notice]]]]:
    """The batch as runs of events grouped by lead (`_group`), in order; a ContactErased alone."""
    segments: list[dict[str, list[tuple[int, Notice]]]] = [{}]
    for index, notice in enumerate(notices):
        if isinstance(notice.event, ContactErased):
            segments += [{_group(notice.event): [(index, notice)]}, {}]
            continue
        segments[-1].setdefault(_group(notice.event), []).append((index, notice))
    return segments


async def _ended(tasks: list[asyncio.Future[None]]) -> None:
    """Wait until every one of `tasks` (drives) has ended, however. Cancelled (a stop), here or before: cancel them
    (their records stay pending, finished by the re-driver) and wait for them too."""
    if not tasks:
        return
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        for task in tasks:
            task.cancel()
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise


def _outcome(task: asyncio.Future[None]) -> object:
    """A finished drive's outcome: None, or the error it ended with."""
    return task.exception() if not task.cancelled() else asyncio.CancelledError()


def _raise_first(outcomes: Iterable[object], then: BaseException | None = None) -> None:
    """Raise the first error among the deliveries' outcomes (each finished on its own), else `then`.

    Only infrastructure errors (MongoDB, Kafka) are among them: re-raised so the message is processed
    again; the deliveries already made are skipped by their log record.
    """
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    if then is not None:
        raise then


@dataclass(frozen=True, slots=True)
class Redriver:
    """Finishes pending deliveries whose lease ran out: their process died mid-send (decision 0021).

    Safe on every replica: each due record is claimed by one of them. A record driven `max_drives`
    times without an end (each drive died) is dead-lettered as `abandoned` instead of sent again.
    A round claims no more records than it sends at once (`concurrency`): a claim counts a drive,
    so a record must not gain drives while it waits in this process for a free slot.
    """

    deliveries: DueDeliveries
    courier: Courier
    metrics: NotifierMetrics
    max_drives: int = 5
    batch: int = 100
    concurrency: int = 16

    @property
    def round_size(self) -> int:
        """Records claimed per round: a full round means more may be due."""
        return min(self.batch, self.concurrency)

    async def run_once(self) -> int:
        """Claim and drive the due deliveries; returns how many were claimed (`round_size`: call again)."""
        due = await self.deliveries.claim_due(now_ms=epoch_ms(self.courier.clock()), limit=self.round_size)

        async def one(delivery: Delivery) -> None:
            self.metrics.redriven.labels(delivery.channel).inc()
            log.info(
                "%s %s re-driven",
                delivery.event_type,
                delivery.channel,
                extra={"delivery": delivery.key, "drives": delivery.drives},
            )
            if delivery.drives > self.max_drives:
                # Each earlier drive died with its process: this message may be what kills it.
                error = PermanentDeliveryError("abandoned", f"{delivery.drives - 1} drives ended in a crash")
                await self.courier.give_up(delivery, error)
                return
            await self.courier.drive(delivery)

        outcomes = await asyncio.gather(
            *(one(delivery) for delivery in due.deliveries),
            *(self.courier.end_unreadable(record) for record in due.unreadable),
            return_exceptions=True,
        )
        _raise_first(outcomes)
        return len(due)


@dataclass(frozen=True, slots=True)
class DigestSender:
    """Sends the due daily digests once per (day, account, subscriber), a missed one late; safe to run on
    every replica."""

    items: DigestStore
    subscribers: Subscribers
    schedules: DigestSchedules
    deliveries: DigestDeliveries
    mailer: Sender
    metrics: NotifierMetrics
    pages_url: str
    default_hour: int  # local hour, when the account sets no `digest_hour`
    clock: Callable[[], datetime]
    # The erasure markers (decision 0094): an erased lead's item is left out, and forgotten. None: not checked.
    erasures: DigestErasures | None = None

    async def run_once(self) -> int:
        """Send every digest due within the catch-up days (decision 0088) not sent yet, each account's
        oldest first; returns how many were sent. A window with no new lead sends nothing, nor does one whose
        new leads were all erased since."""
        now = self.clock()
        due: list[tuple[str, DigestWindow, list[DigestItem]]] = []
        subscribers: dict[str, list[Recipient]] = {}  # read once per account and run, when first needed
        # Accounts with new leads lately; each one's windows are its own (its hour, its time zone).
        for account_id in await self.items.accounts_since(epoch_ms(now) - DIGEST_LOOK_BACK_MS):
            made = await self._due(account_id, now, subscribers)
            due += [(account_id, window, items) for window, items in made if items]
        sent, failed = 0, []
        for account_id, window, items in await self._without_erased(due):
            for who in await self._subscribers(account_id, subscribers):
                try:
                    sent += await self._send(account_id, window, items, who)
                except Exception as exc:  # noqa: BLE001 (one office's failure stops no other's digest: helper 176)
                    log.warning("digest not sent", extra={"account_id": account_id, "error": type(exc).__name__})
                    failed.append(exc)
        if failed:
            raise failed[0]  # the run's loop logs it and runs again: the digests not sent are still due
        return sent

    async def _subscribers(self, account_id: str, read: dict[str, list[Recipient]]) -> list[Recipient]:
        if account_id not in read:
            read[account_id] = await self.subscribers.digest_subscribers(account_id)
        return read[account_id]

    async def _without_erased(
        self, due: list[tuple[str, DigestWindow, list[DigestItem]]]
    ) -> list[tuple[str, DigestWindow, list[DigestItem]]]:
        """The due digests without the items of erased leads, read after the items in one query for the whole run:
        a replica that read the markers before another applied the erasure may have filed them after it
        (decision 0094). Those items are deleted then, with the leads' open deliveries."""
        leads = sorted({item.lead_id for _, _, items in due for item in items})
        if self.erasures is None or not leads:
            return due
        erased = await self.erasures.erased(leads)
        if not erased:
            return due
        await self.erasures.forget(sorted(erased), now_ms=self._now_ms())
        log.info("digest items of erased leads left out and forgotten", extra={"leads": len(erased)})
        return [(a, w, kept) for a, w, items in due if (kept := [i for i in items if i.lead_id not in erased])]

    async def _due(
        self, account_id: str, now: datetime, subscribers: dict[str, list[Recipient]]
    ) -> list[tuple[DigestWindow, list[DigestItem]]]:
        """The account's sendable windows, oldest first, each with its new leads: one read for all of them.

        A window's digest made before lists what it took then; one not made yet takes the waiting items of its day
        or before (`takes`) and is made now (`DigestStore.take`, once: another replica's list wins). An item filed
        after its day's digest was made waits for the next one (decision 0013, amended in session 32). A window with
        nothing to take is not made: an item of its day filed later, while it is due, is still in it.

        A digest this version makes is sealed before any of its deliveries begins: a window with something to take,
        no seal and a delivery record for one of its subscribers was sent by a version before session 32. It takes
        only what that version could have listed (`takes`, `sent_unsealed`), and is made even with nothing, so that
        a later item waits for the next digest, which is sent, instead of being sealed into one sent already."""
        hour, time_zone = await self.schedules.of(account_id)
        windows = due_windows(now, hour=self.default_hour if hour is None else hour, time_zone=time_zone)
        book = await self.items.digests(account_id, windows)
        waiting = book.waiting
        due = []
        for window in windows:
            items = book.taken.get(window.day)
            if items is None:
                wanted = takes(window, waiting)
                if wanted and await self._sent_unsealed(account_id, window, subscribers):
                    items = await self.items.take(account_id, window, takes(window, waiting, sent_unsealed=True))
                else:
                    items = await self.items.take(account_id, window, wanted) if wanted else []
                taken = {item.key for item in items}
                waiting = [item for item in waiting if item.key not in taken]
            due.append((window, distinct_leads(items)))
        return due

    async def _sent_unsealed(self, account_id: str, window: DigestWindow, read: dict[str, list[Recipient]]) -> bool:
        """Whether the delivery log has `window`'s digest for one of the account's subscribers, before its seal."""
        keys = [_digest_key(account_id, window, who) for who in await self._subscribers(account_id, read)]
        return bool(await self.deliveries.recorded(keys))

    async def _send(self, account_id: str, window: DigestWindow, items: list[DigestItem], who: Recipient) -> int:
        """Send one subscriber its digest of `window` unless the delivery log has it; 1 if it went now."""
        email = digest_email(items, who, window, self.pages_url)
        if email is None:
            return 0
        key = _digest_key(account_id, window, who)
        delivery = Delivery(
            key=key,
            channel=Channel.EMAIL,
            agent_id=who.agent_id,
            account_id=account_id,
            event_type="Digest",
            content=email,
            # Retried after a transient failure for as long as a run would still begin it (decision 0088):
            # one deadline per day's digest, whether begun on time or caught up late, so a late one is never
            # born expired (as its day's end + 24 h was) and one SMTP refuses until the next is due is still tried.
            expires_ms=window.sendable_until_ms,
            lead_ids=tuple(sorted({item.lead_id for item in items})),
            # A digest an erasure ended unsent goes again without the erased leads (their items are gone, and
            # `_without_erased` left out any filed after the erasure): still one sent per (day, subscriber).
            again_after_erasure=True,
        )
        if await self.deliveries.begin(delivery, now_ms=self._now_ms()) is not Begin.SEND:
            return 0
        try:
            await self.mailer.send(email, message_id=key)
            await self.deliveries.sent(key, now_ms=self._now_ms())
        except PermanentDeliveryError as exc:
            await self.deliveries.failed(key, reason=exc.reason, now_ms=self._now_ms())
            self.metrics.failed.labels("email", exc.reason).inc()
            return 0
        except TransientDeliveryError as exc:
            # Left pending: the re-driver retries it once its lease has run out.
            self.metrics.retries.labels("email", exc.reason).inc()
            return 0
        finally:
            self.deliveries.release(key)
        self.metrics.sent.labels("email").inc()
        return 1

    def _now_ms(self) -> int:
        return epoch_ms(self.clock())


def _digest_key(account_id: str, window: DigestWindow, who: Recipient) -> str:
    """A day's digest to one subscriber: its delivery log key, the same in every version."""
    return f"digest:{account_id}:{window.day.isoformat()}:email:{who.agent_id}"


def _group(event: RoutingEvent) -> str:
    """Events of one lead stay in order; an event about no lead is on its own."""
    if isinstance(event, TeamMemberTransferred | RealtorInvited | ContactErased):
        return f"event:{event.event_id}"
    return f"lead:{event.payload.lead_id}"
