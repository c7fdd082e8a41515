"""Intake's HTTP edge: lead routes, the size limit, metrics, and the one place errors become statuses.

Bodies are read as bytes and parsed here (domain/body.py), not by FastAPI: JSON that Python's parser
lets through (NaN, lone surrogates, deep nesting) is refused with the place and the reason, and no
error response repeats what the sender sent (it is personal data).
"""

from __future__ import annotations

import email.message
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import yaml
from fastapi import FastAPI, Header, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow_intake import contract
from leadflow_intake.domain import keys
from leadflow_intake.domain.errors import (
    IdempotencyConflict,
    IntakeError,
    InvalidBody,
    InvalidLead,
    Unauthorized,
    UnknownAccount,
    UnsupportedContentType,
)
from leadflow_intake.domain.fields import ID_PATTERN, IDEMPOTENCY_KEY_PATTERN, MAX_IDEMPOTENCY_KEY
from leadflow_intake.domain.forms import ListingInquiryIn, WebsiteLeadIn
from leadflow_intake.domain.providers import FORMATS
from leadflow_intake.domain.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_PATH
from leadflow_intake.handlers import Accepted, Intake, Webhook, accept_form, accept_webhook
from leadflow_intake.metrics import IntakeMetrics, Source
from leadflow_shared.http import CLIENT_CLOSED, BodyLate, answer_outages
from leadflow_shared.json_bodies import safe_loc

log = logging.getLogger(__name__)

WEBSITE_PATH = "/v1/leads"
LISTING_PATH = "/v1/listing-inquiries"
_STATE_REASON = "intake_reject_reason"  # set by the error handlers, read by the metrics middleware
_STATE_DUPLICATE = "intake_duplicate"
_REASON_BY_STATUS = {
    400: "invalid",
    401: "unauthorized",
    408: "too_slow",
    499: "client_left",
    409: "conflict",
    413: "too_large",
    415: "invalid",
    422: "invalid",
    503: "unavailable",
}


class AcceptedOut(BaseModel):
    event_id: uuid.UUID


class ErrorOut(BaseModel):
    detail: Any


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retrying with the same key returns the same event id and publishes nothing new. "
        "Printable ASCII, no leading or trailing spaces; each way in (forms, listing inquiries, each "
        "webhook provider, partners) has its own keys.",
    ),
]  # fmt: skip
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The request could not be read."},
    409: {"model": ErrorOut, "description": "The Idempotency-Key was used before with a different request."},
    413: {"model": ErrorOut, "description": "The body is larger than the limit."},
    415: {"model": ErrorOut, "description": "The body is not JSON (Content-Type application/json)."},
    422: {
        "model": ErrorOut,
        "description": "Invalid or unknown fields, or a body that is not bounded JSON text "
        "(UTF-8, finite numbers, no lone surrogates, no NUL in a member name, nesting depth at most 32), named in "
        "detail; never the values.",
    },
}


def source_of(method: str, path: str) -> Source | None:
    """The metrics source of a lead request; None for every other request."""
    if method != "POST":
        return None
    if path == WEBSITE_PATH:
        return "website"
    if path == LISTING_PATH:
        return "listing_inquiry"
    parts = path.split("/")
    if len(parts) == 6 and parts[:3] == ["", "v1", "accounts"] and parts[4] == "webhooks":
        return "webhook"
    return None


