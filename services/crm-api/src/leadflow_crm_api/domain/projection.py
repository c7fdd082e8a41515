"""What crm-api's projection reads of a lead's row and writes to it, typed, and how an event decides it. Pure, no I/O.

The projection (`handlers.project`) loads a `RowState` (or, for an office move, the `LeadRow`), decides a
write and commits it through its port (`handlers.ViewWriter`): a `NewRow` stored unless the lead has a row,
`RowChanges` of an existing row, a `RowUpsert` of an assignment. Each value says here what it does to a
stored row (`document`, `applied_to`: what the rebuild's buffer does in memory); `adapters.leads.LeadViews`
encodes the same as MongoDB commands. The fields are the row's as stored, built by `domain.views`,
`domain.offices` and `domain.erasure`. What the projection reads back it wrote itself, so a `RowState` is
taken from the stored document without parsing (issue 14: the projection's CPU per event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from leadflow_crm_api.domain.erasure import ERASED_BEFORE_ROW, ERASED_ROW
from leadflow_crm_api.domain.generations import LAST_ACTIVITY
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import moved_row
from leadflow_crm_api.domain.views import (
    APPLIED_EVENT_IDS,
    CLOCK_SKEW_MS,
    EARLY_HOLDER,
    HOLDER_FIELDS,
    MOVE_REASON,
    OWED_VERSION,
    PARKED_FOR,
    ROUTER_VERSION,
    is_echo,
    last_activity,
    lead_row_changes,
    lead_row_from_assigned,
    lead_row_from_held,
    lead_row_from_offered,
    offer_links_after,
    open_offers_after,
    pond_of,
    records_in_timeline,
)
from leadflow_shared.clock import epoch_ms
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
)

Fields = Mapping[str, Any]  # some of a crm_leads row's fields, as stored
Doc = dict[str, Any]

# What an assignment sets only on the row it creates: fields crm-api itself changes later (lead sharing's
# `transferred_to`, the holder's CRM status), so replaying an old event cannot undo them.
ON_INSERT_ONLY = ("created_at", "created_ms", "transferred_to", "crm_status")
# The router version of the last state-changing lead event the row applied (`changes_state`; decision 0093): what a
# state-changing event is compared with (`RowState.older`). `ROUTER_VERSION` is the last version of any event
# applied, an activity-only one's too (a refused claim): what an activity-only event is compared with.
STATE_VERSION = "state_version"
# The office the lead was in once the change of the row's `STATE_VERSION` was made (decision 0093, session 30): a lead
# event's `account_id`, a move's target; set wherever the state version is, cleared with it. A move tells by it a
# newer change of the office the row is in (`offices.overtaken`: the lead came back) from one of its target applied
# before it (`_moved_versions`). Missing (rows written before it): unknown, the moves decide as before.
STATE_OFFICE = "state_office"
# The state version `STATE_OFFICE` was written with, written with it (helper 125's review): a crm-api of before session
# 30 (a rolling update's older pod, a rollback) writes `STATE_VERSION` alone, leaving the office of an older state
# beside it; the office is known only while the two agree (`LeadRow.office_of_state`; missing: unknown).
STATE_OFFICE_VERSION = "state_office_version"
STATE_FIELDS = (STATE_VERSION, STATE_OFFICE, STATE_OFFICE_VERSION)  # written together (`_state`), dropped together
# The router version of the event that set the row's last activity (decision 0093, session 27): of two events of one
# millisecond, the one the router decided first sets it, read in any order. Missing: the activity is set only when
# strictly newer (as before the field; an unversioned event clears it when it sets the activity).
LAST_ACTIVITY_VERSION = "last_activity_version"
# The fields some state changes set and others leave (a release sets the assignment reason, the offer after it does
# not; a claim sets the fee, a share does not; a hold and an offer set `held_until`, nothing else does), each with the
# router version of the event that set it (decision 0093, session 28): a state change older than the row's state
# version still sets those of them no newer applied event set (`late_changes`), as in order it set them last. A row's
# first event gives the ones it leaves at their defaults version 0 (any event that sets them is later); an unversioned
# event forgets the ones it sets (unknown: no late event sets them).
LATE_FIELDS = ("assignment_reason", "referral_fee_percent", "held_until")
FIELD_VERSIONS = "field_versions"
# The offers an expiry or a withdrawal of an office the row is not in yet ended (decision 0093, session 31): each its
# (agent, round) and the ending event's router version. Applied before its move, such a change of the move's target
# ends no offer on the row, and the move then sets its own, lower, state version (`_moved_versions`), so the offer it
# ended, replayed after the move, is not older: it is not opened again (`_not_ended`). In order no offer of that key
# opened before the ending event is open after it, whatever office, so an entry is never wrong, only unneeded once the
# row's state version passes it; the last `ENDED_EARLY_KEPT` are kept. Missing (rows written before, and every row
# read in order): none.
ENDED_EARLY = "ended_early"
ENDED_EARLY_KEPT = 8


def changes_state(event: LeadEvent) -> bool:
    """Whether `event` changes the row's state (its holder, status, offers, hold, fee, links, shares), not only its
    last activity, `last_event_id` and timeline: every lead event but an `ActivityLogged` (an agent's action, a
    refused claim, ask-back or decline, the contact's new inquiry) and a `ContactMessaged` (decision 0093;
    `unit/test_crm_projection_writes.py::test_only_the_events_that_change_the_rows_state_are_state_changing`)."""
    return not isinstance(event, ActivityLogged | ContactMessaged)


@dataclass(frozen=True, slots=True)
class RowState:
    """What the projection reads of a lead's row before changing it: whether there is one, whether its contact
    was erased, its open offers and accept links (the lists as stored: `open_offers_after` and
    `offer_links_after` build on them), its office, the ids of the events it applied that the timeline does
    not record (`views.APPLIED_EVENT_IDS`: the lead's shares), its last move's time and its early holder mark
    (`views.EARLY_HOLDER`), which tell an event of an office the lead has left (decision 0093)."""

    exists: bool = False
    erased: bool = False
    open_offers: list[dict[str, Any]] = field(default_factory=list)
    offer_links: list[dict[str, Any]] = field(default_factory=list)
    account_id: str | None = None
    applied: list[str] = field(default_factory=list)
    moved_ms: int | None = None
    early_holder: tuple[str | None, int | None] = (None, None)
    router_version: int | None = None
    parked_for: str | None = None
    owed_version: int | None = None
    state_version: int | None = None
    last_activity_ms: int | None = None
    last_activity_version: int | None = None
    field_versions: Mapping[str, int] = field(default_factory=dict)
    ended_early: list[dict[str, Any]] = field(default_factory=list)
    # `moved_ms` and the state version as stored (a double, a string: whatever a hand's fix left), for `held`.
    stored: tuple[object, object] = (None, None)

    def held(self) -> dict[str, object]:
        """What a change decided on this state holds on (`RowChanges.holding`): the row's last move and its state
        version, which every move and every change of who holds the lead or its offers sets, as stored: a value this
        code reads as unknown (a double written by hand) is still matched, not held as missing and never met, which
        dropped every change of the lead without a word (helper 140's review)."""
        return {"moved_ms": self.stored[0], STATE_VERSION: self.stored[1]}

    @classmethod
    def of(cls, row: Fields | None) -> RowState:
        """The state of a stored row (or of one about to be), None for a lead without a row."""
        if row is None:
            return NO_ROW
        if row.get(ERASED_BEFORE_ROW):
            return ERASED_NO_ROW
        # `erased`: nx-27017 reads a `$set` true back as 1.
        return cls(
            True,
            bool(row.get("erased")),
            row.get("open_offers") or [],
            row.get("offer_links") or [],
            row.get("account_id"),
            row.get(APPLIED_EVENT_IDS) or [],
            _ms(row.get("moved_ms")),
            (row.get(EARLY_HOLDER[0]), _ms(row.get(EARLY_HOLDER[1]))),
            _ms(row.get(ROUTER_VERSION)),
            row.get(PARKED_FOR),
            _ms(row.get(OWED_VERSION)),
            _ms(row.get(STATE_VERSION)),
            _ms(row.get("last_activity_ms")),
            _ms(row.get(LAST_ACTIVITY_VERSION)),
            row.get(FIELD_VERSIONS) or {},
            row.get(ENDED_EARLY) or [],
            (row.get("moved_ms"), row.get(STATE_VERSION)),
        )

    @property
    def marker(self) -> bool:
        """Whether the lead has no row but the marker of its erasure (decision 0050, session 28): its events park as
        any lead's without a row, and the event that makes its row makes it over the marker (`made_over_marker`)."""
        return self.erased and not self.exists

    def owes_parked(self, event: LeadEvent) -> bool:
        """Whether `event` created the row and has not finished applying the lead's parked events (a crash
        between its row's insert and its timeline entry): redelivered, it finishes that, not its own changes."""
        return self.parked_for is not None and self.parked_for == str(event.event_id)

    def version_owed(self) -> int | None:
        """The version of the event that made the marked row without it, while the row's is lower (or none): what
        finishing the row sets (decision 0093, helper 100); None when nothing is owed."""
        owed, mine = self.owed_version, self.router_version
        if self.parked_for is None or owed is None or (mine is not None and mine >= owed):
            return None
        return owed

    def applied_already(self, event: LeadEvent) -> bool:
        """Whether the row has applied `event`, one the timeline does not record (a share read again)."""
        return str(event.event_id) in self.applied

    def superseded(self, event: LeadEvent) -> bool:
        """Whether `event`, of another office than the row's or older than a later office's change, must leave the
        row alone (T2, decision 0093): in order, what came after it replaced what it changed.

        - An event of an office the row is not in, older than the row's last move: of an office the lead has left
          (a dead letter replayed; one of an office it passed through, whose own move out is projected late).
        - An event of the row's office older than its last move by more than `CLOCK_SKEW_MS`: from before the lead
          left this office and came back (helper 86); within it, an event of the move's target stamped by a
          replica whose clock is behind, applied.
        - An event older than the early holder mark of another office: that office (the lead's next, or one after)
          changed the holder already; the moves that take the lead there are not projected yet.
        - An event stamped with an older record version than the last one the row applied that changed what it
          changes (`older`).
        Within the row's office, events come in the router's order and are applied as they come.
        """
        return self.exists and (self.older(event) or self.left_behind(event))

    def left_behind(self, event: LeadEvent) -> bool:
        """Whether `event` is of an office the lead has left, or older than a later office's change (the time rules of
        `superseded`, not its version's)."""
        at, (office, early_ms) = epoch_ms(event.occurred_at), self.early_holder
        if office not in (None, event.account_id) and early_ms is not None and at < early_ms:
            return True
        if self.moved_ms is None:
            return False
        left = self.account_id not in (None, event.account_id)
        return at < self.moved_ms if left else at < self.moved_ms - CLOCK_SKEW_MS

    def older(self, event: LeadEvent) -> bool:
        """Whether `event` was decided before the last change the row applied of what it changes (decision 0093
        amended: a dead letter of the row's own office replayed late): a state-changing event (`changes_state`)
        older than the row's `STATE_VERSION`, so an event after it that changed only the last activity (a refused
        claim) does not hold it back; an activity-only one older than the row's version (any event
        after it moved the last activity and `last_event_id`). A row without a state version (written before the
        field) compares with its version, as before. Events of one change share a version, so one of the row's
        version is applied. An event or row without a version is not older; nor is an echo of an agent's action or
        message, which keeps its own rule."""
        version = event.payload.router_version
        if version is None or is_echo(event):
            return False
        last = self.router_version
        if changes_state(event) and self.state_version is not None:
            last = self.state_version
        return last is not None and version < last


def versioned(event: LeadEvent, row: RowState) -> dict[str, Any]:
    """The row's versions after applying `event` (when it carries one and is no echo): `STATE_VERSION` the event's
    when it changes the row's state (applied, it is not older than the row's); `ROUTER_VERSION` the event's when
    higher, never lowered (a state change applied after a newer refused claim leaves it)."""
    version = event.payload.router_version
    if version is None or is_echo(event):
        return {}
    raised = {ROUTER_VERSION: version} if row.router_version is None or version > row.router_version else {}
    return raised | (_state(version, event.account_id) if changes_state(event) else {})


def _state(version: int, office: str | None) -> dict[str, Any]:
    """The row's state version with its office (`STATE_OFFICE`), and the version that office is of (`STATE_FIELDS`)."""
    return dict(zip(STATE_FIELDS, (version, office, version), strict=True))


def activity_version(event: LeadEvent, row: RowState, changes: Fields) -> dict[str, Any]:
    """What the row remembers of the event that sets its last activity when `changes` set it: the event's router
    version, an echo's too (its order is the router's as any event's); none for an unversioned event (cleared only on
    a row that has one)."""
    if "last_activity_ms" not in changes:
        return {}
    version = event.payload.router_version
    return {} if version is None and row.last_activity_version is None else {LAST_ACTIVITY_VERSION: version}


def field_versions(event: LeadEvent, row: RowState, changes: Fields) -> dict[str, Any]:
    """The row's `FIELD_VERSIONS` after `event` sets those of `LATE_FIELDS` in `changes` (its own changes): the event's
    version for each, or, unversioned, none (forgotten); nothing when they stay as they are."""
    version, stored = event.payload.router_version, dict(row.field_versions)
    after = {k: v for k, v in stored.items() if k not in changes}
    if version is not None:
        after |= {name: version for name in LATE_FIELDS if name in changes}
    return {} if after == stored else {FIELD_VERSIONS: after}


def _own_fields(event: LeadEvent) -> Fields:
    """What `event` itself sets on a row (an assignment all of its row), before what the row around it adds."""
    return lead_row_from_assigned(event) if isinstance(event, LeadAssigned) else lead_row_changes(event)


def first_of_its_ms(event: LeadEvent, row: RowState) -> bool:
    """Whether `event` is of the millisecond of the row's last activity and was decided before the event that set it
    (a lower router version): in the router's order it came first and set the last activity, so it sets it now."""
    version, last = event.payload.router_version, row.last_activity_version
    if version is None or last is None or row.last_activity_ms is None:
        return False
    return row.last_activity_ms == epoch_ms(event.occurred_at) and version < last


NO_ROW = RowState()
ERASED_NO_ROW = RowState(erased=True)  # a lead erased before it had a row: its marker (`erasure.erased_marker`)


def lead_row_of(doc: Fields | None) -> LeadRow | None:
    """The lead's row as stored; None when it has none, or only its erasure's marker."""
    return None if doc is None or doc.get(ERASED_BEFORE_ROW) else LeadRow.from_doc(doc)


def _ms(value: object) -> int | None:
    """A stored time in milliseconds (bson's Int64 reads back as an int); None when missing or odd."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class NewRow:
    """A lead's first row, stored only if the lead has none (a replayed first event must not undo later ones)."""

    lead_id: str
    fields: Fields

    def document(self) -> Doc:
        return {"_id": self.lead_id, **self.fields}

    def owing(self, event_id: str, *, unversioned: bool = False) -> NewRow:
        """The row marked as owing the lead's parked events (`PARKED_FOR`) until `event_id` has applied them;
        `unversioned`: without the event's `ROUTER_VERSION` (events that came before it are applied first)."""
        return NewRow(
            self.lead_id, {**_unversioned(self.fields, unversioned), **_mark(event_id, self.fields, unversioned)}
        )


def _unversioned(fields: Fields, drop: bool) -> Fields:
    """`fields` without the router version when `drop`: a row-making event's own version is set when it is applied
    again after the parked events that came before it, so the row's versions are never lowered (decision 0093)."""
    return {k: v for k, v in fields.items() if k not in (ROUTER_VERSION, *STATE_FIELDS)} if drop else fields


def _mark(event_id: str, fields: Fields, unversioned: bool) -> Doc:
    """The mark of a row owing parked events: the event's id, and the version it was stored without (`OWED_VERSION`,
    so the row's version reaches it however the row is finished: `RowState.version_owed`)."""
    owed = fields.get(ROUTER_VERSION) if unversioned else None
    return {PARKED_FOR: event_id} | ({} if owed is None else {OWED_VERSION: owed})


@dataclass(frozen=True, slots=True)
class RowChanges:
    """Changes of a lead's row, if it has one: `fields` are set; `activity` (its last activity) only when newer
    than the row's, so an event projected after an action crm-api recorded later does not move it back."""

    lead_id: str
    fields: Fields
    activity: Fields
    unset: tuple[str, ...] = ()  # fields removed (after `fields` are set)
    # (ms, version): `activity` replaces the row's only while it is still that millisecond's set by a later router
    # version (`first_of_its_ms`), instead of only when newer: an action crm-api recorded meanwhile stays.
    replaces: tuple[int, int] | None = None
    # `fields` and `unset` applied only while the row still holds these values (None: the field missing or null), the
    # row the changes were decided on: a move, decided on the row it read, while another office's consumer may change
    # it (`_moved`). Not `activity`, which keeps its own rule (only when newer: order does not matter to it).
    expect: Fields | None = None

    @classmethod
    def of(
        cls,
        lead_id: str,
        changes: Fields,
        *,
        newer_only: tuple[str, ...] = LAST_ACTIVITY,
        replaces: tuple[int, int] | None = None,
    ) -> RowChanges:
        """`changes` with the fields `newer_only` (the last activity, unless told) set only when newer, or, with
        `replaces`, only over that millisecond's activity of a later version."""
        activity = {k: changes[k] for k in newer_only if k in changes}
        return cls(lead_id, {k: v for k, v in changes.items() if k not in activity}, activity, replaces=replaces)

    @classmethod
    def without(cls, lead_id: str, *names: str) -> RowChanges:
        """The row without the fields `names` (the parked events' mark, `PARKED_FOR`)."""
        return cls(lead_id, {}, {}, names)

    @classmethod
    def unmarked(cls, lead_id: str, version: int | None = None, office: str | None = None) -> RowChanges:
        """The row without the parked events' mark (`PARKED_FOR`, `OWED_VERSION`); with `version`, the row's router
        and state versions set in the same update (the marking event's, owed: `RowState.version_owed`; `office`, its
        office)."""
        return cls(lead_id, owed_versions(version, office), {}, (PARKED_FOR, OWED_VERSION))

    def holding(self, read: RowState) -> RowChanges:
        """These changes applied only while the row is still in the state it was `read` in (`RowState.held`): another
        office's consumer may move the lead, or apply an early change of the office it moved to, between this event's
        read and its update, and the offers and holder decided on the row before would be written over what that left
        (helper 134's and helper 137's reviews). Only `fields` and `unset` hold: the activity keeps its own rule."""
        held = self if self._activity_may_apply(read) else replace(self, activity={})
        if not self.fields and not self.unset:
            return held
        return replace(held, expect={**(self.expect or {}), **read.held()})

    def _activity_may_apply(self, read: RowState) -> bool:
        """False when the row as `read` says the activity will not be set (not newer; for `replaces`, not that
        millisecond's of a later version): the activity only moves forward, so it will not be later either. Its op is
        then not sent: one that rightly matches nothing, sent with held ops, made the command say one of them missed
        (helper 137's review). An odd stored value (not an int) leaves it to MongoDB."""
        if not self.activity:
            return True
        stored_ms, new_ms = read.last_activity_ms, self.activity.get("last_activity_ms")
        if self.replaces is not None:
            stored_version = read.last_activity_version
            if stored_ms is None or stored_version is None:
                return True
            return stored_ms == self.replaces[0] and stored_version > self.replaces[1]
        return not isinstance(new_ms, int) or stored_ms is None or stored_ms < new_ms

    def holds(self, row: Fields) -> bool:
        """Whether `row` holds what these changes `expect` (as `LeadViews`' filter matches it)."""
        return self.expect is None or all(_stored(row, k) == v for k, v in self.expect.items())

    def applied_to(self, row: Fields) -> Doc:
        """The row with these changes: their fields none while it does not hold what they `expect`; their activity by
        its own rule (as `LeadViews`' second op, filtered only by it)."""
        changed = (
            {k: v for k, v in {**row, **self.fields}.items() if k not in self.unset} if self.holds(row) else dict(row)
        )
        # As LeadViews' filter {"last_activity_ms": {"$lt": new}}: a missing or non-number field never matches
        # (a stored one reads back as bson's Int64, an int); without a new time, the activity is set.
        stored_ms, new_ms = row.get("last_activity_ms"), self.activity.get("last_activity_ms")
        # A double (a hand's fix) compares as MongoDB compares numbers (helper 143's review).
        numeric = isinstance(stored_ms, int | float) and not isinstance(stored_ms, bool)
        if self.replaces is not None:
            # As LeadViews' filter {"last_activity_ms": ms, "last_activity_version": {"$gt": version}}.
            stored_version = row.get(LAST_ACTIVITY_VERSION)
            later = isinstance(stored_version, int) and stored_version > self.replaces[1]
            if self.activity and numeric and stored_ms == self.replaces[0] and later:
                changed |= self.activity
        elif self.activity and (new_ms is None or (numeric and stored_ms < new_ms)):
            changed |= self.activity
        return changed


def _stored(row: Fields, path: str) -> Any:
    """The value at a field's dotted path (as a MongoDB filter names a field of an embedded document); None when
    missing."""
    value: Any = row
    for name in path.split("."):
        value = value.get(name) if isinstance(value, Mapping) else None
    return value


def made_over_marker(lead_id: str, row: Fields) -> RowChanges:
    """The row a row-making event makes (all of `row`: a first row's fields, or an assignment's with those it sets
    only on insert) of a lead erased before it had one: over its marker, which goes, without the person (the event
    is older than the erasure: a dead letter replayed, or a copy published again after it; decision 0050, s. 28)."""
    return RowChanges(lead_id, {**row, **ERASED_ROW}, {}, (ERASED_BEFORE_ROW,))


def owed_versions(version: int | None, office: str | None = None) -> Doc:
    """The versions a marked row takes when it is finished holding only its maker's changes (`version_owed`): the
    maker is a row-making event, which changes the state, so both, and its office (`STATE_OFFICE`)."""
    return {} if version is None else {ROUTER_VERSION: version, **_state(version, office)}


@dataclass(frozen=True, slots=True)
class RowUpsert:
    """A lead's row as an assignment leaves it, whether or not it has one: `fields` are set, `on_insert` only on
    the row it creates. Applying it twice leaves the same row."""

    lead_id: str
    fields: Fields
    on_insert: Fields

    @classmethod
    def of(cls, lead_id: str, row: Fields) -> RowUpsert:
        on_insert = {k: row[k] for k in ON_INSERT_ONLY if k in row}
        return cls(lead_id, {k: v for k, v in row.items() if k not in on_insert}, on_insert)

    def owing(self, event_id: str, *, unversioned: bool = False) -> RowUpsert:
        """The upsert whose inserted row is marked as owing the lead's parked events (`NewRow.owing`)."""
        fields = _unversioned(self.fields, unversioned)
        return RowUpsert(self.lead_id, fields, {**self.on_insert, **_mark(event_id, self.fields, unversioned)})


def first_row(event: LeadEvent) -> NewRow | None:
    """The row a lead's first offer or hold creates, with the event's changes in it (so nothing is read back
    after storing it); None for other events."""
    if isinstance(event, LeadOffered):
        fields = lead_row_from_offered(event)
    elif isinstance(event, LeadHeld):
        fields = lead_row_from_held(event)
    else:
        return None
    fields = {**fields, **activity_version(event, NO_ROW, fields)}
    if event.payload.router_version is not None:  # its defaults: older than any event that sets them
        fields[FIELD_VERSIONS] = dict.fromkeys((name for name in LATE_FIELDS if name in fields), 0)
    # What storing the row and then applying the event's changes to it leaves.
    return NewRow(str(event.payload.lead_id), row_changes(event, RowState.of(fields)).applied_to(fields))


def row_changes(event: LeadEvent, row: RowState) -> RowChanges:
    """The event's changes of its lead's row, with the open offers and accept links it leaves there.

    Each change is recognised when the event comes again (decision 0093): an event the timeline records by its
    entry; a share by its id, kept on the row (`APPLIED_EVENT_IDS`); the echo of an agent's action or message,
    which changes only the last activity and `last_event_id`, by its time: it sets them only when newer.
    """
    changes, offered = lead_row_changes(event), row.open_offers
    changes |= field_versions(event, row, changes)  # what it sets itself (not a move's reason added below)
    early = _early_holder(event, row, changes)
    if early and row.early_holder[0] != event.account_id:
        # The first change seen of an office further on: it applies to what the move there leaves (no open offer,
        # the move's reason), not to what the row's office set (`offices.moved_row`).
        offered, changes = [], {"assignment_reason": MOVE_REASON, **changes}
    changes |= early | versioned(event, row) | activity_version(event, row, changes)
    offers = open_offers_after(offered, event)
    if offers is not None:
        changes |= _with_offers(_not_ended(offers, event, row))
    links = offer_links_after(row.offer_links, event)
    if links is not None:  # `offer_link_ids` is what a click's lookup matches (an array of strings)
        changes |= {"offer_links": links, "offer_link_ids": [link["link_id"] for link in links]}
    changes |= _ended_early(event, row)
    if isinstance(event, LeadShared):
        changes[APPLIED_EVENT_IDS] = [*row.applied, str(event.event_id)]
    return RowChanges.of(
        str(event.payload.lead_id), changes, newer_only=_newer_only(event), replaces=_replaces(event, row)
    )


def _replaces(event: LeadEvent, row: RowState) -> tuple[int, int] | None:
    """`RowChanges.replaces` for `event`: the row's activity it replaces when first of its millisecond, else None."""
    version = event.payload.router_version
    if first_of_its_ms(event, row) and row.last_activity_ms is not None and version is not None:
        return (row.last_activity_ms, version)
    return None


def moved_changes(row: LeadRow, event: LeadTransferred) -> RowChanges:
    """A move's changes of the row (`offices.moved_row`), its last activity its own as any event's (session 28): its
    kind and who took it, with its router version, set only when newer or, of the row's activity's millisecond and
    decided first, over the later version's (`first_of_its_ms`); unversioned, it clears the version (as `touch`). It
    used to set the time alone, the kind, who and the version left as they were, so the activity was order-dependent
    and a late event of its millisecond decided after it could replace it (the version left was a later one's).
    The `LATE_FIELDS` it sets (the move's reason, unless a later holder change keeps its own) take its version, as an
    event's do (`field_versions`), so an older state change replayed late does not set them over it (`late_changes`).
    A move changes the holder and the office: its version raises the row's state version (never lowers it: a move
    is applied by its time, `move_applies`), so a state change of the office left, decided before it but stamped after
    it by a replica whose clock is ahead, is `older` when replayed after it (decision 0093, session 29); but over a
    newer change of its target applied before it that it overwrites, it sets its own (`_moved_versions`, session 30)."""
    state = RowState(
        True,
        last_activity_ms=row.last_activity_ms,
        last_activity_version=row.last_activity_version,
        field_versions=row.field_versions,
    )
    fields = moved_row(row, event) | last_activity(event.type, event.payload.by_user_id)
    fields |= activity_version(event, state, fields) | field_versions(event, state, fields)
    fields |= _moved_versions(row, event, fields)
    # Only over the row as read: an event of another office applied meanwhile raised its router version, or another
    # move landed (`handlers._moved` reads the row again and decides again); and over what it rewrites of what it read,
    # which a late change sets without a version (`_rewritten`).
    read = {ROUTER_VERSION: row.router_version, STATE_VERSION: row.state_version, STATE_OFFICE: row.state_office,
            STATE_OFFICE_VERSION: row.state_office_version, "moved_ms": row.moved_ms}  # fmt: skip
    changes = RowChanges.of(row.lead_id, fields, replaces=_replaces(event, state))
    return replace(changes, expect=read | _rewritten(row, fields))


def _rewritten(row: LeadRow, moved: Fields) -> dict[str, Any]:
    """What a move's update (`moved`) holds on besides the row's versions: what it rewrites from the row it read that a
    late change (`late_changes`, older than the row's state version: no version changes) also sets. The open offers it
    keeps (`offices._offers_since`, the row in its target changed since) as stored: a late expiry or withdrawal applied
    between the move's read and its update ended one of them, which the update would open again; and the versions of
    the late-set fields when it sets them (its reason: a late release of the target sets its own with its version). As
    stored, so a row nobody changed always matches; an empty list of offers (every one ended) needs no hold. The field
    versions by their paths: nx-27017 matches no embedded document (helper 125's review)."""
    held: dict[str, Any] = {}
    if moved.get("open_offers"):
        held["open_offers"] = None if row.stored_offers is None else list(row.stored_offers)
    if FIELD_VERSIONS in moved or any(name in moved for name in LATE_FIELDS):
        held |= {f"{FIELD_VERSIONS}.{name}": row.field_versions.get(name) for name in LATE_FIELDS}
    return held


def _moved_versions(row: LeadRow, event: LeadTransferred, moved: Fields) -> dict[str, Any]:
    """The row's versions after the move (`moved`: what it sets): its router version when higher (never lowered), and
    its state version with its target as `STATE_OFFICE` when higher, or when the row's newer state is its target's
    own, applied while the row was elsewhere, and the move sets every holder field over it (no early holder mark
    keeps them: `offices.moved_row`). Such a change of the target (an expiry or a withdrawal, the only state changes
    that set no holder, hence no mark) changed only the open offers, which the move empties: the row is the move's
    state, and the target's changes between the move and it, replayed after the move, are not older than the row's
    (decision 0093, session 30: an expiry applied before the move kept the target's offer from the lead)."""
    version, target = event.payload.router_version, event.payload.to_account_id
    if version is None:
        return {}
    raised = {ROUTER_VERSION: version} if row.router_version is None or version > row.router_version else {}
    newer = row.state_version is None or version > row.state_version
    early = row.office_of_state == target != row.account_id and all(name in moved for name in HOLDER_FIELDS)
    return raised | (_state(version, target) if newer or early else {})


def _newer_only(event: LeadEvent) -> tuple[str, ...]:
    """The fields `event` sets only when newer than the row's last activity (or, of its millisecond and decided
    first, only over the later version's: `RowChanges.replaces`): that activity with the version that set it, and
    `last_event_id` for an echo."""
    activity = (*LAST_ACTIVITY, LAST_ACTIVITY_VERSION)
    return activity if records_in_timeline(event) or isinstance(event, LeadShared) else (*activity, "last_event_id")


def late_changes(event: LeadEvent, row: RowState) -> RowChanges | None:
    """What an event older than the row's version of what it changes still sets: an offer's accept link (kept after its
    offer ended, so a late click is told how it ended), and, unless it is of an office the lead left (`left_behind`),
    those of its `LATE_FIELDS` no newer applied event set (in order it set them last: a release's reason replayed after
    the offer that followed it, which sets none; session 28) and its last activity, set as any event's (only when
    newer, or first of its millisecond): in order a later change stamped before it left it (a move stamped by a replica
    whose clock is behind: review of 343ee30). None when it sets nothing."""
    if not row.older(event):
        return None
    fields: dict[str, Any] = {}
    activity: dict[str, Any] = {}
    if (links := offer_links_after(row.offer_links, event)) is not None:
        fields |= {"offer_links": links, "offer_link_ids": [link["link_id"] for link in links]}
    if (offers := _late_offers(event, row)) is not None:
        fields |= _with_offers(offers)
    if not row.left_behind(event):
        fields |= _late_fields(event, row)
        activity = {k: v for k, v in lead_row_changes(event).items() if k in LAST_ACTIVITY}
        activity |= activity_version(event, row, activity)
    if not fields and not activity:
        return None
    return RowChanges(str(event.payload.lead_id), fields, activity, replaces=_replaces(event, row))


_ENDS_EVERY_OFFER = (LeadClaimed, LeadAssigned, LeadFellBack, LeadTransferred, LeadShared, LeadReleased)


def _late_offers(event: LeadEvent, row: RowState) -> list[dict[str, Any]] | None:
    """The row's open offers without those a late `event` ended in order and that are still open: offers opened before
    it (by the offer's router version; an offer stored without one is left), its own for an expiry or a withdrawal,
    every one for a change of holder (a claim replayed after the next round's offer: session 28). None when it ends
    none of them."""
    version = event.payload.router_version
    if version is None or not isinstance(event, (OfferExpired, OfferWithdrawn, *_ENDS_EVERY_OFFER)):
        return None
    left = open_offers_after(row.open_offers, event) or []  # as in order
    kept = [o for o in row.open_offers if o in left or not _opened_before(o, version)]
    return kept if len(kept) != len(row.open_offers) else None


def _ended_early(event: LeadEvent, row: RowState) -> dict[str, Any]:
    """The row's `ENDED_EARLY` with the offer an expiry or a withdrawal of an office the row is not in yet ended (an
    office the lead moved to, its move not projected yet); nothing for any other event."""
    version = event.payload.router_version
    if not isinstance(event, OfferExpired | OfferWithdrawn) or version is None:
        return {}
    if not row.exists or row.account_id in (None, event.account_id):
        return {}
    key = (event.payload.agent_id, event.payload.offer_round)
    kept = [e for e in row.ended_early if (e.get("agent_id"), e.get("offer_round")) != key]
    entry = {"agent_id": key[0], "offer_round": key[1], "router_version": version}
    return {ENDED_EARLY: [*kept, entry][-ENDED_EARLY_KEPT:]}


def _not_ended(offers: list[dict[str, Any]], event: LeadEvent, row: RowState) -> list[dict[str, Any]]:
    """`offers` (the row's after `event`) without the offer `event` opens when an expiry or a withdrawal the router
    decided after it ended it already (`ENDED_EARLY`: applied before the move that lowered the row's state version)."""
    if not isinstance(event, LeadOffered) or (version := event.payload.router_version) is None:
        return offers
    key = (event.payload.agent_id, event.payload.offer_round)
    ended = any(
        (e.get("agent_id"), e.get("offer_round")) == key and (_ms(e.get("router_version")) or 0) > version
        for e in row.ended_early
    )
    return [o for o in offers if (o["agent_id"], o["offer_round"]) != key] if ended else offers


def _with_offers(offers: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's open offers and what it keeps of them (their agents, their pond: issue 15); a $set of the whole array:
    nx-27017 mangles $push of documents (decision 0004)."""
    return {"open_offers": offers, "offered_to": sorted({o["agent_id"] for o in offers}), "pond": pond_of(offers)}


def _opened_before(offer: dict[str, Any], version: int) -> bool:
    opened = offer.get("router_version")
    return isinstance(opened, int) and opened < version


def _late_fields(event: LeadEvent, row: RowState) -> dict[str, Any]:
    """The `LATE_FIELDS` an older event sets that the row holds from an older one still (by `FIELD_VERSIONS`; a field
    without a version is left: the row does not know), with their new versions."""
    version, own = event.payload.router_version, _own_fields(event)
    if version is None:
        return {}
    later = [k for k in LATE_FIELDS if k in own and k in row.field_versions and row.field_versions[k] < version]
    if not later:
        return {}
    return {k: own[k] for k in later} | {FIELD_VERSIONS: {**row.field_versions, **dict.fromkeys(later, version)}}


def _early_holder(event: LeadEvent, row: RowState, changes: Fields) -> dict[str, Any]:
    """T2: a holder change of an office the row is not in yet and has not left since (`RowState.superseded`), so
    of an office the lead moved to, whose move (keyed by the office it left, another partition) is projected
    later. The row keeps where and when, so the moves, older, leave the holder fields to it (`offices.moved_row`),
    and older events of other offices leave the row alone. Nothing for any other event."""
    if "owner_agent_id" not in changes or not row.exists or row.account_id in (None, event.account_id):
        return {}
    return dict(zip(EARLY_HOLDER, (event.account_id, epoch_ms(event.occurred_at)), strict=True))


def assigned_row(event: LeadAssigned, row: RowState) -> RowUpsert:
    """The row an assignment leaves. It ends any offer, a pond's too: the lead leaves its pond (issue 15)."""
    fields = lead_row_from_assigned(event) | {"pond": None} | versioned(event, row)
    fields |= _early_holder(event, row, fields) | activity_version(event, row, fields)
    fields |= field_versions(event, row, fields)
    if row.erased:
        fields |= ERASED_ROW  # an event from before the erasure, delivered late (a replayed dead letter)
    upsert = RowUpsert.of(str(event.payload.lead_id), fields)
    if not _activity_after(event, row):
        return upsert
    # Applied after a newer event that changed only the last activity (decision 0093): the last activity, newer, stays
    # (set only on the insert, as every other event sets it only when newer).
    kept = {k: upsert.fields[k] for k in (*LAST_ACTIVITY, LAST_ACTIVITY_VERSION) if k in upsert.fields}
    fields = {k: v for k, v in upsert.fields.items() if k not in kept}
    return RowUpsert(upsert.lead_id, fields, {**upsert.on_insert, **kept})


def assigned_changes(event: LeadAssigned, row: RowState, *, unversioned: bool = False) -> RowChanges:
    """An assignment's changes of a row there is (`assigned_row`), its last activity set as any event's: only when
    newer (or first of its millisecond): an action crm-api recorded after it (`LeadViews.touch`, which carries no
    router version) stays the last activity when the assignment is projected late (helper 143's review).
    `unversioned`: without its router and state versions, as a row-making event's row is stored when parked events
    came before it (`NewRow.owing`; it is applied again after them)."""
    upsert = assigned_row(event, row)
    fields = _unversioned(upsert.fields, unversioned)
    return RowChanges.of(upsert.lead_id, fields, newer_only=_newer_only(event), replaces=_replaces(event, row))


def _activity_after(event: LeadEvent, row: RowState) -> bool:
    """Whether the row applied a newer event than `event` (by version) whose last activity is not older: of the same
    millisecond, unless `event` came first (`first_of_its_ms`: in order, it set the activity)."""
    version, stored = event.payload.router_version, row.last_activity_ms
    newer = version is not None and row.router_version is not None and version < row.router_version
    return newer and stored is not None and stored >= epoch_ms(event.occurred_at) and not first_of_its_ms(event, row)
