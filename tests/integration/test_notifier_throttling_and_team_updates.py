"""The notifier's deliveries beyond the offer email, from helper 186's review (session 38); each test failed before:

- a provider throttling with `Retry-After` is waited for (up to the retry policy's longest pause), not hit by every
  attempt until the offer is dead-lettered;
- an office's team updates go to who holds its broker pool (position 1, or the next active agent), never to a
  position 1 who left (inactive).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes_notifier import DeadLetters, Log, NoDeadLetters, Recorder, member_moved
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.providers import FcmPush, TwilioSms, retry_after
from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog, Leases, ensure_indexes
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.messages import PushContent, SmsContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Courier, Notifier, RetryPolicy, Sender
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_notifier.settings import PushSettings, SmsSettings

pytestmark = [pytest.mark.integration]


# --- 1. A provider's 429 with Retry-After ----------------------------------------------------------------------------


class Throttling:
    """A provider over its rate for `seconds`: every request until then is a 429 saying `Retry-After: <seconds>`;
    after it, accepted (201). Records when each request came."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.arrivals: list[float] = []
        throttling = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.monotonic() - throttling.started
                throttling.arrivals.append(now)
                if now < throttling.seconds:
                    status, extra = 429, {"Retry-After": str(throttling.seconds)}
                    body = {"code": 20429, "error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}
                else:
                    status, extra, body = 201, {}, {"sid": "SM1", "name": "projects/p/messages/1"}
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def throttling() -> Iterator[Throttling]:
    provider = Throttling(seconds=2)
    yield provider
    provider.close()


SMS = SmsContent(to="+13125550100", body="Lead offer: Jane. https://crm/x", lead_id="l-1")
PUSH = PushContent(
    token="device-token-1", title="Lead offer: Jane", body="Claim it", lead_id="l-1", link="https://crm/x"
)


def _sender(channel: Channel, url: str, client: httpx.AsyncClient) -> Sender:
    if channel is Channel.SMS:
        return TwilioSms(SmsSettings(enabled=True, base_url=url, account_sid="AC1", auth_token=SecretStr("t")), client)
    return FcmPush(PushSettings(enabled=True, base_url=url, project_id="p", access_token=SecretStr("ya29.t")), client)


@pytest.mark.asyncio
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.PUSH])
async def test_a_provider_throttling_for_a_few_seconds_with_retry_after_does_not_dead_letter_the_offer(
    throttling: Throttling, channel: Channel
) -> None:
    """An offer's text (or push) met a provider over its rate for 2 s, which said so: 429, `Retry-After: 2`. The
    notifier waits as it was told (within its own longest pause, `retry_max_seconds`) and the text goes. Before,
    Retry-After was never read: the attempts all hit the throttle (0.2 s, 0.4 s, 0.8 s plus jitter) and the offer was
    dead-lettered for good while its claim window ran; a burst of form posts taking the office over its provider's
    rate so dropped the texts and pushes of the real leads of that minute."""
    dead, log = DeadLetters(), Log()
    async with httpx.AsyncClient() as client:
        courier = Courier(
            deliveries=log,
            senders={channel: _sender(channel, throttling.url, client)},
            dead_letters=dead,
            metrics=NotifierMetrics(CollectorRegistry()),
            clock=lambda: datetime(2024, 1, 10, 12, tzinfo=UTC),
            retry=RetryPolicy(),  # the deployment's default: 4 attempts, from 0.2 s, at most 5 s apart
        )
        delivery = Delivery(
            key=f"ev-1:{channel}:a-1",
            channel=channel,
            agent_id="a-1",
            account_id="acme-realty",
            event_type="LeadOffered",
            content=SMS if channel is Channel.SMS else PUSH,
            event=b'{"the": "event"}',
        )
        await courier.drive(delivery, begin=True)
    arrivals = [round(t, 2) for t in throttling.arrivals]
    assert dead.letters == [], f"dead-lettered {dead.letters}; the provider was asked at {arrivals} s (Retry-After 2)"
    assert log.status[delivery.key] == "sent"
    early = [t for t in throttling.arrivals[1:] if t < throttling.seconds]
    assert not early, f"asked again at {arrivals} s though the provider said to wait 2 s"


