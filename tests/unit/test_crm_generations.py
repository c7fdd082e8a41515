"""Generations of crm-api's views (decision 0045): names, what a rebuild carries over, the log's order."""

from __future__ import annotations

import typing
from datetime import UTC, datetime

import pytest

from leadflow_crm_api.domain.erasure import ENTRY_TYPE as ERASURE_ENTRY
from leadflow_crm_api.domain.generations import (
    LAST_ACTIVITY,
    PROJECTED_ENTRY_TYPES,
    REQUEST_ROW_FIELDS,
    Phase,
    ViewsMeta,
    Watermarks,
    carried_fields,
    names_of,
)
from leadflow_crm_api.domain.offices import CARRIED_PROFILE, DROPPED_ON_MOVE, profile_fields
from leadflow_crm_api.domain.sharing import lead_row_transfer, transfer_entry
from leadflow_crm_api.domain.views import activity_entry
from leadflow_crm_api.use_cases.offices import LeadProfile
from leadflow_shared.events.routing import LeadEvent

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 24, 15, tzinfo=UTC)


def test_generation_zero_is_todays_collections_and_rebuilds_alternate_two_slots() -> None:
    assert (names_of(0).leads, names_of(0).timeline) == ("crm_leads", "crm_timeline")
    assert (names_of(1).leads, names_of(1).timeline) == ("crm_leads_green", "crm_timeline_green")
    assert (names_of(2).leads, names_of(3).leads) == ("crm_leads", "crm_leads_green")
    assert ViewsMeta.from_doc(None) == ViewsMeta(active=0, phase=Phase.IDLE, building=None, ticket=0)
    stored = {"_id": "views", "active": 3, "phase": "switching", "building": 4, "ticket": 17, "switch_by_ms": 9,
              "replayed": {"0": 12, "2": 7}}  # fmt: skip
    assert ViewsMeta.from_doc(stored) == ViewsMeta(3, Phase.SWITCHING, 4, 17, 9, replayed={0: 12, 2: 7})


def test_every_row_field_a_request_writes_is_carried_by_a_rebuild() -> None:
    transfer = {"_id": "t1", "realtor_id": "rio", "realtor_name": "Rio", "at": AT, "at_ms": 1, "assigned_by": "Acme"}
    example = LeadProfile.model_json_schema()["examples"][0]
    written = {
        *lead_row_transfer(transfer),
        *profile_fields(LeadProfile.model_validate(example).model_dump()),
        "crm_status",  # use_cases.lead_work.set_crm_status
        "assigned_users",  # use_cases.lead_work.assign_users
        *CARRIED_PROFILE,
        *DROPPED_ON_MOVE,
    }
    assert written <= set(REQUEST_ROW_FIELDS)
    assert not set(LAST_ACTIVITY) & set(REQUEST_ROW_FIELDS), "the last activity is merged, not copied"


def test_projected_entry_types_are_the_lead_events_the_projection_records() -> None:
    (union, *_) = typing.get_args(LeadEvent)
    lead_event_types = {member.model_fields["type"].default for member in typing.get_args(union)}
    # LeadShared and ContactMessaged repeat what crm-api recorded itself (records_in_timeline).
    assert lead_event_types - set(PROJECTED_ENTRY_TYPES) == {"LeadShared", "ContactMessaged"}
    # ContactErased's entries are made by the projection too, one per erased lead (decision 0050).
    assert set(PROJECTED_ENTRY_TYPES) <= lead_event_types | {ERASURE_ENTRY}
    transfer = {"_id": "7d1c5f0e-8f5e-4a53-9c1a-1d2e3f4a5b6c", "account_id": "acme", "realtor_id": "rio",
                "realtor_name": "Rio", "at": AT, "at_ms": 1, "assigned_by": "Acme"}  # fmt: skip
    request_types = {
        transfer_entry(transfer, "lead")["type"],
        *(activity_entry(event_id="e", lead_id="l", account_id="a", agent_id="ag", action="note", occurred_at=AT,
                         kind=kind)["type"] for kind in ("LeadActivity", "CrmStatusSet", "LeadUsersSet")),
    }  # fmt: skip
    assert not request_types & set(PROJECTED_ENTRY_TYPES), "entries crm-api wrote must be copied by a rebuild"


def test_carried_fields_keep_what_requests_wrote_and_the_later_last_activity() -> None:
    rebuilt = {"name": "Rae", "crm_status": "new", "transferred_to": None, "last_activity_ms": 100,
               "last_activity_at": AT, "last_activity_kind": "LeadAssigned", "last_activity_by": "ana"}  # fmt: skip
    old = {"name": "CORRUPT", "crm_status": "contacted", "transferred_to": None, "labels": ["Hot"],
           "last_activity_ms": 200, "last_activity_at": AT, "last_activity_kind": "note",
           "last_activity_by": "ana"}  # fmt: skip
    assert carried_fields(old, rebuilt) == {
        "crm_status": "contacted", "labels": ["Hot"], "last_activity_ms": 200, "last_activity_kind": "note",
    }  # fmt: skip
    older = old | {"last_activity_ms": 50}
    assert carried_fields(older, rebuilt) == {"crm_status": "contacted", "labels": ["Hot"]}
    # A note, then the router's echo of it a moment later: the echo moved the time, the note set the kind.
    echoed = rebuilt | {"last_activity_kind": "note"}
    assert carried_fields(echoed, rebuilt) == {"last_activity_kind": "note"}
    assert carried_fields(rebuilt, rebuilt) == {}


def test_the_log_is_applied_once_in_processing_order_after_the_replayed_offsets() -> None:
    marks = Watermarks({0: 5, 1: 0})
    assert not marks.take(0, 3), "replayed already"
    assert marks.take(0, 5)
    assert marks.take(0, 6)
    assert not marks.take(0, 5), "a redelivery after a consumer restart"
    assert not marks.take(0, 6)
    assert marks.take(0, 7)
    assert marks.take(1, 0)
    assert marks.take(2, 0), "a partition added during the rebuild"
    assert marks.take(None, None), "unknown coordinates: the projection is idempotent by event id"
