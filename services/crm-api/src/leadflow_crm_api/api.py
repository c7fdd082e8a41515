"""HTTP schemas of crm-api (LeadPublic, LeadPage) and their mapping from view rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class LeadPublic(BaseModel):
    lead_id: str
    name: str
    email: str | None
    phone: str | None
    source: str
    status: str
    owner_agent_id: str | None = Field(description="Agent who holds the lead.")
    assigned_to: str | None = Field(description='Realtor named by the "Assigned To" label (lead sharing).')
    created_at: datetime
    last_activity_at: datetime


class LeadPage(BaseModel):
    items: list[LeadPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def lead_public(doc: dict[str, Any]) -> LeadPublic:
    return LeadPublic(
        lead_id=doc["_id"],
        name=doc["name"],
        email=doc.get("email"),
        phone=doc.get("phone"),
        source=doc["source"],
        status=doc["status"],
        owner_agent_id=doc.get("owner_agent_id"),
        assigned_to=doc.get("transferred_to"),
        created_at=doc["created_at"],
        last_activity_at=doc["last_activity_at"],
    )
