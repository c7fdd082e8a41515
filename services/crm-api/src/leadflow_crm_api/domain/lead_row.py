"""What the read side of crm-api's views holds: a lead's row and its timeline entries, typed. Pure, no I/O.

The projection writes the documents (its typed writes, domain/projection.py, carry the fields domain/views.py
builds); readers (`adapters.leads.ScopedLeads`) hand out these objects, and so does the projection's port for
an office move (`LeadViews.row`).
`from_doc` reads a document whatever it lacks: rows written before a field existed, a field of an odd
type, and nx-27017's quirks (a datetime `$set` on an existing document comes back as naive UTC text, a
`$set` true as 1; decision 0045). A missing or unreadable field takes its default; an unreadable item
of a list is left out. Only `_id` is required: every stored document has one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from leadflow_shared.clock import EPOCH, epoch_ms, from_epoch_ms

Doc = Mapping[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Offer:
    """An open offer on the lead: the agent may claim it before `deadline` (R8)."""

    agent_id: str
    offer_round: int
    deadline: datetime
    deadline_ms: int
    pond: str | None = None  # the pond the lead is in, when this is one of a pond's offers (issue 15)
    router_version: int | None = None  # its `LeadOffered`'s (decision 0093); None: stored without one
    link_id: str | None = None  # its accept link's (`OfferLink`); None: stored before session 32

    @classmethod
    def from_doc(cls, doc: object) -> Offer | None:
        """None when the item is not an offer (no agent, round or deadline)."""
        if not isinstance(doc, Mapping):
            return None
        agent, offer_round, deadline = _text(doc.get("agent_id")), _int(doc.get("offer_round")), _moment(doc)
        if agent is None or offer_round is None or deadline is None:
            return None
        ms = _int(doc.get("deadline_ms")) or epoch_ms(deadline)
        pond, version, link = _text(doc.get("pond")) or None, _int(doc.get("router_version")), _text(doc.get("link_id"))
        return cls(agent, offer_round, deadline, ms, pond, version, link)

    def doc(self) -> dict[str, Any]:
        """The offer as the projection stores it (`views.open_offers_after`)."""
        return {
            "agent_id": self.agent_id,
            "offer_round": self.offer_round,
            "deadline": self.deadline,
            "deadline_ms": self.deadline_ms,
            **({"pond": self.pond} if self.pond else {}),
            **({"router_version": self.router_version} if self.router_version is not None else {}),
            **({"link_id": self.link_id} if self.link_id is not None else {}),
        }

    def open_at(self, now: datetime) -> bool:
        """Whether the offer can still be claimed at `now`: by its milliseconds, rounded up when stored, where
        the stored datetime lost its fraction downwards; never refused before the stated deadline (R8)."""
        return self.deadline_ms > epoch_ms(now)


def _moment(offer: Mapping[str, Any]) -> datetime | None:
    return _when(offer.get("deadline")) or _from_ms(offer.get("deadline_ms"))


@dataclass(frozen=True, slots=True)
class OfferLink:
    """An accept link one of the lead's offers had (issue 11.6); kept after the offer ends."""

    link_id: str
    agent_id: str
    offer_round: int

    @classmethod
    def from_doc(cls, doc: object) -> OfferLink | None:
        if not isinstance(doc, Mapping):
            return None
        link, agent, offer_round = _text(doc.get("link_id")), _text(doc.get("agent_id")), _int(doc.get("offer_round"))
        if link is None or agent is None:
            return None
        return cls(link, agent, offer_round or 0)


