"""What every page module shares: the session's caller, checked forms, rendering and redirects."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.errors import Forbidden, NotFound, Unauthenticated
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.web.session import CSRF_FIELD, SESSION_COOKIE, csrf_token, csrf_valid

PREFIX = "/app"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["urldecode"] = unquote

ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FLASH_COOKIE = "leadflow_flash"


class SignInRequired(Unauthenticated):
    """No session, or one whose token expired: the page sends the person to sign in again."""


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


def caller_of(request: Request) -> tuple[Principal, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("Sign in to continue.")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return verifier.verify(token), token
    except Unauthenticated as exc:
        raise SignInRequired("Your session has ended; sign in again.") from exc


async def checked_form(request: Request, token: str) -> dict[str, str]:
    """The posted form, once its CSRF token proved it came from one of this session's pages."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_valid(settings_of(request).web_session_secret, token, fields.get(CSRF_FIELD)):
        raise Forbidden("This form expired or did not come from leadflow; reload the page and try again.")
    return fields


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    caller: Principal | None = context.get("caller")
    token = request.cookies.get(SESSION_COOKIE)
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(
        request, template,
        {"csrf": csrf_token(settings_of(request).web_session_secret, token) if token and caller else "",
         "flash": flash, "prefix": PREFIX, **context},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def redirect(url: str, *, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash and request is not None:
        response.set_cookie(FLASH_COOKIE, quote(flash), max_age=60, path=PREFIX, httponly=True, samesite="lax",
                            secure=settings_of(request).web.secure_cookies)
    return response


def home_of(caller: Principal) -> str:
    if caller.sees_whole_account:
        return f"{PREFIX}/accounts/{caller.account_id}/leads"
    return f"{PREFIX}/my/leads"
