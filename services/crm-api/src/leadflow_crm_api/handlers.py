"""crm-api projection: fold leads.events.v1 into the read views, idempotently.

Each event is loaded, decided, committed: what the projection needs of the lead's row is read through its port
(`ViewWriter`), `domain.projection` decides the write as a typed value, the port stores it. A lead's first offer
or hold stores the row with the event's changes in it (unless the lead has a row): nothing is read back.

The timeline entry (_id = event id) is written last and marks the event as applied, so a
redelivered event is skipped; one that crashed half-way is applied again, which the row
changes tolerate (they are sets keyed by the event's own fields). An event the timeline does not
record is recognised otherwise (decision 0093): a share by its id on the row, written with its
changes; the echo of an agent's action or message changes only the last activity, when newer.
A move projected after what the lead's new office did since leaves the holder to that; a move older than the
row's last one, and an event of an office the lead has left (or older than what an office further on did), change
nothing but the timeline.

A rebuild (decision 0045) applies the same function to every event of the log with
`side_effects=False`: only the views are written, never the office transfers or labels.

A ContactErased (decision 0050) scrubs its leads' rows and what people wrote on their timelines;
a rebuild replays it after the events that carried the contact, so it erases the rebuilt rows too.
"""

from __future__ import annotations

from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers
from leadflow_crm_api.domain.erasure import erased_row, erasure_entry
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import label_doc, move_applies, moved_row
from leadflow_crm_api.domain.projection import (
    NewRow,
    RowChanges,
    RowState,
    RowUpsert,
    assigned_row,
    first_row,
    row_changes,
)
from leadflow_crm_api.domain.views import records_in_timeline, timeline_entry
from leadflow_shared.events.routing import (
    ContactErased,
    LeadAssigned,
    LeadTransferred,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
)


class ViewWriter(Protocol):
    """What the projection reads and writes (`domain.projection`): `adapters.leads.LeadViews`, or a rebuild's
    buffer (`adapters.buffered_views.BufferedViews`)."""

    db: AsyncDatabase[dict[str, Any]]

    async def state(self, lead_id: str) -> RowState: ...
    async def row(self, lead_id: str) -> LeadRow | None: ...
    async def insert_new(self, row: NewRow) -> bool: ...
    async def upsert(self, row: RowUpsert) -> None: ...
    async def update(self, changes: RowChanges) -> None: ...
    async def recorded(self, event_id: str) -> bool: ...
    async def record(self, entry: dict[str, Any]) -> None: ...
    async def erase_timeline(self, lead_id: str) -> None: ...


_OTHER_EVENTS = (TeamMemberTransferred, RealtorInvited, ContactErased)  # about no lead, or (erasure) several


async def project(event: RoutingEvent, *, views: ViewWriter, side_effects: bool = True) -> None:
    if isinstance(event, _OTHER_EVENTS):
        await _other(event, views, side_effects=side_effects)
        return
    first = first_row(event)  # a first offer's or hold's row, the event's changes in it
    if first is not None and await views.insert_new(first):
        # The lead had no row, so the event has no timeline entry yet (an entry is written after its row).
        await views.record(timeline_entry(event))
        return
    in_timeline = records_in_timeline(event)
    if in_timeline and await views.recorded(str(event.event_id)):
        return
    lead_id = str(event.payload.lead_id)
    if isinstance(event, LeadTransferred):
        await _moved(event, views, side_effects=side_effects)
    elif (state := await views.state(lead_id)).superseded(event):
        pass  # of an office the lead left, or older than what an office further on did: its timeline entry only
    elif isinstance(event, LeadAssigned):
        await views.upsert(assigned_row(event, state))
    elif not state.applied_already(event):
        # Any other lead event: its row's changes, with the open offers and accept links it leaves. A share the
        # row applied before (the timeline does not record it) is skipped.
        await views.update(row_changes(event, state))
    if in_timeline:
        await views.record(timeline_entry(event))


async def _other(
    event: TeamMemberTransferred | RealtorInvited | ContactErased, views: ViewWriter, *, side_effects: bool
) -> None:
    """The events that are not one lead's: a team member's transfer, an invitation, an erasure."""
    if isinstance(event, TeamMemberTransferred):
        # crm-api moved the member's settings itself; the router's event says the target was told.
        if side_effects:
            await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
    elif isinstance(event, ContactErased):
        await _erase(event, views)
    # RealtorInvited: the notifier's business (the invitation email); crm-api wrote the invitation itself


async def _erase(event: ContactErased, views: ViewWriter) -> None:
    """Decision 0050: each lead's row without the person, its timeline without what people wrote, and
    an entry saying who asked. Applying it again changes nothing."""
    for lead in event.payload.lead_ids:
        lead_id = str(lead)
        await views.erase_timeline(lead_id)
        if (await views.state(lead_id)).exists:
            await views.update(RowChanges.of(lead_id, erased_row(event)))
            await views.record(erasure_entry(event, lead_id))


async def _moved(event: LeadTransferred, views: ViewWriter, *, side_effects: bool) -> None:
    """T2: the row moves to the target office, its labels are created there, the transfer is done."""
    lead_id, target = str(event.payload.lead_id), event.payload.to_account_id
    row = await views.row(lead_id)
    if row is not None:
        if side_effects:
            labels = [label_doc(target, name, at=event.occurred_at) for name in row.labels]
            await Labels(views.db).ensure(labels)
        if move_applies(row, event):  # an older move read late changes nothing but its timeline entry
            await views.update(RowChanges.of(lead_id, moved_row(row, event)))
    if side_effects:
        await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