@dataclass(frozen=True, slots=True)
class LeadRow:
    """One lead of crm_leads as the lists, the lead's page and the use cases read it."""

    lead_id: str
    account_id: str
    name: str
    email: str | None
    phone: str | None
    source: str
    status: str  # a `views.LeadStatus` value; kept as text so a value this version does not know still shows
    owner_agent_id: str | None
    created_at: datetime  # when the lead became this office's (its arrival, after a move)
    created_ms: int
    last_activity_at: datetime
    last_activity_ms: int
    channel: str | None = None
    message: str = ""
    site_host: str | None = None
    listing_id: str | None = None
    provider: str | None = None
    utm: Mapping[str, str] = field(default_factory=dict)
    referral_fee_percent: float = 0.0
    assignment_reason: str | None = None
    # Lead sharing (T1): the realtor it was transferred to ("Assigned To") and by whom ("Assigned By").
    transferred_to: str | None = None
    transferred_to_name: str | None = None
    transferred_at: datetime | None = None
    assigned_by: str | None = None
    open_offers: tuple[Offer, ...] = ()
    held_until: datetime | None = None  # held, offered to nobody until its routing rule's hours open (issue 15)
    offered_to: tuple[str, ...] = ()
    pond: str | None = None  # the pond its open offers are (issue 15); rows written before ponds have none
    offer_links: tuple[OfferLink, ...] = ()
    last_activity_kind: str | None = None
    last_activity_by: str | None = None
    last_event_id: str | None = None
    crm_status: str = "new"
    assigned_users: tuple[str, ...] = ()
    assigned_users_at: datetime | None = None  # when they were set (crm-api's own write); None before session 30
    erased: bool = False
    # The profile (T2 carries it to another office) and the campaigns (T2 drops them).
    company: str | None = None
    office_address: str | None = None
    home_address: str | None = None
    rating: int | None = None
    production_value: str | None = None
    labels: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    campaign_subscriptions: tuple[str, ...] = ()
    campaign_triggers: tuple[str, ...] = ()
    # T2: where the lead came from.
    first_created_at: datetime | None = None
    first_created_ms: int | None = None
    moved_from_account_id: str | None = None
    moved_from_account_name: str | None = None
    moved_from_owner: str | None = None
    moved_at: datetime | None = None
    moved_ms: int | None = None  # the last move's time as the projection compares it (decision 0093)
    # The projection's own (decision 0093): a holder change of an office the row was not in yet, its office and time.
    early_holder_account_id: str | None = None
    early_holder_ms: int | None = None
    # The router version of the event that set the last activity (`projection.LAST_ACTIVITY_VERSION`), for a move.
    last_activity_version: int | None = None
    # The router versions of the events that set the late-set fields (`projection.FIELD_VERSIONS`), for a move.
    field_versions: Mapping[str, int] = field(default_factory=dict)
    # The row's router versions (`projection.STATE_VERSION`, `views.ROUTER_VERSION`), a move's (`_moved_versions`).
    state_version: int | None = None
    router_version: int | None = None
    # The office the lead was in once the change of `state_version` was made (`projection.STATE_OFFICE`), as stored,
    # and the state version it was written with (`projection.STATE_OFFICE_VERSION`): a move tells by it the lead's
    # return to the office it leaves, and its target's change applied before it, only while the two agree
    # (`office_of_state`). A move's compare-and-set holds on both as stored.
    state_office: str | None = None
    state_office_version: int | None = None
    # The open offers as stored (None: no list), which a move that rewrites them holds its update on (`moved_changes`).
    stored_offers: tuple[Any, ...] | None = None

    @classmethod
    def from_doc(cls, doc: Doc) -> LeadRow:
        """The row of a crm_leads document (KeyError without `_id`); see the module's docstring."""
        created_at = _at(doc, "created")
        last_activity_at = _at(doc, "last_activity", created_at)
        return cls(
            lead_id=str(doc["_id"]),
            account_id=_text(doc.get("account_id")) or "",
            name=_text(doc.get("name")) or "",
            email=_text(doc.get("email")),
            phone=_text(doc.get("phone")),
            source=_text(doc.get("source")) or "",
            status=_text(doc.get("status")) or "",
            owner_agent_id=_text(doc.get("owner_agent_id")),
            created_at=created_at,
            created_ms=_ms(doc, "created", created_at),
            last_activity_at=last_activity_at,
            last_activity_ms=_ms(doc, "last_activity", last_activity_at),
            channel=_text(doc.get("channel")),
            message=_text(doc.get("message")) or "",
            site_host=_text(doc.get("site_host")),
            listing_id=_text(doc.get("listing_id")),
            provider=_text(doc.get("provider")),
            utm=_text_map(doc.get("utm")),
            referral_fee_percent=_number(doc.get("referral_fee_percent")) or 0.0,
            assignment_reason=_text(doc.get("assignment_reason")),
            transferred_to=_text(doc.get("transferred_to")),
            transferred_to_name=_text(doc.get("transferred_to_name")),
            transferred_at=_when(doc.get("transferred_at")),
            assigned_by=_text(doc.get("assigned_by")),
            open_offers=_each(Offer.from_doc, doc.get("open_offers")),
            stored_offers=_stored_list(doc.get("open_offers")),
            held_until=_when(doc.get("held_until")),
            offered_to=_texts(doc.get("offered_to")),
            pond=_text(doc.get("pond")) or None,
            offer_links=_each(OfferLink.from_doc, doc.get("offer_links")),
            last_activity_kind=_text(doc.get("last_activity_kind")),
            last_activity_by=_text(doc.get("last_activity_by")),
            last_event_id=_text(doc.get("last_event_id")),
            crm_status=_text(doc.get("crm_status")) or "new",
            assigned_users=_texts(doc.get("assigned_users")),
            assigned_users_at=_when(doc.get("assigned_users_at")),
            erased=bool(doc.get("erased")),  # nx-27017 reads a `$set` true back as 1
            company=_text(doc.get("company")),
            office_address=_text(doc.get("office_address")),
            home_address=_text(doc.get("home_address")),
            rating=_int(doc.get("rating")),
            production_value=_text(doc.get("production_value")),
            labels=_texts(doc.get("labels")),
            campaigns=_texts(doc.get("campaigns")),
            campaign_subscriptions=_texts(doc.get("campaign_subscriptions")),
            campaign_triggers=_texts(doc.get("campaign_triggers")),
            first_created_at=_when(doc.get("first_created_at")),
            first_created_ms=_int(doc.get("first_created_ms")),
            moved_from_account_id=_text(doc.get("moved_from_account_id")),
            moved_from_account_name=_text(doc.get("moved_from_account_name")),
            moved_from_owner=_text(doc.get("moved_from_owner")),
            moved_at=_when(doc.get("moved_at")),
            moved_ms=_int(doc.get("moved_ms")),
            early_holder_account_id=_text(doc.get("early_holder_account_id")),
            early_holder_ms=_int(doc.get("early_holder_ms")),
            last_activity_version=_int(doc.get("last_activity_version")),
            field_versions=_int_map(doc.get("field_versions")),
            state_version=_int(doc.get("state_version")),
            router_version=_int(doc.get("router_version")),
            state_office=_text(doc.get("state_office")),
            state_office_version=_int(doc.get("state_office_version")),
        )

    @property
    def office_of_state(self) -> str | None:
        """The office of the row's state version (`state_office`), when it was written with that version: a crm-api of
        before session 30 (a rolling update's older pod, a rollback) writes the state version without it, leaving the
        office of an older state beside it (helper 125's review). None: unknown (the moves decide as before it)."""
        known = self.state_version is not None and self.state_office_version == self.state_version
        return self.state_office if known else None

    def offer_link(self, link_id: str) -> OfferLink | None:
        return next((link for link in self.offer_links if link.link_id == link_id), None)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One entry of a lead's timeline: a projected event, or an action taken through crm-api."""

    entry_id: str  # the event's id, or one derived from it (a transfer's, an erasure's)
    lead_id: str
    account_id: str  # the office it happened in (a moved lead keeps its timeline, T2)
    type: str
    occurred_at: datetime
    occurred_ms: int
    agent_id: str | None = None
    action: str | None = None
    summary: str = ""
    content: Mapping[str, Any] | None = None  # an action's: text, call_outcome, task, message, crm_status, users
    erased: bool = False
    answers: str | None = None  # the ask (its LeadActivity's id) a router's answer to an ask back names (0067)

    @classmethod
    def from_doc(cls, doc: Doc) -> TimelineEntry:
        """The entry of a crm_timeline document (KeyError without `_id`); see the module's docstring."""
        occurred_at = _at(doc, "occurred")
        content = doc.get("content")
        return cls(
            entry_id=str(doc["_id"]),
            lead_id=_text(doc.get("lead_id")) or "",
            account_id=_text(doc.get("account_id")) or "",
            type=_text(doc.get("type")) or "",
            occurred_at=occurred_at,
            occurred_ms=_ms(doc, "occurred", occurred_at),
            agent_id=_text(doc.get("agent_id")),
            action=_text(doc.get("action")),
            summary=_text(doc.get("summary")) or "",
            content=dict(content) if isinstance(content, Mapping) else None,
            erased=bool(doc.get("erased")),
            answers=_text(doc.get("answers_activity_id")),
        )


