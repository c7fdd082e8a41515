"""The notifier's SMTPUTF8 emails and its delivery marks, against a real SMTP server (aiosmtpd, SMTPUTF8 offered)
and nx-27017 (helper 126's review of decision 0099, session 30):

- a subject the ASCII path sends goes on the SMTPUTF8 path too: every line break `str.splitlines` knows becomes a
  space (`mime.one_line`), where the email package refused the header and the email was dead-lettered for good;
- a UTF-8 Reply-To is carried as an address (the whole email in SMTPUTF8), not as RFC 2047 encoded-words, which no
  address may hold (replies went nowhere);
- a drive that lost its lease (decision 0021) does not turn the `sent` another drive marked into `failed`: only a
  pending delivery fails, so a replay of its dead letter sends nothing again (N3).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.processes import free_port
from leadflow_notifier.adapters.repository import Begin, DeliveryLog, Leases
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.messages import EmailContent, SmsContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.settings import SmtpSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class Utf8Sink:
    """An SMTP server that offers SMTPUTF8 (as real relays do) and keeps each message's raw bytes."""

    port: int = field(default_factory=free_port)
    raw: list[bytes] = field(default_factory=list)
    options: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.raw.append(envelope.original_content or b"")
        self.options.append(list(envelope.mail_options))
        return "250 Message accepted for delivery"


@pytest.fixture
def utf8_sink() -> Iterator[Utf8Sink]:
    sink = Utf8Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, enable_SMTPUTF8=True)
    controller.start()
    yield sink
    controller.stop()


def header_line(raw: bytes, name: bytes) -> bytes:
    head = raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    [line] = [h for h in head.split(b"\r\n") if h.lower().startswith(name.lower() + b":")]
    return line


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c"])
async def test_a_subject_the_ascii_path_sends_is_sent_on_the_smtputf8_path_too(
    utf8_sink: Utf8Sink, separator: str
) -> None:
    """Decision 0099: "header values go on one line on the SMTPUTF8 path as on the ASCII one". `one_line` only
    turns CR/LF into spaces, but the email package refuses every character `str.splitlines` breaks on (U+2028,
    U+2029, NEL, FF, VT, FS...): an agent's email to a contact whose address needs SMTPUTF8, with such a character
    in its subject (ContactMessage.subject is any string, often pasted), is refused for good as `rejected`
    (dead-lettered, never sent), while the same email to an ASCII address goes out."""
    mailer = SmtpMailer(SmtpSettings(port=utf8_sink.port, timeout_seconds=5))
    try:
        subject = f"Your viewing{separator}tomorrow at 10"
        await mailer.send(
            EmailContent(to="zoe@example.com", subject=subject, text="Hello", lead_id="l-1"), message_id="a"
        )
        await mailer.send(
            EmailContent(to="zoë@example.com", subject=subject, text="Hello", lead_id="l-1"), message_id="u"
        )
    finally:
        await mailer.close()
    assert len(utf8_sink.raw) == 2, "the ASCII address's email and the SMTPUTF8 one"


async def test_a_utf8_reply_to_is_carried_as_an_address_not_encoded_words(utf8_sink: Utf8Sink) -> None:
    """An agent whose own address needs SMTPUTF8 (josé@...) writes to a contact with an ASCII address: `mime_bytes`
    leaves it to the email package, but aiosmtplib decides SMTPUTF8 from the envelope only (both ASCII), so the
    message is flattened with the 7-bit policy and Reply-To becomes `=?utf-8?q?jos=C3=A9?=@...`: encoded-words in
    an addr-spec (RFC 2047 section 5 forbids them), so the contact's replies go nowhere. (Before 954e49e too.)"""
    mailer = SmtpMailer(SmtpSettings(port=utf8_sink.port, timeout_seconds=5))
    try:
        content = EmailContent(
            to="jane@example.com", subject="Your search", text="Hello", lead_id="l-1", reply_to="josé@inmobiliaria.es"
        )
        await mailer.send(content, message_id="r")
    finally:
        await mailer.close()
    [raw] = utf8_sink.raw
    line = header_line(raw, b"Reply-To")
    assert b"=?" not in line, f"Reply-To as written: {line!r}"
    assert "josé@inmobiliaria.es".encode() in line


# --- the `sent`/`failed` marks of a drive that lost its lease (decision 0021, N3) --------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"review125_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def test_a_drive_that_lost_its_lease_does_not_overwrite_the_sent_mark_of_the_drive_that_took_it(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Process A begins an SMS; its renewals do not land for a lease (an election, a partition from A only: the
    window decision 0021 names). Re-driver B claims it, sends it, marks it `sent`. A's attempts end in a transient
    failure: `Courier._dead_letter` publishes a dead letter and `DeliveryLog.failed`, filtered on `_id` only, turns
    the record `failed`. The SMS reached the agent (no loss), but the record says failed, and replaying that dead
    letter reopens it (`reopen` takes any `failed` record): the agent is texted again (N3)."""
    lease = 10_000
    a = DeliveryLog(db, leases=Leases(lease_ms=lease))
    b = DeliveryLog(db, leases=Leases(lease_ms=lease))
    delivery = Delivery(
        key="ev-1:sms:ana",
        channel=Channel.SMS,
        agent_id="ana",
        account_id="acme",
        event_type="LeadOffered",
        content=SmsContent(to="+13125550100", body="Lead offer: Jane", lead_id="l-1"),
        event=b'{"the": "event"}',
    )
    assert await a.begin(delivery, now_ms=1_000) is Begin.SEND
    claimed = await b.claim_due(now_ms=1_000 + lease + 1, limit=10)  # A's lease ran out, A still sending
    assert [d.key for d in claimed.deliveries] == [delivery.key]
    await b.sent(delivery.key, now_ms=1_000 + lease + 2)  # B's copy accepted
    await a.failed(delivery.key, reason="unavailable", now_ms=1_000 + lease + 3)  # A's attempts ran out
    record = await db["notifier_deliveries"].find_one({"_id": delivery.key})
    assert record is not None
    assert record["status"] == "sent", "a stale drive turned a sent delivery into a failed one"
    assert not await a.reopen(delivery, marker="dlq/0:1#x", now_ms=1_000 + lease + 4), "a replay would resend it"
