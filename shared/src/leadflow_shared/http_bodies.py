"""Request bodies before any route sees them, for every service that takes them: bounded in size, strict JSON,
and refusals that name the place and the reason, never the value (decisions 0023, 0083).

`BodyGuard` (ASGI middleware) reads the body once, up to `BodyLimits.max_bytes` whether it is announced by
Content-Length or streamed in chunks, and answers 413 beyond that (having dropped up to `max_discard_bytes`
more, so the client reads the answer, not a reset). A JSON body (the content types FastAPI parses as JSON)
must then be strict JSON within `BodyLimits.json` (leadflow_shared.json_bodies): no NaN or Infinity, bounded
integers, no lone surrogates, no NUL in member names, bounded nesting. The route then parses the same bytes.
Its answers are `{"detail": ...}` JSON, FastAPI's shape; a service gives its own (crm-api's problem details)
by overriding `too_large` and `refused`.

`answer_invalid_requests` replaces FastAPI's own 422 handler, which repeats each refused input: personal data
in a response, and a 500 when the input is not JSON-encodable (NaN, a lone surrogate). Every service's app gets
it from the runtime (`ServiceRuntime.app`); intake and crm-api install their own shapes over it.
"""

from __future__ import annotations

import email.message
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_shared.json_bodies import JsonBounds, JsonViolation, NotStrictJson, parse_strict_json, safe_loc

Refused = Sequence[tuple[str, Sequence[str | int], str]]  # (type, where, why) of each refused place
MAX_REFUSED = 20  # places a 422 names
DEFAULT_JSON_BOUNDS = JsonBounds(max_depth=32, int_bits=64)  # integers as BSON stores them


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 1024 * 1024
    # Beyond max_bytes, at most this much more is read (and dropped) so the 413 reaches the client.
    max_discard_bytes: int = 8 * 1024 * 1024
    json: JsonBounds = DEFAULT_JSON_BOUNDS


def parsed_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (application/json, application/*+json)."""
    if not content_type:
        return False  # FastAPI's strict_content_type: such a body is not parsed as JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def invalid_detail(found: Refused) -> JSONResponse:
    """422 `{"detail": [{"type", "loc", "msg"}]}`: what kind of refusal, where and why, never the value."""
    detail = [{"type": kind, "loc": safe_loc(loc), "msg": why} for kind, loc, why in found[:MAX_REFUSED]]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


class BodyGuard:
    """ASGI middleware: 413 beyond `limits.max_bytes`, 422 for JSON bodies not strict JSON within `limits.json`."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    def too_large(self) -> Response:
        """The answer to a body over the limit (sent with `Connection: close`)."""
        detail = f"The request body is larger than {self.limits.max_bytes} bytes."
        return JSONResponse({"detail": detail}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)

    def refused(self, violations: Sequence[JsonViolation]) -> Response:
        """The answer to a JSON body that is not strict JSON within the bounds (places from the body's root)."""
        return invalid_detail([(v.kind, ("body", *v.loc), v.reason) for v in violations])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_bytes:
            await self._too_large(scope, receive, send, unread=int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > self.limits.max_bytes:
                await self._too_large(scope, receive, send, unread=self.limits.max_discard_bytes if more else 0)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        if body and parsed_as_json(headers.get("content-type")):
            try:
                parse_strict_json(body, self.limits.json)
            except NotStrictJson as exc:
                await self.refused(exc.violations)(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *, unread: int) -> None:
        """413. The rest of the body is read and dropped first (up to `max_discard_bytes`): closing on
        unread data resets the connection, and the client would see a reset instead of the answer."""
        if 0 < unread <= self.limits.max_discard_bytes:
            await _discard(receive, self.limits.max_discard_bytes)
        response = self.too_large()
        response.headers["Connection"] = "close"  # what is beyond the discarded part is not read
        await response(scope, receive, send)


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the body's remaining chunks, up to `budget` bytes."""
    while budget > 0:
        message = await receive()
        budget -= len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then whatever the client sends next (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def answer_invalid_requests(app: FastAPI) -> None:
    """A request FastAPI's validation refuses is a 422 naming each place and why (`invalid_detail`), never
    repeating the input (FastAPI's own handler does, and fails with a 500 on input JSON cannot encode)."""

    async def on_invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # noqa: S101 (registered for it only)
        found = [(str(e.get("type", "")), tuple(e.get("loc", ())), str(e.get("msg", ""))) for e in exc.errors()]
        return invalid_detail(found)

    app.add_exception_handler(RequestValidationError, on_invalid)