def _at(doc: Doc, prefix: str, default: datetime = EPOCH) -> datetime:
    """`<prefix>_at`, else the instant of `<prefix>_ms`, else `default`."""
    return _when(doc.get(f"{prefix}_at")) or _from_ms(doc.get(f"{prefix}_ms")) or default


def _ms(doc: Doc, prefix: str, at: datetime) -> int:
    """`<prefix>_ms` (the sort key the queries use), else the milliseconds of the datetime read."""
    stored = _int(doc.get(f"{prefix}_ms"))
    return epoch_ms(at) if stored is None else stored


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond a float's range
        return None


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _each(read: Callable[[object], T | None], value: object) -> tuple[T, ...]:
    """The items of a stored list that `read` makes sense of, in order."""
    return tuple(item for item in map(read, _items(value)) if item is not None)


def _stored_list(value: object) -> tuple[Any, ...] | None:
    """A stored list's items as they are (what a compare-and-set matches), None when it is not a list."""
    return tuple(value) if isinstance(value, list) else None


def _texts(value: object) -> tuple[str, ...]:
    return tuple(item for item in _items(value) if isinstance(item, str))


def _text_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _int_map(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and _int(v) is not None}


def _when(value: object) -> datetime | None:
    """An aware datetime from a stored one; naive means UTC (nx-27017's text of a `$set` datetime is naive)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _from_ms(value: object) -> datetime | None:
    if (ms := _int(value)) is None:
        return None
    try:
        return from_epoch_ms(ms)
    except OverflowError:  # beyond datetime's years 1 to 9999
        return None
