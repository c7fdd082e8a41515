"""Generations of the CRM views (decision 0045): which collections hold them, and what a rebuild
carries over from the old generation because no event holds it. Pure, no I/O.

The views (`crm_leads`, `crm_timeline`; `crm_parked_events`, events waiting for their lead's row) are
derived from leads.events.v1, except for what crm-api's requests write on them: a lead's profile, labels,
CRM status, users and lead sharing on its row, and the timeline entries of actions taken through crm-api. A
rebuild replays the events into a fresh generation and copies those from the generation it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from leadflow_shared.collections import CRM_LEADS, CRM_TIMELINE

GREEN = "_green"  # the other slot's suffix: generations alternate between two sets of names
# Lead events that found no row of their lead and made none (decision 0093, amended): each generation holds its
# own, as its rows (helper 93: a rebuild's catch-up needs what its replay parked, the live projection its own).
CRM_PARKED_EVENTS = "crm_parked_events"


@dataclass(frozen=True, slots=True)
class ViewNames:
    generation: int
    leads: str
    timeline: str
    parked: str  # the events waiting for their lead's row


def names_of(generation: int) -> ViewNames:
    """Even generations use today's names (so generation 0 needs no migration), odd ones `_green`.

    Two slots, blue and green: a rebuild writes the slot the active generation does not use, so
    at most two generations exist and the names stay known to operators and tools.
    """
    suffix = "" if generation % 2 == 0 else GREEN
    return ViewNames(generation, CRM_LEADS + suffix, CRM_TIMELINE + suffix, CRM_PARKED_EVENTS + suffix)


class Phase(StrEnum):
    IDLE = "idle"
    BUILDING = "building"  # writers log what they write to the active generation (the rebuild log)
    SWITCHING = "switching"  # writers wait: the rebuild applies the last of the log and switches


@dataclass(frozen=True, slots=True)
class ViewsMeta:
    """The `crm_meta` document `views`; a missing one is generation 0, idle."""

    active: int = 0
    phase: Phase = Phase.IDLE
    building: int | None = None
    ticket: int = 0  # the last rebuild-log sequence number handed to a writer
    switch_by_ms: int | None = None  # writers waiting on a switch give up (abort it) after this
    # Per partition, the end offset the rebuild of the active generation replayed up to.
    replayed: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> ViewsMeta:
        if doc is None:
            return cls()
        building = doc.get("building")
        return cls(
            active=int(doc.get("active", 0)),
            phase=Phase(doc.get("phase", Phase.IDLE.value)),
            building=None if building is None else int(building),
            ticket=int(doc.get("ticket", 0)),
            switch_by_ms=doc.get("switch_by_ms"),
            replayed={int(p): int(end) for p, end in (doc.get("replayed") or {}).items()},
        )


# Row fields only crm-api's requests write (besides the defaults a lead's first event sets on insert):
# lead sharing (T1, `domain.sharing.lead_row_transfer`), the profile and labels
# (`domain.offices.profile_fields`), the CRM status and the lead's users (`use_cases.lead_work`).
# A rebuild copies them from the old generation: a field a request writes must be listed here,
# or a rebuild loses it (tests/unit/test_crm_generations.py checks the writers it knows).
REQUEST_ROW_FIELDS = (
    "transferred_to", "transferred_to_name", "transferred_at", "transferred_ms", "assigned_by", "transfer_id",
    "company", "office_address", "home_address", "rating", "production_value", "labels", "search_labels",
    "campaigns", "campaign_subscriptions", "campaign_triggers",
    "crm_status", "assigned_users", "assigned_users_at",
)  # fmt: skip
# Both the projection and requests (an action crm-api took) move the last activity; the later one wins.
# With the version of the event that set it (decision 0093): carried with it, so a late event of its millisecond
# replaces an action crm-api took (no version) no more after a rebuild than before.
LAST_ACTIVITY = (
    "last_activity_at",
    "last_activity_ms",
    "last_activity_kind",
    "last_activity_by",
    "last_activity_version",
)

# Timeline entry types the projection writes (`domain.views.records_in_timeline`, and an erasure's entry,
# `domain.erasure.ENTRY_TYPE`); every other type
# is an entry crm-api's requests wrote (LeadActivity, CrmStatusSet, LeadUsersSet, T1's LeadShared),
# which a rebuild copies.
PROJECTED_ENTRY_TYPES = (
    "LeadAssigned", "LeadOffered", "LeadHeld", "OfferExpired", "OfferWithdrawn", "LeadClaimed", "LeadFellBack",
    "ActivityLogged", "LeadTransferred", "LeadReleased", "ContactErased",
)  # fmt: skip


def carried_fields(old: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, Any]:
    """What to `$set` on a rebuilt row from the old generation's row of the same lead.

    The last activity is the old row's unless the rebuilt one is later: an action crm-api took sets its
    kind and author, and an event at the same moment or later that the timeline does not record (the
    router's echo of that action) moves only its time.
    """
    carried = {k: old[k] for k in REQUEST_ROW_FIELDS if k in old and rebuilt.get(k) != old[k]}
    old_ms, new_ms = old.get("last_activity_ms"), rebuilt.get("last_activity_ms")
    if isinstance(old_ms, int) and (not isinstance(new_ms, int) or old_ms >= new_ms):
        carried |= {k: old[k] for k in LAST_ACTIVITY if k in old and (k not in rebuilt or rebuilt[k] != old[k])}
    return carried


class Watermarks:
    """Per partition, the next offset not yet applied to the new generation.

    The rebuild replays each partition up to its end offset taken at the start; the rebuild log
    then brings every event a live consumer processed, in the order it did: one below the mark
    (in the replay already, or processed again after a redelivery) is skipped. An event whose
    coordinates are unknown is applied (the projection is idempotent by event id).
    """

    def __init__(self, ends: dict[int, int]) -> None:
        self._next = dict(ends)

    def take(self, partition: int | None, offset: int | None) -> bool:
        """True when the event at (partition, offset) is to be applied now; advances the mark."""
        if partition is None or offset is None:
            return True
        if offset < self._next.get(partition, 0):
            return False
        self._next[partition] = offset + 1
        return True
