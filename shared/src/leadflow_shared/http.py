"""Operational HTTP routes every service serves: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import uvicorn
from fastapi import FastAPI, Response, status
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import ServerState

from leadflow_shared.metrics import CONTENT_TYPE_LATEST, ServiceMetrics, render
from leadflow_shared.settings import HttpSettings

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]


def add_operational_routes(
    app: FastAPI,
    *,
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    liveness: Callable[[], None] = lambda: None,
    metrics: ServiceMetrics | None = None,
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
            if metrics is not None:
                metrics.readiness(False)
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return {"status": "unavailable", "reason": type(exc).__name__}
        if metrics is not None:
            metrics.readiness(True)
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def exposition() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware counting every HTTP response by route template (never the raw path: a
    scanner's random URLs would each make a series) and timing it to the response's start."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = "500"  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
                self.metrics.http_seconds.labels(self.metrics.service, _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.http_requests.labels(self.metrics.service, _route(scope), scope["method"], code).inc()


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def serve(app: FastAPI, settings: HttpSettings, *, graceful_seconds: float = 20.0) -> None:
    """Run `app` until SIGTERM/SIGINT; uvicorn then drains requests and runs the lifespan's shutdown."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_seconds),
        # h11, never httptools: httptools answers some malformed requests itself with a bare text/plain
        # 400, before leadflow's problem+json handling sees them (decision 0054).
        http="h11",
    )
    config.load_app()
    server = QuietServer(config)
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT, re-raised by uvicorn after its shutdown (as uvicorn.run)
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


class QuietServer(uvicorn.Server):
    """uvicorn's server without its tick: uvicorn wakes 10 times a second to see whether it should
    exit and to refresh its Date header; this one sleeps until told to exit, and dates each
    request's response when the request arrives (decision 0055). It does not do what else the tick
    did (`limit_max_requests`, `callback_notify`), which leadflow does not use."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit = False
        super().__init__(config)
        self.server_state = _DatedServerState()

    @property  # uvicorn's plain attribute, made to wake the main loop
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._loop is not None and self._exit is not None and not self._loop.is_closed():
            # Set from a signal handler, which runs between any two bytecodes: hand it to the loop.
            self._loop.call_soon_threadsafe(self._exit.set)

    async def main_loop(self) -> None:
        self._loop, self._exit = asyncio.get_running_loop(), asyncio.Event()
        self.server_state.default_headers = self.config.encoded_headers  # what uvicorn's first tick sets
        if not self._should_exit:
            await self._exit.wait()


class _DatedServerState(ServerState):
    """Default headers with a Date of the second each request arrives in (RFC 9110 6.6.1)."""

    def __init__(self) -> None:
        self._others: list[tuple[bytes, bytes]] = []
        super().__init__()

    @property  # uvicorn's plain attribute, read as each response starts
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"date", http_date()), *self._others]

    @default_headers.setter
    def default_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._others = [(name, value) for name, value in headers if name != b"date"]


@functools.lru_cache(maxsize=1)
def _formatted(second: int) -> bytes:
    return formatdate(second, usegmt=True).encode()


def http_date() -> bytes:
    """The current time as an HTTP Date header value, formatted once per second."""
    return _formatted(int(time.time()))
