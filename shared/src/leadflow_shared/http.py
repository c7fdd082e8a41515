"""Every service's HTTP: the operational routes (liveness, readiness, Prometheus metrics), the request
layer on every app (`ServiceApp`: the headers of every answer; `RequestMetrics`: metrics and the body's
deadline) and the server (`serve`: uvicorn on httptools with a deadline for each request head (`http_protocol`), without
uvicorn's tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import cast

import uvicorn
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response, status
from prometheus_client import CollectorRegistry, Counter, Histogram
from pymongo.errors import PyMongoError
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import ServerState

from leadflow_shared.dead_letters import is_transient
from leadflow_shared.http_protocol import PROBLEM_TYPE_BASE, with_head_deadline
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


AnswerPolicy = Callable[[Scope, MutableHeaders], None]
"""What a service adds to the headers of each of its answers (`ServiceApp.answer_policy`): the request's scope
and the answer's headers, to change in place."""


class ServiceApp(FastAPI):
    """FastAPI with `RequestMetrics` outermost of the middleware added to it, whenever it was added: what
    a later middleware answers itself (intake's and crm-api's 413, crm-api's 422) is counted too, and
    every body read, theirs included, has the body's deadline.

    Every answer's headers are set in one place, `__call__`, around the whole app: Starlette's own 500 (sent by
    its outermost middleware, past every middleware the app adds), `RequestMetrics`' 408 and the tracing's
    middleware included. Each says `X-Content-Type-Options: nosniff` (a browser reads it as the type it was
    sent as, never as a script or a page it guessed), then the service's `answer_policy`, if it set one, adds
    its own (crm-api's: decision 0092)."""

    answer_policy: AnswerPolicy | None = None

    def build_middleware_stack(self) -> ASGIApp:
        self.user_middleware.sort(key=lambda middleware: cast(object, middleware.cls) is not RequestMetrics)  # stable
        return super().build_middleware_stack()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        policy = self.answer_policy

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])  # optional in ASGI
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if policy is not None:
                    policy(scope, headers)
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


RETRY_AFTER_SECONDS = 5  # what a 503 for an outage asks the client to wait before trying again


def answer_outages(app: FastAPI, respond: Callable[[str], Response]) -> None:
    """A request that meets an outage of MongoDB or Kafka (`is_transient`: the database unreachable, the broker
    away) is answered 503 with `Retry-After` and `respond(detail)`'s body, not 500: nothing is wrong with the
    request, and a client, a load balancer or a provider's webhook retries a 503 later. Any other error of
    theirs (a bug, a refused write) goes on to the app's 500 as before."""

    async def on_outage(_request: Request, exc: Exception) -> Response:
        if not is_transient(exc):
            raise exc
        log.warning("request met an outage: %s", type(exc).__name__)
        response = respond(f"A service leadflow needs is unavailable ({type(exc).__name__}); try again later.")
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    app.add_exception_handler(PyMongoError, on_outage)
    app.add_exception_handler(KafkaError, on_outage)


class BodyLate(BaseException):
    """Raised out of `receive` when the request's body has not all arrived by its deadline. A
    BaseException, like a cancellation: no handler of the app may answer it (FastAPI turns any
    Exception raised while it reads a body into a 400), only `RequestMetrics`, which answers 408."""


class _BodyInTime:
    """A request's `receive` with its body's deadline: until the body's last part (or a disconnect) has
    come, each wait for it ends at the deadline with `BodyLate`; after that, `receive` unchanged. One
    timer per wait that may block, none once the body is in. Notes whether the client left (`left`)."""

    __slots__ = ("_deadline", "_receive", "_whole", "left")

    def __init__(self, receive: Receive, deadline: float) -> None:
        self._receive, self._deadline, self._whole, self.left = receive, deadline, False, False

    async def __call__(self) -> Message:
        if self._whole:
            message = await self._receive()
            self.left = message["type"] == "http.disconnect"
            return message
        within = asyncio.timeout(self._deadline - time.perf_counter())
        try:
            async with within:
                message = await self._receive()
        except TimeoutError:
            if not within.expired():
                raise
            raise BodyLate from None
        self._whole = message["type"] != "http.request" or not message.get("more_body", False)
        self.left = message["type"] == "http.disconnect"
        return message


CLIENT_CLOSED = "499"  # nginx's status for a request its client left before the answer; never sent


