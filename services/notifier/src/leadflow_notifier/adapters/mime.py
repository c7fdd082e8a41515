"""An email as the bytes SMTP sends, built directly (issue 14).

The `email` package's EmailMessage parses every header it is given into objects and re-folds
it when flattened: 1.4 ms per offer email here, the notifier's largest cost per lead. leadflow's
emails have one shape (a few headers, text and optionally HTML), so they are written out directly
(0.05 ms): headers as ASCII or RFC 2047 encoded-words, each body part quoted-printable in UTF-8,
CRLF line ends. An address that is not ASCII needs SMTPUTF8; `None` tells the caller to use the
email package for that message.
"""

from __future__ import annotations

import binascii
import re
import uuid
from email.header import Header

from leadflow_notifier.domain.messages import EmailContent

# Every character `str.splitlines` breaks at: the email package refuses a header holding any (helper 126).
_LINE_BREAKS = re.compile("[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # a lone surrogate becomes "?" rather than failing the email


def one_line(value: str) -> str:
    """A header value on one line: its line breaks as spaces (no header injection)."""
    return _LINE_BREAKS.sub(" ", value)


def header(name: str, value: str) -> str:
    """The header line: `value` on one line (no header injection), encoded and folded when not ASCII."""
    value = one_line(value)
    if value.isascii():
        return f"{name}: {value}"
    value = _utf8(value).decode()
    return f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _part(text: str, subtype: str) -> bytes:
    body = binascii.b2a_qp(_utf8(text.replace("\r\n", "\n")), istext=True).replace(b"\n", b"\r\n")
    return (
        (
            f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        ).encode()
        + body
        + (b"" if body.endswith(b"\r\n") else b"\r\n")
    )


def mime_bytes(content: EmailContent, *, sender: str, message_id: str) -> bytes | None:
    """The message: `sender` is the From header (already encoded), `message_id` the Message-ID header."""
    if not (content.to.isascii() and content.reply_to.isascii()):
        return None
    headers = [f"From: {sender}", header("To", content.to), header("Subject", content.subject)]
    if content.reply_to:
        headers.append(header("Reply-To", content.reply_to))
    headers.append(f"Message-ID: {message_id}")
    if content.lead_id:
        headers.append(header("X-Leadflow-Lead-Id", content.lead_id))
    headers.append("MIME-Version: 1.0")
    head = "\r\n".join(headers).encode() + b"\r\n"
    if not content.html:
        return head + _part(content.text, "plain")
    boundary = f"=_leadflow_{uuid.uuid4().hex}"
    return (
        head
        + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode()
        + f"--{boundary}\r\n".encode()
        + _part(content.text, "plain")
        + f"\r\n--{boundary}\r\n".encode()  # the CRLF before a boundary belongs to the boundary
        + _part(content.html, "html")
        + f"\r\n--{boundary}--\r\n".encode()
    )
