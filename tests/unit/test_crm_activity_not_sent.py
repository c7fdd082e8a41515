"""An activity the row as read says will not be set is not sent (decision 0093, session 31; helper 143's review of
351924e): `RowChanges.holding` drops the changes' activity when the row as read says it will
not be set (`_activity_may_apply`), so `view_commands._update` sends every op in one command. Dropping it is right only
while nothing moves the row's last activity back between the read and the update: the filter it stands for,
`{"last_activity_ms": {"$lt": new}}`, would match after such a move. The writers that lower it are crm-api's own
`touch` (the action's wall-clock time, unconditional) and an assignment (its activity is among its fields, set
unconditionally unless `_activity_after`). With either between a change's read and its update, the outcome is still
that of one order of the two (the dropped activity as applied before the writer), so the pruning adds no outcome of
its own. The assignment's lowering was a defect of its own, in order or not: its activity is now set only when newer
(`projection.assigned_changes`)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_crm import CONTACT, SOURCE
from hypothesis import given, settings
from hypothesis import strategies as st
from test_crm_projection_writes import MemoryViews

from leadflow_crm_api.domain.projection import LAST_ACTIVITY_VERSION, RowChanges, RowState
from leadflow_crm_api.handlers import project
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _offer(lead: uuid.UUID) -> LeadOffered:
    return LeadOffered.create(account_id="acme", occurred_at=T0, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 15 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=1))  # fmt: skip


def _touched(row: dict[str, Any], at: datetime) -> dict[str, Any]:
    """`LeadViews.touch`: crm-api records an agent's action on the row (no router version)."""
    return row | {"last_activity_at": at, "last_activity_ms": epoch_ms(at), "last_activity_kind": "note",
                  "last_activity_by": "ana", LAST_ACTIVITY_VERSION: None}  # fmt: skip


def _run(views: MemoryViews, events: list[LeadEvent]) -> None:
    async def run() -> None:
        for event in events:
            await project(event, views=views, side_effects=False)

    asyncio.run(run())


def test_a_claim_projected_after_a_later_action_crm_api_recorded_leaves_that_action_the_last_activity() -> None:
    """The reference the assignment below is held to: a claim (v2, minute 1) projected after ana's note crm-api
    recorded at minute 2 leaves the note the last activity (only when newer)."""
    lead, views = uuid.uuid4(), MemoryViews()
    _run(views, [_offer(lead)])
    views.rows[str(lead)] = _touched(views.rows[str(lead)], T0 + 2 * MINUTE)
    claim = LeadClaimed.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    _run(views, [claim])
    row = views.rows[str(lead)]
    assert (row["owner_agent_id"], row["last_activity_kind"]) == ("ana", "note")


def test_an_assignment_projected_after_a_later_action_crm_api_recorded_leaves_that_action_the_last_activity() -> None:
    """Acme offers the lead to ana (v1, minute 0); nora assigns it to dan (v2, minute 1); dan's call, recorded by
    crm-api at minute 2 (`touch`), lands before the projection gets to the assignment (a consumer's lag, or the
    assignment dead-lettered and replayed). In order the call is the last activity; the assignment's activity is among
    its fields (`handlers._changes`: `assigned_row(...).fields`, activity `{}`), was set unconditionally unless
    `_activity_after`, which asks only whether a newer *router version* set it; a `touch` sets none, so the row's last
    activity went back to minute 1 and the leads list sorts the lead by the assignment, not the call. A claim in the
    same place keeps the call (above). This was also the projection's one writer that moved `last_activity_ms` back
    between another change's read and its update (another office's consumer), the case `_activity_may_apply`'s
    pruning assumes away. Now set only when newer (`projection.assigned_changes`)."""
    lead, views = uuid.uuid4(), MemoryViews()
    _run(views, [_offer(lead)])
    call_at = T0 + 2 * MINUTE
    views.rows[str(lead)] = _touched(views.rows[str(lead)], call_at)
    assigned = LeadAssigned.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.DIRECT_TO_USER, explanation="by hand",
        contact=CONTACT, source=SOURCE, router_version=2))  # fmt: skip
    _run(views, [assigned])
    row = views.rows[str(lead)]
    assert row["owner_agent_id"] == "dan", "the assignment applied"
    assert (row["last_activity_ms"], row["last_activity_kind"]) == (epoch_ms(call_at), "note"), (
        "the assignment, older, moved the last activity back over the call crm-api recorded after it"
    )


# --- the pruning itself: dropped only where the op would match nothing, on the row as read or moved forward ----------

_odd = st.one_of(st.none(), st.booleans(), st.floats(-4, 4, width=32), st.text(max_size=2))
_stored = st.one_of(st.integers(-3, 3), _odd)  # mostly an int, as every writer stores it


@settings(database=None, deadline=None, max_examples=400)
@given(
    stored_ms=_stored,
    stored_version=_stored,
    new_ms=st.one_of(st.none(), st.integers(-3, 3)),
    replaces_version=st.one_of(st.none(), st.integers(-3, 3)),
    raise_by=st.integers(0, 3),
    later_version=_stored,
)
def test_a_dropped_activity_is_one_that_would_match_nothing_on_the_row_as_read_or_moved_forward(
    stored_ms: Any,
    stored_version: Any,
    new_ms: int | None,
    replaces_version: int | None,
    raise_by: int,
    later_version: Any,
) -> None:
    """`_activity_may_apply` had no test of its own (the unit tests apply `RowChanges` without `holding`). Whatever is
    stored (missing, a double, a bool, text, an int), where `holding` drops the activity `applied_to` (as MongoDB's
    filter) would not set it on the row as read, nor on that row with its last activity moved forward (a later time;
    the same time only with the row's own version, as nothing but a `replaces` of that millisecond lowers it and the
    changes' own `replaces` is of the row as read). `replaces` as `_replaces` makes it: the row's time as read."""
    row: dict[str, Any] = {"_id": "l", "status": "offered", "moved_ms": None, "state_version": 1}
    row |= {} if stored_ms is None else {"last_activity_ms": stored_ms}
    row |= {} if stored_version is None else {LAST_ACTIVITY_VERSION: stored_version}
    read = RowState.of(row)
    replaces = None
    if replaces_version is not None and read.last_activity_ms is not None:
        replaces = (read.last_activity_ms, replaces_version)
    activity = {"last_activity_kind": "after"} | ({} if new_ms is None else {"last_activity_ms": new_ms})
    changes = RowChanges.of("l", {"status": "claimed", **activity}, replaces=replaces)
    held = changes.holding(read)
    if held.activity:
        return
    assert changes.applied_to(row).get("last_activity_kind") != "after", "dropped on the row as read"
    if isinstance(stored_ms, int) and not isinstance(stored_ms, bool):
        moved = row | {"last_activity_ms": stored_ms + raise_by}
        if raise_by:
            moved |= {LAST_ACTIVITY_VERSION: later_version}
        assert changes.applied_to(moved).get("last_activity_kind") != "after", "dropped on the row moved forward"
