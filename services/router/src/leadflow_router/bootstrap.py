"""Composition root of the router process."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import ValidationError

from leadflow_router.adapters.mongo import AccountSnapshots, Contacts, Erasures, LeadRecords, Rotations, ensure_indexes
from leadflow_router.domain.model import RoutingRejected
from leadflow_router.handlers import RouterService, clock_from, utc_now
from leadflow_router.metrics import RouterMetrics
from leadflow_router.settings import RouterSettings
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared import topics, tracing
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.commands import LEAD_COMMAND
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import BatchRejections, Incoming, publisher
from leadflow_shared.service import ServiceRuntime


def create_app(settings: RouterSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="router")
    runtime.on_startup(ensure_indexes)
    metrics = RouterMetrics(runtime.registry)
    publish = publisher(runtime.broker, topics.LEADS_EVENTS)
    services: list[RouterService] = []
    alarm = Alarm()
    clock = utc_now if settings.clock_start is None else clock_from(settings.clock_start, settings.clock_rate)

    def service() -> RouterService:
        # Built on first use: the MongoDB client opens in the lifespan, inside the loop.
        if not services:
            db = runtime.db
            services.append(
                RouterService(
                    records=LeadRecords(db),
                    accounts=AccountSnapshots(db, settings.config_cache_seconds),
                    contacts=Contacts(db),
                    rotations=Rotations(db),
                    publish=publish,
                    metrics=metrics,
                    clock=clock,
                    sweep_batch=settings.sweep_batch,
                    erasures=Erasures(db),
                    on_deadline=alarm.at,
                )
            )
        return services[0]

    # With headers: each lead's events go out in the trace of the record that brought it (tracing).
    async def on_lead_received(message: Incoming) -> None:
        event = LeadReceived.model_validate_json(message.body)
        await service().on_lead_received(event, trace=tracing.traceparent(message.headers))

    async def on_leads_received(messages: list[Incoming]) -> BatchRejections:
        events: list[LeadReceived] = []
        traces: list[str | None] = []
        positions: list[int] = []
        rejections: BatchRejections = []
        for index, message in enumerate(messages):
            try:
                events.append(LeadReceived.model_validate_json(message.body))
                traces.append(tracing.traceparent(message.headers))
                positions.append(index)
            except ValidationError as exc:
                rejections.append((index, exc))
        routed = await service().on_leads_received(events, traces=traces)
        return rejections + [(positions[index], exc) for index, exc in routed]

    async def on_activity(body: bytes) -> None:
        await service().on_activity(LeadActivity.model_validate_json(body))

    runtime.consume_batches_with_headers(
        topics.LEADS_INTAKE,
        group_id=settings.consumer_group,
        handle_batch=on_leads_received,
        handle_one=on_lead_received,
        max_records=settings.intake_batch,
    )

    async def on_command(body: bytes) -> None:
        await service().on_command(LEAD_COMMAND.validate_json(body))

    runtime.consume(topics.LEADS_ACTIVITY, group_id=settings.consumer_group, handle=on_activity)
    runtime.consume(topics.LEADS_COMMANDS, group_id=settings.consumer_group, handle=on_command)

    async def sweeper(stopping: asyncio.Event) -> None:
        await sweep(
            service(), stopping, alarm=alarm, idle_seconds=settings.sweep_idle_seconds, clock_rate=settings.clock_rate
        )

    if settings.sweeper:
        runtime.run_in_background(sweeper)

    app = runtime.app(title="leadflow router", version="0.1.0")

    @app.get("/internal/v1/accounts/{account_id}/next-up", tags=["internal"])
    async def who_is_next(
        account_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
        source: Annotated[str, Query(min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        """For crm-api only (no authentication: keep it on the internal network): who the next general
        lead of `source` goes to, and why the others would not get it."""
        try:
            up = await service().next_up(account_id, source)
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {
            "source": up.source,
            "lead_group": up.lead_group,
            "round_robin": up.round_robin,
            "next": list(up.next),
            "eligible": [a.agent_id for a in up.eligibility.eligible],
            "skipped": [{"agent_id": a, "reason": why} for a, why in up.eligibility.skipped],
        }

    return app
