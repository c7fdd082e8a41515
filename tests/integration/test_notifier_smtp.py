"""Email against a real SMTP server (aiosmtpd): STARTTLS with a certificate, AUTH, and error mapping."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadflow_devstack.processes import free_port
from leadflow_devstack.servers import MailSink
from leadflow_notifier.adapters.smtp import MESSAGE_ID_NAMESPACE, SmtpMailer
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.settings import SmtpSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

EMAIL = EmailContent(
    to="ana@example.com",
    subject="Lead offer: Jane",
    text="Claim it before 06:15 CST",
    html="<p>Claim it before 06:15 CST</p>",
    lead_id="lead-1",
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), the client's only trusted CA."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [  # noqa: S607 (openssl from PATH)
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def secure_sink(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[MailSink]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*certificate)
    sink = MailSink(tmp_path / "mail", tls_context=tls, logins={"leadflow": "s3cret-pass"})
    sink.start()
    yield sink
    sink.stop()


def settings(
    sink: MailSink,
    certificate: tuple[Path, Path],
    password: str = "s3cret-pass",  # noqa: S107 (a test server's login)
) -> SmtpSettings:
    return SmtpSettings.model_validate(
        {
            "port": sink.port,
            "username": "leadflow",
            "password": password,
            "starttls": "required",
            "ca_file": str(certificate[0]),
            "sender": "leadflow <no-reply@leadflow.test>",
        }
    )


async def test_sends_text_and_html_over_starttls_with_auth(
    secure_sink: MailSink, certificate: tuple[Path, Path]
) -> None:
    mailer = SmtpMailer(settings(secure_sink, certificate))
    await mailer.send(EMAIL, message_id="ev-1:email:a-1")
    await mailer.close()

    [message] = secure_sink.received()
    assert message["X-Envelope-To"] == "ana@example.com"
    assert message["Message-ID"] == f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, 'ev-1:email:a-1').hex}@leadflow>"
    assert message["X-Leadflow-Lead-Id"] == "lead-1"
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content().strip() == EMAIL.text
    assert "<p>Claim it before" in html.get_content()


async def test_wrong_password_is_permanent(secure_sink: MailSink, certificate: tuple[Path, Path]) -> None:
    with pytest.raises(PermanentDeliveryError) as raised:
        await SmtpMailer(settings(secure_sink, certificate, password="wrong")).send(EMAIL, message_id="m")
    assert raised.value.reason == "auth"
    assert secure_sink.received() == []


async def test_an_untrusted_certificate_is_not_sent_to(secure_sink: MailSink, certificate: tuple[Path, Path]) -> None:
    system_cas = settings(secure_sink, certificate).model_copy(update={"ca_file": None})
    with pytest.raises(TransientDeliveryError):
        await SmtpMailer(system_cas).send(EMAIL, message_id="m")
    assert secure_sink.received() == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 try again later", TransientDeliveryError), ("554 5.7.1 message rejected", PermanentDeliveryError)],
)
async def test_smtp_replies_map_to_transient_or_permanent(tmp_path: Path, reply: str, error: type[Exception]) -> None:
    sink = MailSink(tmp_path / "mail", refusals=[reply])
    sink.start()
    try:
        mailer = SmtpMailer(SmtpSettings(port=sink.port))
        with pytest.raises(error):
            await mailer.send(EMAIL, message_id="m")
        await mailer.send(EMAIL, message_id="m")  # the next one is accepted
        await mailer.send(EMAIL, message_id="m2")  # over the same pooled connection
        await mailer.close()
        assert len(sink.received()) == 2
    finally:
        sink.stop()


async def test_no_server_is_transient() -> None:
    with pytest.raises(TransientDeliveryError):
        await SmtpMailer(SmtpSettings(port=free_port(), timeout_seconds=2)).send(EMAIL, message_id="m")


async def test_an_address_smtp_cannot_carry_as_it_is_is_refused_for_good_naming_no_address(tmp_path: Path) -> None:
    """aiosmtplib refuses an envelope address holding whitespace, `<`, `>` or `"` with a ValueError, which the
    Courier took for a crash: re-driven 5 times, then `abandoned` (review, session 28); and it reads a list, or what
    precedes a line break, as another address than given. The contract lets any such string through
    (`ContactMessaged.to`, `RealtorInvited.email`): it is permanent `rejected` before anything is sent."""
    sink = MailSink(tmp_path / "mail")
    sink.start()
    try:
        mailer = SmtpMailer(SmtpSettings(port=sink.port, timeout_seconds=5))
        await mailer.send(EMAIL, message_id="before")
        for to in (
            "jane doe@example.com",
            "jane@example.com\r\nRCPT TO:<x@example.com>",
            "zoë@example.com\r\nBcc: x@example.com",
            "jane@example.com, x@example.com",
        ):
            content = EmailContent(to=to, subject="Your home search", text="Hello", lead_id="l-1")
            with pytest.raises(PermanentDeliveryError) as raised:
                await mailer.send(content, message_id="ev:email:contact:l-1")
            assert raised.value.reason == "rejected"
            assert "example.com" not in str(raised.value)
        await mailer.send(EMAIL, message_id="after")
        await mailer.close()
    finally:
        sink.stop()
    assert len(sink.received()) == 2, "only the two emails with an address"


class DrawlingRelay:
    """A relay that answers every command, the greeting included, just within the per-exchange timeout; it accepts
    the email in the end. Counts the messages it took."""

    def __init__(self, pause: float) -> None:
        self.pause, self.accepted = pause, 0
        self.server: asyncio.Server | None = None

    async def _answer(self, writer: asyncio.StreamWriter, line: str) -> None:
        await asyncio.sleep(self.pause)
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._answer(writer, "220 drawling.example ESMTP")
        while command := (await reader.readline()).decode().strip().upper():
            if command.startswith(("EHLO", "HELO")):
                await self._answer(writer, "250 drawling.example")
            elif command == "DATA":
                await self._answer(writer, "354 go on")
                while (await reader.readline()).rstrip(b"\r\n") != b".":
                    pass
                self.accepted += 1
                await self._answer(writer, "250 taken")
            elif command == "QUIT":
                await self._answer(writer, "221 bye")
                break
            else:
                await self._answer(writer, "250 OK")
        writer.close()

    async def __aenter__(self) -> int:
        server = self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        return int(server.sockets[0].getsockname()[1])

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_relay_answering_each_exchange_just_in_time_holds_an_attempt_no_longer_than_its_bound() -> None:
    """Each exchange within `timeout_seconds` (0.5 s here, the relay taking 0.4 s) kept an attempt going for six
    exchanges and more (an open point of session 37: ~90 s an attempt with the defaults); the whole attempt is bounded
    by `send_timeout_seconds` now: a transient `timeout`, retried later like any other."""
    relay = DrawlingRelay(pause=0.4)
    async with relay as port:
        quick = SmtpMailer(SmtpSettings(port=port, timeout_seconds=0.5, send_timeout_seconds=1.0))
        with pytest.raises(TransientDeliveryError, match="timeout"):
            await quick.send(EMAIL, message_id="m")
        patient = SmtpMailer(SmtpSettings(port=port, timeout_seconds=0.5, send_timeout_seconds=10.0))
        await patient.send(EMAIL, message_id="m")  # the same relay, given the time: taken
        await patient.close()
    assert relay.accepted == 1, "the bounded attempt handed nothing over; the patient one did"
