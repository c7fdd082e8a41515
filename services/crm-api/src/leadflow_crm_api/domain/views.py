"""Read-model rows, timeline entries and list queries, and how events change them: pure, no I/O."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_shared.clock import epoch_ms, epoch_ms_ceil
from leadflow_shared.events.routing import (
    ActivityLogged,
    ContactMessaged,
    LeadAssigned,
    LeadClaimed,
    LeadEvent,
    LeadFellBack,
    LeadHeld,
    LeadOffered,
    LeadReleased,
    LeadShared,
    LeadTransferred,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)
from leadflow_shared.offer_links import link_id_of


class LeadTab(StrEnum):
    """V1's two tabs: everything in the account, or only leads the brokerage still holds."""

    ALL = "all"
    MINE = "mine"


class LeadStatus(StrEnum):
    OFFERED = "offered"
    ASSIGNED = "assigned"
    FELL_BACK = "fell_back"
    UNASSIGNED = "unassigned"  # its holder left the office; a broker or admin distributes it by hand
    HELD = "held"  # offered to nobody until its routing rule's hours open (`held_until`, issue 15)


class CrmStatus(StrEnum):
    """Where the holder is with the contact (issue 11.8); the holder sets it, routing never reads it."""

    NEW = "new"
    ATTEMPTED_CONTACT = "attempted_contact"
    CONTACTED = "contacted"
    APPOINTMENT_SET = "appointment_set"
    UNDER_CONTRACT = "under_contract"
    CLOSED = "closed"
    LOST = "lost"


class LeadSort(StrEnum):
    """List orders; each has its own keyset cursor (the sort key of a page's last row, then its id)."""

    CREATED_DESC = "created_desc"
    CREATED_ASC = "created_asc"
    ACTIVITY_DESC = "last_activity_desc"
    ACTIVITY_ASC = "last_activity_asc"

    @property
    def field(self) -> str:
        return "created_ms" if self in {LeadSort.CREATED_DESC, LeadSort.CREATED_ASC} else "last_activity_ms"

    @property
    def descending(self) -> bool:
        return self in {LeadSort.CREATED_DESC, LeadSort.ACTIVITY_DESC}

    def key_of(self, row: LeadRow) -> int:
        """The row's value of `field`: what a cursor after it holds."""
        return row.created_ms if self.field == "created_ms" else row.last_activity_ms


@dataclass(frozen=True, slots=True)
class LeadQuery:
    """A list request's filters, search and order; every value is a plain string or int, never an operator."""

    tab: LeadTab = LeadTab.ALL
    status: LeadStatus | None = None
    owner_agent_id: str | None = None
    assigned_to: str | None = None
    source: str | None = None
    label: str | None = None  # T2: labels are searchable, whatever office created them
    created_from_ms: int | None = None  # inclusive
    created_to_ms: int | None = None  # exclusive
    search: str | None = None
    sort: LeadSort = LeadSort.CREATED_DESC
    pond: str | None = None  # leads in this pond (issue 15)


def search_patterns(text: str) -> tuple[str, str | None]:
    """(escaped pattern for the lower-cased name and email, pattern for the phone's digits or None). Control
    characters are no part of a search: MongoDB refuses a `$regex` holding a NUL (a 500 for one `%00`, helper 177),
    and no name or email holds one."""
    needle = _CONTROLS.sub("", text).strip().lower()
    digits = "".join(ch for ch in needle if ch.isdigit())
    # Phone-shaped text only ("lead5123@" is an email search), and a few digits, or "1"
    # would match nearly every number.
    phone_shaped = _PHONE_TEXT.fullmatch(needle) is not None
    return re.escape(needle), (digits if phone_shaped and len(digits) >= 3 else None)


