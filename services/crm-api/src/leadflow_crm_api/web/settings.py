"""Account settings in the web app (V4): round robin and the roster, approvals, lead sources and the pause
schedule. Each form saves one setting through the JSON API's use case (`use_cases.settings`), which
checks it against the account's agents and groups the same way."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.settings import LeadSource, LeadSources, PauseSchedule, RoundRobinApproval, RoutingSettings
from leadflow_crm_api.errors import NotFound
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_crm_api.web.common import PREFIX, caller_of, checked_form, db_of, field_errors, path_id, redirect, render
from leadflow_shared.events.commands import DepartedLeads

router = APIRouter(prefix=PREFIX, include_in_schema=False)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SOURCE_NUMBERS = ("race_count", "claim_window_seconds", "referral_fee_percent", "direct_period_seconds")


async def _page(
    request: Request,
    caller: Principal,
    account_id: str,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: str = "",
) -> HTMLResponse:
    account = settings_uc.admin_settings(account_id, caller, db_of(request))
    routing = await settings_uc.get_routing(account)
    sources = await settings_uc.get_lead_sources(account)
    pause = await settings_uc.get_pause_schedule(account)
    agents = sorted(
        await account.agents(),
        key=lambda a: routing.roster.index(a["_id"]) if a["_id"] in routing.roster else len(routing.roster),
    )
    return render(
        request,
        "settings.html",
        status=status,
        caller=caller,
        title="Settings",
        account_id=account_id,
        routing=routing,
        sources=sources.sources,
        pause=pause,
        agents=agents,
        errors=errors or {},
        failed=form,
        departed=list(DepartedLeads),
        weekdays=WEEKDAYS,
    )


@router.get("/accounts/{account_id}/settings")
async def settings_page(request: Request, account_id: str) -> HTMLResponse:
    caller, _ = caller_of(request)
    return await _page(request, caller, path_id(account_id))


async def _save(request: Request, account_id: str, form_name: str, save: Any) -> Response:
    """Check the form's token, run `save(account_settings, fields)`; the page again with errors, or saved."""
    caller, token = caller_of(request)
    account_id = path_id(account_id)
    fields = await checked_form(request, token)
    account = settings_uc.admin_settings(account_id, caller, db_of(request))
    try:
        said = await save(account, fields)
    except (ValidationError, RequestValidationError) as exc:
        return await _page(
            request, caller, account_id, status=422, errors=field_errors(exc, f"{form_name}."), form=form_name
        )
    return redirect(
        f"{PREFIX}/accounts/{account_id}/settings",
        request=request,
        flash=f"{said} The next leads are routed with it within a few seconds.",
    )


@router.post("/accounts/{account_id}/settings/routing")
async def save_routing(request: Request, account_id: str) -> Response:
    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        roster = [line.strip() for line in fields.get("roster", "").splitlines() if line.strip()]
        body = RoutingSettings(
            round_robin=fields.get("round_robin") == "on",
            roster=roster,
            departed_agent_leads=fields.get("departed_agent_leads") or DepartedLeads.UNASSIGNED,
            allow_direct_to_user=fields.get("allow_direct_to_user") == "on",
        )
        await settings_uc.put_routing(account, body)
        return "Round robin " + ("on." if body.round_robin else "off: roster position 1 gets new general leads.")

    return await _save(request, account_id, "routing", save)


@router.post("/accounts/{account_id}/settings/approvals/{agent_id}")
async def save_approval(request: Request, account_id: str, agent_id: str) -> Response:
    agent_id = path_id(agent_id)

    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        approved = fields.get("approved") == "on"
        await settings_uc.put_round_robin(account, agent_id, RoundRobinApproval(approved=approved))
        return f"{agent_id} is {'approved' if approved else 'no longer approved'} for round robin."

    return await _save(request, account_id, "approvals", save)


@router.post("/accounts/{account_id}/settings/sources/{index}")
async def save_source(request: Request, account_id: str, index: int) -> Response:
    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        current = (await settings_uc.get_lead_sources(account)).sources
        if not 0 <= index < len(current):
            raise NotFound("No such lead source.")
        values: dict[str, Any] = {k: fields.get(k, "").strip() for k in SOURCE_NUMBERS}
        values = {k: v for k, v in values.items() if v}
        edited = LeadSource.model_validate(current[index].model_dump() | values | {
            "lead_group": fields.get("lead_group", "").strip() or None,
            "offices": [o.strip() for o in fields.get("offices", "").split(",") if o.strip()],
            "auto_accept": fields.get("auto_accept") == "on",
        })  # fmt: skip
        sources = [*current[:index], edited, *current[index + 1 :]]
        await settings_uc.put_lead_sources(account, LeadSources(sources=sources))
        return f"Lead source {edited.name} saved."

    return await _save(request, account_id, f"source{index}", save)


@router.post("/accounts/{account_id}/settings/pause")
async def save_pause(request: Request, account_id: str) -> Response:
    """Add a window, remove one (`remove` = its position), or change the time zone; the schedule is then
    saved whole through the API's use case, which checks it."""

    async def save(account: AccountSettings, fields: dict[str, str]) -> str:
        current = await settings_uc.get_pause_schedule(account)
        windows: list[dict[str, Any]] = [w.model_dump() for w in current.windows]
        if (remove := fields.get("remove", "")).isdigit():
            windows = [w for i, w in enumerate(windows) if i != int(remove)]
            said = "Pause window removed."
        elif fields.get("start") or fields.get("end"):
            form = await request.form()
            days = [int(d) for d in form.getlist("weekdays") if isinstance(d, str) and d.isdigit()]
            windows.append({"weekdays": days, "start": fields.get("start", ""), "end": fields.get("end", "")})
            said = "Pause window added."
        else:
            said = "Time zone saved."
        body = PauseSchedule.model_validate({"time_zone": fields.get("time_zone") or None, "windows": windows})
        await settings_uc.put_pause_schedule(account, body)
        return said

    return await _save(request, account_id, "pause", save)
