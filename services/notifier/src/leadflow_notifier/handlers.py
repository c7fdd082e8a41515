"""Notifier use cases: who is told what, once per (event, channel, recipient) (N1, N3).

Each channel of an event is delivered on its own: its own delivery-log record, its own
bounded retries with exponential backoff and jitter, its own dead letter. The channels
run concurrently, so an SMS provider outage delays neither the email nor the push.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from leadflow_notifier.adapters.repository import Begin
from leadflow_notifier.domain.digest import (
    DigestItem,
    DigestWindow,
    digest_email,
    digest_item,
    distinct_leads,
    due_window,
)
from leadflow_notifier.domain.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import Content, Recipient, messages_for, recipient_of, team_member_email
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.routing import ROUTING_EVENT, LeadShared, RoutingEvent, TeamMemberTransferred
from leadflow_shared.kafka import BatchRejections

log = logging.getLogger(__name__)

# Events whose recipient may be unknown to the directory: skipped and counted, not poison.
SKIP_UNKNOWN = (LeadShared,)


class Directory(Protocol):
    async def get(self, agent_id: str) -> Recipient | None: ...


class Staff(Protocol):
    async def team_staff(self, account_id: str) -> list[Recipient]: ...


class Deliveries(Protocol):
    async def begin(self, key: str, *, channel: str, now_ms: int) -> Begin: ...
    async def sent(self, key: str, *, now_ms: int) -> None: ...
    async def failed(self, key: str, *, reason: str, now_ms: int) -> None: ...


class Sender(Protocol):
    async def send(self, content: Any, *, message_id: str) -> None: ...


class DigestStore(Protocol):
    async def add(self, item: DigestItem) -> None: ...
    async def accounts(self, window: DigestWindow) -> list[str]: ...
    async def in_window(self, account_id: str, window: DigestWindow) -> list[DigestItem]: ...


class Subscribers(Protocol):
    async def digest_subscribers(self, account_id: str) -> list[Recipient]: ...


class DeadLetters(Protocol):
    async def publish(self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError) -> None:
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    initial_seconds: float = 0.2
    max_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Notifier:
    directory: Directory
    deliveries: Deliveries
    senders: Mapping[Channel, Sender]  # enabled channels only
    dead_letters: DeadLetters
    metrics: NotifierMetrics
    crm_base_url: str
    clock: Callable[[], datetime]
    retry: RetryPolicy = RetryPolicy()
    digest: DigestStore | None = None
    staff: Staff | None = None  # who hears of a team member's transfer (T2); None: nobody

    async def notify_batch(self, bodies: list[bytes], *, concurrency: int) -> BatchRejections:
        """A batch of raw events: one lead's events in order, different leads concurrently.

        An event about no lead (a team member's transfer) is a group of its own.

        Returns the poison messages (invalid, unknown agent) for the dead-letter queue; any
        other error propagates, and the guard then runs the messages one by one.
        """
        rejections: BatchRejections = []
        by_lead: dict[str, list[tuple[int, RoutingEvent, bytes]]] = {}
        for index, body in enumerate(bodies):
            try:
                event = ROUTING_EVENT.validate_json(body)
            except ValidationError as exc:
                rejections.append((index, exc))
                continue
            by_lead.setdefault(_group(event), []).append((index, event, body))
        limit = asyncio.Semaphore(concurrency)

        async def one_lead(events: list[tuple[int, RoutingEvent, bytes]]) -> None:
            async with limit:
                for index, event, body in events:
                    try:
                        await self.notify(event, body)
                    except PoisonMessage as exc:
                        rejections.append((index, exc))

        await asyncio.gather(*(one_lead(events) for events in by_lead.values()))
        return rejections

    async def notify(self, event: RoutingEvent, raw: bytes) -> None:
        if isinstance(event, TeamMemberTransferred):
            await self._notify_staff(event, raw)
            return
        if self.digest is not None and (item := digest_item(event)) is not None:
            await self.digest.add(item)
        agent_id = recipient_of(event)
        if agent_id is None:
            return
        who = await self.directory.get(agent_id)
        if who is None and isinstance(event, SKIP_UNKNOWN):
            # T1: a realtor may be an outside agent invited by email only, unknown here. Not
            # poison: the share happened; nobody to tell. Counted, logged without the id.
            self.metrics.unknown_recipients.labels(event.type).inc()
            log.info("%s: recipient not in the directory, not notified", event.type,
                     extra={"event_id": str(event.event_id)})
            return
        if who is None:
            raise PoisonMessage(f"unknown agent {agent_id!r}")
        messages = messages_for(event, who, self.crm_base_url, now=self.clock())
        await _all(
            self._deliver(event, raw, agent_id, channel, content)
            for channel, content in messages.items()
            if channel in self.senders
        )

    async def _notify_staff(self, event: TeamMemberTransferred, raw: bytes) -> None:
        """T2: email the target office's broker and team-update subscribers; no new-lead notice, no digest.

        Email only, whatever the recipient's lead-notification channels: it is not a lead
        notification and arrives once per transfer. The moved member is not told about itself.
        """
        if self.staff is None or Channel.EMAIL not in self.senders:
            return
        staff = [w for w in await self.staff.team_staff(event.account_id) if w.agent_id != event.payload.agent_id]
        await _all(
            self._deliver(event, raw, who.agent_id, Channel.EMAIL, team_member_email(event, who, self.crm_base_url))
            for who in staff
            if who.email
        )

    async def _deliver(
        self, event: RoutingEvent, raw: bytes, agent_id: str, channel: Channel, content: Content
    ) -> None:
        key = f"{event.event_id}:{channel}:{agent_id}"
        state = await self.deliveries.begin(key, channel=channel, now_ms=self._now_ms())
        if state is not Begin.SEND:
            self.metrics.skipped.labels(channel, state).inc()
            return
        sender = self.senders[channel]
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential_jitter(multiplier=self.retry.initial_seconds, max=self.retry.max_seconds),
            retry=retry_if_exception_type(TransientDeliveryError),
            before_sleep=lambda s: self._count_retry(channel, s),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await sender.send(content, message_id=key)
        except DeliveryError as exc:
            await self.dead_letters.publish(raw, account_id=event.account_id, channel=channel, agent_id=agent_id,
                                            error=exc)
            await self.deliveries.failed(key, reason=exc.reason, now_ms=self._now_ms())
            self.metrics.failed.labels(channel, exc.reason).inc()
            log.warning("%s %s dead-lettered: %s", event.type, channel, exc,
                        extra={"event_id": str(event.event_id), "channel": channel})
            return
        await self.deliveries.sent(key, now_ms=self._now_ms())
        self.metrics.sent.labels(channel).inc()
        self.metrics.latency.labels(channel).observe(max(0.0, (self.clock() - event.occurred_at).total_seconds()))
        log.info("%s %s sent", event.type, channel, extra={"event_id": str(event.event_id), "channel": channel})

    def _count_retry(self, channel: Channel, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        reason = error.reason if isinstance(error, DeliveryError) else "unknown"
        self.metrics.retries.labels(channel, reason).inc()

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class DigestSender:
    """Sends the due daily digest once per (day, account, subscriber); safe to run on every replica."""

    items: DigestStore
    subscribers: Subscribers
    deliveries: Deliveries
    mailer: Sender
    metrics: NotifierMetrics
    crm_base_url: str
    hour_utc: int
    clock: Callable[[], datetime]

    async def run_once(self) -> int:
        window = due_window(self.clock(), hour_utc=self.hour_utc)
        sent = 0
        for account_id in await self.items.accounts(window):
            items = distinct_leads(await self.items.in_window(account_id, window))
            for who in await self.subscribers.digest_subscribers(account_id):
                email = digest_email(items, who, window, self.crm_base_url)
                key = f"digest:{account_id}:{window.day.isoformat()}:email:{who.agent_id}"
                if email is None:
                    continue
                if await self.deliveries.begin(key, channel="email", now_ms=self._now_ms()) is not Begin.SEND:
                    continue
                try:
                    await self.mailer.send(email, message_id=key)
                except PermanentDeliveryError as exc:
                    await self.deliveries.failed(key, reason=exc.reason, now_ms=self._now_ms())
                    self.metrics.failed.labels("email", exc.reason).inc()
                    continue
                except TransientDeliveryError as exc:
                    # Left pending: a later run takes it over once its lease has run out.
                    self.metrics.retries.labels("email", exc.reason).inc()
                    continue
                await self.deliveries.sent(key, now_ms=self._now_ms())
                self.metrics.sent.labels("email").inc()
                sent += 1
        return sent

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)


def _group(event: RoutingEvent) -> str:
    """Events of one lead stay in order; an event about no lead is on its own."""
    if isinstance(event, TeamMemberTransferred):
        return f"event:{event.event_id}"
    return f"lead:{event.payload.lead_id}"


async def _all(deliveries: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run deliveries concurrently; each finishes (or fails) on its own before any error is raised.

    Only infrastructure errors (MongoDB, Kafka) get here: re-raised so the message is processed
    again; the deliveries already made are skipped by their log record.
    """
    results = await asyncio.gather(*deliveries, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
