"""The lead lists (V1, V2), a lead's page (V3) and its actions (R8)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.adapters.leads import ScopedLeads
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.api import ActivityCreate
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.routing_info import LeadRouting
from leadflow_crm_api.domain.sharing import InvitationStatus
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, LeadStatus, LeadTab
from leadflow_crm_api.errors import ClaimNotPossible, CrmApiError, NotFound
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import ask_back as ask_back_uc
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import offices as offices_uc
from leadflow_crm_api.use_cases import routing_info as routing_uc
from leadflow_crm_api.use_cases import sharing as sharing_uc
from leadflow_crm_api.web import ponds
from leadflow_crm_api.web.common import (
    PREFIX,
    caller_of,
    db_of,
    home_of,
    path_id,
    posted,
    redirect,
    render,
    settings_of,
)
from leadflow_shared.account_config import known_zone

PAGE_SIZE = 50
PAGE_ROUTER_TIMEOUT = 2.0  # seconds: a router that hangs delays a broker's lead page by at most this
ACTIONS = ("accept", "note", "call", "email", "sms", "task")
router = APIRouter(prefix=PREFIX, include_in_schema=False)
router.include_router(ponds.router)  # the Ponds page (issue 15): pond leads, claimed with this module's actions


def _list_query(request: Request) -> tuple[LeadQuery, str | None, dict[str, str]]:
    """The list's filters from the query string; a bad value is dropped (the page shows every lead)."""
    params = request.query_params
    shown = {k: params.get(k, "") for k in ("tab", "status", "q", "sort")}

    def pick(kind: Any, value: str, default: Any) -> Any:
        try:
            return kind(value) if value else default
        except ValueError:
            return default

    q = shown["q"].strip()[:100] or None
    query = LeadQuery(
        tab=pick(LeadTab, shown["tab"], LeadTab.ALL),
        status=pick(LeadStatus, shown["status"], None),
        search=q,
        sort=pick(LeadSort, shown["sort"], LeadSort.CREATED_DESC),
    )
    cursor = params.get("cursor") or None
    return query, cursor, shown


