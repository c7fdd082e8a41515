"""A request that meets an outage is answered 503 with Retry-After, not 500 (`leadflow_shared.http.answer_outages`):
MongoDB really away here (a client of a port nothing listens on), through intake's and crm-api's error handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes_intake import FakeStore, Published
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from leadflow_crm_api.problems import install_problem_handlers
from leadflow_devstack.processes import free_port
from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.entrypoints import http
from leadflow_intake.handlers import Intake
from leadflow_intake.metrics import IntakeMetrics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

FORM = {"account_id": "acme-realty", "first_name": "Jane", "email": "jane@example.com"}


@pytest_asyncio.fixture
async def away() -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A MongoDB client whose server is away: every command fails after a short server selection."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )
    yield client
    await client.close()


def asgi(app: FastAPI, base_url: str) -> httpx.AsyncClient:
    # raise_app_exceptions=False: an unhandled error is the 500 a real server sends, not a test crash.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url=base_url)


async def test_intake_answers_503_while_its_database_is_away(away: AsyncMongoClient[dict[str, Any]]) -> None:
    registry = CollectorRegistry()
    accounts = MongoAccounts(away["leadflow"], fallback_region="US")
    intake = Intake(accounts=accounts, store=FakeStore(), publish=Published())
    app = FastAPI()
    http.install(app, intake=lambda: intake, webhooks={}, metrics=IntakeMetrics(registry),
                 max_body_bytes=64 * 1024, tolerance_seconds=300)  # fmt: skip
    async with asgi(app, "http://intake") as client:
        response = await client.post("/v1/leads", json=FORM)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert "try again later" in response.json()["detail"]
    labels = {"source": "website", "reason": "unavailable"}
    assert registry.get_sample_value("intake_leads_rejected_total", labels) == 1


async def test_crm_api_answers_an_outage_503_and_a_failed_write_500(away: AsyncMongoClient[dict[str, Any]]) -> None:
    app = FastAPI()
    install_problem_handlers(app, realm="test")

    @app.get("/read")
    async def read() -> dict[str, Any] | None:
        return await away["leadflow"]["crm_leads"].find_one({"_id": "x"})

    @app.get("/refused")
    async def refused() -> None:
        raise OperationFailure("not allowed", code=13)  # the server's answer, not an outage: a 500 as before

    async with asgi(app, "http://crm") as client:
        outage = await client.get("/read")
        assert outage.status_code == 503, outage.text
        assert outage.headers["content-type"] == "application/problem+json"
        assert (outage.headers["retry-after"], outage.json()["type"]) == (
            "5",
            "https://leadflow.dev/problems/unavailable",
        )
        failed = await client.get("/refused")
        assert failed.status_code == 500
        assert failed.json()["type"].endswith("/internal")
