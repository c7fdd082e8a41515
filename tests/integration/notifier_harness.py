"""The notifier's digest run on the real MongoDB-wire server and SMTP sink: the harness of its digest tests.

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_notifier.adapters.repository import AccountSchedules, AgentDirectory, DeliveryLog, DigestItems, Leases
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.handlers import DigestSender, DigestStore
from leadflow_notifier.metrics import NotifierMetrics


def digest_sender(
    db: AsyncDatabase[dict[str, Any]],
    mailer: SmtpMailer,
    clock: Callable[[], datetime],
    items: DigestStore | None = None,
) -> DigestSender:
    """A notifier's digest run on `db` (its items, unless given others) and `mailer`, its delivery leases 60 s."""
    return DigestSender(
        items=items or DigestItems(db),
        subscribers=AgentDirectory(db),
        schedules=AccountSchedules(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        mailer=mailer,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        default_hour=7,
        clock=clock,
    )
