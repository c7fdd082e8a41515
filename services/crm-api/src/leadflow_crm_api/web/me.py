"""The signed-in person's own settings: notification preferences (channels, quiet hours, digest, team updates,
new-lead notices), the devices registered for push and, for an agent, its availability (paused, time away;
issue 15). The use cases are the JSON API's."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.rules_and_availability import Availability, stored_availability
from leadflow_crm_api.domain.settings import Channel, NotificationPreferences
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import people as people_uc
from leadflow_crm_api.use_cases import rules_and_availability as rules_uc
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_crm_api.web.common import PREFIX, caller_of, checked_form, db_of, field_errors, path_id, redirect, render
from leadflow_shared.account_config import time_zone_of

router = APIRouter(prefix=PREFIX, include_in_schema=False)
POSITION = re.compile(r"[0-9]{1,3}")


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
    agent = await (await rules_uc.my_availability_scope(caller, db_of(request))).settings.agent(caller.sub)
    availability, zone = (stored_availability(agent), time_zone_of(agent)) if agent else (None, "UTC")
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
        availability=availability,
        time_zone=zone,
        away=_away_lines(availability, zone),
    )


@router.get("/me")
async def my_settings(request: Request) -> HTMLResponse:
    caller, _ = caller_of(request)
    return await _page(request, caller)


@router.post("/me/notifications")
async def save_notifications(request: Request) -> Response:
    caller, token = caller_of(request)
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
        return await _page(request, caller, status=422, errors=errors, values=form)
    scope = await settings_uc.preferences_scope(caller.account_id, caller.sub, caller, db_of(request))
    await settings_uc.put_notifications(scope, caller.sub, body)
    return redirect(f"{PREFIX}/me", flash="Notification preferences saved.", request=request)


@router.post("/me/devices/{device_id}/remove")
async def remove_device(request: Request, device_id: str) -> Response:
    caller, token = caller_of(request)
    await checked_form(request, token)
    people = people_uc.account_people(caller.account_id, caller, db_of(request))
    await people_uc.delete_device(people, caller, caller.sub, path_id(device_id))
    return redirect(f"{PREFIX}/me", flash=f"{device_id} no longer gets push notifications.", request=request)


def _shown(moment: datetime, zone: ZoneInfo) -> str:
    try:
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"
    except OverflowError:  # year 1 or 9999 with an offset: beyond what a datetime holds in this zone
        return moment.isoformat()


def _away_lines(availability: Availability | None, zone: str) -> list[str]:
    """Each time away as the agent reads it, in its own time zone."""
    local = ZoneInfo(zone)
    return [f"{_shown(a.start, local)} – {_shown(a.end, local)}" for a in (availability.away if availability else [])]


def _local(text: str, zone: str) -> datetime | str:
    """A `datetime-local` value in the agent's zone; anything else as sent, for the model to refuse by name."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def _edited(current: Availability, form: dict[str, str], zone: str) -> Availability:
    """Remove one time away (`remove_away` = its position), or set the pause and add a time away when given;
    the other fields stay as they are."""
    away: list[Any] = list(current.away)
    if POSITION.fullmatch(remove := form.get("remove_away", "")):
        return Availability.model_validate(
            current.model_dump() | {"away": [a for i, a in enumerate(away) if i != int(remove)]}
        )
    start, end = form.get("away_start", "").strip(), form.get("away_end", "").strip()
    if start or end:
        away.append({"start": _local(start, zone), "end": _local(end, zone)})
    return Availability.model_validate(current.model_dump() | {"paused": form.get("paused") == "on", "away": away})


@router.post("/me/availability")
async def save_availability(request: Request) -> Response:
    """The agent's own pause and time away, saved whole through the API's use case (which checks it)."""
    caller, token = caller_of(request)
    form = await checked_form(request, token)
    scope = await rules_uc.my_availability_scope(caller, db_of(request))
    current = await rules_uc.get_my_availability(scope)  # 404 page for someone who is no agent
    zone = time_zone_of(await scope.settings.agent(caller.sub) or {})
    try:
        saved = await rules_uc.put_my_availability(scope, _edited(current, form, zone))
    except (ValidationError, RequestValidationError) as exc:
        return await _page(request, caller, status=422, errors=field_errors(exc, "availability_"), values=form)
    said = "Paused: no new leads until you resume." if saved.paused else "Availability saved."
    return redirect(f"{PREFIX}/me", flash=said, request=request)
