"""A push provider's 404 that is not FCM's UNREGISTERED answer does not forget the device (helper 174's review; the
test failed before).

FCM says a token is gone with 404 and its JSON error (`"status": "NOT_FOUND"`, detail `errorCode: UNREGISTERED`).
`FcmPush._post` takes *any* 404 for it (`"HTTP 404" in exc.detail`, adapters/providers.py), whatever the body:
a 404 page from a load balancer or proxy in front of FCM, or from a wrong `NOTIFIER_PUSH__BASE_URL` path, makes
the Courier forget the recipient's token (`Courier._dead_letter` -> `PushDevices.forget_token`). One bad deploy of
the URL (or a flaky gateway) then erases the device registrations of every user it pushes to: fixing the URL and
replaying the dead letters does not bring them back, and every later notice has no device to go to. A 3xx, the same
misconfiguration, is a replayable `redirected` refusal (decision 0099); a 404 page is now a replayable `rejected`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from fakes_notifier import DeadLetters, Log
from prometheus_client import CollectorRegistry
from test_notifier_providers import PUSH, Answer, RawProvider, push_at, raw_server

from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Courier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

__all__ = ["raw_server"]  # the fixture: local provider servers that answer as each test says


class Devices:
    def __init__(self) -> None:
        self.forgotten: list[tuple[str, str]] = []

    async def forget_token(self, user_id: str, token: str) -> None:
        self.forgotten.append((user_id, token))


def not_found_page(handler: BaseHTTPRequestHandler, _provider: RawProvider) -> None:
    """What a gateway or a wrong path answers: a 404 HTML page, no FCM error in it."""
    body = b"<html><body><h1>404 Not Found</h1>The requested URL was not found on this server.</body></html>"
    handler.send_response(404)
    handler.send_header("Content-Type", "text/html; charset=UTF-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


async def test_a_404_page_that_is_not_fcms_unregistered_answer_does_not_forget_the_device(
    raw_server: Callable[[Answer], RawProvider],
) -> None:
    provider = raw_server(not_found_page)
    devices, dead = Devices(), DeadLetters()
    async with httpx.AsyncClient() as client:
        courier = Courier(
            deliveries=Log(),
            senders={Channel.PUSH: push_at(provider.url, client)},
            dead_letters=dead,
            metrics=NotifierMetrics(CollectorRegistry()),
            clock=lambda: datetime(2024, 1, 10, 12, tzinfo=UTC),
            retry=RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002),
            devices=devices,
        )
        delivery = Delivery(
            key="ev-1:push:a-1:phone",
            channel=Channel.PUSH,
            agent_id="a-1",
            account_id="acme-realty",
            event_type="LeadOffered",
            content=PUSH,
            event=b'{"the": "event"}',
        )
        await courier.drive(delivery, begin=True)
    assert provider.requests >= 1
    assert len(dead.letters) == 1, "the push is dead-lettered (replayable once the URL is fixed)"
    assert dead.reasons != ["unregistered"], "a 404 page is not FCM saying the token is gone"
    assert devices.forgotten == [], "the user's device registration was deleted on a gateway's 404 page"
