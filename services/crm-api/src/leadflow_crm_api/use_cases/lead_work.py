"""The owner's own bookkeeping on a lead (issue 11.8, 11.9): its CRM status and the users it assigns
(ClientBAY's lead owner and lead users); routing reads neither. The use cases the JSON routes register
(routes/lead_work.py) and the web pages call."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import AccountLeads, Caller, Db, Id
from leadflow_crm_api.domain.views import CrmStatus, activity_entry
from leadflow_crm_api.errors import Forbidden, NotFound


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


async def set_crm_status(leads: AccountLeads, caller: Caller, lead_id: Id, body: CrmStatusChange) -> CrmStatusSet:
    """Set where the holder is with the contact; the timeline records who set what and when."""
    doc = await leads.get(lead_id)
    if doc is None:
        raise NotFound("No such lead.")
    if not caller.sees_whole_account and doc.owner_agent_id != caller.sub:
        raise Forbidden("Only the lead's holder, or a broker or admin, sets its CRM status.")
    at = datetime.now(UTC)
    if not await leads.set_profile(lead_id, {"crm_status": body.status.value}):
        raise NotFound("No such lead.")  # it left the caller's scope meanwhile
    await leads.record(activity_entry(
        event_id=str(uuid.uuid4()), lead_id=lead_id, account_id=doc.account_id, agent_id=caller.sub,
        action="crm_status", occurred_at=at, content={"crm_status": body.status.value}, kind="CrmStatusSet",
    ))  # fmt: skip
    await leads.touch(lead_id, at=at, kind="crm_status", by=caller.sub)
    return CrmStatusSet(status=body.status, set_at=at)


MAX_LEAD_USERS = 20


class LeadUsers(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_ids": ["blair-chen"]}]})

    user_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]] = (
        Field(max_length=MAX_LEAD_USERS, description="Agents or staff of the account; [] removes them all.")
    )


async def assign_users(leads: AccountLeads, caller: Caller, db: Db, lead_id: Id, body: LeadUsers) -> LeadUsers:
    """The lead's owner (its holder), or a broker or admin, sets who works the lead with the owner: they see
    it and act on it (their actions claim nothing), the owner keeps it."""
    doc = await leads.get(lead_id)
    if doc is None:
        raise NotFound("No such lead.")
    if not caller.sees_whole_account and doc.owner_agent_id != caller.sub:
        raise Forbidden("Only the lead's owner, or a broker or admin, assigns its users.")
    if doc.account_id != caller.account_id:  # a realtor holding another brokerage's lead (T1): not its people
        raise Forbidden("Only users of the lead's account assign its users.")
    users = list(dict.fromkeys(body.user_ids))
    people = AccountSettings(db, doc.account_id)
    unknown = [i for i, u in enumerate(body.user_ids)
               if await people.agent(u) is None and await people.staff_member(u) is None]  # fmt: skip
    if unknown:
        raise RequestValidationError([
            {"loc": ("body", "user_ids", i), "msg": "not a user of this account", "type": "value_error"}
            for i in unknown
        ])  # fmt: skip
    at = datetime.now(UTC)
    # With its time: a move clears the office left's users, not those its target assigned since (`_left_to_target`).
    if not await leads.set_profile(lead_id, {"assigned_users": users, "assigned_users_at": at}):
        raise NotFound("No such lead.")
    await leads.record(activity_entry(
        event_id=str(uuid.uuid4()), lead_id=lead_id, account_id=doc.account_id, agent_id=caller.sub,
        action="users", occurred_at=at, content={"users": users}, kind="LeadUsersSet",
    ))  # fmt: skip
    return LeadUsers(user_ids=users)
