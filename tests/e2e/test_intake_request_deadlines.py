"""Intake's process bounds how long it waits for a request (decision 0071): a lead form whose body never
comes, or comes too slowly, gets a 408 problem and is counted; a connection that never sends a whole
request head is closed; a lead posted at once or chunked still gets its 202.

A second intake beside the stack's (same Kafka and MongoDB), with short deadlines. Raw sockets send what
HTTP clients do not; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from raw_http import Answer, chunked, connect, parse, request

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

HEAD, BODY = 2.0, 1.0  # the services: 10 s and 30 s
LATE = 3.0  # how much later than due a timer may fire on a loaded test machine
EARLY = 0.05  # clocks' granularity
CLIENT_IDLE = 5.0  # how long httpx keeps an idle pooled connection (its default `keepalive_expiry`)
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def intake(stack: Stack) -> Iterator[str]:
    deadlines = {"INTAKE_HTTP__HEAD_TIMEOUT_SECONDS": str(HEAD), "INTAKE_HTTP__BODY_TIMEOUT_SECONDS": str(BODY)}
    with stack.extra_intake("intake-deadlines", {}, env=deadlines) as url:
        yield url


@pytest_asyncio.fixture
async def client(intake: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=intake, timeout=10) as http:
        yield http


def lead() -> bytes:
    m = f"m{uuid.uuid4().hex[:10]}"
    return json.dumps({"account_id": "acme-realty", "first_name": "Robin", "last_name": m,
                       "email": f"robin.{m}@example.com"}).encode()  # fmt: skip


Wanted = tuple[str, dict[str, str]]  # a metric's sample name and the labels it must have


async def samples(client: httpx.AsyncClient, *wanted: Wanted) -> tuple[float, ...]:
    """The values of `wanted` from one scrape of /metrics: counters read in one scrape are of one moment (read
    apart, a request finishing between two reads shows in one counter and not in the other)."""
    families = list(text_string_to_metric_families((await client.get("/metrics")).text))

    def value(name: str, labels: dict[str, str]) -> float:
        for family in families:
            for found in family.samples:
                if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                    return float(found.value)
        return 0.0

    return tuple(value(name, labels) for name, labels in wanted)


def rejected(reason: str) -> Wanted:
    return "intake_leads_rejected_total", {"source": "website", "reason": reason}


def answered(code: str) -> Wanted:
    return "leadflow_http_requests_total", {"route": "/v1/leads", "method": "POST", "code": code}


async def timed_out(client: httpx.AsyncClient) -> tuple[float, float]:
    """Intake's count of lead forms too slow, and of its 408s on the form's route."""
    too_slow, timeouts = await samples(client, rejected("too_slow"), answered("408"))
    return too_slow, timeouts


def is_408_problem(answer: Answer) -> bool:
    problem = answer.json()
    return (
        answer.status == 408
        and answer.headers["content-type"] == "application/problem+json"
        and answer.headers["connection"] == "close"
        and problem["type"] == "https://leadflow.dev/problems/request-timeout"
        and problem["detail"] == "The request body did not arrive within 1 s."
    )


async def test_a_lead_form_whose_body_never_comes_gets_a_408_is_counted_and_intake_goes_on(
    intake: str, client: httpx.AsyncClient
) -> None:
    before = await timed_out(client)
    async with connect(intake) as conn:
        await conn.send(request("POST", "/v1/leads", headers=JSON | {"Content-Length": "10"}))
        raw, closed_at = await conn.until_closed(timeout=BODY + LATE)
    assert is_408_problem(parse(raw)), raw
    assert closed_at - conn.sent_at >= BODY - EARLY
    after = await timed_out(client)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    accepted = await client.post("/v1/leads", content=lead(), headers=JSON)
    assert accepted.status_code == 202, accepted.text


async def test_a_lead_form_trickled_past_the_deadline_gets_a_408(intake: str) -> None:
    body = lead()
    async with connect(intake) as conn:
        await conn.send(request("POST", "/v1/leads", headers=JSON | {"Content-Length": str(len(body))}))
        # A byte every 2/7 of the deadline's span: bytes keep coming, and none is due at the deadline itself (at
        # BODY / 4 the fourth one was sent as the server closed, and the kernel's reset destroyed the 408)
        raw, took = await conn.trickled_until_closed(body, every=BODY / 3.5, timeout=BODY + LATE)
    assert is_408_problem(parse(raw)), raw
    assert took >= BODY - EARLY


@pytest.mark.parametrize("sent", [b"POST /v1/leads HTTP/1.1\r\nHost: x\r\n", b""], ids=["partial head", "nothing"])
async def test_a_connection_without_a_whole_request_head_is_closed_at_the_head_deadline(
    intake: str, sent: bytes
) -> None:
    async with connect(intake) as conn:
        if sent:
            await conn.send(sent)
        raw, closed_at = await conn.until_closed(timeout=HEAD + LATE)
    assert raw == b""
    assert closed_at - conn.sent_at >= HEAD - EARLY


async def test_a_lead_posted_at_once_or_chunked_still_gets_its_202(intake: str) -> None:
    async with connect(intake) as conn:
        await conn.send(request("POST", "/v1/leads", body=lead(), headers=JSON))
        at_once = await conn.response(timeout=10)
        await conn.send(request("POST", "/v1/leads", headers=JSON | {"Transfer-Encoding": "chunked"}))
        await conn.send(chunked(lead(), size=16))
        in_chunks = await conn.response(timeout=10)
    assert (at_once.status, in_chunks.status) == (202, 202), (at_once, in_chunks)
    assert at_once.json()["event_id"] != in_chunks.json()["event_id"]


async def test_a_pooled_connection_idle_longer_than_a_client_keeps_one_still_takes_the_next_lead(stack: Stack) -> None:
    """The stack's own intake, with the services' defaults (decision 0103): a client's pool (httpx drops an idle
    connection after 5 s) or a proxy in front (60 s) sends its next request on a connection idle that long. Had
    intake closed it first (uvicorn's 5 s), a request sent at that moment was lost to a read error or a 502."""
    async with connect(stack.url("intake")) as conn:
        await conn.send(request("POST", "/v1/leads", body=lead(), headers=JSON))
        first = await conn.response(timeout=10)
        await asyncio.sleep(CLIENT_IDLE + 1)  # idle past the client's own limit (the case itself, not synchronization)
        await conn.send(request("POST", "/v1/leads", body=lead(), headers=JSON))
        second = await conn.response(timeout=10)
    assert (first.status, second.status) == (202, 202), (first, second)


async def test_a_client_that_leaves_mid_body_is_counted_as_gone_not_as_intakes_error(
    intake: str, client: httpx.AsyncClient
) -> None:
    """A client that goes away before its body is in: nobody to answer, so no 5xx in the metrics an SRE
    alerts on (counted 499, rejected `client_left`) and no traceback in intake's log (the fixture checks)."""

    async def counts() -> tuple[float, ...]:
        return await samples(client, rejected("client_left"), rejected("error"), answered("499"), answered("500"))

    before = await counts()
    async with connect(intake) as conn:
        await conn.send(request("POST", "/v1/leads", headers=JSON | {"Content-Length": "500"}) + lead()[:20])

    async def counted() -> tuple[float, ...] | None:
        now = await counts()
        return now if now != before else None

    after = await eventually(counted, timeout=10, what="intake to count the request the client left")
    assert after is not None
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (1, 0, 1, 0)
    accepted = await client.post("/v1/leads", content=lead(), headers=JSON)
    assert accepted.status_code == 202, accepted.text
