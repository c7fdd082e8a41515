"""The HTTP/1.1 protocol every service's uvicorn runs (decision 0054): uvicorn's httptools protocol (llhttp, in C)
with the bounds h11 gave and leadflow adds: a deadline for each request head (decision 0071), a bound on its size,
and RFC 9457 problem details for what the parser refuses, where uvicorn answers a bare text/plain 400."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROBLEM_TYPE_BASE = "https://leadflow.dev/problems/"  # as crm-api's problem details (crm-api/problems.py)
MAX_HEAD_BYTES = 64 * 1024  # as httpx's client bound; h11 refused only an unfinished head over 16 KiB (decision 0054)


class HeadTooLargeError(Exception):
    """Raised from the parser's callbacks: the request's line and headers passed `MAX_HEAD_BYTES`."""


def problem_answer(status: int, title: str, slug: str, detail: str, *, extra_headers: bytes = b"") -> bytes:
    """A whole HTTP/1.1 answer with problem details that closes the connection (no app has seen the request)."""
    body = json.dumps({"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail})
    head = (
        f"HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nx-content-type-options: nosniff\r\nconnection: close\r\n"
    )
    return head.encode("ascii") + extra_headers + b"\r\n" + body.encode("ascii")


class HeadDeadline(HttpToolsProtocol):
    """A connection must send a whole request line and headers within `head_seconds` of its opening, or of the
    first byte it sends after a response, or it is closed unanswered (decision 0071): uvicorn never closes a
    connection that has not sent a whole request (its keep-alive timer starts only after a response and stops at the
    first byte). A kept-alive connection that sends nothing is uvicorn's keep-alive timer's to close, so it stays
    open as long as `HttpSettings.keep_alive_seconds`, longer than the proxies in front wait (decision 0103). One
    timer per connection and per request, cancelled when the head is in; no periodic task. A head over
    `MAX_HEAD_BYTES` is answered 431 (llhttp itself sets no bound); anything else llhttp refuses, 400."""

    head_seconds: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the head's parts the parser has handed over (its line, each whole header)
        self._in_head = False  # a request begun whose head is not whole yet
        self._head_fed = 0  # bytes fed while it is not: llhttp keeps an unfinished header value whole
        self._begun = 0  # requests begun on the connection: a piece that begins one is not counted as its head's
        self._idle = False  # answered, nothing received since: the next byte starts the head's deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._idle:
            self._idle = False
            self._await_head()
        in_head, begun = self._in_head, self._begun
        try:
            self.parser.feed_data(data)
            if in_head and self._in_head and begun == self._begun:  # one head, unfinished before and after the piece
                self._head_fed += len(data)
                if self._head_fed > MAX_HEAD_BYTES:
                    raise HeadTooLargeError
        except httptools.HttpParserUpgrade:  # as uvicorn's own `data_received`
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except (HeadTooLargeError, httptools.HttpParserError) as exc:
            if isinstance(exc, HeadTooLargeError) or isinstance(exc.__context__, HeadTooLargeError):
                # (from `_count`, in a parser callback, httptools raises its own error in its place)
                self._refuse(431, "Request Header Fields Too Large", "head-too-large",
                             f"The request line and headers are over {MAX_HEAD_BYTES} bytes.")  # fmt: skip
            else:
                self._refuse(400, "Bad Request", "bad-request", "The request is not valid HTTP/1.1.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes, self._head_fed, self._in_head = 0, 0, True
        self._begun += 1

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_in()  # a request's head was read: its app runs
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        head_waiting = not self.pipeline  # a pipelined request's head is in already; its app starts now
        super().on_response_complete()
        if head_waiting and not self.transport.is_closing():
            if self._in_head:  # part of the next head came meanwhile: its deadline runs from now
                self._await_head()
            else:  # idle: uvicorn's keep-alive timer closes it, unless a byte comes first
                self._idle = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_in()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 (uvicorn names its reason; problem details here)
        self._refuse(400, "Bad Request", "bad-request", "The request is not valid HTTP/1.1.")

    def _refuse(self, status: int, title: str, slug: str, detail: str) -> None:
        dated = b"".join(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        self.transport.write(problem_answer(status, title, slug, detail, extra_headers=dated))
        self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLargeError

    def _await_head(self) -> None:
        self._head_in()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_late)

    def _head_in(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_head_deadline(seconds: float) -> type[HeadDeadline]:
    """The protocol class uvicorn's `Config(http=...)` takes, with the service's head deadline."""

    class WithHeadDeadline(HeadDeadline):
        head_seconds = seconds

    return WithHeadDeadline
