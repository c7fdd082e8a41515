"""crm-api projection: fold leads.events.v1 into the read views, idempotently."""

from __future__ import annotations

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.domain.views import lead_row_changes, lead_row_from_assigned, lead_row_from_offered
from leadflow_shared.events.routing import (
    ActivityLogged,
    LeadAssigned,
    LeadClaimed,
    LeadEvent,
    LeadFellBack,
    LeadOffered,
)


async def project(event: LeadEvent, *, views: LeadViews) -> None:
    lead_id = str(event.payload.lead_id)
    if isinstance(event, LeadAssigned):
        await views.upsert(lead_id, lead_row_from_assigned(event))
    elif isinstance(event, LeadOffered):
        await views.insert_new(lead_id, lead_row_from_offered(event))
    elif isinstance(event, LeadClaimed | LeadFellBack | ActivityLogged):
        await views.update(lead_id, lead_row_changes(event))
