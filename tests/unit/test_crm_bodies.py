"""crm-api's request bodies (leadflow_crm_api.bodies) and 422 problem details (problems.py): strict JSON
within bounds, a 413 beyond the byte limit, and refusals that name the place and never the value.

The middleware is driven in-process over a small FastAPI app (httpx.ASGITransport); the running
crm-api is exercised by tests/e2e/test_crm_edges.py and tests/e2e/test_crm_body_fuzz.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict

from leadflow_crm_api.bodies import BodyGuard, BodyLimits, parsed_as_json
from leadflow_crm_api.problems import MAX_INVALID_PARAMS, install_problem_handlers, location_name, reason_of

pytestmark = pytest.mark.unit

LIMITS = BodyLimits()


def test_crm_api_bounds_are_decision_0023s() -> None:
    """The strict-JSON rule itself is tested in test_shared_json_bodies.py; these are crm-api's numbers."""
    bounds = LIMITS.json
    assert (bounds.max_depth, bounds.max_items, bounds.max_members, bounds.int_bits) == (16, 10_000, 100, 64)
    assert bounds.max_errors == 1  # the first refusal, in document order


def test_content_types_parsed_as_json_are_those_fastapi_parses() -> None:
    assert parsed_as_json("application/json")
    assert parsed_as_json("application/json; charset=utf-8")
    assert parsed_as_json("application/merge-patch+json")
    assert not parsed_as_json(None)
    assert not parsed_as_json("")
    assert not parsed_as_json("text/plain")
    assert not parsed_as_json("application/x-www-form-urlencoded")


def test_problem_names_never_repeat_what_the_client_made_up() -> None:
    assert location_name(("body", "sources", 0, "name")) == "body.sources.0.name"
    assert location_name(("query", "created_from")) == "query.created_from"
    assert location_name(("header", "idempotency-key")) == "header.idempotency-key"
    assert location_name(("body", "jane.doe@example.com")) == "body.*"
    assert location_name(("body", "x" * 65)) == "body.*"
    assert location_name(("body", "A\ud800b")) == "body.*"


def test_problem_reasons_never_quote_the_input() -> None:
    uuid_error = {
        "type": "uuid_parsing",
        "msg": "Input should be a valid UUID, invalid character: expected [0-9a-fA-F-], found `Z` at 1",
        "ctx": {"error": "invalid character: expected [0-9a-fA-F-], found `Z` at 1"},
    }
    assert reason_of(uuid_error) == "Input should be a valid UUID"
    tag_error = {"type": "union_tag_invalid", "msg": "Input tag 'secret' found using 'kind'", "ctx": {"tag": "secret"}}
    assert "secret" not in reason_of(tag_error)
    own = {"type": "value_error", "msg": "Value error, a name must contain letters", "ctx": {"error": ValueError()}}
    assert reason_of(own) == "Value error, a name must contain letters"
    assert reason_of({"type": "string_too_long", "msg": "String should have at most 64 characters"}) == (
        "String should have at most 64 characters"
    )


# --- the middleware, in-process ------------------------------------------------------------------


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    rating: float = 0.0


def small_app(max_bytes: int = 64 * 1024) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app, realm="test")
    app.add_middleware(BodyGuard, limits=BodyLimits(max_bytes=max_bytes))

    @app.post("/notes")
    async def post_note(note: Note) -> Note:
        return note

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return app


async def send(
    app: FastAPI, content: bytes | AsyncIterator[bytes], content_type: str = "application/json", path: str = "/notes"
) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as client:
        return await client.post(path, content=content, headers={"content-type": content_type})


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


@pytest.mark.asyncio
async def test_a_body_announced_beyond_the_limit_is_refused_with_413() -> None:
    body = assert_problem(await send(small_app(1024), b"x" * 1025), 413)
    assert body["type"].endswith("/content-too-large")
    assert "1024 bytes" in body["detail"]


@pytest.mark.asyncio
async def test_a_streamed_body_beyond_the_limit_is_refused_with_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 100  # no Content-Length: chunked

    assert_problem(await send(small_app(1024), chunks(), "text/plain", "/raw"), 413)


