"""Every error response as RFC 9457 problem details (application/problem+json), one shape for all."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow_crm_api.errors import CrmApiError, Unauthenticated
from leadflow_shared.http import answer_outages

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
    status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in (401, 403, 404, 409, 413, 422)
}
MAX_INVALID_PARAMS = 20  # a 422 lists at most this many fields (a body can hold thousands of bad ones)
# A location part that is a field name; anything else a client sent as a key is not repeated back.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def location_name(loc: Sequence[str | int]) -> str:
    """`query.limit`, `body.sources.0.name`: list indexes as numbers, unknown keys as `*`."""
    return ".".join(str(part) if isinstance(part, int) or _FIELD_NAME.fullmatch(part) else "*" for part in loc)


def reason_of(error: Mapping[str, Any]) -> str:
    """pydantic's message, except where it quotes the input back (a tag, a parser's complaint).

    `value_error` messages are leadflow's own validators' and quote nothing.
    """
    message, context = str(error.get("msg", "invalid value")), error.get("ctx") or {}
    if "tag" in context:
        return "does not match any of the expected tags"
    if "error" in context and error.get("type") not in {"value_error", "assertion_error"}:
        # "Input should be a valid UUID, invalid character: ... found `x` at 1" -> its first part
        return message.split(",")[0].split(":")[0]
    return message


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


def invalid_fields(found: Sequence[tuple[Sequence[str | int], str]]) -> JSONResponse:
    """422 naming where and why, never what: echoing the rejected input could put PII in responses and logs."""
    invalid = [InvalidParam(name=location_name(loc), reason=reason) for loc, reason in found[:MAX_INVALID_PARAMS]]
    detail = "The request has invalid fields."
    if len(found) > MAX_INVALID_PARAMS:
        detail = f"The request has {len(found)} invalid fields; the first {MAX_INVALID_PARAMS} are listed."
    return problem(422, "validation-error", detail, invalid=invalid)


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
        return invalid_fields([(error["loc"], reason_of(error)) for error in exc.errors()])

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        slug = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "-")
        return problem(exc.status_code, slug, str(exc.detail), headers=dict(exc.headers or {}) or None)

    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug: still one error shape. Starlette re-raises it after this, so the server logs the traceback.
        log.error("request failed: %s", type(exc).__name__)
        return problem(500, "internal", "The request failed; it was not completed.")

    app.add_exception_handler(CrmApiError, on_crm_error)
    app.add_exception_handler(Exception, on_unexpected)
    answer_outages(app, lambda detail: problem(503, "unavailable", detail))  # MongoDB or Kafka away: retry later
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
