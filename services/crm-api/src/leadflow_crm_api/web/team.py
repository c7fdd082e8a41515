"""Brokerkit's people side in the web app: the team (agents, admins, staff) with search, the Onboarding
queue, a member's status, Reassign of a team member to another office (T2), and an agent's availability page
(issue 15, web/availability.py). The use cases are the JSON API's (`use_cases.people`, `use_cases.settings`,
`use_cases.offices`, `use_cases.rules_and_availability`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.domain.offices import TeamStatus
from leadflow_crm_api.domain.people import MemberRole
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.settings import AgentStatus
from leadflow_crm_api.errors import InvalidRequest, NotFound
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import offices as offices_uc
from leadflow_crm_api.use_cases import people as people_uc
from leadflow_crm_api.use_cases import rules_and_availability as rules_uc
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_crm_api.use_cases.offices import OfficeTransferCreate
from leadflow_crm_api.web import availability as web_availability
from leadflow_crm_api.web.common import (
    PREFIX,
    caller_of,
    callers_of,
    db_of,
    path_id,
    posted,
    redirect,
    render,
    same_query,
    submit_key,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/accounts/{account_id}/team")
async def team_page(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _page(request, caller, path_id(account_id))


async def _page(
    request: Request, caller: Principal, account_id: str, *, status: int = 200, error: str | None = None
) -> HTMLResponse:
    params = request.query_params
    q = params.get("q", "").strip()[:100] or None
    role = params.get("role", "")
    role_ = MemberRole(role) if role in {r.value for r in MemberRole} else None
    state = params.get("status", "")
    status_ = state if state in {s.value for s in TeamStatus} else None
    people = people_uc.account_people(account_id, caller, db_of(request))
    members = await people_uc.list_team(people, caller, q=q, role=role_, status_=status_)
    listed = await offices_uc.list_offices(account_id, caller, db_of(request))
    return render(
        request,
        "team.html",
        status=status,
        caller=caller,
        title="Team",
        account_id=account_id,
        members=members.items,
        q=q or "",
        role=role,
        state=status_ or "",
        roles=list(MemberRole),
        statuses=list(TeamStatus),
        offices=[o for o in listed.items if not o.current],
        error=error,
    )


@router.post("/accounts/{account_id}/team/{agent_id}/status")
async def set_status(request: Request, account_id: str, agent_id: str) -> Response:
    """Onboarded (active), or out of routing (inactive: its offers withdrawn, its leads released, T3)."""
    caller, (account_id, agent_id), form = await posted(request, account_id, agent_id)
    try:
        body = AgentStatus(status=form.get("status", ""))
    except ValidationError:
        return await _page(request, caller, account_id, status=422, error="Choose active, onboarding or inactive.")
    account = settings_uc.admin_settings(account_id, caller, db_of(request))
    publish = request.app.state.publish_command
    await settings_uc.put_agent_status(account, caller, publish, callers_of(request), agent_id, body)
    back = same_query(request, f"{PREFIX}/accounts/{account_id}/team")
    return redirect(back, request=request, flash=f"{agent_id} is {body.status.value} now.")


@router.post("/accounts/{account_id}/team/{agent_id}/reassign")
async def reassign_member(request: Request, account_id: str, agent_id: str) -> Response:
    """Reassign a team member to another office: Onboarding there, its staff told (T2)."""
    caller, (account_id, agent_id), form = await posted(request, account_id, agent_id)
    try:
        body = OfficeTransferCreate(agent_id=agent_id, to_account_id=form.get("to_account_id", ""))
    except ValidationError:
        return await _page(request, caller, account_id, status=422, error="Select the office the member moves to.")
    key = submit_key(form)  # a double submit is applied once
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    try:
        moved = await offices_uc.transfer_to_office(
            account_id, body, leads, caller, db_of(request), request.app.state.publish_command, callers_of(request), key
        )
    except InvalidRequest as exc:
        return await _page(request, caller, account_id, status=422, error=exc.detail)
    return redirect(
        f"{PREFIX}/accounts/{account_id}/team",
        request=request,
        flash=f"{agent_id} moves to {moved.to_account_name}, where it is in the Onboarding queue.",
    )


async def _availability_page(
    request: Request,
    caller: Principal,
    account_id: str,
    agent_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    """One agent's availability, for its account's brokers and admins (and the agent itself)."""
    scope = await rules_uc.availability_scope(account_id, agent_id, caller, db_of(request))
    action = f"{PREFIX}/accounts/{account_id}/team/{agent_id}/availability"
    section = await web_availability.section(scope, action, caller.sub)
    if section is None:
        raise NotFound("No such agent in this account.")
    agent = await scope.settings.agent(agent_id) or {}
    return render(
        request,
        "agent_availability.html",
        status=status,
        caller=caller,
        title=f"Availability of {agent.get('name') or agent_id}",
        account_id=account_id,
        agent_id=agent_id,
        agent_name=str(agent.get("name") or agent_id),
        av=section,
        errors=errors or {},
        values=values or {},
    )


@router.get("/accounts/{account_id}/team/{agent_id}/availability")
async def agent_availability(request: Request, account_id: str, agent_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _availability_page(request, caller, path_id(account_id), path_id(agent_id))


@router.post("/accounts/{account_id}/team/{agent_id}/availability")
async def save_agent_availability(request: Request, account_id: str, agent_id: str) -> Response:
    """One part of the agent's availability (web/availability.py), saved whole through the API's use case."""
    caller, (account_id, agent_id), form = await posted(request, account_id, agent_id)
    scope = await rules_uc.availability_scope(account_id, agent_id, caller, db_of(request))
    said, errors = await web_availability.save(scope, form, own=agent_id == caller.sub)
    if errors:
        return await _availability_page(request, caller, account_id, agent_id, status=422, errors=errors, values=form)
    back = f"{PREFIX}/accounts/{account_id}/team/{agent_id}/availability"
    return redirect(back, request=request, flash=said)