# --- 2. Team updates to a broker who left --------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def offices(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """North: roster ["bea", "carl"]; Bea, its broker (position 1), has been made inactive (she left the company: the
    roster keeps its order, crm-api's `put_agent_status` only sets `active`); Sue is North's staff, subscribed to
    team updates."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"review187_{uuid.uuid4().hex[:12]}"
    d = client[name]
    await d["accounts"].insert_many([{"_id": "north", "name": "North Office", "roster": ["bea", "carl"]}])
    await d["agents"].insert_many(
        [
            {"_id": "bea", "account_id": "north", "name": "Bea", "email": "bea@example.com", "active": False,
             "status": "inactive", "time_zone": "America/Chicago"},
            {"_id": "carl", "account_id": "north", "name": "Carl", "email": "carl@example.com", "active": True},
        ]
    )  # fmt: skip
    await d["staff"].insert_one({"_id": "sue", "account_id": "north", "name": "Sue", "email": "sue@example.com"})
    await d["notifier_preferences"].insert_one(
        {"_id": "sue", "account_id": "north", "name": "Sue", "email": "sue@example.com", "team_updates": True}
    )
    await ensure_indexes(d)
    yield d
    await client.drop_database(name)
    await client.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_broker_made_inactive_is_told_no_more_of_the_offices_team_moves(
    offices: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    """rules.md (S1 people who left, decision 0079): an agent made inactive gets none of the office's digests,
    new-lead notices or team updates. `AgentDirectory.team_staff` added the roster's position 1 unchecked: Bea, who
    left (inactive), got the email that Tom Jones joined North from South, and Carl, who holds North's broker pool
    since (the router's `pool_holder`), did not."""
    directory = AgentDirectory(offices)
    notifier = Notifier(
        directory=directory,
        deliveries=DeliveryLog(offices, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: Recorder(), Channel.PUSH: Recorder()},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: datetime(2024, 1, 10, 12, tzinfo=UTC),
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
        staff=directory,
    )
    event = member_moved(datetime(2024, 1, 10, 12, tzinfo=UTC))
    await notifier.notify_batch([event.model_dump_json().encode()], concurrency=2)
    told = sorted(str(m["X-Envelope-To"]) for m in sink.received())
    assert "sue@example.com" in told  # the office's staff is told
    assert told == ["carl@example.com", "sue@example.com"], f"team update sent to {told}: Bea left, Carl stands in"


def test_retry_after_is_read_as_seconds_or_an_http_date_and_never_negative() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert retry_after("5", now=now) == 5.0
    assert retry_after(" 120 ", now=now) == 120.0
    assert retry_after("Wed, 02 Dec 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after("Wed, 02 Dec 2026 11:00:00 GMT", now=now) == 0.0
    for unreadable in (None, "", "soon", "-3", "1.5", "\N{ARABIC-INDIC DIGIT FIVE}"):
        assert retry_after(unreadable, now=now) is None, unreadable


@pytest.mark.asyncio(loop_scope="session")
async def test_the_directory_reads_whether_an_agent_is_still_active(offices: AsyncDatabase[dict[str, Any]]) -> None:
    """What the notifier's direct notices are held by: an agent who left is read as such (`Recipient.active`), its
    late-read offers then go nowhere (`Notifier._to_recipient`); a staff member has no agent record and is active."""
    directory = AgentDirectory(offices)
    people = {who: await directory.get(who) for who in ("bea", "carl", "sue")}
    assert {who: r.active if r else None for who, r in people.items()} == {"bea": False, "carl": True, "sue": True}
