"""The web app's pages (decision 0040): sign-in, the lead lists, a lead's page with its actions, and the
live stream that refreshes open pages. Every page calls the use cases the JSON API calls."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow_crm_api.adapters.leads import ScopedLeads
from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.api import ActivityCreate
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus, LeadTab
from leadflow_crm_api.errors import CrmApiError, Forbidden, NotFound, Unauthenticated
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.web.session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    csrf_token,
    csrf_valid,
    same_nonce,
    sign_in_nonce,
)

PREFIX = "/app"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["urldecode"] = unquote
router = APIRouter(prefix=PREFIX, include_in_schema=False)

ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FLASH_COOKIE = "leadflow_flash"
PAGE_SIZE = 50
LIVE_POLL_SECONDS = 0.25  # a change shows on open pages within about a second (issue 12.4)
LIVE_STREAM_SECONDS = 300  # then the browser reconnects, and the session is checked again
ACTIONS = ("accept", "note", "call", "email", "sms", "task")


class SignInRequired(Unauthenticated):
    """No session, or one whose token expired: the page sends the person to sign in again."""


def _settings(request: Request) -> CrmApiSettings:
    settings: CrmApiSettings = request.app.state.runtime.settings
    return settings


def _db(request: Request) -> Any:
    return request.app.state.runtime.db


def _id(value: str) -> str:
    """A path id, or the 404 page (a malformed id names no lead of anyone's)."""
    if not ID.match(value):
        raise NotFound("No such page.")
    return value


def _caller(request: Request) -> tuple[Principal, str]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("Sign in to continue.")
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return verifier.verify(token), token
    except Unauthenticated as exc:
        raise SignInRequired("Your session has ended; sign in again.") from exc


async def _form(request: Request, token: str) -> dict[str, str]:
    """The posted form, once its CSRF token proved it came from one of this session's pages."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_valid(_settings(request).web_session_secret, token, fields.get(CSRF_FIELD)):
        raise Forbidden("This form expired or did not come from leadflow; reload the page and try again.")
    return fields


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    caller: Principal | None = context.get("caller")
    token = request.cookies.get(SESSION_COOKIE)
    flash = request.cookies.get(FLASH_COOKIE)
    response = templates.TemplateResponse(
        request, template,
        {"csrf": csrf_token(_settings(request).web_session_secret, token) if token and caller else "",
         "flash": flash, "prefix": PREFIX, **context},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )  # fmt: skip
    if flash:
        response.delete_cookie(FLASH_COOKIE, path=PREFIX)
    return response


def _redirect(url: str, *, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash and request is not None:
        response.set_cookie(FLASH_COOKIE, quote(flash), max_age=60, path=PREFIX, httponly=True, samesite="lax",
                            secure=_settings(request).web.secure_cookies)
    return response


def _home(caller: Principal) -> str:
    if caller.sees_whole_account:
        return f"{PREFIX}/accounts/{caller.account_id}/leads"
    return f"{PREFIX}/my/leads"


# -- sign-in ------------------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def start(request: Request) -> Response:
    try:
        caller, _ = _caller(request)
    except SignInRequired:
        return _redirect(f"{PREFIX}/sign-in")
    return _redirect(_home(caller))


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "", why: str = "", account: str = "") -> HTMLResponse:
    settings = _settings(request)
    nonce = sign_in_nonce()
    only = account if ID.match(account) else None
    users = await _sample_users(request, only) if settings.web.dev_sign_in else []
    response = _render(request, "sign_in.html", nonce=nonce, users=users, next=_safe_next(next), why=why[:200])
    response.set_cookie(SIGN_IN_COOKIE, nonce, max_age=900, path=PREFIX, httponly=True, samesite="strict",
                        secure=settings.web.secure_cookies)
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Sign in with a bearer token from the brokerage's identity provider (the JWT the API takes)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not same_nonce(request.cookies.get(SIGN_IN_COOKIE), fields.get(CSRF_FIELD)):
        raise Forbidden("This sign-in form expired; open the sign-in page again.")
    token = fields.get("token", "").strip()
    if fields.get("user") and _settings(request).web.dev_sign_in:
        token = _dev_token(request, fields["user"])
    verifier: TokenVerifier = request.app.state.verifier
    try:
        caller = verifier.verify(token)
    except Unauthenticated as exc:
        return _redirect(f"{PREFIX}/sign-in?{urlencode({'why': exc.detail})}")
    response = _redirect(_safe_next(fields.get("next", "")) or _home(caller))
    response.set_cookie(SESSION_COOKIE, token, max_age=_settings(request).web.session_hours * 3600, path=PREFIX,
                        httponly=True, samesite="lax", secure=_settings(request).web.secure_cookies)
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    _, token = _caller(request)
    await _form(request, token)
    response = _redirect(f"{PREFIX}/sign-in")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


def _safe_next(value: str) -> str:
    """Only a path of this app: never another site (an open redirect)."""
    return value if value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value else ""


async def _sample_users(request: Request, account_id: str | None) -> list[dict[str, str]]:
    """Development: the accounts' brokers (roster position 1), agents and admins, to sign in as."""
    users: list[dict[str, str]] = []
    db = _db(request)
    accounts = {} if account_id is None else {"_id": account_id}
    async for account in db["accounts"].find(accounts, {"roster": 1, "name": 1}).sort("_id", 1).limit(20):
        roster = list(account.get("roster", []))
        names = {a["_id"]: a.get("name", a["_id"]) async for a in db["agents"].find({"account_id": account["_id"]})}
        for position, agent_id in enumerate(roster[:12]):
            role = Role.BROKER if position == 0 else Role.REALTOR
            users.append({"value": f"{account['_id']}|{agent_id}|{role.value}", "account": account.get("name", ""),
                          "name": names.get(agent_id, agent_id), "role": role.value})
        async for person in db["staff"].find({"account_id": account["_id"], "role": "admin"}).limit(3):
            users.append({"value": f"{account['_id']}|{person['user_id']}|admin", "account": account.get("name", ""),
                          "name": person.get("name", person["user_id"]), "role": "admin"})
    return users


def _dev_token(request: Request, user: str) -> str:
    settings = _settings(request)
    parts = user.split("|")
    if len(parts) != 3 or not all(ID.match(p) for p in parts) or parts[2] not in {r.value for r in Role}:
        raise NotFound("No such sample user.")
    account_id, sub, role = parts
    claims: dict[str, Any] = {"sub": sub, "role": role, "account_id": account_id, "aud": settings.auth.audience,
                              "exp": datetime.now(UTC) + timedelta(hours=settings.web.session_hours)}
    if settings.auth.issuer:
        claims["iss"] = settings.auth.issuer
    return jwt.encode(claims, settings.verification_key, algorithm=settings.auth.algorithm)


# -- the lists (V1, V2) -------------------------------------------------------------------------------------


def _list_query(request: Request) -> tuple[LeadQuery, str | None, dict[str, str]]:
    """The list's filters from the query string; a bad value is dropped (the page shows every lead)."""
    params = request.query_params
    shown = {k: params.get(k, "") for k in ("tab", "status", "q", "sort")}

    def pick(kind: Any, value: str, default: Any) -> Any:
        try:
            return kind(value) if value else default
        except ValueError:
            return default

    q = shown["q"].strip()[:100] or None
    query = LeadQuery(tab=pick(LeadTab, shown["tab"], LeadTab.ALL), status=pick(LeadStatus, shown["status"], None),
                      search=q, sort=pick(LeadSort, shown["sort"], LeadSort.CREATED_DESC))
    cursor = params.get("cursor") or None
    return query, cursor, shown


@router.get("/accounts/{account_id}/leads")
async def brokerage_list(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = _caller(request)
    leads = leads_uc.brokerage_leads(caller, _db(request), _id(account_id))
    return await _list(request, caller, leads, title="Brokerage CRM", live=f"{PREFIX}/accounts/{account_id}/live")


@router.get("/my/leads")
async def realtor_list(request: Request) -> HTMLResponse:
    caller, _ = _caller(request)
    return await _list(request, caller, leads_uc.realtor_leads(caller, _db(request)), title="My Leads",
                       live=f"{PREFIX}/my/live")


async def _list(request: Request, caller: Principal, leads: ScopedLeads, *, title: str, live: str) -> HTMLResponse:
    query, cursor, shown = _list_query(request)
    try:
        page = await leads_uc.lead_page(leads, _db(request), query, PAGE_SIZE, cursor)
    except RequestValidationError:  # a stale cursor: the first page instead
        page = await leads_uc.lead_page(leads, _db(request), query, PAGE_SIZE, None)
    base = {k: v for k, v in shown.items() if v}
    next_url = f"{request.url.path}?{urlencode(base | {'cursor': page.next_cursor})}" if page.next_cursor else None
    tabs = [(tab, f"{request.url.path}?{urlencode(base | {'tab': tab.value})}") for tab in LeadTab]
    return _render(request, "leads.html", caller=caller, title=title, page=page, shown=shown, next_url=next_url,
                   tabs=tabs, query=query, live=live, statuses=list(LeadStatus), sorts=list(LeadSort))


# -- a lead's page (V3) and its actions (R8) ----------------------------------------------------------------


@router.get("/accounts/{account_id}/leads/{lead_id}")
async def lead_page(request: Request, account_id: str, lead_id: str) -> HTMLResponse:
    caller, _ = _caller(request)
    return await _lead(request, caller, _id(account_id), _id(lead_id))


async def _lead(request: Request, caller: Principal, account_id: str, lead_id: str, *, status: int = 200,
                errors: dict[str, str] | None = None, values: dict[str, str] | None = None) -> HTMLResponse:
    leads = leads_uc.account_leads(caller, _db(request), account_id)
    try:
        lead = await leads_uc.lead_view(leads, caller, _db(request), lead_id)
    except NotFound:
        if (how := await leads_uc.how_the_offer_ended(caller, _db(request), lead_id)) is None:
            raise
        return _render(request, "error.html", status=410, caller=caller, title="This lead is no longer yours",
                       detail=how)
    mine = [o for o in lead.open_offers if o.agent_id == caller.sub]
    return _render(request, "lead.html", status=status, caller=caller, lead=lead, account_id=account_id,
                   my_offer=mine[0] if mine else None, errors=errors or {}, values=values or {},
                   live=f"{PREFIX}/accounts/{account_id}/leads/{lead_id}/live", actions=ACTIONS)


@router.post("/accounts/{account_id}/leads/{lead_id}/actions")
async def act(request: Request, account_id: str, lead_id: str) -> Response:
    caller, token = _caller(request)
    account_id, lead_id = _id(account_id), _id(lead_id)
    form = await _form(request, token)
    try:
        body = ActivityCreate.model_validate(_activity(form))
    except ValidationError as exc:
        errors = {_field(e["loc"]): reason_of(e) for e in exc.errors()}
        return await _lead(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    except ValueError as exc:
        return await _lead(request, caller, account_id, lead_id, status=422, errors={"task_due": str(exc)},
                           values=form)
    leads = leads_uc.account_leads(caller, _db(request), account_id)
    try:
        answer = await leads_uc.act_on_lead(leads, caller, _db(request), lead_id, body,
                                            request.app.state.publish_activity)
    except RequestValidationError as exc:
        errors = {_field(e["loc"]): reason_of(e) for e in exc.errors()}
        return await _lead(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    except CrmApiError as exc:
        if exc.status != 409:
            raise
        return await _lead(request, caller, account_id, lead_id, status=409, errors={"action": exc.detail},
                           values=form)
    done = {"accept": "Claim sent."}.get(body.action.value, "Saved.")
    return _redirect(f"{PREFIX}/accounts/{account_id}/leads/{lead_id}", flash=f"{done} {answer.detail}".strip(),
                     request=request)


def _activity(form: dict[str, str]) -> dict[str, Any]:
    """The action form's fields as an ActivityCreate body (validated by the API's own model)."""
    action = form.get("action", "")
    body: dict[str, Any] = {"action": action}
    if text := form.get("text", "").strip():
        body["text"] = text
    if action == "call" and form.get("call_outcome"):
        body["call_outcome"] = form["call_outcome"]
    if action == "task":
        body["task"] = {"title": form.get("task_title", ""), "due_at": _local_time(form.get("task_due", ""),
                                                                                  form.get("tz", ""))}
    if action in {"email", "sms"} and form.get("message_body", "").strip():
        body["message"] = {"body": form["message_body"]}
        if action == "email":
            body["message"]["subject"] = form.get("message_subject", "")
        body.pop("text", None)
    return body


def _local_time(value: str, zone: str) -> str:
    """A `datetime-local` field in the viewer's time zone (sent by the page's script), as ISO 8601."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("give the task's due date and time") from exc
    try:
        tz = ZoneInfo(zone) if zone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).isoformat()


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in {"body"}]
    name = "_".join(parts[:2]) if parts else "action"
    return {"message_subject": "message_subject", "message_body": "message_body", "task_title": "task_title",
            "task_due_at": "task_due"}.get(name, parts[0] if parts else "action")


# -- live: a page hears that its data changed, then fetches itself again ------------------------------------


@router.get("/accounts/{account_id}/live")
async def account_live(request: Request, account_id: str) -> StreamingResponse:
    caller, _ = _caller(request)
    leads = leads_uc.brokerage_leads(caller, _db(request), _id(account_id))
    return _stream(request, leads.change_mark)


@router.get("/my/live")
async def realtor_live(request: Request) -> StreamingResponse:
    caller, _ = _caller(request)
    return _stream(request, leads_uc.realtor_leads(caller, _db(request)).change_mark)


@router.get("/accounts/{account_id}/leads/{lead_id}/live")
async def lead_live(request: Request, account_id: str, lead_id: str) -> StreamingResponse:
    caller, _ = _caller(request)
    leads = leads_uc.account_leads(caller, _db(request), _id(account_id))
    lead_id = _id(lead_id)

    async def mark() -> str:
        return await leads.lead_mark(lead_id)

    return _stream(request, mark)


def _stream(request: Request, mark: Callable[[], Awaitable[str]]) -> StreamingResponse:
    """Server-sent events: `changed` whenever `mark()` differs from what the page was built from."""

    async def events() -> AsyncIterator[str]:
        seen = await mark()
        yield "retry: 1000\n\n"
        loop = asyncio.get_running_loop()
        ends, beat = loop.time() + LIVE_STREAM_SECONDS, loop.time()
        while loop.time() < ends and not await request.is_disconnected():
            await asyncio.sleep(LIVE_POLL_SECONDS)
            now = await mark()
            if now != seen:
                seen = now
                yield "event: changed\ndata: {}\n\n"
            elif loop.time() - beat > 15:
                beat = loop.time()
                yield ": still here\n\n"  # keeps proxies from closing an idle stream

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- errors: pages, not problem+json, under /app ------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Mount the pages and their static files; errors under /app become pages (or a sign-in redirect)."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="web-static")
    for kind in (CrmApiError, RequestValidationError, StarletteHTTPException, Exception):
        api_handler = app.exception_handlers[kind]

        async def handler(request: Request, exc: Exception, api_handler: Any = api_handler) -> Response:
            if request.url.path == PREFIX or request.url.path.startswith(f"{PREFIX}/"):
                return _error_page(request, exc)
            response: Response = await api_handler(request, exc)
            return response

        app.add_exception_handler(kind, handler)


def _error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, Unauthenticated):
        where = request.url.path if request.method == "GET" else ""
        return _redirect(f"{PREFIX}/sign-in?{urlencode({'next': where, 'why': exc.detail})}")
    if isinstance(exc, CrmApiError):
        status, detail = exc.status, exc.detail
    elif isinstance(exc, StarletteHTTPException):
        status, detail = exc.status_code, "No such page." if exc.status_code == 404 else str(exc.detail)
    elif isinstance(exc, RequestValidationError):
        status, detail = 422, "The request has invalid fields: " + "; ".join(reason_of(e) for e in exc.errors()[:5])
    else:
        status, detail = 500, "Something went wrong; nothing was changed. Try again."
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible", 422: "Check the form"}
    return _render(request, "error.html", status=status, title=titles.get(status, "Error"), detail=detail)

