"""Composition root of the router process."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from leadflow_router.adapters.repository import MongoAccounts, MongoRoutingRecords
from leadflow_router.handlers import route_lead
from leadflow_router.settings import RouterSettings
from leadflow_shared import topics
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import publisher
from leadflow_shared.service import ServiceRuntime


def create_app(settings: RouterSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="router")

    publish = publisher(runtime.broker, topics.LEADS_EVENTS)

    async def handle(body: bytes) -> None:
        await route_lead(
            LeadReceived.model_validate_json(body),
            accounts=MongoAccounts(runtime.db),
            records=MongoRoutingRecords(runtime.db),
            publish=publish,
            now=datetime.now(UTC),
        )

    runtime.consume(topics.LEADS_INTAKE, group_id=settings.consumer_group, handle=handle)

    return runtime.app(title="leadflow router", version="0.1.0")
