"""Composition root of the intake process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, Header, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from leadflow_intake.adapters.idempotency import IdempotencyStore
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.handlers import IdempotencyConflict, InvalidField, accept_website_lead
from leadflow_intake.settings import IntakeSettings
from leadflow_shared import topics
from leadflow_shared.kafka import publisher
from leadflow_shared.service import ServiceRuntime


class Accepted(BaseModel):
    event_id: uuid.UUID


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200, min_length=1)]


def create_app(settings: IntakeSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="intake")

    publish = publisher(runtime.broker, topics.LEADS_INTAKE)

    app = runtime.app(title="leadflow intake", version="0.1.0")

    class BodyLimit(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
                return JSONResponse(
                    {"detail": f"request body is larger than {settings.max_body_bytes} bytes"},
                    status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                )
            return await call_next(request)

    app.add_middleware(BodyLimit)

    @app.exception_handler(InvalidField)
    async def invalid_field(_request: Request, exc: InvalidField) -> JSONResponse:
        detail = [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.reason}]
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(IdempotencyConflict)
    async def conflict(_request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.post("/v1/leads", status_code=status.HTTP_202_ACCEPTED, tags=["leads"])
    async def post_website_lead(form: WebsiteLeadIn, idempotency_key: IdempotencyKey = None) -> Accepted:
        """Accept a registration or contact-us lead from a brokerage or agent website."""
        event_id = await accept_website_lead(
            form,
            idempotency_key=idempotency_key,
            store=IdempotencyStore(runtime.db),
            publish=publish,
            default_region=settings.default_region,
            now=datetime.now(UTC),
        )
        return Accepted(event_id=event_id)

    return app