class LeadRequests:
    """Bounds every request body's size (Content-Length or streamed) and measures the lead routes. Its
    time is bounded by the runtime's `RequestMetrics`, outside this layer (decision 0071)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: IntakeMetrics) -> None:
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = source_of(scope["method"], scope["path"])
        state: dict[str, Any] = scope.setdefault("state", {})
        started, status_code = time.perf_counter(), 500
        too_large = f"request body is larger than {self.max_body_bytes} bytes"

        async def send_tracked(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        received = 0

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                # FastAPI re-raises HTTPExceptions from body reading; its handler answers 413.
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large)
            return message

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                response = JSONResponse({"detail": too_large}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
                await response(scope, receive, send_tracked)
                return
            await self.app(scope, receive_bounded, send_tracked)
        except BodyLate:
            status_code = status.HTTP_408_REQUEST_TIMEOUT  # answered by RequestMetrics, outside this layer
            raise
        except ClientDisconnect:
            status_code = int(CLIENT_CLOSED)  # nobody to answer; RequestMetrics counts it, quietly
            raise
        finally:
            if source is not None:
                self._record(source, status_code, state, time.perf_counter() - started)

    def _record(self, source: Source, status_code: int, state: dict[str, Any], seconds: float) -> None:
        self.metrics.receiving(source)
        self.metrics.answered(source, seconds)
        if status_code == status.HTTP_202_ACCEPTED:
            self.metrics.outcome(source, duplicate=bool(state.get(_STATE_DUPLICATE)))
        else:
            fallback = "error" if status_code >= 500 else "invalid"
            reason = state.get(_STATE_REASON) or _REASON_BY_STATUS.get(status_code, fallback)
            self.metrics.outcome(source, rejected=reason)


def _errors(request: Request, exc: IntakeError, status_code: int, detail: Any) -> JSONResponse:
    request.state.intake_reject_reason = exc.reason
    return JSONResponse({"detail": detail}, status_code=status_code)


# What nearly every sender says, answered without parsing (the parse says JSON to each).
USUAL_JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8"})


def is_json(content_type: str) -> bool:
    """Whether a Content-Type is application/json or application/*+json, parameters aside."""
    if content_type in USUAL_JSON_TYPES:
        return True
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _json_body(request: Request) -> bytes:
    """The raw body of a form, which must be JSON: no Content-Type (read as JSON), or application/(*+)json."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not is_json(content_type):
        raise UnsupportedContentType
    return await request.body()


def _json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads `model` from the raw body itself."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(
    app: FastAPI,
    *,
    intake: Callable[[], Intake],
    webhooks: Mapping[str, Webhook],
    metrics: IntakeMetrics,
    max_body_bytes: int,
    tolerance_seconds: int,
) -> None:
    """Add intake's routes, error handlers and middleware to `app`."""
    app.add_middleware(LeadRequests, max_body_bytes=max_body_bytes, metrics=metrics)
    _install_error_handlers(app)
    _install_form_routes(app, intake)
    _install_webhook_route(app, intake, webhooks, tolerance_seconds=tolerance_seconds)
    _install_contract_routes(app)
    _document_provider_formats(app)


def _accepted(request: Request, result: Accepted) -> AcceptedOut:
    request.state.intake_duplicate = result.duplicate
    return AcceptedOut(event_id=result.event_id)


def _install_error_handlers(app: FastAPI) -> None:
    """Each refusal as its status and a detail that names places and reasons, never what was sent."""
    answer_outages(app, lambda detail: JSONResponse({"detail": detail}))  # MongoDB or Kafka away: 503, retry

    @app.exception_handler(InvalidLead)
    async def invalid_lead(request: Request, exc: InvalidLead) -> JSONResponse:
        def loc(field: str) -> list[str | int]:
            return ["body", *(int(part) if part.isdigit() else part for part in field.split("."))]

        detail = [{"type": "value_error", "loc": loc(e.field), "msg": e.reason} for e in exc.errors]
        return _errors(request, exc, status.HTTP_422_UNPROCESSABLE_CONTENT, detail)

    @app.exception_handler(UnknownAccount)
    async def unknown_account(request: Request, exc: UnknownAccount) -> JSONResponse:
        where = "path" if "account_id" in request.path_params else "body"
        detail = [{"type": "unknown_account", "loc": [where, "account_id"], "msg": "unknown account"}]
        return _errors(request, exc, status.HTTP_422_UNPROCESSABLE_CONTENT, detail)

    @app.exception_handler(IdempotencyConflict)
    async def conflict(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        detail = "Idempotency-Key was already used with a different request"
        return _errors(request, exc, status.HTTP_409_CONFLICT, detail)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        # The caller learns nothing (same answer for every cause); the log says which check failed.
        log.warning("webhook refused (%s) for provider %s", exc.why, request.path_params.get("provider"))
        return _errors(request, exc, status.HTTP_401_UNAUTHORIZED, "Unauthorized")

    @app.exception_handler(InvalidBody)
    async def invalid_body(request: Request, exc: InvalidBody) -> JSONResponse:
        detail = [{**error, "loc": ["body", *error["loc"]]} for error in exc.errors]
        return _errors(request, exc, status.HTTP_422_UNPROCESSABLE_CONTENT, detail)

    @app.exception_handler(UnsupportedContentType)
    async def unsupported_content_type(request: Request, exc: UnsupportedContentType) -> JSONResponse:
        return _errors(request, exc, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each input (personal data, and a 500 when it is not JSON-encodable).
        request.state.intake_reject_reason = "invalid"
        detail = [{"type": e.get("type"), "loc": safe_loc(tuple(e.get("loc", ()))), "msg": e.get("msg")}
                  for e in exc.errors()]  # fmt: skip
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _install_form_routes(app: FastAPI, intake: Callable[[], Intake]) -> None:
    """The website form and the listing inquiry: JSON bodies read and checked here (domain/body.py)."""

    @app.post(
        WEBSITE_PATH, status_code=status.HTTP_202_ACCEPTED, tags=["leads"], responses=_ERRORS,
        openapi_extra=_json_request_body(WebsiteLeadIn),
    )  # fmt: skip
    async def post_website_lead(request: Request, idempotency_key: IdempotencyKey = None) -> AcceptedOut:
        """A registration or contact-us form from the brokerage's main site or an agent's subdomain."""
        result = await accept_form(
            WebsiteLeadIn, await _json_body(request), space=keys.WEBSITE, idempotency_key=idempotency_key,
            intake=intake(), now=datetime.now(UTC),
        )  # fmt: skip
        return _accepted(request, result)

    @app.post(
        LISTING_PATH, status_code=status.HTTP_202_ACCEPTED, tags=["leads"], responses=_ERRORS,
        openapi_extra=_json_request_body(ListingInquiryIn),
    )  # fmt: skip
    async def post_listing_inquiry(request: Request, idempotency_key: IdempotencyKey = None) -> AcceptedOut:
        """A question about a listing; one of the brokerage's own listings goes to its agent (R3)."""
        result = await accept_form(
            ListingInquiryIn, await _json_body(request), space=keys.LISTING_INQUIRY, idempotency_key=idempotency_key,
            intake=intake(), now=datetime.now(UTC),
        )  # fmt: skip
        return _accepted(request, result)


def _install_webhook_route(
    app: FastAPI, intake: Callable[[], Intake], webhooks: Mapping[str, Webhook], *, tolerance_seconds: int
) -> None:
    """Providers' signed webhooks, each in the format configured for the provider."""
    webhook_body = {"oneOf": [{"$ref": f"#/components/schemas/{model.__name__}"} for model in FORMATS.values()]}

    @app.post(
        WEBHOOK_PATH,
        status_code=status.HTTP_202_ACCEPTED,
        tags=["webhooks"],
        responses={
            401: {"model": ErrorOut, "description": "Bad or missing signature."},
            **{code: answer for code, answer in _ERRORS.items() if code != 415},
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": webhook_body}}}},
    )
    async def post_webhook(
        request: Request,
        account_id: Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)],
        provider: Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")],
        timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER, max_length=20)] = None,
        signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, max_length=200)] = None,
        idempotency_key: IdempotencyKey = None,
    ) -> AcceptedOut:
        """A lead-generation provider's lead, signed with the provider's secret (see the partner contract).

        The signature covers the timestamp, the method, this path (account and provider), the Idempotency-Key
        header (or its absence) and the body. The body is one of the provider formats (generic, fub-events,
        portal-push), as configured for the provider, whatever the Content-Type says.
        """
        ports = intake()
        result = await accept_webhook(
            webhooks.get(provider), provider=provider, account_id=account_id, body=await request.body(),
            timestamp=timestamp,
            signature=signature, idempotency_key=idempotency_key, intake=ports, now=datetime.now(UTC),
            tolerance_seconds=tolerance_seconds,
        )  # fmt: skip
        return _accepted(request, result)


def _install_contract_routes(app: FastAPI) -> None:
    """The partner contract (AsyncAPI), as JSON and as YAML."""

    @app.get("/asyncapi.json", tags=["contract"])
    async def asyncapi_json() -> dict[str, Any]:
        """The partner contract: AsyncAPI 3 document of leads.inbound.v1 and what intake sends."""
        return contract.asyncapi()

    @app.get("/asyncapi.yaml", tags=["contract"], response_class=Response)
    async def asyncapi_yaml() -> Response:
        """The same AsyncAPI document as YAML."""
        text = yaml.safe_dump(contract.asyncapi(), sort_keys=False, allow_unicode=True, width=110)
        return Response(text, media_type="application/yaml")


def _document_provider_formats(app: FastAPI) -> None:
    """Put the forms and the provider formats into the OpenAPI components that the routes' bodies refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _, defs = models_json_schema(
                [(model, "validation") for model in (WebsiteLeadIn, ListingInquiryIn, *FORMATS.values())],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
