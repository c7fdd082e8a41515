"""crm-api projection: fold leads.events.v1 into the read views, idempotently.

The timeline entry (_id = event id) is written last and marks the event as applied, so a
redelivered event is skipped; one that crashed half-way is applied again, which the row
changes tolerate (they are sets keyed by the event's own fields).
"""

from __future__ import annotations

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers
from leadflow_crm_api.domain.offices import label_doc, moved_row
from leadflow_crm_api.domain.views import (
    lead_row_changes,
    lead_row_from_assigned,
    lead_row_from_offered,
    offer_links_after,
    open_offers_after,
    records_in_timeline,
    timeline_entry,
)
from leadflow_shared.events.routing import (
    LeadAssigned,
    LeadOffered,
    LeadTransferred,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
)


async def project(event: RoutingEvent, *, views: LeadViews) -> None:
    if isinstance(event, TeamMemberTransferred):
        # crm-api moved the member's settings itself; the router's event says the target was told.
        await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
        return
    if isinstance(event, RealtorInvited):
        return  # the notifier's business (the invitation email); crm-api wrote the invitation itself
    lead_id = str(event.payload.lead_id)
    in_timeline = records_in_timeline(event)
    if in_timeline and await views.recorded(str(event.event_id)):
        return
    if isinstance(event, LeadAssigned):
        await views.upsert(lead_id, lead_row_from_assigned(event))
    elif isinstance(event, LeadTransferred):
        await _moved(event, views)
    else:
        if isinstance(event, LeadOffered):
            await views.insert_new(lead_id, lead_row_from_offered(event))
        changes = lead_row_changes(event)
        current = await views.offer_fields(lead_id)
        offers = open_offers_after(current.get("open_offers", []), event)
        if offers is not None:
            # $set of the whole array: nx-27017 mangles $push of documents (decision 0004).
            changes |= {"open_offers": offers, "offered_to": sorted({o["agent_id"] for o in offers})}
        links = offer_links_after(current.get("offer_links", []), event)
        if links is not None:  # `offer_link_ids` is what a click's lookup matches (an array of strings)
            changes |= {"offer_links": links, "offer_link_ids": [link["link_id"] for link in links]}
        await views.update(lead_id, changes)
    if in_timeline:
        await views.record(timeline_entry(event))


async def _moved(event: LeadTransferred, views: LeadViews) -> None:
    """T2: the row moves to the target office, its labels are created there, the transfer is done."""
    lead_id, target = str(event.payload.lead_id), event.payload.to_account_id
    row = await views.row(lead_id)
    if row is not None:
        labels = [label_doc(target, name, at=event.occurred_at) for name in row.get("labels", [])]
        await Labels(views.db).ensure(labels)
        await views.update(lead_id, moved_row(row, event))
    await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
