"""Composition root of the notifier process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI

from leadflow_notifier.adapters.dead_letters import KafkaDeadLetters
from leadflow_notifier.adapters.providers import FcmPush, TwilioSms
from leadflow_notifier.adapters.repository import (
    AgentDirectory,
    DeliveryLog,
    DigestItems,
    RecipientCache,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import DigestSender, Notifier, RetryPolicy, Sender
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT
from leadflow_shared.kafka import BatchRejections
from leadflow_shared.service import ServiceRuntime

log = logging.getLogger(__name__)


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
    senders: dict[Channel, Sender] = {Channel.EMAIL: mailer}
    if settings.sms.enabled:
        senders[Channel.SMS] = TwilioSms(settings.sms, http)
    if settings.push.enabled:
        senders[Channel.PUSH] = FcmPush(settings.push, http)
    retry = RetryPolicy(
        settings.delivery.attempts, settings.delivery.retry_initial_seconds, settings.delivery.retry_max_seconds
    )
    lease_ms = int(settings.delivery.lease_seconds * 1000)
    dead_letters = KafkaDeadLetters(runtime.broker, topics.LEADS_EVENTS)
    runtime.on_startup(ensure_indexes)

    recipients: RecipientCache = {}

    def notifier() -> Notifier:
        directory = AgentDirectory(runtime.db, cache=recipients, ttl_seconds=settings.directory_cache_seconds)
        return Notifier(
            directory=directory,
            deliveries=DeliveryLog(runtime.db, lease_ms=lease_ms),
            senders=senders,
            dead_letters=dead_letters,
            metrics=metrics,
            crm_base_url=settings.crm_base_url,
            clock=_now,
            retry=retry,
            digest=DigestItems(runtime.db),
            staff=directory,
        )

    async def handle_one(body: bytes) -> None:
        await notifier().notify(ROUTING_EVENT.validate_json(body), body)

    async def handle_batch(bodies: list[bytes]) -> BatchRejections:
        return await notifier().notify_batch(bodies, concurrency=settings.delivery.concurrency)

    # Batches: deliveries of different leads overlap instead of queueing one by one (P2).
    runtime.consume_batches(
        topics.LEADS_EVENTS, group_id=settings.consumer_group, handle_batch=handle_batch, handle_one=handle_one,
        max_records=settings.delivery.batch_size,
    )

    async def digests(stopping: asyncio.Event) -> None:
        sender = DigestSender(
            items=DigestItems(runtime.db), subscribers=AgentDirectory(runtime.db),
            deliveries=DeliveryLog(runtime.db, lease_ms=lease_ms), mailer=mailer, metrics=metrics,
            crm_base_url=settings.crm_base_url, hour_utc=settings.digest.hour_utc, clock=_now,
        )
        while not stopping.is_set():
            try:
                await sender.run_once()
            except Exception:  # a background loop's edge: logged, tried again next round
                log.exception("daily digest run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=settings.digest.check_seconds)

    if settings.digest.enabled:
        runtime.run_in_background(digests)
    return runtime.app(title="leadflow notifier", version="0.1.0")
