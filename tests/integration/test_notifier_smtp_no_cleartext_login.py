"""The SMTP password never goes out in clear (helper 174's review; the test failed before: the relay got
`AUTH PLAIN base64(user, password)` and the notice).

`NOTIFIER_SMTP__STARTTLS` defaults to `auto` ("STARTTLS when the server offers it"), and nothing requires more when a
username and password are set, in production or not (`SmtpSettings`, `NotifierSettings._real_secrets_in_production`).
`SmtpMailer._connect` hands aiosmtplib `start_tls=None` with the credentials: aiosmtplib upgrades only if the EHLO
answer lists STARTTLS, then logs in whatever happened (`_maybe_login_on_connect`). Anyone on the path to the relay
who strips `STARTTLS` from the EHLO answer (the classic STARTTLS-stripping attack), or a relay answering on the
configured host that never offers it, receives `AUTH PLAIN base64(user, password)` on a plain TCP connection: the
provider credential, and every notice (lead names, contact addresses) after it.

Now, with a login configured, "auto" is "required" (`smtp._start_tls`): no AUTH and no message on a connection that
is not encrypted; the send fails (the relay is not the one configured), naming no credential.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib

import pytest
from pydantic import SecretStr

from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.errors import DeliveryError
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.settings import SmtpSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

PASSWORD = "relay-s3cret-pass"  # a test relay's login
EMAIL = EmailContent(to="ana@example.com", subject="Lead offer: Jane", text="Claim it before 06:15 CST", lead_id="l-1")


class StrippedRelay:
    """An SMTP server (or what a man in the middle makes of the real one): AUTH offered, STARTTLS not. It records
    every line it receives and accepts everything."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 relay.example ESMTP\r\n")
        in_data = False
        with contextlib.suppress(Exception):
            while line := await reader.readline():
                self.lines.append(line)
                if in_data:
                    if line == b".\r\n":
                        in_data = False
                        writer.write(b"250 2.0.0 queued\r\n")
                    continue
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    writer.write(b"250-relay.example\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                elif verb == b"AUTH":
                    writer.write(b"235 2.7.0 Authentication successful\r\n")
                elif verb == b"DATA":
                    in_data = True
                    writer.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        writer.close()


async def test_the_smtp_password_is_never_sent_on_a_connection_without_tls() -> None:
    relay = StrippedRelay()
    port = await relay.start()
    mailer = SmtpMailer(
        SmtpSettings(port=port, username="leadflow", password=SecretStr(PASSWORD), timeout_seconds=2)
    )  # starttls left at its default, as in settings.md
    try:
        with pytest.raises(DeliveryError) as refused:  # the relay is not the one configured: retried, then DLQ
            await mailer.send(EMAIL, message_id="ev-1:email:a-1")
        assert PASSWORD not in str(refused.value)
        await mailer.close()
    finally:
        await relay.stop()
    received = b"".join(relay.lines)
    decoded = b""
    for line in relay.lines:
        for word in line.split():
            with contextlib.suppress(ValueError):
                decoded += base64.b64decode(word, validate=True)
    assert PASSWORD.encode() not in received + decoded, "the SMTP login went out in clear: " + repr(
        [ln for ln in relay.lines if ln.upper().startswith(b"AUTH")]
    )
    assert b"Lead offer" not in received, "the notice went out in clear after the login"
