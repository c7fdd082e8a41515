"""Composition root of the router process."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query

from leadflow_router.adapters.mongo import AccountSnapshots, Contacts, Erasures, LeadRecords, Rotations, ensure_indexes
from leadflow_router.domain.model import RoutingRejected
from leadflow_router.entrypoints import kafka
from leadflow_router.handlers import RouterService, clock_from, utc_now
from leadflow_router.metrics import RouterMetrics
from leadflow_router.settings import RouterSettings
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared import topics
from leadflow_shared.kafka import publisher
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

    kafka.subscribe(runtime, service, group_id=settings.consumer_group, intake_batch=settings.intake_batch)

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
