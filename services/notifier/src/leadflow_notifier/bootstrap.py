"""Composition root of the notifier process."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.kafka import KafkaMessage

from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.handlers import notify
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared import topics
from leadflow_shared.events.routing import LEAD_EVENT
from leadflow_shared.kafka import consumer_options
from leadflow_shared.service import ServiceRuntime


def create_app(settings: NotifierSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="notifier")
    mailer = SmtpMailer(settings.smtp)

    async def handle(body: bytes) -> None:
        await notify(
            LEAD_EVENT.validate_json(body),
            agents=AgentDirectory(runtime.db),
            deliveries=DeliveryLog(runtime.db),
            mailer=mailer,
            crm_base_url=settings.crm_base_url,
        )

    @runtime.broker.subscriber(topics.LEADS_EVENTS, **consumer_options(settings.consumer_group))
    async def on_lead_event(message: KafkaMessage) -> None:
        await runtime.guard.run(message, handle)

    return runtime.app(title="leadflow notifier", version="0.1.0")
