"""How long every service's HTTP server waits for a request (decision 0071), on a real uvicorn server made with
`serve`'s own configuration (`server_config`: httptools with the head's deadline and size bound) and an app as the
runtime makes it (`ServiceApp`, `RequestMetrics` with the body's deadline), with crm-api's body guard added after
it: the guard reads the whole body before routing, where a GET announcing a body it never sent hung crm-api. Raw
sockets send what HTTP clients do not; every wait has a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from fastapi import Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from raw_http import chunked, connect, parse, request

from leadflow_crm_api.bodies import BodyGuard, BodyLimits
from leadflow_devstack.processes import free_port
from leadflow_devstack.testing import eventually
from leadflow_shared.http import METHODS, QuietServer, RequestMetrics, ServiceApp, server_config
from leadflow_shared.metrics import ServiceMetrics
from leadflow_shared.settings import HttpSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

HEAD, BODY, KEEP_ALIVE = 3.0, 1.0, 1  # the services: 10 s, 30 s and 75 s
LATE = 2.0  # how much later than due a timer may fire on a loaded test machine
EARLY = 0.05  # clocks' granularity
PROBLEM = {
    "type": "https://leadflow.dev/problems/request-timeout",
    "title": "Request Timeout",
    "status": 408,
    "detail": "The request body did not arrive within 1 s.",
}


@dataclass
class Served:
    url: str
    registry: CollectorRegistry

    def count(self, method: str, code: str, route: str = "unmatched") -> float:
        labels = {"service": "deadlines", "route": route, "method": method, "code": code}
        return self.registry.get_sample_value("leadflow_http_requests_total", labels) or 0.0


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    async with serving(HttpSettings(port=free_port(), head_timeout_seconds=HEAD, body_timeout_seconds=BODY,
                                    keep_alive_seconds=KEEP_ALIVE)) as served:  # fmt: skip
        yield served


@contextlib.asynccontextmanager
async def serving(settings: HttpSettings) -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    app = ServiceApp()

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    metrics = ServiceMetrics(registry, "deadlines")
    app.add_middleware(RequestMetrics, metrics=metrics, body_seconds=settings.body_timeout_seconds)
    app.add_middleware(BodyGuard, limits=BodyLimits())  # after the runtime's layer, as crm-api adds it
    server = QuietServer(server_config(app, settings))
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, timeout=10, what="the server to start")
        yield Served(f"http://127.0.0.1:{settings.port}", registry)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_body_announced_and_never_sent_gets_a_408_and_the_server_goes_on(served: Served, method: str) -> None:
    async with connect(served.url) as conn:
        await conn.send(request(method, "/", headers={"Content-Length": "10"}))
        raw, closed_at = await conn.until_closed(timeout=BODY + LATE)
    answer = parse(raw)
    assert (answer.status, answer.json()) == (408, PROBLEM)
    assert (answer.headers["content-type"], answer.headers["connection"]) == ("application/problem+json", "close")
    assert closed_at - conn.sent_at >= BODY - EARLY
    assert served.count(method, "408") == 1  # counted like any other response (the guard reads before routing)

    async with connect(served.url) as again:
        await again.send(request("GET", "/"))
        assert (await again.response(timeout=5)).json() == {"status": "ok"}


async def test_a_body_trickled_past_the_deadline_gets_a_408_however_fast_each_byte_comes(served: Served) -> None:
    body = b'"abcdefgh"'  # JSON: whole, the route would answer 200
    async with connect(served.url) as conn:
        await conn.send(request("POST", "/echo", headers={"Content-Length": str(len(body))}))
        # A byte every 2/7 of the deadline's span: none is due at the deadline itself (a byte sent as the server
        # closes has its kernel reset the connection, which can destroy the 408)
        raw, took = await conn.trickled_until_closed(body, every=BODY / 3.5, timeout=BODY + LATE)
    answer = parse(raw)
    assert (answer.status, answer.json()) == (408, PROBLEM)
    assert took >= BODY - EARLY
    assert served.count("POST", "408") == 1


@pytest.mark.parametrize("sent", [b"POST /v1/leads HTTP/1.1\r\nHost: x\r\n", b""], ids=["partial head", "nothing"])
async def test_a_connection_without_a_whole_request_head_is_closed_at_the_head_deadline(
    served: Served, sent: bytes
) -> None:
    async with connect(served.url) as conn:
        if sent:
            await conn.send(sent)
        raw, closed_at = await conn.until_closed(timeout=HEAD + LATE)
    assert raw == b""  # closed unanswered
    assert closed_at - conn.sent_at >= HEAD - EARLY


async def test_a_head_trickled_byte_by_byte_is_closed_at_the_deadline_from_the_connections_opening(
    served: Served,
) -> None:
    async with connect(served.url) as conn:  # the head, whole only after 3 HEADs; no byte due at the deadline
        raw, took = await conn.trickled_until_closed(request("GET", "/"), every=HEAD / 5.5, timeout=HEAD + LATE)
    assert raw == b""
    assert took >= HEAD - EARLY


async def test_keep_alive_still_works_and_closes_an_idle_connection_at_its_own_timeout(served: Served) -> None:
    async with connect(served.url) as conn:
        for _ in range(2):  # a second request on the kept-alive connection
            await conn.send(request("GET", "/"))
            assert (await conn.response(timeout=5)).status == 200
        raw, closed_at = await conn.until_closed(timeout=HEAD + LATE)
    assert raw == b""
    assert KEEP_ALIVE - EARLY <= closed_at - conn.sent_at < HEAD  # uvicorn's keep-alive, not the head's deadline


async def test_an_idle_kept_alive_connection_outlives_the_head_deadline_until_the_keep_alive_closes_it() -> None:
    """Decision 0103: a proxy in front (or a client's pool) may send its next request on an idle connection up to
    its own idle timeout; the head's deadline must not close the connection under it before the keep-alive does."""
    head, keep_alive = 1.0, 3
    async with (
        serving(HttpSettings(port=free_port(), head_timeout_seconds=head, keep_alive_seconds=keep_alive)) as served,
        connect(served.url) as conn,
    ):
        await conn.send(request("GET", "/"))
        assert (await conn.response(timeout=5)).status == 200
        await asyncio.sleep(head + 0.5)  # idle past the head's deadline (the case itself, not synchronization)
        await conn.send(request("GET", "/"))
        assert (await conn.response(timeout=5)).status == 200, "answered on the same connection"
        raw, closed_at = await conn.until_closed(timeout=keep_alive + LATE)
    assert raw == b""
    assert closed_at - conn.sent_at >= keep_alive - EARLY


async def test_a_partial_head_after_a_response_is_closed_at_the_head_deadline(served: Served) -> None:
    """uvicorn's keep-alive timer stops at the first byte of the next request: alone, it never closes this."""
    async with connect(served.url) as conn:
        await conn.send(request("GET", "/"))
        assert (await conn.response(timeout=5)).status == 200
        await asyncio.sleep(KEEP_ALIVE / 2)  # idle a while first (the case itself): the deadline is the head's own
        await conn.send(b"GET / HTTP/1.1\r\n")
        raw, closed_at = await conn.until_closed(timeout=HEAD + LATE)
    assert raw == b""
    assert closed_at - conn.sent_at >= HEAD - EARLY  # the deadline runs from the head's first byte


async def test_bodies_whole_in_time_are_taken_sent_at_once_chunked_or_slowly(served: Served) -> None:
    body = b'{"name": "Robin", "n": 12345}'
    json_type = {"Content-Type": "application/json"}
    async with connect(served.url) as conn:
        await conn.send(request("POST", "/echo", body=body, headers=json_type))
        assert (await conn.response(timeout=5)).json() == {"bytes": len(body)}
        await conn.send(request("POST", "/echo", headers=json_type | {"Transfer-Encoding": "chunked"}))
        await conn.send(chunked(body, size=7))
        assert (await conn.response(timeout=5)).json() == {"bytes": len(body)}
        await conn.send(request("POST", "/echo", headers=json_type | {"Content-Length": "4"}))
        await conn.trickle(b"1234", every=BODY / 10)  # whole within the deadline
        assert (await conn.response(timeout=5)).json() == {"bytes": 4}
    assert served.count("POST", "200", route="/echo") == 3
    assert served.count("POST", "408") == 0


async def test_a_client_that_leaves_mid_body_is_counted_499_not_as_a_server_error(served: Served) -> None:
    """crm-api's guard returns without an answer when the client leaves; the runtime's layer counts that as
    the client's doing (499), not as a 500 an SRE would be paged for."""
    async with connect(served.url) as conn:
        await conn.send(request("POST", "/echo", headers={"Content-Length": "100"}) + b'"0123456789')

    def counted() -> bool:
        return served.count("POST", "499") + served.count("POST", "500") > 0

    await eventually(counted, timeout=10, what="the request the client left to be counted")
    assert (served.count("POST", "499"), served.count("POST", "500")) == (1, 0)


# Methods llhttp knows beyond those leadflow counts by name (WebDAV's and others'): they reach the app.
PARSED_METHODS = ["PROPFIND", "MKCOL", "PURGE", "LOCK", "SEARCH", "REPORT", "MKCALENDAR", "UNSUBSCRIBE"]


@given(
    invented=st.lists(
        st.from_regex(r"[A-Z][A-Z0-9]{2,15}", fullmatch=True) | st.sampled_from(PARSED_METHODS),
        min_size=1, max_size=8, unique=True,
    )
)  # fmt: skip
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_a_method_a_client_invents_makes_no_series_of_its_own(served: Served, invented: list[str]) -> None:
    """A method llhttp knows reaches the app: counted by name, each would be a series in every replica, so it is
    counted as OTHER. One llhttp does not know is refused by the parser (400, problem details), before any count."""
    invented = [m for m in invented if m not in METHODS]
    before = served.count("OTHER", "405", route="/")
    answered: dict[str, int] = {}
    for method in invented:
        async with connect(served.url) as conn:
            await conn.send(request(method, "/"))
            answer = await conn.response(timeout=5)
        assert answer.status == (405 if method in PARSED_METHODS else 400), method
        assert answer.status == 405 or answer.headers["content-type"] == "application/problem+json"
        answered[method] = answer.status
    assert served.count("OTHER", "405", route="/") == before + list(answered.values()).count(405)
    methods = {s.labels["method"] for m in served.registry.collect() for s in m.samples if "method" in s.labels}
    assert methods <= METHODS | {"OTHER"}


@pytest.mark.parametrize(
    "sent",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x7f.not-a-jwt\r\n\r\n",
    ],
    ids=["garbage", "two lengths", "a control character in a header"],
)
async def test_what_the_parser_refuses_is_answered_with_problem_details_and_the_connection_closed(
    served: Served, sent: bytes
) -> None:
    """uvicorn answers what llhttp refuses with a bare text/plain 400; every leadflow 4xx is problem details."""
    async with connect(served.url) as conn:
        await conn.send(sent)
        raw, _closed_at = await conn.until_closed(timeout=5)
    answer = parse(raw)
    assert answer.status == 400
    assert (answer.headers["content-type"], answer.headers["connection"]) == ("application/problem+json", "close")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.json() == {
        "type": "https://leadflow.dev/problems/bad-request",
        "title": "Bad Request",
        "status": 400,
        "detail": "The request is not valid HTTP/1.1.",
    }


