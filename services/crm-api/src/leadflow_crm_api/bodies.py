"""Request bodies before any route sees them: bounded in size, and strict JSON (decision 0023).

`BodyGuard` (ASGI middleware) reads the body once, up to `BodyLimits.max_bytes` whether it is
announced by Content-Length or streamed in chunks, and answers 413 beyond that (having dropped
up to `max_discard_bytes` more, so the client reads the answer, not a reset). A JSON body
(the content types FastAPI parses as JSON) must then be JSON as RFC 8259 defines it, within
bounds: no NaN or Infinity (Python's json reads them; BSON and the response encoder then
fail), numbers that fit 64 bits and a double, Unicode text without lone surrogates ("\\ud800"),
bounded nesting, list lengths and object sizes. A refusal is a 422 naming the place
(`body.sources.0.referral_fee_percent`), never the value. The route then parses the same bytes.
"""

from __future__ import annotations

import email.message
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_crm_api.problems import invalid_fields, problem

Location = tuple[str | int, ...]

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT64 = range(-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 1024 * 1024
    max_depth: int = 16  # the deepest body crm-api takes has 4 levels (lead sources' `offices`)
    max_items: int = 10_000  # the longest list crm-api takes (a roster, a lead group)
    max_members: int = 100  # crm-api's largest body object has 9 fields
    # Beyond max_bytes, at most this much more is read (and dropped) so the 413 reaches the client.
    max_discard_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodyViolation:
    loc: Location
    reason: str


class _Refused:
    """What the parser puts where a value cannot be taken, so the walk can say where it was."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_NOT_FINITE = _Refused("NaN and Infinity are not JSON numbers")
_TOO_BIG = _Refused("a number beyond 64-bit integers or doubles")


def _float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _TOO_BIG  # "1e400" reads as inf


def _int(text: str) -> int | _Refused:
    try:
        value = int(text)
    except ValueError:  # beyond sys.get_int_max_str_digits
        return _TOO_BIG
    return value if value in _INT64 else _TOO_BIG


def json_violation(body: bytes, limits: BodyLimits) -> BodyViolation | None:
    """Why `body` is not acceptable JSON, or None."""
    try:
        document = json.loads(body, parse_constant=lambda _name: _NOT_FINITE, parse_float=_float, parse_int=_int)
    except RecursionError:
        return BodyViolation(("body",), f"nested deeper than {limits.max_depth} levels")
    except json.JSONDecodeError as exc:
        return BodyViolation(("body",), f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except ValueError:  # UnicodeDecodeError: not UTF-8, -16 or -32
        return BodyViolation(("body",), "not valid JSON: not Unicode text")
    return _walk(document, limits)


def _walk(document: Any, limits: BodyLimits) -> BodyViolation | None:
    """The first violation in document order (iterative: the depth is what is being checked)."""
    pending: list[tuple[Any, Location, int]] = [(document, ("body",), 0)]
    while pending:
        value, loc, depth = pending.pop()
        if isinstance(value, _Refused):
            return BodyViolation(loc, value.reason)
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return BodyViolation(loc, "a lone surrogate (\\ud800-\\udfff) is not Unicode text")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= limits.max_depth:
            return BodyViolation(loc, f"nested deeper than {limits.max_depth} levels")
        if isinstance(value, list):
            if len(value) > limits.max_items:
                return BodyViolation(loc, f"more than {limits.max_items} items")
            pending += [(item, (*loc, i), depth + 1) for i, item in reversed(list(enumerate(value)))]
            continue
        if len(value) > limits.max_members:
            return BodyViolation(loc, f"more than {limits.max_members} members")
        for key in value:
            if _SURROGATE.search(key):
                return BodyViolation(loc, "a member name holds a lone surrogate (\\ud800-\\udfff)")
        pending += [(item, (*loc, key), depth + 1) for key, item in reversed(value.items())]
    return None


def parsed_as_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (application/json, application/*+json)."""
    if not content_type:
        return False  # FastAPI's strict_content_type: such a body is not parsed as JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class BodyGuard:
    """ASGI middleware: 413 beyond `limits.max_bytes`, 422 for JSON bodies `json_violation` refuses."""

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
            violation = json_violation(body, self.limits)
            if violation is not None:
                await invalid_fields([(violation.loc, violation.reason)])(scope, receive, send)
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
