"""Lead sharing in the web app (AgentRoof): Lead Transfer from the brokerage list, My Realtors with its
invitations, and the realtor's answer to an invitation. The use cases are the JSON API's (T1, V4)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.domain.distribution import LeadFilter
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.sharing import InvitationStatus
from leadflow_crm_api.errors import InvalidRequest, NotFound
from leadflow_crm_api.use_cases import sharing as sharing_uc
from leadflow_crm_api.use_cases.sharing import InvitationCreate, TransferCreate
from leadflow_crm_api.web.common import (
    PREFIX,
    caller_of,
    checked_form,
    db_of,
    field_errors,
    path_id,
    posted,
    redirect,
    render,
    same_query,
    submit_key,
)
from leadflow_crm_api.web.leads import brokerage_page

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.post("/accounts/{account_id}/lead-transfers")
async def transfer(request: Request, account_id: str) -> Response:
    """More -> Lead Transfer -> a realtor -> Submit: the selected leads, or all the list's filters match."""
    caller, (account_id,), form = await posted(request, account_id)
    selected = [v for v in (await request.form()).getlist("lead_ids") if isinstance(v, str)]
    all_matching = form.get("all_matching") == "1"
    try:
        body = TransferCreate(
            realtor_id=form.get("realtor_id", ""),
            lead_ids=None if all_matching else (selected or None),
            filter=LeadFilter.model_validate({k: form[k] for k in ("tab", "status", "q") if form.get(k)})
            if all_matching else None,
        )  # fmt: skip
    except ValidationError as exc:
        why = field_errors(exc)
        reason = (why.get("realtor_id") and "Select the realtor who will receive the leads.") or (
            "Select one or more leads." if not selected and not all_matching else "; ".join(why.values())
        )
        return await brokerage_page(
            request, caller, account_id, status=422, transfer_error=reason, values=form, selected=selected
        )
    key = submit_key(form)  # a double submit is applied once
    try:
        done = await sharing_uc.transfer_leads(account_id, body, caller, db_of(request), _commands(request), key)
    except (InvalidRequest, RequestValidationError) as exc:
        reason = exc.detail if isinstance(exc, InvalidRequest) else "; ".join(field_errors(exc).values())
        return await brokerage_page(
            request, caller, account_id, status=422, transfer_error=reason, values=form, selected=selected
        )
    name = (
        next(
            (
                r.name
                for r in (await sharing_uc.my_realtors(account_id, caller, db_of(request))).items
                if r.realtor_id == done.realtor_id
            ),
            None,
        )
        or done.realtor_id
    )
    count = "1 lead" if done.transferred == 1 else f"{done.transferred} leads"
    back = same_query(request, f"{PREFIX}/accounts/{account_id}/leads")
    return redirect(
        back, request=request, flash=f"The selected leads were transferred successfully: {count} to {name}."
    )


def _commands(request: Request) -> Any:
    return request.app.state.publish_command


# -- My Realtors (brokers and admins) -----------------------------------------------------------------------


@router.get("/accounts/{account_id}/realtors")
async def my_realtors(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _realtors_page(request, caller, path_id(account_id))


async def _realtors_page(
    request: Request,
    caller: Principal,
    account_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    invitations = await sharing_uc.list_invitations(account_id, caller, db_of(request))
    return render(
        request,
        "realtors.html",
        status=status,
        caller=caller,
        title="My Realtors",
        account_id=account_id,
        invitations=invitations.items,
        errors=errors or {},
        values=values or {},
    )


@router.post("/accounts/{account_id}/realtors")
async def invite(request: Request, account_id: str) -> Response:
    caller, (account_id,), form = await posted(request, account_id)
    try:
        body = InvitationCreate(
            realtor_id=form.get("realtor_id", ""), email=form.get("email", ""), name=form.get("name") or None
        )
    except ValidationError as exc:
        return await _realtors_page(request, caller, account_id, status=422, errors=field_errors(exc), values=form)
    try:
        invitation, invited = await sharing_uc.invite(account_id, body, caller, db_of(request), _commands(request))
    except InvalidRequest as exc:
        field, _, reason = exc.detail.partition(": ")
        errors = {field: reason} if field in {"realtor_id", "email", "name"} else {"form": exc.detail}
        return await _realtors_page(request, caller, account_id, status=422, errors=errors, values=form)
    who = invitation.name or invitation.realtor_id
    said = f"Invitation sent to {who}." if invited else f"{who}'s invitation is already pending."
    return redirect(f"{PREFIX}/accounts/{account_id}/realtors", flash=said, request=request)


@router.post("/accounts/{account_id}/realtors/{realtor_id}/disconnect")
async def disconnect(request: Request, account_id: str, realtor_id: str) -> Response:
    caller, token = await caller_of(request)
    account_id, realtor_id = path_id(account_id), path_id(realtor_id)
    await checked_form(request, token)
    ended = await sharing_uc.disconnect(account_id, realtor_id, caller, db_of(request))
    return redirect(
        f"{PREFIX}/accounts/{account_id}/realtors",
        request=request,
        flash=f"{ended.name or ended.realtor_id} is disconnected; the leads already shared stay theirs.",
    )


@router.post("/accounts/{account_id}/invitations/{invitation_id}/withdraw")
async def withdraw(request: Request, account_id: str, invitation_id: str) -> Response:
    caller, token = await caller_of(request)
    account_id, invitation_id = path_id(account_id), path_id(invitation_id)
    await checked_form(request, token)
    taken = await sharing_uc.withdraw(account_id, invitation_id, caller, db_of(request))
    return redirect(
        f"{PREFIX}/accounts/{account_id}/realtors",
        request=request,
        flash=f"The invitation of {taken.name or taken.realtor_id} is withdrawn.",
    )


# -- the realtor's invitations ------------------------------------------------------------------------------


@router.get("/invitations/{invitation_id}")
async def open_invitation(request: Request, invitation_id: str) -> Response:
    """The invitation email's link (the notifier's `invitation_email`): the realtor answers its invitations on
    My Leads, so a pending one is shown there (signing in first, then back here). One answered already says
    how; anyone else's, or none, is no such page (nothing told about another's invitation)."""
    caller, _ = await caller_of(request)
    wanted = path_id(invitation_id)
    mine = await sharing_uc.my_invitations(caller, db_of(request))
    found = next((i for i in mine.items if i.invitation_id == wanted), None)
    if found is None:
        raise NotFound("No such invitation.")
    if found.status is InvitationStatus.PENDING:
        return redirect(f"{PREFIX}/my/leads#invitation-{wanted}")
    said = f"The invitation of {found.account_id} is {found.status.value} already."
    return redirect(f"{PREFIX}/my/leads", request=request, flash=said)


@router.post("/invitations/{invitation_id}/{answer}")
async def answer(request: Request, invitation_id: str, answer: str) -> Response:
    caller, token = await caller_of(request)
    await checked_form(request, token)
    if answer == "leave":
        left = await sharing_uc.leave(path_id(invitation_id), caller, db_of(request))
        return redirect(f"{PREFIX}/my/leads", request=request, flash=f"You left {left.account_id}.")
    choice = {"accept": InvitationStatus.ACCEPTED, "decline": InvitationStatus.DECLINED}.get(answer)
    if choice is None:
        raise NotFound("No such page.")
    done = await sharing_uc.answer_invitation(path_id(invitation_id), caller, db_of(request), choice)
    said = "accepted" if choice is InvitationStatus.ACCEPTED else "declined"
    return redirect(f"{PREFIX}/my/leads", request=request, flash=f"You {said} the invitation ({done.account_id}).")
