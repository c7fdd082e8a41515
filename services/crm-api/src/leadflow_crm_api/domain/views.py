"""Read-model rows and how events change them: pure functions, no I/O."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from leadflow_shared.events.routing import LeadAssigned, LeadClaimed, LeadEvent, LeadFellBack, LeadOffered

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LeadTab(StrEnum):
    """V1's two tabs: everything in the account, or only leads the brokerage still holds."""

    ALL = "all"
    MINE = "mine"


def lead_row_from_offered(event: LeadOffered) -> dict[str, Any]:
    """A lead that starts its life offered (round robin): nobody holds it yet."""
    p = event.payload
    return {
        "account_id": event.account_id,
        "name": p.contact.full_name,
        "email": p.contact.email,
        "phone": p.contact.phone,
        "source": p.source.name,
        "channel": p.source.channel.value,
        "status": "offered",
        "owner_agent_id": None,
        "assignment_reason": None,
        "transferred_to": None,
        "created_at": event.occurred_at,
        "created_ms": epoch_ms(event.occurred_at),
        "last_activity_at": event.occurred_at,
        "last_event_id": str(event.event_id),
    }


def lead_row_changes(event: LeadEvent) -> dict[str, Any]:
    """What a later event changes on an existing row (nothing for offers' own open/close)."""
    changes: dict[str, Any] = {"last_activity_at": event.occurred_at, "last_event_id": str(event.event_id)}
    if isinstance(event, LeadClaimed):
        changes |= {"status": "assigned", "owner_agent_id": event.payload.agent_id, "assignment_reason": "claimed"}
    elif isinstance(event, LeadFellBack):
        changes |= {"status": "fell_back", "owner_agent_id": event.payload.agent_id, "assignment_reason": "fallback"}
    return changes


def lead_row_from_assigned(event: LeadAssigned) -> dict[str, Any]:
    """The fields of a lead's list row that a LeadAssigned sets."""
    p = event.payload
    return {
        "account_id": event.account_id,
        "name": p.contact.full_name,
        "email": p.contact.email,
        "phone": p.contact.phone,
        "source": p.source.name,
        "channel": p.source.channel.value,
        "status": "assigned",
        "owner_agent_id": p.agent_id,
        "assignment_reason": p.reason.value,
        "transferred_to": None,  # set by lead sharing (T1), which makes it leave "My Leads"
        "created_at": event.occurred_at,
        "created_ms": epoch_ms(event.occurred_at),
        "last_activity_at": event.occurred_at,
        "last_event_id": str(event.event_id),
    }


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since 1970, in integer arithmetic (a float timestamp can lose one)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def encode_cursor(created_ms: int, lead_id: str) -> str:
    """An opaque keyset cursor: the sort key of the last row of a page."""
    raw = json.dumps([created_ms, lead_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of encode_cursor; ValueError on anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_ms, lead_id = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise ValueError("invalid cursor") from exc
    if type(created_ms) is not int or not isinstance(lead_id, str):  # bool is an int subclass
        raise ValueError("invalid cursor")
    return created_ms, lead_id
