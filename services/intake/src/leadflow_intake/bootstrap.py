"""Composition root of the intake process."""

from __future__ import annotations

from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_intake.adapters import idempotency
from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.entrypoints import http, kafka
from leadflow_intake.handlers import Intake, Webhook
from leadflow_intake.metrics import IntakeMetrics
from leadflow_intake.settings import IntakeSettings
from leadflow_shared import topics
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.mongo import Document
from leadflow_shared.service import NotStartedError, ServiceRuntime


def webhooks(settings: IntakeSettings) -> dict[str, Webhook]:
    return {
        name: Webhook(
            name=name,
            format=provider.format,
            secrets=[s.get_secret_value().encode() for s in provider.secrets],
            source_name=provider.source_name or name,
            accounts=frozenset(provider.accounts),
        )
        for name, provider in settings.webhook_providers().items()
    }


def create_app(settings: IntakeSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="intake")
    metrics = IntakeMetrics(runtime.registry)
    publish = runtime.publisher(
        topics.LEADS_INTAKE,
        LeadReceived,
        description="Every lead intake accepted, from any way in, normalized: the router routes it.",
    )
    wired: list[Intake] = []  # filled once MongoDB is open (the client is bound to the running loop)

    async def wire(db: AsyncDatabase[Document]) -> None:
        accounts = MongoAccounts(db, fallback_region=settings.default_region, ttl=settings.account_cache_seconds)
        await idempotency.ensure_indexes(db, keep_days=settings.idempotency_days)
        wired[:] = [Intake(accounts=accounts, store=MongoIdempotencyStore(db), publish=publish)]

    def intake() -> Intake:
        if not wired:
            raise NotStartedError("intake is not started")
        return wired[0]

    runtime.on_startup(wire)
    if settings.consume_inbound:
        accept_unsigned = settings.partners.unsigned == "accept"
        signed = kafka.signed_by_its_partner(settings.partner_keys(), accept_unsigned=accept_unsigned, metrics=metrics)
        kafka.subscribe(
            runtime, intake=intake, metrics=metrics, group_id=settings.consumer_group,
            max_bytes=settings.max_body_bytes, admit=signed,
        )  # fmt: skip
    app = runtime.app(
        title="leadflow intake",
        version="1.0.0",
        description="Leads in: website forms, listing inquiries and lead-generation webhooks over HTTP; "
        "partners on Kafka (leads.inbound.v1, see /asyncapi.json).",
    )
    app.state.runtime = runtime
    http.install(
        app, intake=intake, webhooks=webhooks(settings), metrics=metrics, max_body_bytes=settings.max_body_bytes,
        tolerance_seconds=settings.webhooks.tolerance_seconds,
    )  # fmt: skip
    return app
