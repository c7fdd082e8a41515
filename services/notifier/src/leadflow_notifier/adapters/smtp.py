"""Email over SMTP with aiosmtplib (STARTTLS when offered, optional authentication).

Connections are pooled: at a few hundred emails a second, a fresh connection per email
(connect, EHLO, STARTTLS, AUTH, QUIT) costs more than the email. A connection that fails
in any way is closed and dropped, so the retry gets a fresh one.

An address SMTP cannot carry as it is (what aiosmtplib refuses: whitespace, `<`, `>`, `"` outside a quoted
local part, a control character; or what it would read as another address: a list, a name and an address) is
refused before anything is sent, as a permanent `rejected` that names no address: the events' contract lets
any string through as an address. Header values go on one line on
both paths (`mime.one_line`), as the email package requires.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from email.message import EmailMessage
from email.policy import SMTPUTF8
from email.utils import formataddr, parseaddr
from typing import Literal

import aiosmtplib
from aiosmtplib.email import parse_address

from leadflow_notifier.adapters.mime import mime_bytes, one_line
from leadflow_notifier.domain.errors import PermanentDeliveryError, TransientDeliveryError
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.settings import SmtpSettings
from leadflow_shared import tracing

MESSAGE_ID_NAMESPACE = uuid.UUID("3a0f8f5e-2d59-4a7e-9a0c-6c1b1f0e7d21")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # what aiosmtplib refuses in any command's argument


class Permits(asyncio.Semaphore):
    """A semaphore that counts its permits held: how many `sent` marks are on their way (decision 0072)."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.held = 0

    async def acquire(self) -> Literal[True]:
        await super().acquire()
        self.held += 1
        return True

    def release(self) -> None:
        self.held -= 1
        super().release()


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._tls = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.pool_size)
        # One permit per connection, held by a delivery from its send until it is marked sent (`Pooled`).
        self.unmarked = Permits(settings.pool_size)
        name, self._envelope_from = parseaddr(settings.sender)
        self._from = settings.sender if settings.sender.isascii() else formataddr((name, self._envelope_from), "utf-8")

    def message(self, content: EmailContent, *, message_id: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.sender
        message["To"] = one_line(content.to)
        message["Subject"] = one_line(content.subject)
        if content.reply_to:
            message["Reply-To"] = one_line(content.reply_to)
        message["Message-ID"] = message_id_header(message_id)
        if content.lead_id:  # a digest is about many leads
            message["X-Leadflow-Lead-Id"] = one_line(content.lead_id)
        message.set_content(content.text)
        if content.html:
            message.add_alternative(content.html, subtype="html")
        return message

    async def send(self, content: EmailContent, *, message_id: str) -> None:
        """Send the email on a pooled connection (a new one if none is idle, or the idle one dropped)."""
        _carried(content.to)
        raw = mime_bytes(content, sender=self._from, message_id=message_id_header(message_id))
        # The common case is bytes, built without the email package (adapters/mime.py); an address that
        # needs SMTPUTF8 gets a message of the email package, which aiosmtplib sends as it must.
        email: bytes | EmailMessage = raw if raw is not None else self._message(content, message_id=message_id)
        # A client span when tracing is on (no instrumentation sees aiosmtplib); never the recipients.
        server: dict[str, str | int] = {"server.address": self._settings.host, "server.port": self._settings.port}
        with tracing.client_span("smtp send", server):
            async with self._slots:
                client = self._idle.pop() if self._idle else None
                try:
                    # The whole attempt is bounded, not only each exchange (`timeout_seconds`): a relay answering
                    # every command just in time held one for minutes (an open point of session 37).
                    async with asyncio.timeout(self._settings.send_timeout_seconds):
                        if client is None or not client.is_connected:
                            client = await self._connect()
                        if isinstance(email, bytes):
                            await client.sendmail(self._envelope_from, [content.to], email)
                        else:
                            await self._send_utf8(client, email, content.to)
                except BaseException as exc:
                    if client is not None:
                        client.close()
                    mapped = _mapped(exc)
                    if mapped is exc:
                        raise
                    raise mapped from exc
                self._idle.append(client)

    async def _send_utf8(self, client: aiosmtplib.SMTP, email: EmailMessage, to: str) -> None:
        """An email with an address that is not ASCII (the recipient's or the Reply-To's), in SMTPUTF8 as a whole:
        aiosmtplib's `send_message` chooses SMTPUTF8 by the envelope alone, and wrote a UTF-8 Reply-To to an ASCII
        recipient as RFC 2047 encoded-words, which no address may hold: replies went nowhere (helper 126)."""
        if not client.supports_extension("smtputf8"):  # no later try carries it either
            raise PermanentDeliveryError("rejected", "the relay does not take SMTPUTF8, which an address here needs")
        raw = email.as_bytes(policy=SMTPUTF8)
        await client.sendmail(self._envelope_from, [to], raw, mail_options=["SMTPUTF8"])

    def _message(self, content: EmailContent, *, message_id: str) -> EmailMessage:
        try:
            return self.message(content, message_id=message_id)
        except ValueError:  # a header value the email package refuses: no retry writes it
            raise PermanentDeliveryError("rejected", "a header of the email cannot be written") from None

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            start_tls=_start_tls(s),
            tls_context=self._tls,
            timeout=s.timeout_seconds,
        )
        try:
            await client.connect()  # with EHLO, STARTTLS and AUTH
        except BaseException:
            client.close()
            raise
        return client


def _start_tls(settings: SmtpSettings) -> bool | None:
    """aiosmtplib's `start_tls`: "auto" upgrades when the relay offers STARTTLS, but with a login to send it is
    "required": aiosmtplib logs in whatever happened, so a relay that does not offer it (or a man in the middle who
    strips it from the EHLO answer) got the password in clear, then every notice (helper 174)."""
    if settings.starttls == "auto":
        return True if settings.username else None
    return settings.starttls == "required"


def message_id_header(message_id: str) -> str:
    # A stable Message-ID lets receiving systems drop a resend of the same notice. It is a
    # uuid5 of the delivery key: the key's ":" and free-form agent ids are not valid there.
    return f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, message_id).hex}@leadflow>"


def _carried(address: str) -> None:
    """Refuse, as permanent, an address SMTP cannot carry as it is: one aiosmtplib refuses (a ValueError, which
    would be taken for a crash) or would send to another address than it reads (it takes the first of a list, the
    address in angle brackets, drops a comment and what follows a line break)."""
    try:
        carried = parse_address(address) == address and _CONTROL.search(address) is None
    except ValueError:
        carried = False
    if not carried:
        raise PermanentDeliveryError("rejected", "the recipient's address cannot go on an SMTP command line as it is")


def _mapped(exc: BaseException) -> BaseException:
    """Provider errors as delivery errors; anything else (cancellation, bugs) unchanged."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentDeliveryError("auth", f"SMTP {exc.code}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        kind = TransientDeliveryError if all(400 <= c < 500 for c in codes) else PermanentDeliveryError
        return kind("rejected", f"SMTP {codes}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # 4xx replies are "try again later" in SMTP; 5xx are final.
        if 400 <= exc.code < 500:
            return TransientDeliveryError("unavailable", f"SMTP {exc.code}")
        return PermanentDeliveryError("rejected", f"SMTP {exc.code}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransientDeliveryError("timeout")
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return TransientDeliveryError("unavailable", type(exc).__name__)
    return exc