def _request_timeout(body_seconds: float) -> tuple[Message, Message]:
    """The 408 for a body that did not arrive in time: RFC 9457 problem details, and the connection
    closed (what is still on its way of the body would be read as the next request)."""
    body = json.dumps({
        "type": PROBLEM_TYPE_BASE + "request-timeout",
        "title": "Request Timeout",
        "status": 408,
        "detail": f"The request body did not arrive within {body_seconds:g} s.",
    }).encode()  # fmt: skip
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    return (
        {"type": "http.response.start", "status": 408, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class RequestMetrics:
    """ASGI middleware, outermost on every service's app (`ServiceApp`): counts every HTTP response by
    route template (never the raw path: a scanner's random URLs would each make a series) and method (one
    not in `METHODS` is OTHER, for the same reason), times it to the response's start, and bounds the
    request's body: all of it within `body_seconds` of the request's start, else a 408 (decision 0071). A
    body late after the response started ends the request: uvicorn closes the connection. A client that
    leaves before its body is in is counted as 499, nginx's "client closed request", not as the server's
    error, and nothing is logged: there is nobody to answer."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, *, body_seconds: float) -> None:
        self.app = app
        self.metrics = metrics
        self.body_seconds = body_seconds
        # The series met so far, by label values: `labels` takes a lock and checks the values each time.
        # No more of them than the metrics' own children: route templates, `METHODS` and OTHER, status codes.
        self._counted: dict[tuple[str, str, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}

    def _count(self, route: str, method: str, code: str) -> None:
        key = (route, method, code)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.metrics.http_requests.labels(self.metrics.service, *key)
        counter.inc()

    def _time(self, route: str, seconds: float) -> None:
        histogram = self._timed.get(route)
        if histogram is None:
            histogram = self._timed[route] = self.metrics.http_seconds.labels(self.metrics.service, route)
        histogram.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = ""  # until the response starts; "500" if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
                self._time(_route(scope), time.perf_counter() - started)
            await send(message)

        body = _BodyInTime(receive, started + self.body_seconds)
        try:
            await self.app(scope, body, send_and_note)
        except BodyLate:
            if code:
                log.warning("request body late after the response started: connection closed")
                return
            for message in _request_timeout(self.body_seconds):
                await send_and_note(message)
        except ClientDisconnect:
            pass  # the client left (`body.left`): nobody to answer, nothing to log
        finally:
            unanswered = CLIENT_CLOSED if body.left else "500"
            self._count(_route(scope), _method(scope), code or unanswered)


# The methods counted by name; any other (a request line may carry any token) is counted as OTHER, so that
# a client cannot make a series per method it invents (each one memory in every replica and in Prometheus).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(scope: Scope) -> str:
    method = scope["method"]
    return method if method in METHODS else "OTHER"


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def server_config(app: FastAPI, settings: HttpSettings, *, graceful_seconds: float = 20.0) -> uvicorn.Config:
    """uvicorn's configuration of every service (`serve`)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(graceful_seconds),
        timeout_keep_alive=settings.keep_alive_seconds,  # decision 0103
        # No service reads a client's address or scheme from the request (cookies are `secure` by setting): uvicorn's
        # X-Forwarded-* rewriting is a layer on every request for nothing.
        proxy_headers=False,
        # httptools (llhttp, in C) with a deadline and a size bound for each request head and problem details
        # for what its parser refuses (`http_protocol`, decisions 0054 and 0071).
        http=with_head_deadline(settings.head_timeout_seconds),
    )


def serve(app: FastAPI, settings: HttpSettings, *, graceful_seconds: float = 20.0) -> None:
    """Run `app` until SIGTERM/SIGINT; uvicorn then drains requests and runs the lifespan's shutdown."""
    config = server_config(app, settings, graceful_seconds=graceful_seconds)
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

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Said before uvicorn waits for the open responses: a response that would never end by itself (a live
        # page's event stream) ends now, not at the graceful timeout's cancellation (`draining`).
        state = getattr(self.config.app, "state", None)
        if state is not None:
            state.leadflow_draining = True
        await super().shutdown(sockets)


def draining(request: Request) -> bool:
    """Whether the server is shutting down: a long-lived response (an event stream) should end now, so the
    client reconnects to a replica that stays (`QuietServer.shutdown`)."""
    return bool(getattr(request.app.state, "leadflow_draining", False))


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
