"""What every service does alike for its operators: fail fast, JSON logs, metrics from zero."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka.errors import CommitFailedError
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict
from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError, InvalidOperation, OperationFailure, WriteConcernError
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from leadflow_shared.dead_letters import _reason, is_transient
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.http import RequestMetrics, ServiceApp
from leadflow_shared.kafka_records import UnreadableRecord
from leadflow_shared.logs import bind, configure_logging
from leadflow_shared.metrics import DEAD_LETTER_REASONS, ConsumerMetrics, ServiceMetrics, make_registry
from leadflow_shared.settings import ServiceSettings

pytestmark = [pytest.mark.unit]


class _Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_", env_nested_delimiter="__", extra="ignore", frozen=True)


def test_production_refuses_to_start_without_kafka_or_mongodb_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPS_KAFKA__BOOTSTRAP_SERVERS")
    with pytest.raises(ValidationError, match="OPS_KAFKA__BOOTSTRAP_SERVERS must be set in production"):
        _Settings(environment="production")
    monkeypatch.setenv("OPS_KAFKA__BOOTSTRAP_SERVERS", "kafka:9093")
    monkeypatch.delenv("OPS_MONGO__URL")
    with pytest.raises(ValidationError, match="OPS_MONGO__URL must be set in production"):
        _Settings(environment="production")
    assert _Settings().mongo.url.get_secret_value().startswith("mongodb://127.0.0.1")  # development: defaults
    monkeypatch.setenv("OPS_MONGO__URL", "mongodb://db:27017")
    assert _Settings(environment="production").mongo.url.get_secret_value() == "mongodb://db:27017"


@contextlib.contextmanager
def json_logs(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[list[dict[str, Any]]]:
    """Logging configured for `service` inside the block; the list fills with the lines written, parsed."""
    stream, lines = io.StringIO(), list[dict[str, Any]]()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = root.handlers[:], root.level
    try:
        configure_logging(service, "INFO")
        yield lines
    finally:
        root.handlers[:], level = before
        root.setLevel(level)
        lines += [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logs_are_json_lines_with_the_service_the_bound_fields_and_the_call_sites_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with json_logs(monkeypatch, "router") as lines:
        with bind(topic="leads.intake.v1", partition=2, offset=41):
            logging.getLogger("leadflow_router.handlers").warning("offer %s expired", "x", extra={"event_id": "e-1"})
        # uvicorn's copy of its message with terminal colours stays out of the JSON
        logging.getLogger("uvicorn.error").info("Started", extra={"color_message": "\x1b[36mStarted\x1b[0m"})
        logging.getLogger("elsewhere").info("outside")
    first, started, second = lines
    assert started["message"] == "Started"
    assert "color_message" not in started
    assert first["message"] == "offer x expired"
    assert (first["level"], first["logger"]) == ("WARNING", "leadflow_router.handlers")
    assert (first["service"], first["event_id"], first["topic"], first["partition"], first["offset"]) == (
        "router", "e-1", "leads.intake.v1", 2, 41,
    )  # fmt: skip
    assert first["time"].startswith("20")
    assert "topic" not in second
    assert second["service"] == "router"


def test_a_commit_refused_by_a_rebalance_or_an_expired_session_is_one_warning_and_other_errors_stay_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = CommitFailedError("Commit cannot be completed since the group has already rebalanced")
    with json_logs(monkeypatch, "intake") as lines:
        logging.getLogger("aiokafka.consumer.group_coordinator").error(
            "OffsetCommit failed for group %s due to group error (%s), will rejoin",
            "g",
            "[Error 22] IllegalGenerationError",
        )
        logging.getLogger("faststream.leadflow").log(logging.CRITICAL, repr(refused), exc_info=refused)
        logging.getLogger("faststream.leadflow").log(logging.CRITICAL, "boom", exc_info=RuntimeError("boom"))
        logging.getLogger("aiokafka.consumer.group_coordinator").error("OffsetCommit failed: %s", "UnknownError")
        # aiokafka's words when a consumer's heartbeats went unanswered for a session (it rejoins at once)
        logging.getLogger("aiokafka.consumer.group_coordinator").error(
            "Heartbeat session expired - marking coordinator dead"
        )
    assert [line["level"] for line in lines] == ["WARNING", "WARNING", "CRITICAL", "ERROR", "WARNING"]
    assert "exc_info" not in lines[1]
    assert "RuntimeError" in lines[2]["exc_info"]
    assert lines[4]["message"] == "consumer session expired (no heartbeat answered in time); rejoining"


def test_dead_letter_reasons_are_a_fixed_set_exported_at_zero_per_topic() -> None:
    assert _reason(UnreadableRecord("bad header")) == "unreadable"
    assert _reason(PoisonMessage("no such lead")) == "invalid"
    assert _reason(json.JSONDecodeError("x", "doc", 0)) == "invalid"
    assert _reason(RuntimeError("still failing")) == "failed"
    registry = make_registry()
    ConsumerMetrics(registry, "router").consuming("leads.intake.v1")
    for reason in DEAD_LETTER_REASONS:
        value = registry.get_sample_value(
            "router_dead_lettered_messages_total", {"topic": "leads.intake.v1", "reason": reason}
        )
        assert value == 0.0


@pytest.mark.asyncio
async def test_a_closed_mongodb_client_rewinds_the_record_and_other_misuse_is_the_records_fault() -> None:
    """A handler that outlives the broker's graceful stop meets the closed client: the record belongs to the
    partition's next consumer, never to the dead letters (a clean-clone run dead-lettered nine so)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient("mongodb://127.0.0.1:9/?directConnection=true")
    await client.close()
    with pytest.raises(InvalidOperation) as closed:
        await client["db"]["c"].find_one({})
    assert is_transient(closed.value)
    assert not is_transient(InvalidOperation("cannot set options after executing query"))


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationFailure("not primary", 10107), True),  # a stepped-down primary, during an election
        (OperationFailure("interrupted at shutdown", 11600), True),
        (OperationFailure("anything", 0, {"errorLabels": ["RetryableWriteError"]}), True),
        (WriteConcernError("waiting for replication timed out", 64, {"errmsg": "wtimeout"}), True),
        (BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "wtimeout"}]}), True),
        (BulkWriteError({"writeErrors": [{"index": 0, "code": 11000}], "writeConcernErrors": []}), False),
        (DuplicateKeyError("E11000 duplicate key", 11000), False),
        (OperationFailure("document failed validation", 121), False),
        (OperationFailure("BSONObj size is invalid", 10334), False),
    ],
)
def test_a_mongodb_failover_is_an_outage_and_a_refused_document_is_the_records_fault(
    error: OperationFailure, transient: bool
) -> None:
    # During an election PyMongo retries a write once; if the election outlasts that, the record waits (rewind)
    # instead of going to the dead letters after the consumer's few seconds of retries.
    assert is_transient(error) is transient


