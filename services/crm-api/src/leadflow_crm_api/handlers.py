"""crm-api projection: fold leads.events.v1 into the read views, idempotently.

The timeline entry (_id = event id) is written last and marks the event as applied, so a
redelivered event is skipped; one that crashed half-way is applied again, which the row
changes tolerate (they are sets keyed by the event's own fields).

A rebuild (decision 0045) applies the same function to every event of the log with
`side_effects=False`: only the views are written, never the office transfers or labels.

A ContactErased (decision 0050) scrubs its leads' rows and what people wrote on their timelines;
a rebuild replays it after the events that carried the contact, so it erases the rebuilt rows too.
"""

from __future__ import annotations

from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers
from leadflow_crm_api.domain.erasure import ERASED_ROW, erased_row, erasure_entry
from leadflow_crm_api.domain.offices import label_doc, moved_row
from leadflow_crm_api.domain.views import (
    lead_row_changes,
    lead_row_from_assigned,
    lead_row_from_held,
    lead_row_from_offered,
    offer_links_after,
    open_offers_after,
    pond_of,
    records_in_timeline,
    timeline_entry,
)
from leadflow_shared.events.routing import (
    ContactErased,
    LeadAssigned,
    LeadEvent,
    LeadHeld,
    LeadOffered,
    LeadTransferred,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
)


class ViewWriter(Protocol):
    """What the projection reads and writes: `adapters.leads.LeadViews`, or a rebuild's buffer."""

    db: AsyncDatabase[dict[str, Any]]

    async def row(self, lead_id: str) -> dict[str, Any] | None: ...
    async def upsert(self, lead_id: str, row: dict[str, Any]) -> None: ...
    async def insert_new(self, lead_id: str, row: dict[str, Any]) -> bool: ...
    async def update(self, lead_id: str, changes: dict[str, Any]) -> None: ...
    async def offer_fields(self, lead_id: str) -> dict[str, Any]: ...
    async def recorded(self, event_id: str) -> bool: ...
    async def record(self, entry: dict[str, Any]) -> None: ...
    async def erase_timeline(self, lead_id: str) -> None: ...


_OTHER_EVENTS = (TeamMemberTransferred, RealtorInvited, ContactErased)  # about no lead, or (erasure) several


async def project(event: RoutingEvent, *, views: ViewWriter, side_effects: bool = True) -> None:
    if isinstance(event, _OTHER_EVENTS):
        await _other(event, views, side_effects=side_effects)
        return
    in_timeline = records_in_timeline(event)
    if in_timeline and await views.recorded(str(event.event_id)):
        return
    if isinstance(event, LeadAssigned):
        await _assigned(event, views)
    elif isinstance(event, LeadTransferred):
        await _moved(event, views, side_effects=side_effects)
    else:  # any other lead event: its row's changes, with the open offers and accept links it leaves
        lead_id, row = str(event.payload.lead_id), _first_row(event)
        current: dict[str, Any]
        if row is not None and await views.insert_new(lead_id, row):  # only the projection writes these fields
            current = {k: row[k] for k in ("open_offers", "offer_links") if k in row}  # so no read back
        else:
            current = await views.offer_fields(lead_id)
        await views.update(lead_id, _changes(event, current))
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


async def _assigned(event: LeadAssigned, views: ViewWriter) -> None:
    # An assignment ends any offer, a pond's too: the lead leaves its pond (issue 15).
    lead_id, row = str(event.payload.lead_id), lead_row_from_assigned(event) | {"pond": None}
    if (await views.row(lead_id) or {}).get("erased"):
        row |= ERASED_ROW  # an event from before the erasure, delivered late (a replayed dead letter)
    await views.upsert(lead_id, row)


def _first_row(event: LeadEvent) -> dict[str, Any] | None:
    """The row an offer or a hold creates if the lead has none yet; None for other events."""
    if isinstance(event, LeadOffered):
        return lead_row_from_offered(event)
    if isinstance(event, LeadHeld):
        return lead_row_from_held(event)
    return None


def _changes(event: LeadEvent, current: dict[str, Any]) -> dict[str, Any]:
    """The row's changes for `event`, given its `current` open offers and accept links."""
    changes = lead_row_changes(event)
    offers = open_offers_after(current.get("open_offers", []), event)
    if offers is not None:
        # $set of the whole array: nx-27017 mangles $push of documents (decision 0004).
        agents = sorted({o["agent_id"] for o in offers})
        changes |= {"open_offers": offers, "offered_to": agents, "pond": pond_of(offers)}  # pond: issue 15
    links = offer_links_after(current.get("offer_links", []), event)
    if links is not None:  # `offer_link_ids` is what a click's lookup matches (an array of strings)
        changes |= {"offer_links": links, "offer_link_ids": [link["link_id"] for link in links]}
    return changes


async def _erase(event: ContactErased, views: ViewWriter) -> None:
    """Decision 0050: each lead's row without the person, its timeline without what people wrote, and
    an entry saying who asked. Applying it again changes nothing."""
    for lead in event.payload.lead_ids:
        lead_id = str(lead)
        await views.erase_timeline(lead_id)
        if await views.row(lead_id) is not None:
            await views.update(lead_id, erased_row(event))
            await views.record(erasure_entry(event, lead_id))


async def _moved(event: LeadTransferred, views: ViewWriter, *, side_effects: bool) -> None:
    """T2: the row moves to the target office, its labels are created there, the transfer is done."""
    lead_id, target = str(event.payload.lead_id), event.payload.to_account_id
    row = await views.row(lead_id)
    if row is not None:
        if side_effects:
            labels = [label_doc(target, name, at=event.occurred_at) for name in row.get("labels", [])]
            await Labels(views.db).ensure(labels)
        await views.update(lead_id, moved_row(row, event))
    if side_effects:
        await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
