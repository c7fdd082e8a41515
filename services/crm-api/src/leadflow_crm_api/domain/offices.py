"""Office-to-office transfers (T2) and the lead profile they carry: the rules, pure, no I/O.

A lead moved to another office of the organisation leaves the first office and is a new
lead in the second. Its profile attributes and labels carry over (labels are created in the
target when missing); its campaigns, campaign subscriptions and triggers do not; the lead
sharing of the first office (T1's "Assigned To") ends with it. Its timeline stays whole.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.views import CLOCK_SKEW_MS, EARLY_HOLDER, HOLDER_FIELDS, MOVE_REASON, pond_of
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.routing import LeadTransferred

# Fixed namespaces: the same inputs give the same ids in every process and after restarts.
_OFFICE_TRANSFERS = uuid.UUID("0b7d3e5f-8a41-4c2d-9e6b-3f1a2c4d5e03")
_LABELS = uuid.UUID("c4e2a9b8-5d3f-4e1a-8b7c-6d5e4f3a2b04")

# T2: what a moved lead keeps, and what it loses (the names of the row fields).
CARRIED_PROFILE = ("company", "office_address", "home_address", "rating", "production_value", "labels")
DROPPED_ON_MOVE = ("campaigns", "campaign_subscriptions", "campaign_triggers")
# A lead's sharing (T1), which a move clears as the office left's; on a row the target office made and changed since
# (`_left_to_target`), a share made after the move is that office's own and stays.
SHARING_FIELDS = ("transferred_to", "transferred_at", "transferred_ms", "assigned_by", "transfer_id")
# The users an office assigned to work the lead (its people: decision 0076), which a move clears likewise; those the
# target office assigned after the move stay (helper 122: the new office's lead named the old office's users, and one
# who joined the new office later saw and worked it there).
ASSIGNED_USERS_FIELDS = ("assigned_users", "assigned_users_at")


class TransferKind(StrEnum):
    LEAD = "lead"
    TEAM_MEMBER = "team_member"


# A bulk move's own record (in `crm_office_transfers`, under the bulk id): what it picked and skipped, by which a
# retry is known and answered. Not a transfer of its own: `GET .../office-transfers/{id}` does not list it.
BULK_KIND = "bulk"


class TransferStatus(StrEnum):
    PENDING = "pending"  # accepted; the router has not moved it yet
    DONE = "done"  # the lead is in the target office's views; or the team member's staff were told


class TeamStatus(StrEnum):
    ACTIVE = "active"
    ONBOARDING = "onboarding"  # how a team member arrives from another office (T2)
    INACTIVE = "inactive"


def office_transfer_id(account_id: str, idempotency_key: str | None) -> uuid.UUID:
    """The transfer's id (also its command's event id): from the client's Idempotency-Key, else new."""
    if idempotency_key is None:
        return uuid.uuid4()
    return uuid.uuid5(_OFFICE_TRANSFERS, f"{account_id}/{idempotency_key}")


def same_bulk(
    stored: dict[str, Any], *, to_account_id: str, lead_ids: list[str] | None, lead_filter: str | None
) -> bool:
    """Whether a stored record is this bulk move again (an Idempotency-Key reused for another request is not): a bulk
    move's, to the same office, of the same leads named (in any order; those a retry skipped since included) or by
    the same filter (`LeadFilter.digest`, or the canonical text a record kept before), whichever leads that filter
    matches now: the record keeps those its first attempt picked."""
    named = {*stored.get("lead_ids", ()), *(s["lead_id"] for s in stored.get("skipped", ()))}
    return (
        stored.get("kind") == BULK_KIND
        and stored["to_account_id"] == to_account_id
        and stored.get("filter") == lead_filter
        and (lead_filter is not None or sorted(named) == sorted(set(lead_ids or ())))
    )


def office_refusal(
    *, source: dict[str, Any], target: dict[str, Any] | None, token_organisation: str | None, lead: bool = False
) -> str | None:
    """Why `source` may not move anything (`lead`: a lead) to `target`, or None. Field first, then the reason."""
    organisation = source.get("organisation_id")
    if not organisation:
        return "to_account_id: this account belongs to no organisation, so it has no other offices"
    if token_organisation is not None and token_organisation != organisation:
        return "to_account_id: the token's organisation is not this account's"
    if target is None or target.get("organisation_id") != organisation:
        return "to_account_id: not an office of this account's organisation"  # unknown reads the same
    if target["_id"] == source["_id"]:
        return "to_account_id: the lead or team member is in this office already"
    if lead and not target.get("roster"):
        # The router refuses it (no broker pool to hold the lead) and no event would ever end the move (0107).
        return "to_account_id: an office with no agents; no broker pool there would hold the lead"
    return None