@pytest.mark.asyncio
async def test_http_requests_are_counted_by_route_template_never_by_raw_path() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "crm-api")
    app = FastAPI()

    @app.get("/accounts/{account_id}/leads")
    async def leads(account_id: str) -> dict[str, str]:
        return {"account": account_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    app.add_middleware(RequestMetrics, metrics=metrics, body_seconds=30)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for account in ("a1", "a2"):
            assert (await client.get(f"/accounts/{account}/leads")).status_code == 200
        assert (await client.get("/wp-admin/x.php")).status_code == 404
        assert (await client.get("/boom")).status_code == 500

    def count(route: str, code: str) -> float | None:
        labels = {"service": "crm-api", "route": route, "method": "GET", "code": code}
        return registry.get_sample_value("leadflow_http_requests_total", labels)

    assert count("/accounts/{account_id}/leads", "200") == 2
    assert count("unmatched", "404") == 1
    assert count("/boom", "500") == 1
    names = {s.labels.get("route") for m in registry.collect() for s in m.samples}
    assert "/wp-admin/x.php" not in names


@pytest.mark.asyncio
async def test_every_answer_of_a_service_says_nosniff_then_what_its_policy_adds() -> None:
    # Set around the whole app (`ServiceApp.__call__`): Starlette's own 500, sent past every middleware the app
    # adds, and RequestMetrics' 408 included; the service's `answer_policy` sees the headers last (decision 0092).
    app = ServiceApp()

    @app.get("/json")
    async def json_answer() -> dict[str, str]:
        return {"a": "b"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unhandled")

    @app.post("/body")
    async def body(request: Request) -> None:
        await request.body()

    app.add_middleware(RequestMetrics, metrics=ServiceMetrics(CollectorRegistry(), "intake"), body_seconds=0.05)
    seen: list[str] = []

    def policy(scope: Scope, headers: MutableHeaders) -> None:
        seen.append(headers.get("x-content-type-options", ""))
        headers["X-Policy"] = scope["path"]

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = [await client.get(path) for path in ("/json", "/nothing", "/boom", "/health/none")]
        app.answer_policy = policy
        with_policy = [await client.get(path) for path in ("/json", "/nothing", "/boom")]
    late = await _answer_of(app, {**_SCOPE, "path": "/body", "query_string": b""}, _never)
    assert [a.status_code for a in [*answers, *with_policy]] == [200, 404, 500, 404, 200, 404, 500]
    assert late[0]["status"] == 408
    everything = [a.headers.get_list("x-content-type-options") for a in [*answers, *with_policy]]
    everything.append(MutableHeaders(raw=late[0]["headers"]).getlist("x-content-type-options"))
    assert everything == [["nosniff"]] * 8
    assert [a.headers.get("x-policy") for a in with_policy] == ["/json", "/nothing", "/boom"]
    assert MutableHeaders(raw=late[0]["headers"]).get("x-policy") == "/body"
    assert seen == ["nosniff"] * 4, "the policy comes after nosniff"


async def _answer_of(app: ServiceApp, scope: dict[str, Any], receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    return sent


async def _never() -> Message:
    await asyncio.Event().wait()  # a body announced and never sent
    raise AssertionError("unreachable")


_SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/x", "headers": []}


@pytest.mark.asyncio
async def test_a_body_late_after_the_response_started_ends_the_request_without_a_408() -> None:
    registry = CollectorRegistry()
    sent: list[Message] = []

    async def streaming(_scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()
        raise AssertionError("the body came")

    async def send(message: Message) -> None:
        sent.append(message)

    layer = RequestMetrics(streaming, ServiceMetrics(registry, "intake"), body_seconds=0.05)
    await asyncio.wait_for(layer(dict(_SCOPE), _never, send), timeout=5)
    assert [message["type"] for message in sent] == ["http.response.start"]  # no 408 after it: uvicorn closes
    labels = {"service": "intake", "route": "unmatched", "method": "POST", "code": "200"}
    assert registry.get_sample_value("leadflow_http_requests_total", labels) == 1


@pytest.mark.asyncio
async def test_a_disconnect_passes_through_the_body_deadline_unchanged() -> None:
    gone: Message = {"type": "http.disconnect"}
    messages: list[Message] = [{"type": "http.request", "body": b"ab", "more_body": True}, gone]
    received: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def app(_scope: Scope, receive: Receive, _send: Send) -> None:
        received.extend([await receive(), await receive()])

    async def send(_message: Message) -> None:
        raise AssertionError("nothing to answer a client that left")

    layer = RequestMetrics(app, ServiceMetrics(CollectorRegistry(), "intake"), body_seconds=30)
    await layer(dict(_SCOPE), receive, send)
    assert received[1] is gone


def test_readiness_flips_are_counted_once_per_change() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry, "intake")
    for ok in (True, True, False, False, True):
        metrics.readiness(ok)
    assert registry.get_sample_value("leadflow_readiness_changes_total", {"service": "intake"}) == 3
    assert registry.get_sample_value("leadflow_ready", {"service": "intake"}) == 1
