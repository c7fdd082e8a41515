"""Composition root of the notifier process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from leadflow_notifier.adapters.dead_letters import KafkaDeadLetters
from leadflow_notifier.adapters.providers import FcmPush, TwilioSms
from leadflow_notifier.adapters.repository import (
    AccountSchedules,
    AgentDirectory,
    DeliveryLog,
    DigestItems,
    LeadErasure,
    Leases,
    OfferContactPolicies,
    PushDevices,
    RecipientCache,
    SubscriberCache,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.messages import AcceptLinks
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.entrypoints import kafka
from leadflow_notifier.handlers import Courier, DigestSender, Notifier, Redriver, RetryPolicy, Sender
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared import topics
from leadflow_shared.account_config import ContactDetails
from leadflow_shared.background import every
from leadflow_shared.clock import epoch_ms
from leadflow_shared.service import ServiceRuntime, Worker
from leadflow_shared.ttl_cache import TtlCache


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: NotifierSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="notifier")
    metrics = NotifierMetrics(runtime.registry)
    # One pooled client for both providers; closed once the broker has drained in-flight sends.
    http = httpx.AsyncClient(headers={"User-Agent": "leadflow-notifier"})
    mailer = SmtpMailer(settings.smtp)
    runtime.on_shutdown(http.aclose)
    runtime.on_shutdown(mailer.close)
    senders = _senders(settings, http, mailer)
    retry = RetryPolicy(
        settings.delivery.attempts, settings.delivery.retry_initial_seconds, settings.delivery.retry_max_seconds
    )
    # One set of leases per process: every delivery it starts is renewed until it ends (decision 0021).
    leases = Leases(lease_ms=int(settings.delivery.lease_seconds * 1000))
    dead_letters = KafkaDeadLetters(runtime.broker, topics.LEADS_EVENTS)

    async def indexes(db: AsyncDatabase[Any]) -> None:
        await ensure_indexes(db, delivery_days=settings.delivery.keep_days, digest_days=settings.digest.keep_days)

    runtime.on_startup(indexes)

    _renew_leases(runtime, leases)

    recipients = RecipientCache(settings.directory_cache_seconds)
    contact_policies = TtlCache[str, ContactDetails](settings.directory_cache_seconds)
    subscriber_lists = SubscriberCache(settings.directory_cache_seconds)

    def notifier() -> Notifier:
        directory = AgentDirectory(runtime.db, cache=recipients, subscribers=subscriber_lists)
        policies = OfferContactPolicies(runtime.db, cache=contact_policies)
        deliveries = DeliveryLog(runtime.db, leases=leases, marks_on_the_way=lambda: mailer.unmarked.held)
        erasure = LeadErasure(runtime.db)
        return Notifier(
            directory=directory,
            deliveries=deliveries,
            replays=deliveries,
            senders=senders,
            dead_letters=dead_letters,
            metrics=metrics,
            pages_url=settings.pages_url,
            clock=_now,
            retry=retry,
            digest=DigestItems(runtime.db),
            staff=directory,
            devices=PushDevices(runtime.db),
            accept_links=AcceptLinks(settings.crm_base_url, settings.offer_link_secret),
            offer_policies=policies,
            erasure=erasure,
            erasures=erasure,
            brokers=directory,
        )

    kafka.subscribe(
        runtime, notifier, group_id=settings.consumer_group, concurrency=settings.delivery.concurrency,
        batch_size=settings.delivery.batch_size,
    )  # fmt: skip

    # Always on: it is what finishes a delivery whose process died (N3 with crashes).
    runtime.run_in_background(_redrive(runtime, settings, leases, senders, dead_letters, metrics, retry))
    if settings.digest.enabled:
        runtime.run_in_background(_digests(runtime, settings, leases, mailer, metrics))
    app = runtime.app(title="leadflow notifier", version="0.1.0")
    app.state.runtime = runtime
    return app


def _senders(settings: NotifierSettings, http: httpx.AsyncClient, mailer: SmtpMailer) -> dict[Channel, Sender]:
    senders: dict[Channel, Sender] = {Channel.EMAIL: mailer}
    if settings.sms.enabled:
        senders[Channel.SMS] = TwilioSms(settings.sms, http)
    if settings.push.enabled:
        senders[Channel.PUSH] = FcmPush(settings.push, http)
    return senders


def _renew_leases(runtime: ServiceRuntime, leases: Leases) -> None:
    """The renewer outlives the background workers: it stops only once the broker has drained the
    in-flight batches, so no delivery still in progress loses its lease during a graceful stop."""
    renewing = asyncio.Event()
    renewer: list[asyncio.Task[None]] = []

    async def start_renewing(db: AsyncDatabase[Any]) -> None:
        deliveries = DeliveryLog(db, leases=leases)
        renewing.clear()
        renewer.append(
            asyncio.create_task(
                _every(leases.renew_seconds, renewing, "lease renewal", lambda: deliveries.renew(now_ms=_now_ms()))
            )
        )

    async def stop_renewing() -> None:
        renewing.set()
        while renewer:
            await renewer.pop()

    runtime.on_startup(start_renewing)
    runtime.on_shutdown(stop_renewing)


def _digests(
    runtime: ServiceRuntime, settings: NotifierSettings, leases: Leases, mailer: SmtpMailer, metrics: NotifierMetrics
) -> Worker:
    async def digests(stopping: asyncio.Event) -> None:
        sender = DigestSender(
            items=DigestItems(runtime.db),
            subscribers=AgentDirectory(runtime.db),
            schedules=AccountSchedules(runtime.db),
            deliveries=DeliveryLog(runtime.db, leases=leases),
            mailer=mailer,
            metrics=metrics,
            pages_url=settings.pages_url,
            default_hour=settings.digest.default_hour,
            clock=_now,
            erasures=LeadErasure(runtime.db),
        )
        await _every(settings.digest.check_seconds, stopping, "daily digest run", sender.run_once)

    return digests


def _redrive(
    runtime: ServiceRuntime,
    settings: NotifierSettings,
    leases: Leases,
    senders: dict[Channel, Sender],
    dead_letters: KafkaDeadLetters,
    metrics: NotifierMetrics,
    retry: RetryPolicy,
) -> Worker:
    async def redrive(stopping: asyncio.Event) -> None:
        deliveries = DeliveryLog(runtime.db, leases=leases)
        courier = Courier(
            deliveries=deliveries,
            senders=senders,
            dead_letters=dead_letters,
            metrics=metrics,
            devices=PushDevices(runtime.db),
            clock=_now,
            retry=retry,
        )
        redriver = Redriver(
            deliveries=deliveries,
            courier=courier,
            metrics=metrics,
            max_drives=settings.delivery.max_drives,
            batch=settings.delivery.redrive_batch,
        )

        async def drain() -> None:
            # A full batch means more may be due: go on at once.
            while await redriver.run_once() >= redriver.round_size and not stopping.is_set():
                pass

        await _every(settings.delivery.redrive_seconds, stopping, "re-drive", drain)

    return redrive


async def _every(seconds: float, stopping: asyncio.Event, what: str, step: Callable[[], Awaitable[object]]) -> None:
    await every(seconds, stopping, step, what=what, quiet=(PyMongoError,))  # an outage: no stack every round


def _now_ms() -> int:
    return epoch_ms(_now())
