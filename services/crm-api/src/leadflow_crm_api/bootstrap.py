"""Composition root of the crm-api process."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query, status

from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.api import LeadPage, LeadPublic, lead_public
from leadflow_crm_api.domain.views import LeadTab, decode_cursor, encode_cursor
from leadflow_crm_api.handlers import project
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared import topics
from leadflow_shared.events.routing import LEAD_EVENT
from leadflow_shared.service import ServiceRuntime

AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
LeadId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def create_app(settings: CrmApiSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="crm-api")
    runtime.on_startup(ensure_indexes)

    async def handle(body: bytes) -> None:
        await project(LEAD_EVENT.validate_json(body), views=LeadViews(runtime.db))

    runtime.consume(topics.LEADS_EVENTS, group_id=settings.consumer_group, handle=handle)

    app = runtime.app(title="leadflow crm-api", version="0.1.0")

    @app.get("/v1/accounts/{account_id}/leads", tags=["brokerage CRM"])
    async def list_leads(
        account_id: AccountId,
        tab: LeadTab = LeadTab.ALL,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> LeadPage:
        """V1: the brokerage's leads, newest first; `tab=mine` keeps only leads it still holds."""
        try:
            after = decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor: not a cursor from this API") from exc
        docs = await LeadViews(runtime.db).list(account_id, tab=tab, limit=limit + 1, after=after)
        page, more = docs[:limit], len(docs) > limit
        next_cursor = encode_cursor(page[-1]["created_ms"], page[-1]["_id"]) if more else None
        return LeadPage(items=[lead_public(d) for d in page], next_cursor=next_cursor)

    @app.get("/v1/accounts/{account_id}/leads/{lead_id}", tags=["brokerage CRM"])
    async def get_lead(account_id: AccountId, lead_id: LeadId) -> LeadPublic:
        doc = await LeadViews(runtime.db).get(account_id, lead_id)
        if doc is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "lead not found")
        return lead_public(doc)

    return app
