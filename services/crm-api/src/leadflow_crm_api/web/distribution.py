"""Distribution by hand in the web app (T4): a broker or admin assigns or offers one lead (its page) or
many (the list's More menu) to an agent; the agent who holds a lead returns it to the broker. The use
cases are the JSON API's (`use_cases.distribution`); the router decides and the timeline says who."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from leadflow_crm_api.domain.distribution import DistributionCreate, LeadFilter, LeadReturn
from leadflow_crm_api.errors import ClaimNotPossible, InvalidRequest
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import distribution as distribution_uc
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.web.common import (
    PREFIX,
    caller_of,
    db_of,
    posted,
    redirect,
    same_query,
    submit_key,
)
from leadflow_crm_api.web.leads import brokerage_page, lead_page_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _body(form: dict[str, str], lead_ids: list[str] | None, lead_filter: LeadFilter | None) -> DistributionCreate:
    window = form.get("claim_window_seconds", "").strip()
    return DistributionCreate.model_validate({
        "agent_id": form.get("agent_id", ""), "mode": form.get("mode", "assign"), "note": form.get("note", ""),
        **({"claim_window_seconds": window} if window and form.get("mode") == "offer" else {}),
        "lead_ids": lead_ids, "filter": lead_filter,
    })  # fmt: skip


def _reason(exc: ValidationError | RequestValidationError | InvalidRequest) -> str:
    if isinstance(exc, InvalidRequest):
        return exc.detail
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {reason_of(e)}" for e in exc.errors())


def _assign_reason(exc: ValidationError | RequestValidationError | InvalidRequest, form: dict[str, str]) -> str:
    """Why an assignment was refused: no agent chosen, said as such; else each refusal with its field."""
    if not isinstance(exc, InvalidRequest) and not form.get("agent_id", "").strip():
        return "Select an agent."
    return _reason(exc)


async def _distribute(request: Request, account_id: str, body: DistributionCreate, form: dict[str, str]) -> Any:
    caller, _ = await caller_of(request)
    key = submit_key(form)  # a double submit is applied once
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    return await distribution_uc.distribute(
        account_id, body, leads, caller, db_of(request), request.app.state.publish_command, key
    )


@router.post("/accounts/{account_id}/leads/{lead_id}/distribute")
async def distribute_one(request: Request, account_id: str, lead_id: str) -> Response:
    """Assign (or offer) this lead to an agent of the office."""
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    try:
        done = await _distribute(request, account_id, _body(form, [lead_id], None), form)
    except (ValidationError, RequestValidationError, InvalidRequest) as exc:
        errors = {"agent_id": _assign_reason(exc, form)}
        return await lead_page_of(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    verb = "assigned to" if done.mode.value == "assign" else "offered to"
    return redirect(
        f"{PREFIX}/accounts/{account_id}/leads/{lead_id}",
        request=request,
        flash=f"The lead is being {verb} {done.agent_id}; its timeline shows when the router did it.",
    )


@router.post("/accounts/{account_id}/distributions")
async def distribute_many(request: Request, account_id: str) -> Response:
    """More -> Assign to an agent: the selected leads, or every lead the list's filters match."""
    caller, (account_id,), form = await posted(request, account_id)
    selected = [v for v in (await request.form()).getlist("lead_ids") if isinstance(v, str)]
    try:
        # Its own box: the Lead Transfer dialog's, ticked and cancelled, is in the same form (helper 196's review).
        if form.get("assign_all_matching") == "1":
            lead_filter = LeadFilter.model_validate({k: form[k] for k in ("tab", "status", "q") if form.get(k)})
            body = _body(form, None, lead_filter)
        else:
            body = _body(form, selected or None, None)
        done = await _distribute(request, account_id, body, form)
    except (ValidationError, RequestValidationError, InvalidRequest) as exc:
        some = bool(selected) or form.get("assign_all_matching") == "1"
        reason = _assign_reason(exc, form) if some else "Select one or more leads."
        return await brokerage_page(
            request, caller, account_id, status=422, assign_error=reason, values=form, selected=selected
        )
    skipped = f" {len(done.skipped)} could not go (see each lead)." if done.skipped else ""
    back = same_query(request, f"{PREFIX}/accounts/{account_id}/leads")
    return redirect(back, request=request, flash=f"{len(done.lead_ids)} leads are going to {done.agent_id}.{skipped}")


@router.post("/accounts/{account_id}/leads/{lead_id}/return")
async def give_back(request: Request, account_id: str, lead_id: str) -> Response:
    """The holder gives the lead back to the broker (ClientBAY's "return lead to broker")."""
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    try:
        body = LeadReturn(note=form.get("return_note", ""))
        await distribution_uc.return_lead(leads, caller, request.app.state.publish_command, lead_id, body)
    except (ValidationError, ClaimNotPossible) as exc:
        reason = exc.detail if isinstance(exc, ClaimNotPossible) else _reason(exc)
        return await lead_page_of(
            request, caller, account_id, lead_id, status=422, errors={"return_note": reason}, values=form
        )
    return redirect(
        f"{PREFIX}/my/leads" if not caller.sees_whole_account else f"{PREFIX}/accounts/{account_id}/leads",
        request=request,
        flash="The lead is going back to the broker.",
    )
