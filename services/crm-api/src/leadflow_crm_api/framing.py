"""No page of crm-api may be shown inside another site's frame (clickjacking; decision 0080, S4).

Every response gets `Content-Security-Policy: frame-ancestors 'none'` (merged into a policy it already
has) and `X-Frame-Options: DENY` (for browsers without CSP level 2). `NoFraming` (ASGI middleware) adds
them to whatever the app answers; `render` (web/common.py) adds them itself as well, because the 500
page is sent by Starlette's outermost middleware, past every middleware the app adds. On the JSON API
they change nothing a client reads, and a JSON document opened in a frame is framed no more either.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "Content-Security-Policy"
FRAME_ANCESTORS = "frame-ancestors 'none'"


def with_frame_ancestors(policy: str) -> str:
    """`policy` (a CSP header's value) with its frame-ancestors directive, if any, replaced by 'none'."""
    kept = [d.strip() for d in policy.split(";") if d.strip() and d.split()[0].lower() != "frame-ancestors"]
    return "; ".join([*kept, FRAME_ANCESTORS])


def deny_framing(headers: MutableHeaders) -> None:
    """Set both anti-framing headers, keeping the rest of any policy already there (each one, if several)."""
    policies = headers.getlist(CSP) or [""]
    del headers[CSP]
    for policy in policies:
        headers.append(CSP, with_frame_ancestors(policy))
    headers["X-Frame-Options"] = "DENY"


class NoFraming:
    """ASGI middleware: `deny_framing` on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def framed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])  # optional in ASGI
                deny_framing(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, framed)
