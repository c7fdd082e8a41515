"""The router's HTTP edge: internal routes for crm-api: "who is next" (decision 0038) and a lead's
routing decisions ("why this agent", issue 15)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query

from leadflow_router.domain.model import RoutingRejected
from leadflow_router.handlers import RouterService

AccountId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def install(app: FastAPI, service: Callable[[], RouterService]) -> None:
    @app.get("/internal/v1/accounts/{account_id}/leads/{lead_id}/routing", tags=["internal"])
    async def routing_info(account_id: AccountId, lead_id: uuid.UUID) -> dict[str, Any]:
        """For crm-api only (no authentication: keep it on the internal network): the lead's latest
        routing decisions, oldest first: the rules tried, who was chosen, skipped and why, the rotation."""
        try:
            decisions = await service().routing_of(account_id, str(lead_id))
        except RoutingRejected as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
        return {"lead_id": str(lead_id), "decisions": [d.model_dump(mode="json") for d in decisions]}

    @app.get("/internal/v1/accounts/{account_id}/next-up", tags=["internal"])
    async def who_is_next(
        account_id: AccountId,
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