def member_refusal(agent: dict[str, Any] | None, roster: list[str]) -> str | None:
    if agent is None:
        return "agent_id: not a team member of this account"
    if roster == [agent["_id"]]:
        return "agent_id: the only agent of the roster; the account would have no broker pool"
    return None


def label_key(name: str) -> str:
    return " ".join(name.split()).lower()


def label_id(account_id: str, name: str) -> str:
    """One label per (account, name regardless of case and spacing): concurrent creations collide."""
    return str(uuid.uuid5(_LABELS, f"{account_id}/{label_key(name)}"))


def label_doc(account_id: str, name: str, *, at: datetime) -> dict[str, Any]:
    return {
        "_id": label_id(account_id, name),
        "account_id": account_id,
        "name": " ".join(name.split()),
        "key": label_key(name),
        "created_ms": epoch_ms(at),
    }


def profile_fields(profile: dict[str, Any]) -> dict[str, Any]:
    """The row fields a profile write `$set`s: the profile, and the label keys the list filter matches."""
    return {**profile, "search_labels": sorted({label_key(label) for label in profile.get("labels", [])})}


def move_applies(row: LeadRow, event: LeadTransferred) -> bool:
    """Whether the move changes the row: only when newer than the row's last projected move (`moved_ms`).

    A lead moved twice (acme -> south, then south -> west) has its moves keyed by the office each left: other
    partitions, so the second may be projected first. The first, read late, is older than the row's last move and
    changes nothing but its timeline entry; the row stays in the office the last move took it to (decision 0093).
    A move read again (a crash before its timeline entry) is not newer either. A newer move applies whatever office
    the row is in: one in between, not projected yet, is older and will change nothing. Rows moved before
    `moved_ms` was kept take any move, as before. A move the row's office overtook since (`overtaken`: the lead came
    back to the office it leaves, or went on to the one the row is in) changes nothing either.
    """
    return (row.moved_ms is None or epoch_ms(event.occurred_at) > row.moved_ms) and not overtaken(row, event)


def overtaken(row: LeadRow, event: LeadTransferred) -> bool:
    """Whether the row holds a change the router decided after the move, in the office the row is in, which is not
    the move's target: a higher state version, of that office (its `state_office`). The record's versions grow across
    moves, so the lead was in that office after the move: it came back to the office the move leaves (A -> B -> A, the
    move to B replayed after A's change on the return), or went on to one the row started in (acme -> south -> west ->
    acme, south's move read after acme's change). What the move set, the moves after it set again: the one into that
    office, read before or after it, finds the row in its target changed since (`_left_to_target`). A row whose office
    is not known to be its state version's (`LeadRow.office_of_state`: none written before session 30, or one an older
    crm-api left beside the state version it wrote since) does not tell: the move applies, as before (decision 0093,
    session 30; helper 125's review)."""
    version, office = event.payload.router_version, row.office_of_state
    if version is None or row.state_version is None or row.state_version <= version or office is None:
        return False
    return row.account_id == office != event.payload.to_account_id


