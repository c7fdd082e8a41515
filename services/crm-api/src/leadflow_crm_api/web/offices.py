"""Brokerkit in the web app: a lead's profile, labels and CRM status, and Reassign to another office of the
organisation (T2). The use cases are the JSON API's (`use_cases.offices`)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from leadflow_crm_api.errors import Forbidden, InvalidRequest, NotFound
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import lead_work as lead_work_uc
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import offices as offices_uc
from leadflow_crm_api.use_cases.lead_work import CrmStatusChange
from leadflow_crm_api.use_cases.offices import LeadProfile, OfficeTransferCreate
from leadflow_crm_api.web.common import (
    PREFIX,
    callers_of,
    db_of,
    lines_of,
    posted,
    redirect,
    submit_key,
)
from leadflow_crm_api.web.leads import lead_page_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)
PROFILE_FIELDS = ("company", "office_address", "home_address", "production_value")


@router.post("/accounts/{account_id}/leads/{lead_id}/profile")
async def profile(request: Request, account_id: str, lead_id: str) -> Response:
    """The lead's profile and labels (one per line: a label may hold a comma, never a line break); the campaigns
    it has are kept as they are. A realtor of another brokerage (T1) sees the labels read-only: they stay as the
    lead has them, whatever the field sends back."""
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    current = await leads_uc.lead_view(leads, caller, db_of(request), lead_id)
    fields: dict[str, object] = {k: form.get(k, "").strip() or None for k in PROFILE_FIELDS}
    fields["rating"] = form.get("rating", "").strip() or None
    fields["labels"] = current.labels if caller.account_id != account_id else lines_of(form.get("labels", ""))
    try:
        body = LeadProfile.model_validate(
            fields
            | {
                "campaigns": current.campaigns,
                "campaign_subscriptions": current.campaign_subscriptions,
                "campaign_triggers": current.campaign_triggers,
            }
        )
    except ValidationError as exc:
        errors = {str(e["loc"][0]): reason_of(e) for e in exc.errors() if e["loc"]}
        return await lead_page_of(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    try:
        await offices_uc.put_profile(leads, caller, db_of(request), lead_id, body)
    except Forbidden as exc:  # another brokerage's labels (T1): the reason next to the field, nothing saved
        return await lead_page_of(
            request, caller, account_id, lead_id, status=403, errors={"labels": exc.detail}, values=form
        )
    return redirect(f"{PREFIX}/accounts/{account_id}/leads/{lead_id}", flash="Profile saved.", request=request)


@router.post("/accounts/{account_id}/leads/{lead_id}/reassign")
async def reassign(request: Request, account_id: str, lead_id: str) -> Response:
    """Reassign -> an office -> Reassign: the lead leaves this office and is a new lead there (T2)."""
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    try:
        body = OfficeTransferCreate(lead_id=uuid.UUID(lead_id), to_account_id=form.get("to_account_id", ""))
    except (ValueError, ValidationError):
        return await lead_page_of(
            request,
            caller,
            account_id,
            lead_id,
            status=422,
            errors={"to_account_id": "Select the office that will receive the lead."},
            values=form,
        )
    key = submit_key(form)  # a double submit is applied once
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    try:
        moved = await offices_uc.transfer_to_office(
            account_id, body, leads, caller, db_of(request), request.app.state.publish_command, callers_of(request), key
        )
    except (InvalidRequest, NotFound) as exc:
        return await lead_page_of(
            request, caller, account_id, lead_id, status=422, errors={"to_account_id": exc.detail}, values=form
        )
    return redirect(
        f"{PREFIX}/accounts/{account_id}/leads",
        request=request,
        flash=f"The lead was reassigned to {moved.to_account_name}; it is a new lead there.",
    )


@router.post("/accounts/{account_id}/leads/{lead_id}/crm-status")
async def crm_status(request: Request, account_id: str, lead_id: str) -> Response:
    """Where the holder is with the contact (new ... closed, lost); the timeline says who set it."""
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    try:
        body = CrmStatusChange.model_validate({"status": form.get("crm_status", "")})
        await lead_work_uc.set_crm_status(leads, caller, lead_id, body)
    except (ValidationError, Forbidden) as exc:
        reason = exc.detail if isinstance(exc, Forbidden) else "Choose one of the statuses."
        return await lead_page_of(
            request,
            caller,
            account_id,
            lead_id,
            status=422 if isinstance(exc, ValidationError) else 403,
            errors={"crm_status": reason},
            values=form,
        )
    return redirect(f"{PREFIX}/accounts/{account_id}/leads/{lead_id}", flash="CRM status saved.", request=request)
