"""SMS (Twilio-style) and push (FCM HTTP v1-style) adapters against local HTTP servers that check each request."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from leadflow_notifier.adapters.providers import FcmPush, TwilioSms
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import PushContent, SmsContent
from leadflow_notifier.settings import PushSettings, SmsSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, object]]


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # the default 5 makes a burst of concurrent sends wait a second for SYN retries


@dataclass
class Provider:
    """A local HTTP server: records each request and answers with `reply(request)`."""

    reply: Callable[[Seen], Reply]
    seen: list[Seen] = field(default_factory=list)
    hang: threading.Event = field(default_factory=threading.Event)  # set: the server stops answering

    def __post_init__(self) -> None:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                provider.seen.append(request)
                if provider.hang.is_set():
                    provider.released.wait(timeout=10)  # a provider that takes too long
                status, payload = provider.reply(request)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.released = threading.Event()
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[Seen], Reply]], Provider]]:
    started: list[Provider] = []

    def make(reply: Callable[[Seen], Reply]) -> Provider:
        started.append(Provider(reply))
        return started[-1]

    yield make
    for provider in started:
        provider.close()


SMS = SmsContent(to="+13125550100", body="Lead offer: Jane. https://crm/x", lead_id="l-1")
PUSH = PushContent(
    token="device-token-1",
    title="Lead offer: Jane",
    body="Claim it before 06:15 CST",
    lead_id="l-1",
    link="https://crm/x",
    data={"lead_id": "l-1", "link": "https://crm/x"},
)


def twilio(reply: Reply) -> Callable[[Seen], Reply]:
    def check(request: Seen) -> Reply:
        # The real request shape: form-encoded To/From/Body, basic auth with the account SID.
        assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        assert request.headers["authorization"] == "Basic " + base64.b64encode(b"AC123:tok-en").decode()
        assert parse_qs(request.body.decode()) == {"To": [SMS.to], "From": ["+15005550006"], "Body": [SMS.body]}
        return reply

    return check


def fcm(reply: Reply) -> Callable[[Seen], Reply]:
    def check(request: Seen) -> Reply:
        assert request.path == "/v1/projects/leadflow-test/messages:send"
        assert request.headers["authorization"] == "Bearer ya29.token"
        assert json.loads(request.body) == {
            "message": {
                "token": "device-token-1",
                "notification": {"title": PUSH.title, "body": PUSH.body},
                "data": {"lead_id": "l-1", "link": "https://crm/x", "notification_id": "ev:push:a"},
            }
        }
        return reply

    return check


def sms_adapter(provider: Provider, client: httpx.AsyncClient, timeout: float = 5.0) -> TwilioSms:
    settings = SmsSettings(
        enabled=True,
        base_url=provider.url,
        account_sid="AC123",
        auth_token=SecretStr("tok-en"),
        timeout_seconds=timeout,
    )
    return TwilioSms(settings, client)


def push_adapter(provider: Provider, client: httpx.AsyncClient) -> FcmPush:
    settings = PushSettings(
        enabled=True, base_url=provider.url, project_id="leadflow-test", access_token=SecretStr("ya29.token")
    )
    return FcmPush(settings, client)


async def test_sms_is_sent_with_the_real_request_shape(server: Callable[..., Provider]) -> None:
    provider = server(twilio((201, {"sid": "SM1", "status": "queued"})))
    async with httpx.AsyncClient() as client:
        await sms_adapter(provider, client).send(SMS, message_id="ev:sms:a")
    assert len(provider.seen) == 1


async def test_push_is_sent_with_the_real_request_shape(server: Callable[..., Provider]) -> None:
    provider = server(fcm((200, {"name": "projects/leadflow-test/messages/1"})))
    async with httpx.AsyncClient() as client:
        await push_adapter(provider, client).send(PUSH, message_id="ev:push:a")
    assert len(provider.seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "error", "reason"),
    [
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number"}, PermanentDeliveryError, "rejected"),
        (401, {"code": 20003, "message": "Authenticate"}, PermanentDeliveryError, "auth"),
        (429, {"code": 20429, "message": "Too Many Requests"}, TransientDeliveryError, "throttled"),
        (500, {}, TransientDeliveryError, "unavailable"),
        (503, {}, TransientDeliveryError, "unavailable"),
    ],
)
async def test_sms_errors_are_mapped(
    server: Callable[..., Provider], status: int, body: dict[str, object], error: type[Exception], reason: str
) -> None:
    provider = server(twilio((status, body)))
    async with httpx.AsyncClient() as client:
        with pytest.raises(error) as raised:
            await sms_adapter(provider, client).send(SMS, message_id="m")
    assert isinstance(raised.value, PermanentDeliveryError | TransientDeliveryError)
    assert raised.value.reason == reason
    assert "Phone Number" not in str(raised.value), "provider messages may quote the number: codes only"


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [(404, "NOT_FOUND", "unregistered"), (400, "INVALID_ARGUMENT", "rejected"), (503, "UNAVAILABLE", "unavailable")],
)
async def test_push_errors_are_mapped(server: Callable[..., Provider], status: int, code: str, reason: str) -> None:
    # FCM v1 answers 404 for a token it no longer knows (UNREGISTERED): that device is forgotten.
    provider = server(fcm((status, {"error": {"code": status, "status": code, "message": "gone"}})))
    async with httpx.AsyncClient() as client:
        with pytest.raises((PermanentDeliveryError, TransientDeliveryError)) as raised:
            await push_adapter(provider, client).send(PUSH, message_id="ev:push:a")
    assert isinstance(raised.value, TransientDeliveryError) == (status >= 500)
    assert raised.value.reason == reason


async def test_a_provider_that_times_out_is_transient(server: Callable[..., Provider]) -> None:
    provider = server(twilio((201, {})))
    provider.hang.set()
    async with httpx.AsyncClient() as client:
        with pytest.raises(TransientDeliveryError) as raised:
            await sms_adapter(provider, client, timeout=0.2).send(SMS, message_id="m")
    assert raised.value.reason == "timeout"


async def test_a_provider_that_is_down_is_transient() -> None:
    settings = SmsSettings(enabled=True, base_url="http://127.0.0.1:9")  # discard port: nothing listens
    async with httpx.AsyncClient() as client:
        with pytest.raises(TransientDeliveryError):
            await TwilioSms(settings, client).send(SMS, message_id="m")
