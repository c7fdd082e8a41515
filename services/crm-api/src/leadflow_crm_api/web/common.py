"""What every page module shares: the session's caller, checked forms, rendering and redirects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from leadflow_crm_api.adapters.callers import Callers
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.errors import Forbidden, NotFound, Unauthenticated
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.web.session import CSRF_FIELD, SESSION_COOKIE, csrf_token, csrf_valid

PREFIX = "/app"
STATIC = f"{PREFIX}/static"  # the script and style sheet every page loads (web/static/)
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["urldecode"] = unquote

ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
FLASH_COOKIE = "leadflow_flash"


# Why the sign-in page was opened: `?why=` is one of these codes, shown in leadflow's own words (S4). Never
# text from the link: anyone can send a link to the sign-in page, and its words would look like leadflow's.
SIGN_IN_REASONS = {
    "sign_in": "Sign in to continue.",
    "session_ended": "Your session has ended; sign in again.",
    "token_expired": "That access token has expired; get a new one from your brokerage's sign-in.",
    "token_refused": "That access token was not accepted; get a new one from your brokerage's sign-in.",
}


class SignInRequired(Unauthenticated):
    """No session, or one whose token expired: the page sends the person to sign in again, saying why."""

    def __init__(self, why: str) -> None:
        super().__init__(SIGN_IN_REASONS[why])
        self.why = why  # a key of SIGN_IN_REASONS


def settings_of(request: Request) -> CrmApiSettings:
    settings: CrmApiSettings = request.app.state.runtime.settings
    return settings


def db_of(request: Request) -> Any:
    return request.app.state.runtime.db


def path_id(value: str) -> str:
    """A path id, or the 404 page (a malformed id names no lead of anyone's)."""
    if not ID.match(value):
        raise NotFound("No such page.")
    return value


def callers_of(request: Request) -> Callers:
    callers: Callers = request.app.state.callers
    return callers


async def caller_of(request: Request) -> tuple[Principal, str]:
    """The session's caller and token: the token verified and its user still who it says (as the API's, S1)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("sign_in")
    try:
        return await callers_of(request).of(token), token
    except Unauthenticated as exc:
        raise SignInRequired("session_ended") from exc


async def checked_form(request: Request, token: str) -> dict[str, str]:
    """The posted form, once its CSRF token proved it came from one of this session's pages."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_valid(settings_of(request).web_session_secret, token, fields.get(CSRF_FIELD)):
        raise Forbidden("This form expired or did not come from leadflow; reload the page and try again.")
    return fields


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page; its headers (`Cache-Control: no-store`, the policy) are crm-api's `answer_policy`'s, 500 page too."""
    caller: Principal | None = context.get("caller")
    token = request.cookies.get(SESSION_COOKIE)
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(
        request, template,
        {"csrf": csrf_token(settings_of(request).web_session_secret, token) if token and caller else "",
         "flash": flash, "prefix": PREFIX, **context},
        status_code=status,
    )  # fmt: skip
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def redirect(url: str, *, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash and request is not None:
        response.set_cookie(
            FLASH_COOKIE,
            quote(flash),
            max_age=60,
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=settings_of(request).web.secure_cookies,
        )
    return response


def home_of(caller: Principal) -> str:
    if caller.sees_whole_account:
        return f"{PREFIX}/accounts/{caller.account_id}/leads"
    return f"{PREFIX}/my/leads"


def submit_key(form: dict[str, str]) -> str | None:
    """The Idempotency-Key of a form that changes who has leads: its page's random `request_id`, so a
    double submit (or a retry after a lost answer) is the same transfer or distribution, applied once."""
    request_id = form.get("request_id", "")
    return f"web:{request_id}" if REQUEST_ID.match(request_id) else None


def field_errors(exc: ValidationError | RequestValidationError, prefix: str = "") -> dict[str, str]:
    """Field name -> reason, for the message shown next to each field (the first reason per field)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        parts = [str(p) for p in error["loc"] if p not in {"body", "query"}]
        found.setdefault(prefix + (parts[0] if parts else "form"), reason_of(error))
    return found


def lines_of(text: str) -> list[str]:
    """A textarea of names, one per line (a name may hold a comma, never a line break), without blank lines."""
    return [line.strip() for line in text.splitlines() if line.strip()]


async def posted(request: Request, *ids: str) -> tuple[Principal, list[str], dict[str, str]]:
    """A form post's caller, its path ids (checked) and its fields (once its CSRF token is)."""
    caller, token = await caller_of(request)
    checked = [path_id(i) for i in ids]
    return caller, checked, await checked_form(request, token)


def same_query(request: Request, path: str) -> str:
    """`path` with the query string the request came with (a list's filters survive a form post)."""
    return path + (f"?{request.url.query}" if request.url.query else "")
