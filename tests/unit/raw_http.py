"""A raw HTTP/1.1 client for the tests of request deadlines (decision 0071): it sends what httpx does not
(a head cut short, a body announced and never sent, a body one byte at a time) and times when the server
answers and closes. Every wait has a deadline: a server that never closes fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse(raw: bytes) -> Answer:
    """One whole response: status line, headers, body (by Content-Length)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split(" ")[1]), headers, rest[: int(headers.get("content-length", len(rest)))])


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.sent_at = self.loop.time()  # when the last bytes were sent (or the connection opened)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent_at = self.loop.time()

    async def trickle(self, data: bytes, *, every: float) -> None:
        """Send `data` one byte at a time, `every` seconds apart (the client's pace), until the server closes."""
        with contextlib.suppress(ConnectionError):
            for byte in data:
                await asyncio.sleep(every)
                await self.send(bytes([byte]))

    async def trickled_until_closed(
        self, data: bytes, *, every: float, timeout: float, size: int = 1
    ) -> tuple[bytes, float]:
        """Send `data` `size` bytes at a time, `every` seconds apart, until the server answers or closes, then
        read until it closes (fails after `timeout` seconds): what it sent, and how long after the last
        bytes sent before the trickle it closed. Not a byte is sent once the server has answered: a byte
        arriving after the server closed would have its kernel reset the connection, and a reset can
        destroy the answer before this side reads it."""
        started = self.sent_at
        deadline = self.loop.time() + timeout
        pending = iter(data[i : i + size] for i in range(0, len(data), size))
        while not (first := await self._read_within(every, deadline)):
            if self.reader.at_eof():
                return b"", self.loop.time() - started
            if (piece := next(pending, None)) is not None:
                await self.send(piece)
        rest, closed_at = await self.until_closed(timeout=max(deadline - self.loop.time(), 0.001))
        return first + rest, closed_at - started

    async def _read_within(self, seconds: float, deadline: float) -> bytes:
        """What the server sends within `seconds` (b"" if nothing, or if it closed); fails past `deadline`."""
        if self.loop.time() >= deadline:
            raise TimeoutError("the server neither answered nor closed in time")
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.reader.read(65536), min(seconds, deadline - self.loop.time()))
        return b""

    async def response(self, *, timeout: float) -> Answer:
        """The next whole response on this connection (it stays open)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        length = int(parse(head).headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return parse(head + body)

    async def until_closed(self, *, timeout: float) -> tuple[bytes, float]:
        """Everything the server sends until it closes the connection, and when it closed (the loop's
        time, as `sent_at`); fails after `timeout` seconds."""
        received = await asyncio.wait_for(self.reader.read(), timeout)
        return received, self.loop.time()


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[RawConnection]:
    """A connection to `url`'s host and port, closed at the end."""
    where = urlsplit(url)
    conn = RawConnection(*await asyncio.open_connection(where.hostname, where.port))
    try:
        yield conn
    finally:
        conn.writer.close()
        with contextlib.suppress(ConnectionError):
            await conn.writer.wait_closed()


def request(method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    """A request's bytes: a body with its Content-Length unless `headers` say otherwise."""
    fields = {"Host": "test"} | ({"Content-Length": str(len(body))} if body is not None else {}) | (headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode() + (body or b"")


def chunked(body: bytes, *, size: int) -> bytes:
    """`body` in Transfer-Encoding: chunked, `size` bytes a chunk."""
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
