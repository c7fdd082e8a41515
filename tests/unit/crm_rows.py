"""crm-api view rows built as the projection builds them, for tests that seed the views directly.

Imported by e2e tests too (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow_crm_api.domain.views import lead_row_from_assigned
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload


def assigned_row(account_id: str, agent_id: str, contact: Contact, *, minutes_ago: int) -> dict[str, Any]:
    """The row of a website lead assigned to `agent_id` `minutes_ago` minutes ago."""
    event = LeadAssigned.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id=agent_id,
            reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="fuzz",
            contact=contact,
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )
    return {"_id": str(event.payload.lead_id), **lead_row_from_assigned(event)}
