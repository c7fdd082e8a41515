"""Composition root of the crm-api process: projection consumer, publishers, auth, the HTTP app."""

from __future__ import annotations

from fastapi import FastAPI

from leadflow_crm_api.adapters.callers import Callers
from leadflow_crm_api.adapters.leads import ensure_indexes
from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.entrypoints import http, kafka
from leadflow_crm_api.metrics import CrmMetrics
from leadflow_crm_api.problems import PROBLEM_RESPONSES
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared import topics
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.commands import LeadCommand
from leadflow_shared.service import ServiceRuntime


def create_app(settings: CrmApiSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="crm-api")
    runtime.on_startup(ensure_indexes)
    kafka.subscribe(runtime, CrmMetrics(runtime.registry), group_id=settings.consumer_group)

    # No HTML documentation pages (FastAPI's load a CDN's script and run inline ones, which crm-api's policy
    # refuses, decision 0092): /openapi.json is the contract, for any OpenAPI viewer.
    app = runtime.app(
        title="leadflow crm-api", version="0.1.0", responses=PROBLEM_RESPONSES, docs_url=None, redoc_url=None
    )
    http.install(app, max_body_bytes=settings.max_body_bytes)
    app.state.runtime = runtime
    app.state.callers = Callers(TokenVerifier(settings), lambda: runtime.db, ttl=settings.auth.member_cache_seconds)
    app.state.digest_default_hour = settings.digest_default_hour
    app.state.publish_activity = runtime.publisher(
        topics.LEADS_ACTIVITY,
        LeadActivity,
        description="What a user did on a lead in the CRM (a note, a call, an accept): the router decides claims (R8).",
    )
    app.state.publish_command = runtime.publisher(
        topics.LEADS_COMMANDS,
        LeadCommand,
        description="What a broker or admin asked the router to do: transfers, sharing, distribution by hand, "
        "releasing a departed agent's leads, inviting a realtor, erasing a contact.",
    )
    return app