def moved_row(row: LeadRow, event: LeadTransferred) -> dict[str, Any]:
    """What the move `$set`s on the lead's row: new office, new holder, a new lead there (T2).

    The row's `created_*` become the move's time, so the lead lists as new in the target; the
    first office's creation time is kept once in `first_created_*`. A move projected after a later holder change
    (`views.EARLY_HOLDER`: of the target office, or of an office the lead moved to after it; another partition
    read first) leaves the holder to it; the mark is cleared once the row is in its office or when the move is
    later than it (decision 0093). A row in the move's target whose state version is newer than the move's was made
    there by what that office did after the move (the office left's partition lagging: no mark, the row was made in
    that event's office), which set the holder: the holder fields stay too, the reason unless none of those changes
    set it, and a lead sharing crm-api made there since (`_left_to_target`; reviews of 343ee30 and e368458); of its
    open offers, those opened before the move go, which the move ended (`_offers_since`, session 30).
    Called only when `move_applies`.
    """
    p, at = event.payload, event.occurred_at
    moved: dict[str, Any] = {
        "account_id": p.to_account_id,
        "owner_agent_id": p.agent_id,
        "status": "assigned",
        "assignment_reason": MOVE_REASON,
        "first_created_at": row.first_created_at or row.created_at,
        "first_created_ms": row.first_created_ms or row.created_ms,
        "created_at": at,
        "created_ms": epoch_ms(at),
        "last_activity_at": at,
        "last_activity_ms": epoch_ms(at),
        "moved_from_account_id": p.from_account_id,
        "moved_from_account_name": p.from_account_name,
        "moved_from_owner": p.previous_owner_name or p.previous_owner_agent_id,
        "moved_at": at,
        "moved_ms": epoch_ms(at),  # the row's last move: an older one read later changes nothing (`move_applies`)
        "office_transfer_id": str(p.transfer_id),
        # Lead sharing belonged to the first office; offers there were withdrawn.
        **dict.fromkeys(SHARING_FIELDS),
        "assigned_users": [],
        "assigned_users_at": None,
        "open_offers": [],
        "offered_to": [],
        "pond": None,  # with its offers, the lead left the first office's pond (issue 15)
        **{name: [] for name in DROPPED_ON_MOVE},
        "last_event_id": str(event.event_id),
    }
    if left := _left_to_target(row, event):
        moved = {k: v for k, v in moved.items() if k not in left} | _offers_since(row, event)
    if row.early_holder_account_id is None:
        return moved
    later = (row.early_holder_ms or 0) > epoch_ms(at) - CLOCK_SKEW_MS  # a replica's clock behind: still after it
    if later:  # of the target office, or of one the lead moved to after it: its holder stays
        moved = {k: v for k, v in moved.items() if k not in HOLDER_FIELDS}
    if later and row.early_holder_account_id != p.to_account_id:
        return moved  # an office further on: the mark waits for the move to it
    return moved | dict.fromkeys(EARLY_HOLDER)  # in the target now: what came early is its own


def _offers_since(row: LeadRow, event: LeadTransferred) -> dict[str, Any]:
    """The open offers a move leaves on a row in its target that the target changed since (`_left_to_target`): those
    not opened before the move (by their `LeadOffered`'s router version; one stored without it stays), as a move ends
    every offer open when it is made: an offer of the office the lead came back to, from before it left (A -> B -> A,
    the move back read after A's next offer, decision 0093, session 30). Nothing when none is dropped."""
    version = event.payload.router_version
    kept = [o for o in row.open_offers if version is None or o.router_version is None or o.router_version >= version]
    if len(kept) == len(row.open_offers):
        return {}
    offers = [o.doc() for o in kept]
    return {"open_offers": offers, "offered_to": sorted({o.agent_id for o in kept}), "pond": pond_of(offers)}


def _left_to_target(row: LeadRow, event: LeadTransferred) -> tuple[str, ...]:
    """What a move leaves on a row in its target office that applied a change the router decided after the move (a
    higher state version: the record's versions grow across a move, decision 0093), that office's: the holder fields,
    all of them but the reason when no later change set it (its `field_versions` older than the move's, as a late
    change's `LATE_FIELDS`), and a lead sharing made after the move (crm-api's own write in that office). Campaigns
    carry no time, so a move clears them as the office left's, as in order (the target's own set before the move is
    read are lost: decision 0093). None otherwise."""
    version, reason = event.payload.router_version, row.field_versions.get("assignment_reason")
    if version is None or row.state_version is None or row.state_version <= version:
        return ()
    if row.account_id != event.payload.to_account_id:
        return ()
    holder = tuple(k for k in HOLDER_FIELDS if k != "assignment_reason" or reason is None or reason > version)
    # A share made before the move is of an office the lead was in before (one it came back to: acme -> south ->
    # acme, the move back read before the first move): cleared as in order. One made since (within the clock skew
    # of crm-api's and the router's clocks) is the target's own; so is one without its time (none, or unknown).
    at = row.transferred_at
    kept = SHARING_FIELDS if at is None or epoch_ms(at) > epoch_ms(event.occurred_at) - CLOCK_SKEW_MS else ()
    # Assigned users without their time (set before session 30) may be the office left's: cleared, as in order.
    users = row.assigned_users_at
    assigned = ASSIGNED_USERS_FIELDS if users and epoch_ms(users) > epoch_ms(event.occurred_at) - CLOCK_SKEW_MS else ()
    return (*holder, *kept, *assigned)