_PHONE_TEXT = re.compile(r"[\d\s+().-]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# Row fields the projection keeps for itself (decision 0093). The ids of the applied events the timeline does not
# record that change more than the last activity: a lead's shares (T1), one id each, so one read again (a batch
# redelivered, a dead letter replayed) is recognised.
APPLIED_EVENT_IDS = "applied_event_ids"
# The office and time of a holder change projected while the row was in another office: the move to that office
# (T2, keyed by the office the lead left) is projected after what the lead's new office did since.
EARLY_HOLDER = ("early_holder_account_id", "early_holder_ms")
# The router's record version of the last lead event whose changes the row applied (decision 0093 amended): an
# event stamped with an older one changes nothing but its timeline entry.
ROUTER_VERSION = "router_version"
# The id of the event that created the row while the lead had parked events (decision 0093 amended, helper 93): set
# with the row, removed once they are applied and forgotten; the event, redelivered after a crash, finds it and
# finishes the work instead of being applied again.
PARKED_FOR = "parked_for"
# The router version of that event when the row was stored without it (some parked events came before it, helper 97):
# what the row's version must reach once they are applied, whatever finishes the row (its redelivery, an erasure
# that takes the parked events: helper 100). Removed with the mark.
OWED_VERSION = "parked_version"
# What a holder change sets: who holds the lead, how, and its open offers. A late move leaves them as they are.
HOLDER_FIELDS = ("status", "owner_agent_id", "assignment_reason", "open_offers", "offered_to", "pond")
# The assignment reason a move to another office leaves (T2): its target's roster position 1 holds the lead.
MOVE_REASON = "office_transfer"
# How far apart the router's replicas' clocks may be (decision 0093): a move and the next office's first events are
# stamped by different replicas, so an event of the office a lead moved to may be stamped up to this much before the
# move that took it there; one older than that is from before the lead left that office.
CLOCK_SKEW_MS = 5_000


def _search_fields(name: str, email: str | None, phone: str | None) -> dict[str, str]:
    """Lower-cased copies the search matches against (contacts are normalized already; this is for case)."""
    return {
        "search_name": name.lower(),
        "search_email": (email or "").lower(),
        "search_phone": "".join(ch for ch in phone or "" if ch.isdigit()),
    }


def _new_row(
    event: LeadOffered | LeadAssigned | LeadHeld, *, status: str, owner: str | None, reason: str | None
) -> dict[str, Any]:
    """The row of a lead's first event: who the contact is, where it came from, who holds it."""
    p = event.payload
    return {
        "account_id": event.account_id,
        "name": p.contact.full_name,
        "email": p.contact.email,
        "phone": p.contact.phone,
        **_search_fields(p.contact.full_name, p.contact.email, p.contact.phone),
        "source": p.source.name,
        "channel": p.source.channel.value,
        # What the lead said and where from (issue 11.8).
        "message": p.message,
        "site_host": p.source.site_host,
        "listing_id": p.source.listing_id,
        "provider": p.source.provider,
        "utm": dict(p.source.utm),
        "referral_fee_percent": p.referral_fee_percent,
        "status": status,
        "owner_agent_id": owner,
        "assignment_reason": reason,
        "transferred_to": None,  # set by lead sharing (T1), which makes it leave "My Leads"
        "open_offers": [],
        "offered_to": [],
        "created_at": event.occurred_at,
        "created_ms": epoch_ms(event.occurred_at),
        "last_activity_at": event.occurred_at,
        "last_activity_ms": epoch_ms(event.occurred_at),
        "last_event_id": str(event.event_id),
        **last_activity(event.type, getattr(p, "agent_id", None)),
        "crm_status": CrmStatus.NEW.value,
    }


def lead_row_from_offered(event: LeadOffered) -> dict[str, Any]:
    """A lead that starts its life offered (round robin): nobody holds it yet; offers are added after."""
    return _new_row(event, status=LeadStatus.OFFERED.value, owner=None, reason=None)


def lead_row_from_held(event: LeadHeld) -> dict[str, Any]:
    """A lead that starts its life held (its rule's hours closed): nobody is offered it before `held_until`."""
    return _new_row(event, status=LeadStatus.HELD.value, owner=None, reason=None) | {"held_until": event.payload.until}


def lead_row_changes(event: LeadEvent) -> dict[str, Any]:
    """What a later event changes on an existing row (offers are handled by `open_offers_after`)."""
    changes: dict[str, Any] = {
        "last_activity_at": event.occurred_at,
        "last_activity_ms": epoch_ms(event.occurred_at),
        "last_event_id": str(event.event_id),
    }
    if records_in_timeline(event):  # an echo of an action crm-api took keeps the kind crm-api recorded
        changes |= last_activity(event.type, _actor(event))
    if isinstance(event, LeadClaimed):
        changes |= {
            "status": "assigned",
            "owner_agent_id": event.payload.agent_id,
            "assignment_reason": "claimed",
            "referral_fee_percent": event.payload.referral_fee_percent,
        }
    elif isinstance(event, LeadFellBack):
        changes |= {"status": "fell_back", "owner_agent_id": event.payload.agent_id, "assignment_reason": "fallback"}
    elif isinstance(event, LeadShared):
        # The "Assigned To"/"Assigned By" labels were set when crm-api took the transfer (T1).
        changes |= {"status": "assigned", "owner_agent_id": event.payload.agent_id, "assignment_reason": "lead_sharing"}
    elif isinstance(event, LeadReleased):
        why = event.payload.reason  # agent_left, returned, or idle: offered on (its LeadOffered follows)
        changes |= {"status": LeadStatus.UNASSIGNED.value, "owner_agent_id": None, "assignment_reason": why}
    elif isinstance(event, LeadOffered):
        # Nobody holds an offered lead (a lead distributed by hand as an offer leaves its holder).
        # R3's direct period over, the general offer carries the source's fee (R11).
        changes |= {
            "status": LeadStatus.OFFERED.value,
            "owner_agent_id": None,
            "referral_fee_percent": event.payload.referral_fee_percent,
            "held_until": None,
        }
    elif isinstance(event, LeadHeld):  # to be offered on while its rule is closed: waits for it to open
        changes |= {"status": LeadStatus.HELD.value, "owner_agent_id": None, "held_until": event.payload.until}
    return changes


def last_activity(kind: str, by: str | None) -> dict[str, Any]:
    """The row's "last activity": its kind (an event type, or an action taken through crm-api) and who."""
    return {"last_activity_kind": kind, "last_activity_by": by}


def _actor(event: LeadEvent) -> str | None:
    if isinstance(event, ActivityLogged):
        return event.payload.by_agent_id  # None: the contact (R1)
    if isinstance(event, LeadShared | LeadTransferred):
        return event.payload.by_user_id
    return getattr(event.payload, "agent_id", None)


def lead_row_from_assigned(event: LeadAssigned) -> dict[str, Any]:
    """The fields of a lead's list row that a LeadAssigned sets."""
    return _new_row(event, status="assigned", owner=event.payload.agent_id, reason=event.payload.reason.value)


def open_offers_after(open_offers: list[dict[str, Any]], event: LeadEvent) -> list[dict[str, Any]] | None:
    """The row's open offers after `event`, or None when it does not touch them.

    Keyed by (agent, round), so applying an event again leaves the same list.
    """
    if isinstance(event, LeadOffered):
        p = event.payload
        offer = {
            "agent_id": p.agent_id,
            "offer_round": p.offer_round,
            "deadline": p.deadline,
            "deadline_ms": epoch_ms_ceil(p.deadline),  # rounded up, as the router stores it (R8)
            **({"pond": p.pond} if p.pond else {}),
            # What a late event that ended it compares (`projection.late_changes`): ended only if opened before it.
            **({"router_version": p.router_version} if p.router_version is not None else {}),
            # Which offer of the agent's in this round it is: an agent who asks a missed offer back while its race goes
            # on is offered the lead again in the same round; the declined offer's link must not claim this one.
            "link_id": link_id_of(event.event_id),
        }
        kept = [o for o in open_offers if (o["agent_id"], o["offer_round"]) != (p.agent_id, p.offer_round)]
        return [*kept, offer]
    if isinstance(event, OfferExpired | OfferWithdrawn):
        key = (event.payload.agent_id, event.payload.offer_round)
        return [o for o in open_offers if (o["agent_id"], o["offer_round"]) != key]
    if isinstance(event, LeadClaimed | LeadAssigned | LeadFellBack | LeadTransferred | LeadShared | LeadReleased):
        return []  # someone holds the lead, or it waits to be distributed by hand: no offer is open
    return None


def pond_of(open_offers: list[dict[str, Any]]) -> str | None:
    """The pond the lead is in (issue 15): its open offers' pond, None when none is a pond's. The row keeps it
    (`pond`) so the ponds' lists are a query; it clears with the last of those offers."""
    return next((o["pond"] for o in open_offers if o.get("pond")), None)


def offer_links_after(links: list[dict[str, Any]], event: LeadEvent) -> list[dict[str, Any]] | None:
    """Every accept link the lead's offers ever had (issue 11.6), or None when `event` adds none.

    A link is kept after its offer ends, so a late click is told how the offer ended.
    """
    if not isinstance(event, LeadOffered):
        return None
    link_id = link_id_of(event.event_id)
    if any(link["link_id"] == link_id for link in links):
        return None
    return [*links, {"link_id": link_id, "agent_id": event.payload.agent_id, "offer_round": event.payload.offer_round}]


def timeline_entry(event: LeadEvent) -> dict[str, Any]:
    """One lead event as a timeline document (_id = event id, so replays insert nothing new).

    `account_id` is the office the event happened in; a lead moved to another office (T2)
    keeps its whole timeline, so the timeline is read by lead id. The router's answer to an ask
    for a missed offer keeps the ask's id (`answers_activity_id`, decision 0067).
    """
    agent, action, summary = _timeline_line(event)
    answers = event.payload.answers_activity_id if isinstance(event, LeadOffered | ActivityLogged) else None
    return {
        "_id": str(event.event_id),
        "lead_id": str(event.payload.lead_id),
        "account_id": event.account_id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "occurred_ms": epoch_ms(event.occurred_at),
        "agent_id": agent,
        "action": action,
        "summary": summary,
        **({"answers_activity_id": str(answers)} if answers is not None else {}),
    }


def _timeline_line(event: LeadEvent) -> tuple[str | None, str | None, str]:
    """The entry's agent, its action (a claim's or a logged activity's, else None) and its summary."""
    if isinstance(event, ActivityLogged):
        return _activity_line(event)
    if isinstance(event, LeadClaimed):
        action = event.payload.action.value
        return event.payload.agent_id, action, f"Claimed by {event.payload.agent_id} ({action})"
    if isinstance(event, LeadOffered | OfferExpired | OfferWithdrawn):
        return event.payload.agent_id, None, _offer_summary(event)
    if isinstance(event, LeadHeld):
        return None, None, f"Held until {event.payload.until.isoformat()}: {event.payload.explanation}"
    return event.payload.agent_id, None, _holder_summary(event)


def _activity_line(event: ActivityLogged) -> tuple[str | None, str | None, str]:
    """An agent's action by the agent who acted, or the contact's new inquiry (by nobody: the holder's)."""
    logged = event.payload
    action = logged.action.value
    agent = logged.by_agent_id or logged.agent_id
    inquiry = logged.by_agent_id is None
    summary = "The contact came back with a new inquiry" if inquiry else f"{action} by {agent}"
    if logged.claim_refused:
        summary = f"{action} by {agent} claimed nothing: {logged.claim_refused}"
    return agent, action, summary


_WITHDRAWN_BECAUSE = {
    WithdrawalReason.OFFICE_TRANSFER: "the lead moved to another office",
    WithdrawalReason.LEAD_SHARING: "the brokerage assigned the lead to a realtor",
    WithdrawalReason.AGENT_LEFT: "the agent left the office",
    WithdrawalReason.REASSIGNED: "a broker or admin distributed the lead by hand",
    WithdrawalReason.DECLINED: "the agent declined it",
}


def _offer_summary(event: LeadOffered | OfferExpired | OfferWithdrawn) -> str:
    if isinstance(event, LeadOffered):
        offered = event.payload
        return (
            f"Offered to {offered.agent_id} (round {offered.offer_round}), "
            f"claim before {offered.deadline.isoformat()}: {offered.explanation}"  # why, and who was passed by (R6)
        )
    if isinstance(event, OfferExpired):
        return f"Offer to {event.payload.agent_id} expired (round {event.payload.offer_round})"
    reason = event.payload.reason or WithdrawalReason.CLAIMED_BY_ANOTHER
    why = _WITHDRAWN_BECAUSE.get(reason, "another agent claimed the lead")
    return f"Offer to {event.payload.agent_id} withdrawn: {why}"


def _holder_summary(
    event: LeadAssigned | LeadFellBack | LeadTransferred | LeadShared | LeadReleased | ContactMessaged,
) -> str:
    """Who holds the lead now, or what its holder did."""
    if isinstance(event, LeadAssigned):
        assigned = event.payload
        return f"Assigned to {assigned.agent_id} ({assigned.reason.value}): {assigned.explanation}"
    if isinstance(event, LeadFellBack):
        return f"Fell back to {event.payload.agent_id}: {event.payload.explanation}"
    if isinstance(event, LeadTransferred):
        return moved_summary(event)
    if isinstance(event, LeadShared):
        return f"Transferred to {event.payload.realtor_name} by {event.payload.assigned_by}"
    if isinstance(event, LeadReleased):
        head = _RELEASED_HEADS.get(event.payload.reason, "Unassigned")
        return f"{head}: {event.payload.explanation}"
    return f"{event.payload.channel} to the contact by {event.payload.agent_id}"


# A LeadReleased entry's head by its reason; agent_left: "Unassigned".
_RELEASED_HEADS = {"idle": "Taken from an idle agent", "returned": "Given back, unassigned"}


def moved_summary(event: LeadTransferred) -> str:
    """T2's timeline event: when (the entry's time), from which office and owner, to which, by whom."""
    p = event.payload
    owner = p.previous_owner_name or p.previous_owner_agent_id or "nobody"
    return (
        f"Transferred from {p.from_account_name} ({p.from_account_id}), owned there by {owner}, "
        f"to {p.to_account_name} by {p.by_user_id}"
    )


# Entries about one agent's offer; a realtor sees only its own (the brokerage sees all).
_OFFER_ENTRIES = frozenset({"LeadOffered", "OfferExpired", "OfferWithdrawn"})
# Entries that make their agent the lead's holder: whoever sees the lead may know who holds or held it.
_HOLDER_ENTRIES = frozenset({"LeadClaimed", "LeadAssigned", "LeadFellBack", "LeadShared"})
RACE_ENTRIES = _OFFER_ENTRIES | _HOLDER_ENTRIES  # what `rivals` reads of a lead's timeline


def visible_timeline(
    entries: list[TimelineEntry], *, realtor_id: str | None, hidden: Collection[str] = frozenset()
) -> list[TimelineEntry]:
    """The timeline as the caller may read it: a realtor does not see offers made to other agents, nor anything
    done by those `hidden` from it (its `rivals`: a view, a decline, a claim that lost the race; decision 0076)."""
    if realtor_id is None:
        return entries
    return [
        _without_explanation(e)
        for e in entries
        if (e.type not in _OFFER_ENTRIES or e.agent_id == realtor_id) and (e.agent_id or "") not in hidden
    ]


# Entries whose summary ends with the router's explanation: which agents were eligible, which were passed by and
# why (paused, at a cap, off hours). That is routing info, for the brokerage (decision 0076; routing info is 403
# to realtors): a realtor reads the summary's head ("Offered to ana (round 1), claim before ...") without it.
_EXPLAINED_ENTRIES = frozenset({"LeadOffered", "LeadAssigned", "LeadFellBack", "LeadHeld", "LeadReleased"})


def _without_explanation(entry: TimelineEntry) -> TimelineEntry:
    if entry.type not in _EXPLAINED_ENTRIES or ": " not in entry.summary:
        return entry
    return replace(entry, summary=entry.summary.split(": ", 1)[0])  # the head holds no ": " (ids, ISO times)


def _known_to(row: LeadRow, realtor_id: str) -> set[str | None]:
    """Whom a realtor seeing the lead may know works it: itself, its holder, the realtor it was shared with, and
    the users its holder assigned to it."""
    return {realtor_id, row.owner_agent_id, row.transferred_to, *row.assigned_users}


def may_name_a_rival(row: LeadRow, realtor_id: str) -> bool:
    """Whether the row's last activity is by someone the realtor may not know of (then `rivals` tells)."""
    return row.last_activity_by is not None and row.last_activity_by not in _known_to(row, realtor_id)


def rivals(row: LeadRow, entries: Iterable[TimelineEntry], *, realtor_id: str) -> frozenset[str]:
    """The agents who raced for the lead (an offer entry names them) and never held it, other than those the
    realtor may know of (`_known_to`): who else races for a lead is not the realtor's to know (decision 0076).
    `entries`: the lead's timeline, or its `RACE_ENTRIES` at least."""
    listed = list(entries)
    raced = {e.agent_id for e in listed if e.type in _OFFER_ENTRIES and e.agent_id}
    held = {e.agent_id for e in listed if e.type in _HOLDER_ENTRIES}
    return frozenset(a for a in raced - held - _known_to(row, realtor_id) if a is not None)


def shown_to_realtor(row: LeadRow, realtor_id: str, hidden: Collection[str]) -> LeadRow:
    """The row as a realtor sees it: its own open offer only, and its last activity without the actor when that
    is one of those `hidden` from it (its `rivals`; the kind and time stay: the lists sort on them)."""
    offers = tuple(o for o in row.open_offers if o.agent_id == realtor_id)
    actor = None if (row.last_activity_by or "") in hidden else row.last_activity_by
    return replace(row, open_offers=offers, last_activity_by=actor)


def is_echo(event: LeadEvent) -> bool:
    """The router's echo of an agent's action or message: it changes only the last activity, when newer."""
    return not records_in_timeline(event) and not isinstance(event, LeadShared)


def records_in_timeline(event: LeadEvent) -> bool:
    """Agents' own actions and lead sharing (T1) are recorded when crm-api takes them; the router's echo
    would repeat them (an email or text to the contact included). A claim the router refused is
    recorded: the timeline says why it claimed nothing."""
    if isinstance(event, LeadShared | ContactMessaged):
        return False
    if isinstance(event, ActivityLogged) and event.payload.by_agent_id is not None:
        return event.payload.claim_refused is not None
    return True


SUMMARY_TEXT = 120  # characters of an action's text in its one-line summary (the whole text is in `content`)


def activity_entry(
    *,
    event_id: str,
    lead_id: str,
    account_id: str,
    agent_id: str,
    action: str,
    occurred_at: datetime,
    content: dict[str, Any] | None = None,
    kind: str = "LeadActivity",
) -> dict[str, Any]:
    """The timeline document of an action taken through crm-api, with what it was (`content`)."""
    return {
        "_id": event_id,
        "lead_id": lead_id,
        "account_id": account_id,
        "type": kind,
        "occurred_at": occurred_at,
        "occurred_ms": epoch_ms(occurred_at),
        "agent_id": agent_id,
        "action": action,
        "summary": activity_summary(action, agent_id, content),
        **({"content": content} if content else {}),
    }


def activity_summary(action: str, agent_id: str, content: dict[str, Any] | None) -> str:
    """ "call by ana (left voicemail): Asked for a callback", "task by ana: Send comps, due 2026-11-25 22:00 UTC"."""
    content = content or {}
    if "users" in content:
        return f"Users set to {', '.join(content['users']) or 'nobody'} by {agent_id}"
    if status := content.get("crm_status"):
        return f"CRM status set to {status.replace('_', ' ')} by {agent_id}"
    summary = f"{action.replace('_', ' ')} by {agent_id}"
    if outcome := content.get("call_outcome"):
        summary += f" ({outcome.replace('_', ' ')})"
    if task := content.get("task"):
        summary += f": {task['title']}, due {_due_text(task['due_at'])}"
    if message := content.get("message"):
        summary += f" to the contact: {message.get('subject') or message['body']}"[: SUMMARY_TEXT + 40]
    if text := content.get("text"):
        shown = text if len(text) <= SUMMARY_TEXT else text[: SUMMARY_TEXT - 1].rstrip() + "…"
        summary += f": {shown}"
    return summary


def _due_text(due: datetime) -> str:
    """A task's due date in UTC; one without a UTC value (ActivityCreate refuses them) as it was given: a summary
    never fails (it is built for the timeline entry of an action about to be published)."""
    try:
        return f"{due.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    except (OverflowError, AttributeError):
        return str(due)


# A cursor's parts: any epoch_ms of a datetime (years 1 to 9999), and a lead id (a UUID as text).
MIN_SORT_KEY = epoch_ms(datetime.min.replace(tzinfo=UTC))
MAX_SORT_KEY = epoch_ms(datetime.max.replace(tzinfo=UTC))
_CURSOR_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_CURSOR_LENGTH = 200  # encode_cursor makes at most 144 characters (an id of 64, the longest order)


def encode_cursor(key: int, lead_id: str, *, sort: LeadSort = LeadSort.CREATED_DESC) -> str:
    """An opaque keyset cursor: the sort key of the last row of a page, tagged with its order."""
    fields: list[int | str] = [key, lead_id] if sort is LeadSort.CREATED_DESC else [key, lead_id, sort.value]
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, sort: LeadSort = LeadSort.CREATED_DESC) -> tuple[int, str]:
    """Inverse of encode_cursor; ValueError on anything else, including a cursor of another order.

    Every part is checked before it reaches a query: the key is an epoch_ms value (an int beyond
    64 bits cannot even be encoded as BSON), the id is id-shaped (no lone surrogates, bounded).
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("invalid cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key, lead_id, *tag = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise ValueError("invalid cursor") from exc
    if type(key) is not int or not isinstance(lead_id, str):  # bool is an int subclass
        raise ValueError("invalid cursor")
    if not MIN_SORT_KEY <= key <= MAX_SORT_KEY or _CURSOR_ID.fullmatch(lead_id) is None:
        raise ValueError("invalid cursor")
    # Keys of another order would skip or repeat rows, so such a cursor is refused.
    if tag != ([] if sort is LeadSort.CREATED_DESC else [sort.value]):
        raise ValueError("invalid cursor")
    return key, lead_id