@router.get("/accounts/{account_id}/leads")
async def brokerage_list(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await brokerage_page(request, caller, path_id(account_id))


async def brokerage_page(
    request: Request,
    caller: Principal,
    account_id: str,
    *,
    status: int = 200,
    transfer_error: str | None = None,
    assign_error: str | None = None,
    values: dict[str, str] | None = None,
    selected: list[str] | None = None,
) -> HTMLResponse:
    """V1 with its bulk actions: the realtors a Lead Transfer can pick (those who accepted, T1), and the
    agents leads can be assigned to by hand (T4). A refused bulk form comes back with its dialog as it was
    filled in (`values`) and its leads still selected (`selected`)."""
    leads = leads_uc.brokerage_leads(caller, db_of(request), account_id)
    realtors = await sharing_uc.my_realtors(account_id, caller, db_of(request))
    return await _list(
        request,
        caller,
        leads,
        title="Brokerage CRM",
        live=f"{PREFIX}/accounts/{account_id}/live",
        status=status,
        realtors=realtors.items,
        transfer_error=transfer_error,
        assign_error=assign_error,
        agents=await _active_agents(request, account_id),
        request_id=uuid.uuid4().hex,
        values=values or {},
        selected=set(selected or []),
    )


async def _active_agents(request: Request, account_id: str) -> list[dict[str, Any]]:
    """The office's active agents, by name: whom a broker can hand leads to."""
    agents = await AccountSettings(db_of(request), account_id).agents()
    return sorted((a for a in agents if a.get("active", True)), key=lambda a: str(a.get("name", a["_id"])))


@router.get("/my/leads")
async def realtor_list(request: Request) -> HTMLResponse:
    caller, _ = await caller_of(request)
    invitations = await sharing_uc.my_invitations(caller, db_of(request))
    pending = [i for i in invitations.items if i.status is InvitationStatus.PENDING]
    joined = [i for i in invitations.items if i.status is InvitationStatus.ACCEPTED]
    return await _list(
        request,
        caller,
        leads_uc.realtor_leads(caller, db_of(request)),
        title="My Leads",
        live=f"{PREFIX}/my/live",
        invitations=pending,
        brokerages=joined,
    )


async def _list(
    request: Request, caller: Principal, leads: ScopedLeads, *, title: str, live: str, status: int = 200, **extra: Any
) -> HTMLResponse:
    # The change mark before the data: a change landing in between refreshes the page once more; none is missed.
    live = f"{live}?{urlencode({'since': await leads.change_mark()})}"
    query, cursor, shown = _list_query(request)
    try:
        page = await leads_uc.lead_page(leads, db_of(request), query, PAGE_SIZE, cursor)
    except RequestValidationError:  # a stale cursor: the first page instead
        page = await leads_uc.lead_page(leads, db_of(request), query, PAGE_SIZE, None)
    base = {k: v for k, v in shown.items() if v}
    next_url = f"{request.url.path}?{urlencode(base | {'cursor': page.next_cursor})}" if page.next_cursor else None
    tabs = [(tab, f"{request.url.path}?{urlencode(base | {'tab': tab.value})}") for tab in LeadTab]
    return render(
        request,
        "leads.html",
        status=status,
        caller=caller,
        title=title,
        page=page,
        shown=shown,
        next_url=next_url,
        tabs=tabs,
        query=query,
        live=live,
        statuses=list(LeadStatus),
        sorts=list(LeadSort),
        filters=urlencode(base),
        **extra,
    )


# -- a lead's page (V3) and its actions (R8) ----------------------------------------------------------------


@router.get("/accounts/{account_id}/leads/{lead_id}")
async def lead_page(request: Request, account_id: str, lead_id: str) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _lead(request, caller, path_id(account_id), path_id(lead_id))


async def lead_page_of(
    request: Request,
    caller: Principal,
    account_id: str,
    lead_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    """A lead's page; re-rendered with `errors` next to the fields of the form that was refused."""
    return await _lead(request, caller, account_id, lead_id, status=status, errors=errors, values=values)


async def _lead(
    request: Request,
    caller: Principal,
    account_id: str,
    lead_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    since = await leads.lead_mark(lead_id)  # before the data, as for the lists
    try:
        lead = await leads_uc.lead_view(leads, caller, db_of(request), lead_id)
    except NotFound:
        if (lost := await ask_back_uc.lost_offer_notice(caller, db_of(request), lead_id)) is None:
            raise
        return render(
            request, "lost_offer.html", status=410, caller=caller, title="This lead is no longer yours", lost=lost,
            ask_back=f"{PREFIX}/accounts/{account_id}/leads/{lead_id}/ask-back",
        )  # fmt: skip
    mine = [o for o in lead.open_offers if o.agent_id == caller.sub]
    offices: list[Any] = []  # Brokerkit's Reassign: the organisation's other offices (its brokers and admins)
    agents: list[dict[str, Any]] = []  # whom a broker can assign the lead to (T4)
    routing: LeadRouting | str | None = None  # "Routing info": the decisions, or why they cannot be shown now
    if caller.sees_whole_account and caller.account_id == account_id:
        listed = await offices_uc.list_offices(account_id, caller, db_of(request))
        offices = [o for o in listed.items if not o.current]
        agents = await _active_agents(request, account_id)
        routing = await _routing_info(request, caller, leads, account_id, lead_id)
    return render(
        request,
        "lead.html",
        status=status,
        caller=caller,
        lead=lead,
        account_id=account_id,
        my_offer=mine[0] if mine else None,
        errors=errors or {},
        values=values or {},
        offices=offices,
        agents=agents,
        holds_it=lead.owner_agent_id == caller.sub and lead.assigned_to != caller.sub,
        request_id=uuid.uuid4().hex,
        live=f"{PREFIX}/accounts/{account_id}/leads/{lead_id}/live?{urlencode({'since': since})}",
        actions=ACTIONS,
        routing=routing,
    )


async def _routing_info(
    request: Request, caller: Principal, leads: ScopedLeads, account_id: str, lead_id: str
) -> LeadRouting | str:
    """The lead's routing decisions (the JSON API's use case); a router not answering is a notice, not an error."""
    router = RouterApi.of(settings_of(request), timeout=PAGE_ROUTER_TIMEOUT)
    try:
        return await routing_uc.lead_routing(account_id, leads, caller, db_of(request), router, lead_id)
    except CrmApiError as exc:  # the router down (503) or refusing: the lead page still shows
        return exc.detail


@router.post("/accounts/{account_id}/leads/{lead_id}/actions")
async def act(request: Request, account_id: str, lead_id: str) -> Response:
    caller, (account_id, lead_id), form = await posted(request, account_id, lead_id)
    try:
        body = ActivityCreate.model_validate(_activity(form))
    except ValidationError as exc:
        errors = {_field(e["loc"]): reason_of(e) for e in exc.errors()}
        return await _lead(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    except ValueError as exc:
        return await _lead(request, caller, account_id, lead_id, status=422, errors={"task_due": str(exc)}, values=form)
    leads = leads_uc.account_leads(caller, db_of(request), account_id)
    try:
        answer = await leads_uc.act_on_lead(
            leads, caller, db_of(request), lead_id, body, request.app.state.publish_activity
        )
    except RequestValidationError as exc:
        errors = {_field(e["loc"]): reason_of(e) for e in exc.errors()}
        return await _lead(request, caller, account_id, lead_id, status=422, errors=errors, values=form)
    except CrmApiError as exc:
        if exc.status != 409:
            raise
        return await _lead(request, caller, account_id, lead_id, status=409, errors={"action": exc.detail}, values=form)
    if body.action.value == "decline":  # the lead is no longer the agent's to see: back to its list
        return redirect(home_of(caller), flash=answer.detail, request=request)
    done = {"accept": "Claim sent."}.get(body.action.value, "Saved.")
    return redirect(
        f"{PREFIX}/accounts/{account_id}/leads/{lead_id}", flash=f"{done} {answer.detail}".strip(), request=request
    )


@router.post("/accounts/{account_id}/leads/{lead_id}/ask-back")
async def ask_back(request: Request, account_id: str, lead_id: str) -> Response:
    """The "Ask for it back" button of a lead whose offer ended: back to the lead's page, which shows the lead
    once the router offers it again, else how the offer ended and why asking was refused."""
    caller, (account_id, lead_id), _ = await posted(request, account_id, lead_id)
    page = f"{PREFIX}/accounts/{account_id}/leads/{lead_id}"
    try:
        asked = await ask_back_uc.ask_back(
            account_id, caller, db_of(request), lead_id, request.app.state.publish_activity
        )
    except ClaimNotPossible as exc:  # its offer is open or it holds the lead: the lead's page shows it
        return redirect(page, flash=exc.detail, request=request)
    return redirect(page, flash=asked.detail, request=request)


def _activity(form: dict[str, str]) -> dict[str, Any]:
    """The action form's fields as an ActivityCreate body (validated by the API's own model)."""
    action = form.get("action", "")
    body: dict[str, Any] = {"action": action}
    if text := form.get("text", "").strip():
        body["text"] = text
    if action == "call" and form.get("call_outcome"):
        body["call_outcome"] = form["call_outcome"]
    if action == "task":
        body["task"] = {
            "title": form.get("task_title", ""),
            "due_at": _local_time(form.get("task_due", ""), form.get("tz", "")),
        }
    if action in {"email", "sms"} and form.get("message_body", "").strip():
        body["message"] = {"body": form["message_body"]}
        if action == "email":
            body["message"]["subject"] = form.get("message_subject", "")
        body.pop("text", None)
    return body


def _local_time(value: str, zone: str) -> str:
    """A `datetime-local` field in the viewer's time zone (sent by the page's script), as ISO 8601."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("give the task's due date and time") from exc
    tz = known_zone(zone) or UTC  # the page's script sends it: anything else is read as UTC
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).isoformat()


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in {"body"}]
    name = "_".join(parts[:2]) if parts else "action"
    return {
        "message_subject": "message_subject",
        "message_body": "message_body",
        "task_title": "task_title",
        "task_due_at": "task_due",
    }.get(name, parts[0] if parts else "action")
