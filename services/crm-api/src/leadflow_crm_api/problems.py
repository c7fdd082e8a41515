"""Every error response as RFC 9457 problem details (application/problem+json), one shape for all."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow_crm_api.errors import CrmApiError, Unauthenticated

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://leadflow.dev/problems/"
PROBLEM_JSON = "application/problem+json"


class InvalidParam(BaseModel):
    name: str = Field(description='Where the bad value is, e.g. "query.limit" or "body.action".')
    reason: str


class Problem(BaseModel):
    type: str = Field(examples=[f"{PROBLEM_TYPE_BASE}not-found"])
    title: str
    status: int
    detail: str
    invalid_params: list[InvalidParam] | None = Field(default=None, description="Validation errors, one per field.")


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in (401, 403, 404, 422)
}


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    invalid: list[InvalidParam] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE_BASE + slug,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        invalid_params=invalid,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def install_problem_handlers(app: FastAPI, *, realm: str) -> None:
    async def on_crm_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CrmApiError)  # noqa: S101 (registered for CrmApiError only)
        headers = None
        if isinstance(exc, Unauthenticated):
            # RFC 6750 section 3: tell the client which scheme to use and why the token failed.
            headers = {"WWW-Authenticate": f'Bearer realm="{realm}", error="invalid_token"'}
        log.info("request refused: %s %s", exc.status, exc.slug)
        return problem(exc.status, exc.slug, exc.detail, headers=headers)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        # Only where and why: echoing the rejected input could put PII in responses and logs.
        invalid = [
            InvalidParam(name=".".join(str(p) for p in error["loc"]), reason=str(error["msg"]))
            for error in exc.errors()
        ]
        return problem(422, "validation-error", "The request has invalid fields.", invalid=invalid)

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
        return problem(exc.status_code, slug, str(exc.detail), headers=dict(exc.headers or {}) or None)

    app.add_exception_handler(CrmApiError, on_crm_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
