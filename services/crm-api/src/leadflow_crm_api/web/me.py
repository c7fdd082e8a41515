"""The signed-in person's own settings: notification preferences (channels, quiet hours, digest, team updates,
new-lead notices), the devices registered for push and, for an agent, its availability (paused, time away,
working hours, holidays, lead caps, and the last changes; issue 15, web/availability.py). The use cases are the
JSON API's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.settings import Channel, NotificationPreferences
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import people as people_uc
from leadflow_crm_api.use_cases import rules_and_availability as rules_uc
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_crm_api.web import availability as web_availability
from leadflow_crm_api.web.common import PREFIX, caller_of, checked_form, db_of, path_id, redirect, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def _page(
    request: Request,
    caller: Principal,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    scope = await settings_uc.preferences_scope(caller.account_id, caller.sub, caller, db_of(request))
    prefs = await settings_uc.get_notifications(scope, caller.sub)
    people = people_uc.account_people(caller.account_id, caller, db_of(request))
    devices = await people_uc.list_devices(people, caller, caller.sub)
    own = await rules_uc.my_availability_scope(caller, db_of(request))
    availability = await web_availability.section(own, f"{PREFIX}/me/availability", caller.sub)
    return render(
        request,
        "me.html",
        status=status,
        caller=caller,
        title="My notifications",
        prefs=prefs,
        channels=list(Channel),
        devices=devices.items,
        errors=errors or {},
        values=values or {},
        av=availability,
    )


@router.get("/me")
async def my_settings(request: Request) -> HTMLResponse:
    caller, _ = await caller_of(request)
    return await _page(request, caller)


@router.post("/me/notifications")
async def save_notifications(request: Request) -> Response:
    caller, token = await caller_of(request)
    form = await checked_form(request, token)
    chosen = [v for v in (await request.form()).getlist("channels") if isinstance(v, str)]
    start, end = form.get("quiet_start", "").strip(), form.get("quiet_end", "").strip()
    try:
        body = NotificationPreferences.model_validate({
            "channels": chosen, "quiet_hours": {"start": start, "end": end} if start or end else None,
            **{k: form.get(k) == "on" for k in ("digest", "team_updates", "new_lead_notices")},
        })  # fmt: skip
    except ValidationError as exc:
        errors = {str(e["loc"][0]) if e["loc"] else "form": reason_of(e) for e in exc.errors()}
        # The form again as it was sent (its channels too): only the refused field needs changing.
        return await _page(request, caller, status=422, errors=errors, values=form | {"channels": chosen})
    scope = await settings_uc.preferences_scope(caller.account_id, caller.sub, caller, db_of(request))
    await settings_uc.put_notifications(scope, caller.sub, body)
    return redirect(f"{PREFIX}/me", flash="Notification preferences saved.", request=request)


@router.post("/me/devices/{device_id}/remove")
async def remove_device(request: Request, device_id: str) -> Response:
    caller, token = await caller_of(request)
    await checked_form(request, token)
    people = people_uc.account_people(caller.account_id, caller, db_of(request))
    await people_uc.delete_device(people, caller, caller.sub, path_id(device_id))
    return redirect(f"{PREFIX}/me", flash=f"{device_id} no longer gets push notifications.", request=request)


@router.post("/me/availability")
async def save_availability(request: Request) -> Response:
    """One part of the agent's own availability (web/availability.py), saved whole through the API's use case."""
    caller, token = await caller_of(request)
    form = await checked_form(request, token)
    scope = await rules_uc.my_availability_scope(caller, db_of(request))
    said, errors = await web_availability.save(scope, form, own=True)
    if errors:
        return await _page(request, caller, status=422, errors=errors, values=form)
    return redirect(f"{PREFIX}/me", flash=said, request=request)
