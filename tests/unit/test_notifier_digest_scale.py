"""The daily digest of an office with 10,000 new leads in a day (N1; decisions 0013, 0088; helper 176, failed before).

`DigestSender._send` builds each subscriber's digest email (`digest_email`: every row of the day, rendered twice, text
and HTML, each name through `shown_name`, whose `_LINKISH` pattern is quadratic in a word's length) synchronously on
the notifier's one event loop, the loop that also consumes `leads.events.v1`, sends every offer and renews the leases
of the deliveries in progress (every third of a 10 s lease) and the Kafka heartbeats. Website forms are public: an
office sent 10,000 leads named as intake allows (two words of 100 characters, "A.a.a.a..." is a name) gets a digest
whose rendering holds the loop for seconds per subscriber, with no bound on its rows. Expected: the run never holds the
loop as long as a third of a delivery lease (its renewal interval); a lease that runs out while its holder is stuck
lets another replica's re-driver send the same offer again, and a heartbeat past the session timeout moves the
partitions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import bson
import pytest
from fakes_notifier import Log
from prometheus_client import CollectorRegistry
from pymongo.errors import OperationFailure
from test_notifier_digest import Items

from leadflow_intake.domain.normalize import check_name
from leadflow_notifier.adapters.repository import Begin, _payload
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.digest import DigestItem
from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.handlers import DigestDeliveries, DigestSender, DigestStore, Sender, Subscribers
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.clock import epoch_ms

pytestmark = pytest.mark.unit

LEASE_SECONDS = 10.0  # NOTIFIER_DELIVERY__LEASE_SECONDS' default; renewed every third of it


class Utc7:
    async def of(self, account_id: str) -> tuple[int | None, str]:  # noqa: ARG002
        return 7, "UTC"


class Admins:
    async def digest_subscribers(self, account_id: str) -> list[Recipient]:  # noqa: ARG002
        return [Recipient(agent_id="ada", name="Ada", email="ada@example.com")]


class Mailer:
    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, content: object, *, message_id: str) -> None:  # noqa: ARG002
        self.sent.append(len(content.text) + len(content.html))  # type: ignore[attr-defined]
        await asyncio.sleep(0)


def digest_sender(
    items: DigestStore, subscribers: Subscribers, deliveries: DigestDeliveries, mailer: Sender, day: datetime
) -> DigestSender:
    """The digest run at 07:00 UTC the day after `day`, for offices whose digest hour is 7."""
    return DigestSender(
        items=items,
        subscribers=subscribers,
        schedules=Utc7(),
        deliveries=deliveries,
        mailer=mailer,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm.example.com/app",
        default_hour=7,
        clock=lambda: day + timedelta(hours=23, seconds=30),
    )


@pytest.mark.asyncio
async def test_a_digest_of_ten_thousand_leads_does_not_hold_the_event_loop_for_a_lease_renewal() -> None:
    word = check_name("a." * 50)  # "A.A.A. ... A.": a name intake takes
    assert len(word) == 100
    day = datetime(2026, 3, 9, 8, tzinfo=UTC)
    items = Items(
        *(
            DigestItem(
                "north", str(uuid.uuid4()), f"{word} {word}", "Website", epoch_ms(day) + i, stored_ms=epoch_ms(day)
            )
            for i in range(10_000)
        )
    )
    mailer = Mailer()
    sender = digest_sender(items, Admins(), Log(), mailer, day)

    longest = 0.0
    done = False

    async def ticker() -> None:  # what the lease renewer and the consumers get of the loop meanwhile
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    assert await sender.run_once() == 1
    done = True
    await tick

    assert longest < LEASE_SECONDS / 3, (
        f"the digest run held the event loop for {longest:.1f} s at a stretch "
        f"(one digest of 10,000 rows, {mailer.sent[0] / 1e6:.1f} MB of text and HTML)"
    )


class MongoSizedLog(Log):
    """The delivery log as MongoDB stores it: a record over 16 MiB (`DeliveryLog.begin` inserts the pending record with
    its message, `_payload`) is refused by the server (BSONObjectTooLarge, 10334), which `insert_each` hands back as
    an OperationFailure for `begin` to raise. nx-27017, the tests' server, takes any size."""

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:
        if len(bson.encode({"_id": delivery.key, **_payload(delivery)})) > 16 * 1024 * 1024:
            raise OperationFailure("object to insert too large", 10334)
        return await super().begin(delivery, now_ms=now_ms)


class Mailbox:
    def __init__(self) -> None:
        self.to: list[str] = []

    async def send(self, content: object, *, message_id: str) -> None:  # noqa: ARG002
        self.to.append(message_id.split(":")[1])


class EachOffice:
    async def digest_subscribers(self, account_id: str) -> list[Recipient]:
        return [Recipient(agent_id=f"adm-{account_id}", name="Ada", email=f"adm@{account_id}.example.com")]


@pytest.mark.asyncio
async def test_one_offices_oversized_digest_does_not_stop_every_other_offices_digest() -> None:
    """North (`a-north`) is sent 10,000 leads on the 9th, names at intake's longest (a letter, then emoji); South
    (`b-south`) one. Its digest record is 18.4 MB, over MongoDB's 16 MiB: `begin` raises, and `run_once`, which
    runs the offices one after the other with nothing between them, ends there. South's admin gets no digest, this run
    or any other while North's day is sendable (each run stops at North first). Expected: South's digest goes out;
    one office's failure is that office's."""
    first, last = check_name("a" + "\U0001f600" * 99), check_name("b" + "\U0001f600" * 99)
    day = datetime(2026, 3, 9, 8, tzinfo=UTC)
    flood = (
        DigestItem(
            "a-north", str(uuid.uuid4()), f"{first} {last}", "Website", epoch_ms(day) + i, stored_ms=epoch_ms(day)
        )
        for i in range(10_000)
    )
    items = Items(*flood, DigestItem("b-south", "sue", "Sue South", "Website", epoch_ms(day), stored_ms=epoch_ms(day)))
    mailbox = Mailbox()
    sender = digest_sender(items, EachOffice(), MongoSizedLog(), mailbox, day)
    try:
        outcome: object = await sender.run_once()
    except OperationFailure as exc:
        outcome = exc
    assert "b-south" in mailbox.to, f"South got no digest: the run ended with {outcome!r}"
