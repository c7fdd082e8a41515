"""A partner's LeadSubmitted (leads.inbound.v1) as a Submission."""

from __future__ import annotations

from leadflow_intake.domain.lead import Submission
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadChannel

# Where each Submission field sits in the partner's message, so a dead letter names the right path (a nested one,
# criteria.tags.0, by its first part).
PATHS = {
    "first_name": "payload.contact.first_name",
    "last_name": "payload.contact.last_name",
    "email": "payload.contact.email",
    "phone": "payload.contact.phone",
    "site_host": "payload.source.site_host",
    "assigned_agent_id": "payload.source.assigned_agent_id",
    "listing_id": "payload.source.listing_id",
    "source_name": "payload.source.name",
    "provider": "payload.source.partner",
    "utm": "payload.source.utm",
    "message": "payload.message",
    "criteria": "payload.criteria",
    "<lead>": "payload.contact",
}


def submission(event: LeadSubmitted) -> Submission:
    contact, source = event.payload.contact, event.payload.source
    return Submission(
        account_id=event.account_id, channel=LeadChannel.PARTNER, source_name=source.name,
        first_name=contact.first_name, last_name=contact.last_name, email=contact.email, phone=contact.phone,
        message=event.payload.message, site_host=source.site_host, listing_id=source.listing_id,
        assigned_agent_id=source.assigned_agent_id, provider=source.partner, utm=dict(source.utm),
        criteria=event.payload.criteria,
    )  # fmt: skip
