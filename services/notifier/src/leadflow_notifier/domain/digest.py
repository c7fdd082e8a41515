"""The daily digest of new leads for subscribed admins and staff (N1, T2).

A lead is new for an account when its first routing decision is made there: an assignment
that is not a claim or a fall-back, or a first-round offer. The digest for day D covers
the 24 hours before D at the digest hour (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from leadflow_notifier.domain.messages import EmailContent, Recipient, lead_link
from leadflow_notifier.domain.templates import render
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadEvent, LeadOffered

NOT_NEW = frozenset({AssignmentReason.CLAIMED, AssignmentReason.FALLBACK})


@dataclass(frozen=True, slots=True)
class DigestItem:
    account_id: str
    lead_id: str
    name: str
    source: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class DigestWindow:
    day: date
    start_ms: int
    end_ms: int


def digest_item(event: LeadEvent) -> DigestItem | None:
    new = (isinstance(event, LeadAssigned) and event.payload.reason not in NOT_NEW) or (
        isinstance(event, LeadOffered) and event.payload.offer_round == 1
    )
    if not new or not isinstance(event, LeadAssigned | LeadOffered):
        return None
    contact, source = event.payload.contact, event.payload.source
    return DigestItem(
        account_id=event.account_id,
        lead_id=str(event.payload.lead_id),
        name=contact.full_name,
        source=source.name,
        created_ms=int(event.occurred_at.timestamp() * 1000),
    )


def due_window(now: datetime, *, hour_utc: int) -> DigestWindow:
    """The latest digest that is due at `now`: the one whose send time has passed."""
    today = now.astimezone(UTC).date()
    day = today if now.astimezone(UTC).hour >= hour_utc else today - timedelta(days=1)
    end = datetime(day.year, day.month, day.day, hour_utc, tzinfo=UTC)
    start = end - timedelta(days=1)
    return DigestWindow(day, int(start.timestamp() * 1000), int(end.timestamp() * 1000))


def digest_email(
    items: list[DigestItem], who: Recipient, window: DigestWindow, crm_base_url: str
) -> EmailContent | None:
    if not items:
        return None
    rows = [(item, lead_link(crm_base_url, item.account_id, item.lead_id)) for item in items]
    subject = f"{len(items)} new lead{'s' if len(items) != 1 else ''} on {window.day:%a %d %b}"
    context = {"who": who, "rows": rows, "subject": subject}
    return EmailContent(
        to=who.email,
        subject=subject,
        text=render("digest.txt.j2", **context),
        html=render("digest.html.j2", **context),
        lead_id="",
    )
