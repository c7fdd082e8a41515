"""Composition root of the notifier process."""

from __future__ import annotations

from fastapi import FastAPI

from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.handlers import notify
from leadflow_notifier.settings import NotifierSettings
from leadflow_shared import topics
from leadflow_shared.events.routing import LEAD_EVENT
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

    runtime.consume(topics.LEADS_EVENTS, group_id=settings.consumer_group, handle=handle)

    return runtime.app(title="leadflow notifier", version="0.1.0")
