"""Request bodies before any route sees them: bounded in size, and strict JSON (decision 0023).

`BodyGuard` (ASGI middleware) reads the body once, up to `BodyLimits.max_bytes` whether it is
announced by Content-Length or streamed in chunks, and answers 413 beyond that (having dropped
up to `max_discard_bytes` more, so the client reads the answer, not a reset). A JSON body
(the content types FastAPI parses as JSON) must then be strict JSON within `BodyLimits.json`,
by the rule in leadflow_shared.json_bodies (shared with intake): no NaN or Infinity, numbers that
fit 64 bits and a double, UTF-8 text without lone surrogates ("\\ud800"), bounded nesting, list
lengths and object sizes. A refusal is a 422 naming the place (`body.sources.0.referral_fee_percent`),
never the value. The route then parses the same bytes.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_crm_api.problems import invalid_fields, problem
from leadflow_shared.json_bodies import JsonBounds, NotStrictJson, parse_strict_json

JSON_BOUNDS = JsonBounds(
    max_depth=16,  # the deepest body crm-api takes has 4 levels (lead sources' `offices`)
    max_items=10_000,  # the longest list crm-api takes (a roster, a lead group)
    max_members=100,  # crm-api's largest body object has 9 fields
    int_bits=64,  # what BSON stores
    max_errors=1,  # the first, in document order
)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 1024 * 1024
    # Beyond max_bytes, at most this much more is read (and dropped) so the 413 reaches the client.
    max_discard_bytes: int = 8 * 1024 * 1024
    json: JsonBounds = JSON_BOUNDS


def parsed_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (application/json, application/*+json)."""
    if not content_type:
        return False  # FastAPI's strict_content_type: such a body is not parsed as JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class BodyGuard:
    """ASGI middleware: 413 beyond `limits.max_bytes`, 422 for JSON bodies not strict JSON within `limits.json`."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

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
                refused = [(("body", *v.loc), v.reason) for v in exc.violations]
                await invalid_fields(refused)(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, *, unread: int) -> None:
        """413. The rest of the body is read and dropped first (up to `max_discard_bytes`): closing on
        unread data resets the connection, and the client would see a reset instead of the answer."""
        if 0 < unread <= self.limits.max_discard_bytes:
            await _discard(receive, self.limits.max_discard_bytes)
        response = problem(
            413,
            "content-too-large",
            f"The request body is larger than {self.limits.max_bytes} bytes.",
            headers={"Connection": "close"},  # what is beyond the discarded part is not read
        )
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
