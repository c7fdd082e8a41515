"""Composition root of the router process."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_router.adapters.mongo import (
    AccountSnapshots,
    Capacity,
    Contacts,
    Erasures,
    LeadRecords,
    Rotations,
    ensure_indexes,
)
from leadflow_router.entrypoints import http, kafka
from leadflow_router.handlers import RouterService, clock_from, utc_now
from leadflow_router.metrics import RouterMetrics
from leadflow_router.settings import RouterSettings
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared import topics
from leadflow_shared.events.routing import RoutingEvent
from leadflow_shared.http_bodies import BodyLimits
from leadflow_shared.json_bodies import JsonBounds
from leadflow_shared.mongo import Document
from leadflow_shared.service import ServiceRuntime

# The internal API's bodies (the dry-run: a lead and a draft rule set, which crm-api took in at most 1 MiB and
# sends on re-encoded): bounded, and strict JSON with crm-api's integers, before the route reads them (0083).
# A departure waits for every replica's snapshot cache, and this much more for a save still landing (RouterService).
DEPARTURE_MARGIN_SECONDS = 0.5
BODY_LIMITS = BodyLimits(max_bytes=4 * 1024 * 1024, json=JsonBounds(max_depth=32, int_bits=64, max_errors=5))


def create_app(settings: RouterSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="router")

    async def token_required(_db: AsyncDatabase[Document]) -> None:
        # Built without a token (the AsyncAPI document, the manifests' checks), the app never serves without one.
        settings.require_api_token()

    runtime.on_startup(token_required)
    runtime.on_startup(ensure_indexes)
    metrics = RouterMetrics(runtime.registry)
    publish = runtime.publisher(
        topics.LEADS_EVENTS,
        RoutingEvent,
        description="What the router decided about each lead (offers, claims, expiries, transfers, erasures): "
        "the notifier tells people, crm-api projects its views.",
    )
    services: list[RouterService] = []
    alarm = Alarm()
    clock = utc_now if settings.clock_start is None else clock_from(settings.clock_start, settings.clock_rate)

    def service() -> RouterService:
        # Built on first use: the MongoDB client opens in the lifespan, inside the loop.
        if not services:
            db = runtime.db
            services.append(
                RouterService(
                    records=LeadRecords(db, unreadable=metrics.unreadable_records),
                    accounts=AccountSnapshots(db, settings.config_cache_seconds),
                    departures_settle_seconds=settings.config_cache_seconds + DEPARTURE_MARGIN_SECONDS,
                    contacts=Contacts(db),
                    rotations=Rotations(db),
                    publish=publish,
                    metrics=metrics,
                    clock=clock,
                    sweep_batch=settings.sweep_batch,
                    erasures=Erasures(db),
                    capacity=Capacity(db),
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

    app = runtime.app(title="leadflow router", version="0.1.0", body_limits=BODY_LIMITS)
    app.state.runtime = runtime

    http.install(app, service, tokens=http.ServiceTokens(settings.api_tokens))
    return app
