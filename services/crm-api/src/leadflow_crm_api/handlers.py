"""crm-api projection: fold leads.events.v1 into the read views."""

from __future__ import annotations

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.domain.views import lead_row_from_assigned
from leadflow_shared.events.routing import LeadAssigned, LeadEvent


async def project(event: LeadEvent, *, views: LeadViews) -> None:
    if isinstance(event, LeadAssigned):
        await views.upsert(str(event.payload.lead_id), lead_row_from_assigned(event))
