"""The router's HTTP edge: one internal route, for crm-api ("who is next", decision 0038)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query

from leadflow_router.domain.model import RoutingRejected
from leadflow_router.handlers import RouterService


def install(app: FastAPI, service: Callable[[], RouterService]) -> None:
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
