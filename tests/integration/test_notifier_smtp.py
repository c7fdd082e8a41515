"""Email against a real SMTP server (aiosmtpd): STARTTLS with a certificate, AUTH, and error mapping."""

from __future__ import annotations

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
