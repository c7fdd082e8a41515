"""Mounting the web app on crm-api, and its error pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow_crm_api.errors import CrmApiError, Unauthenticated
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.web import dashboard, distribution, leads, live, me, offices, settings, sharing, sign_in, team
from leadflow_crm_api.web.common import HERE, PREFIX, STATIC, SignInRequired, redirect, render


def install(app: FastAPI) -> None:
    """Mount the pages and their static files; errors under /app become pages (or a sign-in redirect)."""
    for pages in (sign_in, leads, live, sharing, offices, settings, distribution, team, dashboard, me):
        app.include_router(pages.router)
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="web-static")
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
        why = exc.why if isinstance(exc, SignInRequired) else "sign_in"  # a code: the page words it (S4)
        return redirect(f"{PREFIX}/sign-in?{urlencode({'next': where, 'why': why})}")
    if isinstance(exc, CrmApiError):
        status, detail = exc.status, exc.detail
    elif isinstance(exc, StarletteHTTPException):
        status, detail = exc.status_code, "No such page." if exc.status_code == 404 else str(exc.detail)
    elif isinstance(exc, RequestValidationError):
        status, detail = 422, "The request has invalid fields: " + "; ".join(reason_of(e) for e in exc.errors()[:5])
    else:
        status, detail = 500, "Something went wrong. Try again; if it keeps happening, tell your administrator."
    titles = {403: "Not allowed", 404: "Not found", 409: "Not possible", 422: "Check the form"}
    return render(request, "error.html", status=status, title=titles.get(status, "Error"), detail=detail)
