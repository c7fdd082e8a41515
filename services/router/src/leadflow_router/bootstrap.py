"""Composition root of the router process."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI
from faststream.kafka import KafkaMessage

from leadflow_router.adapters.repository import MongoAccounts, MongoRoutingRecords
from leadflow_router.handlers import route_lead
from leadflow_router.settings import RouterSettings
from leadflow_shared import topics
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import consumer_options
from leadflow_shared.service import ServiceRuntime


def create_app(settings: RouterSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="router")
    broker = runtime.broker

    async def publish(account_id: str, raw: bytes) -> None:
        await broker.publish(raw, topics.LEADS_EVENTS, key=account_id.encode(),
                             headers={"content-type": "application/json"})

    async def handle(body: bytes) -> None:
        await route_lead(
            LeadReceived.model_validate_json(body),
            accounts=MongoAccounts(runtime.db),
            records=MongoRoutingRecords(runtime.db),
            publish=publish,
            now=datetime.now(UTC),
        )

    @broker.subscriber(topics.LEADS_INTAKE, **consumer_options(settings.consumer_group))
    async def on_lead_received(message: KafkaMessage) -> None:
        await runtime.guard.run(message, handle)

    return runtime.app(title="leadflow router", version="0.1.0")
