"""Erasing a contact (decision 0050) from a lead's routing state: pure, no I/O.

The lead keeps what routing and its history need (ids, status, holder, offers, deadlines, the
source it came from); the person goes: names, email, phone and the message it wrote. Offers
still open run on as before: claims and expiries work on ids, and the events they cause carry
the blank contact.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadflow_router.domain.model import LeadState
from leadflow_shared.events.intake import Contact
from leadflow_shared.events.routing import LeadSummary

NOBODY = Contact(first_name="")


def without_contact(state: LeadState) -> LeadState:
    """The state with its contact and message blank and `erased` set; the same for an erased one."""
    summary = LeadSummary(contact=NOBODY, source=state.summary.source, message="")
    return state.evolve(summary=summary, erased=True)


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """One erasure request as the router keeps it (`router_erasures`, the audit trail): the leads it
    resolved to, once, so a redelivery erases the same ones. No personal data: not the email or phone."""

    erasure_id: str  # the EraseContact's event id
    account_id: str
    lead_ids: tuple[str, ...]
    by_user_id: str
    reason: str
    requested_ms: int | None
    done: bool = False
    done_ms: int | None = None
