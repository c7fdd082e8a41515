"""Signing in and out: a token from the identity provider, or (development) a sample user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from leadflow_crm_api.domain.principal import Role
from leadflow_crm_api.errors import Forbidden, NotFound, Unauthenticated
from leadflow_crm_api.web.common import (
    ID,
    PREFIX,
    SIGN_IN_REASONS,
    SignInRequired,
    caller_of,
    callers_of,
    checked_form,
    db_of,
    home_of,
    redirect,
    render,
    settings_of,
)
from leadflow_crm_api.web.session import CSRF_FIELD, SESSION_COOKIE, SIGN_IN_COOKIE, same_nonce, sign_in_nonce
from leadflow_shared.collections import ACCOUNTS, AGENTS, STAFF

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("")
@router.get("/")
async def start(request: Request) -> Response:
    try:
        caller, _ = await caller_of(request)
    except SignInRequired:
        return redirect(f"{PREFIX}/sign-in")
    return redirect(home_of(caller))


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "", why: str = "", account: str = "") -> HTMLResponse:
    settings = settings_of(request)
    nonce = sign_in_nonce()
    only = account if ID.match(account) else None
    users = await _sample_users(request, only) if settings.web.dev_sign_in else []
    reason = SIGN_IN_REASONS.get(why, "")  # a code the app sends; anything else shows nothing (S4)
    response = render(request, "sign_in.html", nonce=nonce, users=users, next=_safe_next(next), why=reason)
    response.set_cookie(
        SIGN_IN_COOKIE,
        nonce,
        max_age=900,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=settings.web.secure_cookies,
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Sign in with a bearer token from the brokerage's identity provider (the JWT the API takes)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not same_nonce(request.cookies.get(SIGN_IN_COOKIE), fields.get(CSRF_FIELD)):
        raise Forbidden("This sign-in form expired; open the sign-in page again.")
    token = fields.get("token", "").strip()
    if fields.get("user") and settings_of(request).web.dev_sign_in:
        token = _dev_token(request, fields["user"])
    try:
        caller = await callers_of(request).of(token)
    except Unauthenticated as exc:
        expired = isinstance(exc.__cause__, jwt.ExpiredSignatureError)
        return redirect(f"{PREFIX}/sign-in?{urlencode({'why': 'token_expired' if expired else 'token_refused'})}")
    response = redirect(_safe_next(fields.get("next", "")) or home_of(caller))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings_of(request).web.session_hours * 3600,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=settings_of(request).web.secure_cookies,
    )
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """Ends the session's token everywhere until its expiry (decision 0105), not only the browser's cookie: a
    copy of the cookie kept elsewhere signs in no more."""
    caller, token = await caller_of(request)
    await checked_form(request, token)
    await callers_of(request).sign_out(caller)
    response = redirect(f"{PREFIX}/sign-in")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


def _safe_next(value: str) -> str:
    """Only a path of this app: never another site (an open redirect)."""
    return value if value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value else ""


async def _sample_users(request: Request, account_id: str | None) -> list[dict[str, str]]:
    """Development: the accounts' brokers (roster position 1), agents and admins, to sign in as."""
    users: list[dict[str, str]] = []
    db = db_of(request)
    accounts = {} if account_id is None else {"_id": account_id}
    async for account in db[ACCOUNTS].find(accounts, {"roster": 1, "name": 1}).sort("_id", 1).limit(20):
        roster = list(account.get("roster", []))
        names = {a["_id"]: a.get("name", a["_id"]) async for a in db[AGENTS].find({"account_id": account["_id"]})}
        for position, agent_id in enumerate(roster[:12]):
            role = Role.BROKER if position == 0 else Role.REALTOR
            users.append(
                {
                    "value": f"{account['_id']}|{agent_id}|{role.value}",
                    "account": account.get("name", ""),
                    "name": names.get(agent_id, agent_id),
                    "role": role.value,
                }
            )
        async for person in db[STAFF].find({"account_id": account["_id"], "role": "admin"}).limit(3):
            user_id = str(person["_id"])  # a staff member's user id is its document's id (the seed's and crm-api's)
            users.append(
                {
                    "value": f"{account['_id']}|{user_id}|admin",
                    "account": account.get("name", ""),
                    "name": person.get("name", user_id),
                    "role": "admin",
                }
            )
    return users


def _dev_token(request: Request, user: str) -> str:
    settings = settings_of(request)
    parts = user.split("|")
    if len(parts) != 3 or not all(ID.match(p) for p in parts) or parts[2] not in {r.value for r in Role}:
        raise NotFound("No such sample user.")
    account_id, sub, role = parts
    claims: dict[str, Any] = {
        "sub": sub,
        "role": role,
        "account_id": account_id,
        "aud": settings.auth.audience,
        "exp": datetime.now(UTC) + timedelta(hours=settings.web.session_hours),
    }
    if settings.auth.issuer:
        claims["iss"] = settings.auth.issuer
    return jwt.encode(claims, settings.verification_key, algorithm=settings.auth.algorithm)
