"""The holder's own bookkeeping on a lead (issue 11.8): its CRM status, which routing never reads."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from leadflow_crm_api.deps import AccountLeads, Caller, Id
from leadflow_crm_api.domain.views import CrmStatus, activity_entry
from leadflow_crm_api.errors import Forbidden, NotFound

router = APIRouter(tags=["brokerage CRM", "realtor CRM"])


class CrmStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "appointment_set"}]})

    status: CrmStatus = Field(
        description="new, attempted_contact, contacted, appointment_set, under_contract, closed or lost."
    )


class CrmStatusSet(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "appointment_set", "set_at": "2026-11-24T15:04:05Z"}]}
    )

    status: CrmStatus
    set_at: datetime


@router.put("/v1/accounts/{account_id}/leads/{lead_id}/crm-status")
async def set_crm_status(leads: AccountLeads, caller: Caller, lead_id: Id, body: CrmStatusChange) -> CrmStatusSet:
    """Set where the holder is with the contact; the timeline records who set what and when."""
    doc = await leads.get(lead_id)
    if doc is None:
        raise NotFound("No such lead.")
    if not caller.sees_whole_account and doc.get("owner_agent_id") != caller.sub:
        raise Forbidden("Only the lead's holder, or a broker or admin, sets its CRM status.")
    at = datetime.now(UTC)
    await leads.set_profile(lead_id, {"crm_status": body.status.value})
    await leads.record(activity_entry(
        event_id=str(uuid.uuid4()), lead_id=lead_id, account_id=doc["account_id"], agent_id=caller.sub,
        action="crm_status", occurred_at=at, content={"crm_status": body.status.value}, kind="CrmStatusSet",
    ))  # fmt: skip
    await leads.touch(lead_id, at=at, kind="crm_status", by=caller.sub)
    return CrmStatusSet(status=body.status, set_at=at)