@pytest.mark.asyncio
async def test_a_streamed_body_within_the_limit_reaches_the_route_whole() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 100

    response = await send(small_app(1024), chunks(), "text/plain", "/raw")
    assert response.json() == {"bytes": 1000}
    ok = await send(small_app(), json.dumps({"text": "hi", "rating": 2.5}).encode())
    assert ok.json() == {"text": "hi", "rating": 2.5}


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b'{"text": "hi", "rating": NaN}', "body.rating"),
        (b'{"text": "A\\ud800b"}', "body.text"),
        (b"[" * 50_000, "body"),
        (b"[" * 17 + b"]" * 17, "body" + ".0" * 16),
        (json.dumps({"text": ["a"] * 10_001}).encode(), "body.text"),
        (json.dumps({f"k{i}": i for i in range(101)}).encode(), "body"),
        (b'{"text": "hi", "rating": 9223372036854775808}', "body.rating"),
        ('{"text": "hi"}'.encode("utf-16"), "body"),  # RFC 8259: UTF-8
    ],
)
@pytest.mark.asyncio
async def test_strict_json_refusals_are_problem_details_naming_the_field(body: bytes, name: str) -> None:
    problem = assert_problem(await send(small_app(), body), 422)
    assert [p["name"] for p in problem["invalid_params"]] == [name]


@pytest.mark.asyncio
async def test_a_body_that_is_not_json_by_its_content_type_is_left_to_the_route() -> None:
    # FastAPI does not parse text/plain as JSON: the model refuses the bytes.
    problem = assert_problem(await send(small_app(), b'{"text": NaN}', "text/plain"), 422)
    assert problem["invalid_params"][0]["name"] == "body"


@pytest.mark.asyncio
async def test_422s_list_a_bounded_number_of_fields_and_never_the_values() -> None:
    secret = "jane.secret@example.com"
    body = json.dumps({"text": 5, **{f"k{i}": secret for i in range(60)}}).encode()
    problem = assert_problem(await send(small_app(), body), 422)
    assert len(problem["invalid_params"]) == MAX_INVALID_PARAMS
    assert "61 invalid fields" in problem["detail"]
    assert secret not in json.dumps(problem)


@pytest.mark.asyncio
async def test_a_413_reads_no_further_than_the_end_of_the_body() -> None:
    """An over-limit last chunk (more_body false) is answered at once; a wait for more would hang."""
    guard = BodyGuard(small_app(1024), limits=BodyLimits(max_bytes=1024))
    script = [
        {"type": "http.request", "body": b"x" * 600, "more_body": True},
        {"type": "http.request", "body": b"x" * 600, "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        assert script, "read past the end of the body"
        return script.pop(0)

    async def send_(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/raw",
        "headers": [(b"content-type", b"text/plain")],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("crm", 80),
        "root_path": "",
    }
    await guard(scope, receive, send_)
    assert sent[0]["status"] == 413


@pytest.mark.asyncio
async def test_a_413_drops_the_rest_of_a_streamed_body_before_answering() -> None:
    guard = BodyGuard(small_app(1024), limits=BodyLimits(max_bytes=1024, max_discard_bytes=10_000))
    script = [{"type": "http.request", "body": b"x" * 600, "more_body": True} for _ in range(5)]
    script.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return script.pop(0)

    async def send_(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/raw",
        "headers": [(b"transfer-encoding", b"chunked")],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("crm", 80),
        "root_path": "",
    }
    await guard(scope, receive, send_)
    assert script == [], "the whole body was read before the answer"
    assert sent[0]["status"] == 413


@pytest.mark.asyncio
async def test_an_unexpected_error_is_still_a_problem_without_details() -> None:
    app = small_app()

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("jane.secret@example.com")  # a bug whose message holds data

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://crm"
    ) as client:
        response = await client.get("/broken")
    body = assert_problem(response, 500)
    assert "jane.secret" not in response.text
    assert body["type"].endswith("/internal")
