"""Emails written as bytes directly (adapters/mime.py) read back as what the notifier meant."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_devstack.processes import free_port
from leadflow_notifier.adapters.mime import mime_bytes
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.errors import TransientDeliveryError
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.settings import SmtpSettings

pytestmark = pytest.mark.unit

SENDER = "leadflow <no-reply@leadflow.invalid>"
MESSAGE_ID = "<0a1b2c@leadflow>"


def parsed(content: EmailContent) -> EmailMessage:
    raw = mime_bytes(content, sender=SENDER, message_id=MESSAGE_ID)
    assert raw is not None
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends in CRLF"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998, "SMTP's line limit"
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")  # as a mail client shows it


def test_an_offer_email_has_its_headers_text_and_html() -> None:
    content = EmailContent(
        to="ana@example.com", subject="New lead: Zoë Müller — claim within 1 h", text="Hi Ana,\n\n.Claim it now\n",
        html="<p>Hi Ana</p>", lead_id="7d0c", reply_to="bo@example.com",
    )  # fmt: skip
    message = parsed(content)
    assert (message["From"], message["To"], message["Reply-To"]) == (SENDER, "ana@example.com", "bo@example.com")
    assert message["Subject"] == "New lead: Zoë Müller — claim within 1 h"
    assert (message["Message-ID"], message["X-Leadflow-Lead-Id"]) == (MESSAGE_ID, "7d0c")
    assert body(message, "plain") == "Hi Ana,\n\n.Claim it now\n"
    assert body(message, "html") == "<p>Hi Ana</p>\n"


def test_a_text_only_email_has_one_part_and_no_lead_header_when_it_is_about_no_lead() -> None:
    message = parsed(EmailContent(to="ana@example.com", subject="Digest", text="3 leads", lead_id=""))
    assert message.get_content_type() == "text/plain"
    assert message["X-Leadflow-Lead-Id"] is None
    assert message.get_content().replace("\r\n", "\n") == "3 leads\n"


def test_line_breaks_in_a_header_value_cannot_add_headers() -> None:
    content = EmailContent(to="ana@example.com", subject="Pat\r\nBcc: evil@example.com", text="x", lead_id="")
    message = parsed(content)
    assert message["Bcc"] is None
    assert message["Subject"] == "Pat Bcc: evil@example.com"


def test_an_address_that_needs_smtputf8_is_left_to_the_email_package() -> None:
    content = EmailContent(to="zoë@example.com", subject="x", text="x", lead_id="")
    assert mime_bytes(content, sender=SENDER, message_id=MESSAGE_ID) is None


@pytest.mark.asyncio
async def test_line_breaks_in_a_header_of_an_smtputf8_email_cannot_add_headers_either() -> None:
    """The email package (`SmtpMailer.message`, an address that needs SMTPUTF8) raised ValueError on a line break in
    a header value, taken for a crash: re-driven 5 times, then `abandoned` (review, session 28). The value goes on
    one line, as on the ASCII path, and the email is sent like any other (here to a relay that is not there)."""
    mailer = SmtpMailer(SmtpSettings(port=free_port(), timeout_seconds=1))
    content = EmailContent(
        to="zoë@example.com", subject="Your viewing\r\nBcc: someone@example.com", text="Hello", lead_id="l-1"
    )
    written = mailer.message(content, message_id="m").as_bytes(policy=policy.SMTPUTF8)
    message = message_from_bytes(written, policy=policy.default)
    assert message["Bcc"] is None
    assert message["Subject"] == "Your viewing Bcc: someone@example.com"
    with pytest.raises(TransientDeliveryError):
        await mailer.send(content, message_id="ev:email:contact:l-1")


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=300),
    text=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r"), max_size=3000),
)
def test_any_subject_and_text_read_back_unchanged(subject: str, text: str) -> None:
    message = parsed(EmailContent(to="ana@example.com", subject=subject, text=text, html="<b>x</b>", lead_id="1"))
    assert message["Subject"] == subject.strip() or message["Subject"] == subject
    expected = text if text.endswith("\n") else text + "\n"
    assert body(message, "plain") == expected
