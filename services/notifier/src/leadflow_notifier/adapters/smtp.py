"""Email over SMTP with aiosmtplib (STARTTLS when offered, optional authentication)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.settings import SmtpSettings


class SmtpMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    async def send(self, content: EmailContent, *, message_id: str) -> None:
        s = self._settings
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = content.to
        message["Subject"] = content.subject
        # A stable Message-ID lets receiving systems drop a resend of the same notice.
        message["Message-ID"] = f"<{message_id}@leadflow>"
        message["X-Leadflow-Lead-Id"] = content.lead_id
        message.set_content(content.text)
        await aiosmtplib.send(
            message,
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            start_tls=None if s.starttls == "auto" else s.starttls == "required",
            timeout=s.timeout_seconds,
        )
