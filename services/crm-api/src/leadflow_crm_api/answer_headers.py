"""What every answer of crm-api tells the browser (S4; decisions 0080, 0092), set in one place: `answer_policy`,
which the shared `ServiceApp` calls on every response's headers, Starlette's 500 page included (after its own
`X-Content-Type-Options: nosniff`, which every service's answers carry).

- `Content-Security-Policy: PAGE_POLICY` and `X-Frame-Options: DENY` on every answer. The pages load nothing
  but crm-api's own script, style sheet and live-page requests (`/app/static/`: no inline script or style, no
  other origin), post forms only to crm-api, and may not be framed, take a `<base>` or run plugins. A policy a
  route set is replaced: there is one. On a JSON document, a script or a style sheet it changes nothing a client
  reads, and one rule for every answer leaves no page out (error pages, redirects, the offer-link page).
- `Cache-Control: no-store` on every answer under `/v1/` and `/app` but the static files (`NO_STORE`): what
  carries a person's data (a lead's contact, a team's names and emails, settings) is never kept in a browser's
  or a proxy's cache, readable after sign-out. The operational routes and the OpenAPI document may be cached.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Scope

from leadflow_crm_api.web.common import PREFIX, STATIC

CSP = "Content-Security-Policy"
FRAME_ANCESTORS = "frame-ancestors 'none'"
PAGE_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",  # a live page's event stream and its refresh (app.js)
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    FRAME_ANCESTORS,
])  # fmt: skip


def stored_nowhere(path: str) -> bool:
    """Whether an answer to `path` must say `Cache-Control: no-store`: the JSON API's and the web app's, but the
    web app's static files."""
    if path.startswith(f"{STATIC}/"):
        return False
    return path == PREFIX or path.startswith(("/v1/", f"{PREFIX}/"))


def answer_policy(scope: Scope, headers: MutableHeaders) -> None:
    """The headers crm-api adds to each answer (`ServiceApp.answer_policy`)."""
    headers[CSP] = PAGE_POLICY  # replaces every policy already there
    headers["X-Frame-Options"] = "DENY"
    if stored_nowhere(scope["path"]):
        headers["Cache-Control"] = "no-store"