@pytest.mark.parametrize("where", ["url", "headers"])
async def test_a_request_head_over_64_kib_is_refused_431_before_it_is_read_whole(served: Served, where: str) -> None:
    """llhttp bounds no head (h11 bounded an unfinished one at 16 KiB): without a bound a client could send headers
    for as long as the head's deadline lets it, all kept in memory. The bound's refusal comes as soon as it is
    passed (after the head's first read, which the transport bounds: uvloop reads at most 256 KiB at a time)."""
    big = "a" * (96 * 1024)
    head = request("GET", f"/?q={big}") if where == "url" else request("GET", "/", headers={"X-Big": big})
    async with connect(served.url) as conn:  # 1 KiB at a time, never finished: refused on size alone
        raw, _took = await conn.trickled_until_closed(head[: len(head) - 4], every=0.02, timeout=HEAD, size=1024)
    answer = parse(raw)
    assert (answer.status, answer.headers["content-type"]) == (431, "application/problem+json")
    assert answer.json()["type"] == "https://leadflow.dev/problems/head-too-large"


async def test_a_head_just_under_the_bound_is_served(served: Served) -> None:
    async with connect(served.url) as conn:
        await conn.send(request("GET", "/", headers={"X-Big": "a" * (60 * 1024)}))
        assert (await conn.response(timeout=5)).json() == {"status": "ok"}


async def test_pipelined_requests_are_answered_in_order_and_the_head_deadline_still_holds_after_them(
    served: Served,
) -> None:
    body = b'"abc"'
    json_type = {"Content-Type": "application/json"}
    async with connect(served.url) as conn:
        await conn.send(request("GET", "/") + request("POST", "/echo", body=body, headers=json_type))
        assert (await conn.response(timeout=5)).json() == {"status": "ok"}
        assert (await conn.response(timeout=5)).json() == {"bytes": len(body)}
        await conn.send(b"GET / HTTP/1.1\r\n")  # a partial head after the pipelined answers
        raw, closed_at = await conn.until_closed(timeout=HEAD + LATE)
    assert raw == b""
    assert closed_at - conn.sent_at >= HEAD - EARLY
