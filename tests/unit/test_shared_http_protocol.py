"""leadflow's httptools protocol (`http_protocol.HeadDeadline`, decision 0054) fed TCP pieces directly, so where one
piece ends and the next begins is exact (a real socket cannot promise it). On a real server:
`integration/test_request_deadlines.py`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from leadflow_shared.http_protocol import with_head_deadline


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connection(head_seconds: float = 10.0, keep_alive: int = 5) -> tuple[Any, _Transport]:
    cls = with_head_deadline(head_seconds)
    config = Config(
        app=_app, http=cls, lifespan="off", log_config=None, access_log=False, timeout_keep_alive=keep_alive
    )
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


@pytest.mark.asyncio
async def test_a_body_in_the_piece_that_begins_a_pipelined_request_is_not_counted_as_head() -> None:
    """A POST whose head came in two pieces, the second holding the rest of the head, a 20 KB body and the
    beginning of a pipelined GET: the piece is not the GET's head (counted, it made the GET's 16 bytes 'over
    64 KiB': 431, the connection closed, the POST's answer lost with it)."""
    protocol, transport = _connection()
    body = b"x" * 20_000
    protocol.data_received(b"POST /echo HTTP/1.1\r\nHost: test\r\n")
    protocol.data_received(b"Content-Length: %d\r\n\r\n" % len(body) + body + b"GET / HTTP/1.1\r\n")
    assert b" 431 " not in bytes(transport.written[:20]), bytes(transport.written[:200])
    assert not transport.closed, "a legitimate pipelined connection was closed"
    protocol.data_received(b"Host: test\r\n\r\n")
    for _ in range(200):  # the app tasks run on this loop: wait for both answers (bounded)
        if bytes(transport.written).count(b"HTTP/1.1 200") == 2:
            break
        await asyncio.sleep(0.01)
    assert bytes(transport.written).count(b"HTTP/1.1 200") == 2, bytes(transport.written[:300])
    protocol.connection_lost(None)


async def _answers(transport: _Transport, count: int) -> int:
    """How many 200 answers the transport holds once `count` are there (or after 2 s): the app runs as tasks."""
    for _ in range(200):
        if bytes(transport.written).count(b"HTTP/1.1 200") >= count:
            break
        await asyncio.sleep(0.01)
    return bytes(transport.written).count(b"HTTP/1.1 200")


@pytest.mark.asyncio
async def test_a_keep_alive_request_after_one_offering_an_h2c_upgrade_is_answered() -> None:
    """`curl --http2 http://...` offers `Upgrade: h2c` on its first request; the server answers it in HTTP/1.1
    (no WebSocket, no 101) and the connection is kept alive: the next request on it is answered too."""
    protocol, transport = _connection()
    protocol.data_received(
        b"GET / HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    assert await _answers(transport, 1) == 1, bytes(transport.written[:300])
    assert not transport.closed
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    assert await _answers(transport, 2) == 2, "the keep-alive request after the h2c offer was never answered"
    protocol.connection_lost(None)


@pytest.mark.asyncio
async def test_a_15_kib_cookie_head_in_small_pieces_is_served() -> None:
    """A head of ~15 KiB (a large Cookie) arriving 100 bytes at a time: under the bound, however it comes."""
    protocol, transport = _connection()
    head = b"GET / HTTP/1.1\r\nHost: test\r\nCookie: " + b"c" * 15_000 + b"\r\n\r\n"
    for i in range(0, len(head), 100):
        protocol.data_received(head[i : i + 100])
    assert await _answers(transport, 1) == 1, bytes(transport.written[:300])
    protocol.connection_lost(None)


@pytest.mark.asyncio
async def test_a_next_head_begun_before_the_response_is_bounded_from_the_response_not_left_to_the_keep_alive() -> None:
    """An idle kept-alive connection is the keep-alive's to close (decision 0103), but one whose next request line
    came in the same piece as the request answered is not idle: its head's deadline runs from the response."""
    protocol, transport = _connection(head_seconds=0.2, keep_alive=60)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: test\r\n\r\nGET / HTTP/1.1\r\n")
    assert await _answers(transport, 1) == 1, bytes(transport.written[:300])
    for _ in range(300):  # closed by the head's deadline (0.2 s), long before the keep-alive's 60 s (bounded)
        if transport.closed:
            break
        await asyncio.sleep(0.01)
    assert transport.closed, "an unfinished head after a response was left open"
    protocol.connection_lost(None)
