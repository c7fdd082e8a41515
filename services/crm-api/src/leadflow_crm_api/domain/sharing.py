"""Lead sharing (T1) and brokerage invitations (V4): the rules, pure, no I/O.

Only a realtor who accepted the brokerage's invitation can receive its leads. A transfer is
all or nothing: it is validated whole before anything is written, and every write it makes
is keyed by the transfer id, so a retry of a crashed transfer repeats the same writes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.commands import INVITATION_VALID_DAYS

MAX_TRANSFER_LEADS = 500
MAX_NAMED_IDS = 20  # a refusal names at most this many unknown lead ids
MAX_REALTOR_LABEL = 200  # ShareLead's and LeadShared's realtor_name

# Fixed namespaces: the same inputs give the same ids in every process and after restarts.
_INVITATIONS = uuid.UUID("5b0f4a52-6c7e-4f0e-9d7a-1d3c2e8f7a01")
_TRANSFERS = uuid.UUID("9e3c7b1d-2f4a-4c6b-8e0d-7a5f3b2c1d02")


INVITATION_VALID = timedelta(days=INVITATION_VALID_DAYS)  # a pending invitation not answered by then can no longer be


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    DISCONNECTED = "disconnected"  # the brokerage ended an accepted invitation; it may invite again
    WITHDRAWN = "withdrawn"  # the brokerage took a pending invitation back; it may invite again
    LEFT = "left"  # the realtor ended an accepted invitation; the brokerage may invite again
    EXPIRED = "expired"  # pending and not answered within INVITATION_VALID: never stored, read so (`effective_status`)


def effective_status(stored: str, invited_ms: int, now_ms: int) -> InvitationStatus:
    """The invitation's status as everyone sees it: a pending one older than INVITATION_VALID is expired, so a
    forgotten invitation (a mistyped address, a realtor who never answered) cannot be accepted months later."""
    status = InvitationStatus(stored)
    if status is InvitationStatus.PENDING and now_ms - invited_ms > INVITATION_VALID / timedelta(milliseconds=1):
        return InvitationStatus.EXPIRED
    return status


class InviteOutcome(StrEnum):
    """What inviting a realtor does, given its current invitation to the brokerage."""

    CREATE = "create"  # none yet
    REOPEN = "reopen"  # declined before: invite again
    UNCHANGED = "unchanged"  # pending already: a repeated invite is not an error
    REFUSE = "refuse"  # accepted already


def invitation_id(account_id: str, realtor_id: str) -> str:
    """One invitation per (brokerage, realtor): a deterministic id makes concurrent invites collide on insert."""
    return str(uuid.uuid5(_INVITATIONS, f"{account_id}/{realtor_id}"))


def invite_outcome(current: InvitationStatus | None) -> InviteOutcome:
    if current is None:
        return InviteOutcome.CREATE
    if current is InvitationStatus.PENDING:
        return InviteOutcome.UNCHANGED
    if current is InvitationStatus.ACCEPTED:
        return InviteOutcome.REFUSE
    return InviteOutcome.REOPEN  # declined, disconnected, withdrawn, left or expired: invited afresh


def answer_refusal(current: InvitationStatus, answer: InvitationStatus) -> str | None:
    """Why a realtor may not answer `answer` now, or None. The same answer twice is allowed (a retry)."""
    if answer is InvitationStatus.PENDING:
        return "an invitation is answered with accept or decline"
    if current is InvitationStatus.PENDING or current is answer:
        return None
    if current is InvitationStatus.EXPIRED:
        return "the invitation has expired; ask the brokerage to invite you again"
    if current is InvitationStatus.WITHDRAWN:
        return "the brokerage withdrew the invitation"
    return f"the invitation is already {current.value}"


def withdraw_refusal(current: InvitationStatus) -> str | None:
    """Why the brokerage may not withdraw the invitation now, or None (withdrawn already: a retry)."""
    if current in (InvitationStatus.PENDING, InvitationStatus.EXPIRED, InvitationStatus.WITHDRAWN):
        return None
    if current is InvitationStatus.ACCEPTED:
        return "the realtor accepted the invitation; disconnect the realtor instead"
    return f"the invitation is {current.value}, not pending"


def leave_refusal(current: InvitationStatus) -> str | None:
    """Why the realtor may not leave the brokerage now, or None (left already: a retry)."""
    if current in (InvitationStatus.ACCEPTED, InvitationStatus.LEFT):
        return None
    return f"the invitation is {current.value}: only a realtor who accepted can leave"


def transfer_refusal(invitation: InvitationStatus | None) -> str | None:
    """Why the brokerage may not transfer leads to this realtor, or None when it may (T1)."""
    if invitation is InvitationStatus.ACCEPTED:
        return None
    if invitation is None:
        return "realtor_id: was never invited by this brokerage"
    if invitation is InvitationStatus.PENDING:
        return "realtor_id: has not accepted this brokerage's invitation (it is pending)"
    return {
        InvitationStatus.DISCONNECTED: "realtor_id: was disconnected from this brokerage",
        InvitationStatus.LEFT: "realtor_id: left this brokerage",
        InvitationStatus.WITHDRAWN: "realtor_id: this brokerage withdrew its invitation",
        InvitationStatus.EXPIRED: "realtor_id: has not accepted this brokerage's invitation (it expired)",
    }.get(invitation, "realtor_id: declined this brokerage's invitation")


def unique(ids: list[str]) -> list[str]:
    """The selection without repeats, in the order given."""
    return list(dict.fromkeys(ids))


def missing_leads(selected: list[str], found: set[str]) -> list[str]:
    return [lead_id for lead_id in selected if lead_id not in found]


NOT_FOUND = "not found in this account"
BEING_MOVED = "being moved to another office"  # a T2 move of the lead is pending: it is not the brokerage's to share
SHARED_SINCE = "shared or given back since"  # the row names another transfer now: this one's ShareLead must not go


def missing_refusal(missing: list[str], why: str = NOT_FOUND) -> str:
    named = ", ".join(missing[:MAX_NAMED_IDS])
    more = f" and {len(missing) - MAX_NAMED_IDS} more" if len(missing) > MAX_NAMED_IDS else ""
    return f"lead_ids: {len(missing)} {why}, nothing was transferred: {named}{more}"


def unshareable(lead_ids: list[str], present: set[str], moving: set[str]) -> dict[str, str]:
    """The leads of `lead_ids` the brokerage cannot share now, with why: not its leads (unknown, or moved to another
    office), or being moved to another office (T2). Checked before a transfer writes or sends anything, a retry's
    too (helper 153's review)."""
    return {i: NOT_FOUND if i not in present else BEING_MOVED for i in lead_ids if i not in present or i in moving}


def unshareable_refusal(refusals: dict[str, str]) -> str:
    """The 422 of a transfer that would share none or not all of its leads: those not found first, else those
    being moved."""
    for why in (NOT_FOUND, BEING_MOVED):
        if named := [i for i, reason in refusals.items() if reason == why]:
            return missing_refusal(named, why)
    return missing_refusal(list(refusals), SHARED_SINCE)


def realtor_label(name: str | None, realtor_id: str) -> str:
    """How the realtor is named on the lead ("Riley Park (riley-park)"), within the events' limit.

    Names are at most 100 characters since issue 10; an invitation stored before may hold 200,
    so the name is shortened rather than the transfer failing.
    """
    if not name:
        return realtor_id
    room = MAX_REALTOR_LABEL - len(realtor_id) - 3
    return f"{name if len(name) <= room else name[: room - 1] + '…'} ({realtor_id})"


def transfer_id(account_id: str, idempotency_key: str | None) -> str:
    """The transfer's id: from the client's Idempotency-Key (so a retry is the same transfer), else new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_TRANSFERS, f"{account_id}/{idempotency_key}"))


def same_transfer(
    stored: dict[str, Any], *, realtor_id: str, lead_ids: list[str] | None, lead_filter: str | None = None
) -> bool:
    """Whether a stored transfer is this request again (an Idempotency-Key reused for another one is not): the same
    realtor and the same selection, the same leads named (in any order; those a retry dropped since included) or the
    same filter (`LeadFilter.digest`, or the canonical text a record kept before), whichever leads that filter matches
    now: the record keeps those its first attempt picked. A record stored before records kept their filter (session
    32) is known by its realtor alone when the request is a filter's."""
    if stored["realtor_id"] != realtor_id:
        return False
    if lead_filter is not None and "filter" not in stored:
        return True
    if stored.get("filter") != lead_filter:
        return False
    named = [*stored["lead_ids"], *(d["lead_id"] for d in stored.get("dropped", ()))]
    return lead_filter is not None or sorted(named) == sorted(lead_ids or ())


def transfer_record(
    *,
    transfer_id: str,
    account_id: str,
    realtor_id: str,
    realtor_name: str,
    lead_ids: list[str],
    assigned_by: str,
    by: str,
    at: datetime,
    lead_filter: str | None = None,
) -> dict[str, Any]:
    """The transfer as stored before its writes: they take their values from it, so a retry writes the same. It
    keeps the request's filter's digest (`LeadFilter.digest`; None: the leads were named), by which a retry is
    known."""
    at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # what MongoDB keeps, so a retry answers the same
    return {
        "_id": transfer_id,
        "account_id": account_id,
        "realtor_id": realtor_id,
        "realtor_name": realtor_name,
        "lead_ids": lead_ids,
        "filter": lead_filter,
        "assigned_by": assigned_by,
        "by": by,
        "at": at,
        "at_ms": epoch_ms(at),
        "done": False,
        "published": False,  # the router's ShareLead commands, one per lead
    }


def lead_row_transfer(transfer: dict[str, Any]) -> dict[str, Any]:
    """What a transfer `$set`s on each lead row: "Assigned To" for the brokerage, "Assigned By" for the realtor."""
    return {
        "transferred_to": transfer["realtor_id"],
        "transferred_to_name": transfer.get("realtor_name"),
        "transferred_at": transfer["at"],
        "transferred_ms": transfer["at_ms"],
        "assigned_by": transfer["assigned_by"],
        "transfer_id": transfer["_id"],
    }


def share_command_id(transfer: dict[str, Any], lead_id: str) -> uuid.UUID:
    """The id of the ShareLead command for one lead of a transfer: the same on every retry."""
    return uuid.uuid5(uuid.UUID(transfer["_id"]), f"command/{lead_id}")


def transfer_entry(transfer: dict[str, Any], lead_id: str) -> dict[str, Any]:
    """The lead's timeline document for a transfer; its id is derived, so a retry inserts nothing new."""
    return {
        "_id": str(uuid.uuid5(uuid.UUID(transfer["_id"]), lead_id)),
        "lead_id": lead_id,
        "account_id": transfer["account_id"],
        "type": "LeadShared",
        "occurred_at": transfer["at"],
        "occurred_ms": transfer["at_ms"],
        "agent_id": transfer["realtor_id"],
        "action": None,
        "summary": f"Transferred to {transfer['realtor_name']} by {transfer['assigned_by']}",
    }
