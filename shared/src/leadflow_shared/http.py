"""Operational HTTP routes every service serves: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Response, status
from prometheus_client import CollectorRegistry

from leadflow_shared.metrics import CONTENT_TYPE_LATEST, render
from leadflow_shared.settings import HttpSettings

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]


def add_operational_routes(
    app: FastAPI,
    *,
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    liveness: Callable[[], None] = lambda: None,
    timeout: float = 2.0,
) -> None:
    @app.get("/health/live", tags=["operations"])
    async def live(response: Response) -> dict[str, str]:
        """The process is up and serving HTTP, and nothing it cannot recover from happened."""
        try:
            liveness()
        except Exception as exc:  # noqa: BLE001 (reported, not raised: the orchestrator restarts the process)
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return {"status": "failed", "reason": str(exc)}
        return {"status": "ok"}

    @app.get("/health/ready", tags=["operations"])
    async def ready(response: Response) -> dict[str, str]:
        """Kafka and MongoDB answer: the service can do its work."""
        try:
            await asyncio.wait_for(readiness(), timeout)
        except Exception as exc:  # noqa: BLE001 (any failure means "not ready", reported not raised)
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return {"status": "unavailable", "reason": type(exc).__name__}
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


def serve(app: FastAPI, settings: HttpSettings, *, graceful_seconds: float = 20.0) -> None:
    """Run `app` until SIGTERM/SIGINT; uvicorn then drains requests and runs the lifespan's shutdown."""
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_seconds),
    )
