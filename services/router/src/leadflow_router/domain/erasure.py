"""Erasing a contact (decision 0050) from a lead's routing state: pure, no I/O.

The lead keeps what routing and its history need (ids, status, holder, offers, deadlines, the
source it came from); the person goes: names, email, phone and the message it wrote. Offers
still open run on as before: claims and expiries work on ids, and the events they cause carry
the blank contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    # The erased ids (`erased_id`: hashes) of the contact's keys, resolved with the leads: marked in the contact
    # index, so an inquiry made before the erasure and delivered after it is not routed (decision 0106).
    contact_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Listing:
    """A lead an open outbox document lists (decision 0068): the document, when it was written (wall-clock ms), and
    the account its events name (None when it has none)."""

    document: str
    since_ms: int
    account_id: str | None


@dataclass(frozen=True, slots=True)
class PendingContacts:
    """The outboxes not applied yet that register contact keys (R1), read once per erasure attempt: a new lead's
    first outbox in its batch's document (a repeat's registers for the lead it merges into), a record's own (a lead
    moving in, T2). A crash can leave them so, and a writer is between its document and its records for a moment;
    an erasure must find them (decision 0050). `registers`: by the outbox's lead, the lead its keys point at and
    the keys; `listed`: every lead an open outbox document lists, with its listings (a redelivered batch that
    crashed again lists a lead in another document too)."""

    registers: Mapping[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    listed: Mapping[str, tuple[Listing, ...]] = field(default_factory=dict)

    def registering(self, keys: Iterable[str], lead_ids: Iterable[str]) -> dict[str, str]:
        """{outbox's lead: the lead its keys point at}, for the outboxes registering any of `keys`, or any key
        for one of `lead_ids`."""
        keys, lead_ids = frozenset(keys), frozenset(lead_ids)
        return {
            owner: lead
            for owner, (lead, registered) in self.registers.items()
            if registered and (lead in lead_ids or registered & keys)
        }

    def lists_in(self, lead_id: str, account_id: str) -> bool:
        """Whether open documents list `lead_id` as a lead of `account_id`: each listing's events name that account
        (a listing whose events name none, or another, is not this account's)."""
        listings = self.listed.get(lead_id, ())
        return bool(listings) and all(listing.account_id == account_id for listing in listings)

    def merges_into(self, owner: str) -> str:
        """The lead the outbox of `owner` registers its keys for: another for a repeat (R1), else its own."""
        return self.registers[owner][0] if owner in self.registers else owner
