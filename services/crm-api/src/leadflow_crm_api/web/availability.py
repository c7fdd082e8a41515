"""An agent's availability on the web (issue 15): the forms of the Me page and of a broker's page for one agent
(pause and time away, working hours per weekday, several windows a day, holidays, lead caps), what they show, and
the last changes.

Each form changes one part and saves the whole availability through the JSON API's use case, which checks it;
a refusal comes back keyed by the field it is about (`availability_caps_week`, `availability_hours_2`...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from leadflow_crm_api.domain.rules_and_availability import (
    WEEKDAYS,
    Availability,
    SettingsChange,
    clock_text,
    stored_availability,
)
from leadflow_crm_api.problems import reason_of
from leadflow_crm_api.use_cases import rules_and_availability as rules_uc
from leadflow_crm_api.use_cases.rules_and_availability import Changes
from leadflow_shared.account_config import time_zone_of
from leadflow_shared.availability import AgentAvailability, Caps, WorkWindow

PERIODS = ("day", "week", "month")
POSITION = re.compile(r"[0-9]{1,3}")
# A working-hours field: the day's first window `hours_<day>_start` (as when the form held one a day), its next
# ones `hours_<day>_<n>_start` (n = 1, 2...), and the same with `_end`.
HOURS_FIELD = re.compile(r"hours_([0-6])(?:_([1-9][0-9]?))?_(start|end)")
RECENT = 5  # changes shown under the forms


class FormError(Exception):
    """A form refused before it reaches the use case (its fields' reasons, like the API's 422)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


# What the forms show


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    at_text: str  # in the zone of the agent whose availability it is
    by: str
    what: str


@dataclass(frozen=True, slots=True)
class HoursRow:
    """One working-hours window of a day in the form: its fields' stem (`hours_0`, `hours_0_1`) and values."""

    day: int
    n: int  # 0 for the day's first window
    start: str
    end: str

    @property
    def stem(self) -> str:
        return f"hours_{self.day}" if self.n == 0 else f"hours_{self.day}_{self.n}"

    @property
    def label(self) -> str:
        return WEEKDAYS[self.day] if self.n == 0 else f"{WEEKDAYS[self.day]}, window {self.n + 1},"


def hours_rows(day: int, windows: Sequence[tuple[str, str]]) -> list[HoursRow]:
    """A day's windows as rows, and empty ones after them for more: always one empty last, and two rows at least."""
    given = list(windows)
    while len(given) < 2 or given[-1] != ("", ""):
        given.append(("", ""))
    return [HoursRow(day, n, start, end) for n, (start, end) in enumerate(given)]


@dataclass(frozen=True, slots=True)
class AvailabilityView:
    """The availability section of a page: the stored availability and the forms' starting values."""

    availability: Availability
    own: bool  # the viewer's own ("you") or an agent's its broker sees
    time_zone: str
    action: str  # where the forms post
    away: list[str]
    hours: list[list[tuple[str, str]]]  # per weekday, Monday first: its windows (start, end) as HH:MM, by start
    holidays: list[date]
    caps: dict[str, str]  # per period, "" for none
    changes: list[Change] = field(default_factory=list)
    weekdays: tuple[str, ...] = WEEKDAYS

    def rows(self, day: int, values: Mapping[str, str]) -> list[HoursRow]:
        """The day's rows in the hours form: as posted when the hours form comes back refused, else as saved."""
        if values.get("part") == "hours":
            return hours_rows(day, posted_hours(values).get(day, []))
        return hours_rows(day, self.hours[day])


def _shown(moment: datetime, zone: ZoneInfo) -> str:
    try:
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"
    except OverflowError:  # year 1 or 9999 with an offset: beyond what a datetime holds in this zone
        return moment.isoformat()


def away_lines(availability: AgentAvailability, zone: str) -> list[str]:
    """Each time away as the agent reads it, in its own time zone."""
    local = ZoneInfo(zone)
    return [f"{_shown(a.start, local)} – {_shown(a.end, local)}" for a in availability.away]


def day_hours(windows: Sequence[WorkWindow]) -> list[list[tuple[str, str]]]:
    """Each weekday's windows (start, end), in order of their start."""
    days: list[list[tuple[str, str]]] = [[] for _ in WEEKDAYS]
    # A stored time may carry an offset (written before crm-api refused them): compared as wall-clock times.
    for window in sorted(windows, key=lambda w: (w.start.replace(tzinfo=None), w.end.replace(tzinfo=None))):
        for day in window.weekdays:
            days[day].append((clock_text(window.start), clock_text(window.end)))
    return days


def posted_hours(form: Mapping[str, str]) -> dict[int, list[tuple[str, str]]]:
    """The working-hours fields of a form: each day's rows (start, end) as typed, in the form's order."""
    rows: dict[int, dict[int, list[str]]] = {}
    for name, value in form.items():
        if found := HOURS_FIELD.fullmatch(name):
            row = rows.setdefault(int(found[1]), {}).setdefault(int(found[2] or 0), ["", ""])
            row[found[3] == "end"] = value.strip()
    return {day: [(r[0], r[1]) for _, r in sorted(slots.items())] for day, slots in sorted(rows.items())}


def view_of(availability: Availability, own: bool, zone: str, action: str, changes: list[Change]) -> AvailabilityView:
    limits = availability.caps.model_dump() if availability.caps else {}
    caps = {p: "" if limits.get(p) is None else str(limits[p]) for p in PERIODS}
    return AvailabilityView(
        availability, own, zone, action, away_lines(availability, zone), day_hours(availability.working_hours),
        sorted(availability.holidays), caps, changes,
    )  # fmt: skip


# The last changes, in words


def _windows_text(windows: Sequence[WorkWindow]) -> str:
    if not windows:
        return "any time"
    return "; ".join(
        f"{', '.join(WEEKDAYS[d][:3] for d in w.weekdays)} {clock_text(w.start)}–{clock_text(w.end)}" for w in windows
    )


def _caps_text(caps: Caps | None) -> str:
    limits = [f"{getattr(caps, p)} a {p}" for p in PERIODS if caps is not None and getattr(caps, p) is not None]
    return ", ".join(limits) or "none"


def _field_text(name: str, value: AgentAvailability, zone: str) -> str:
    if name == "paused":
        return "paused" if value.paused else "taking leads"
    if name == "away":
        return "time away: " + ("; ".join(away_lines(value, zone)) or "none")
    if name == "working_hours":
        return "working hours: " + _windows_text(value.working_hours)
    if name == "holidays":
        return "holidays: " + (", ".join(d.isoformat() for d in sorted(value.holidays)) or "none")
    return "caps: " + _caps_text(value.caps)


def _readable(document: Mapping[str, Any]) -> AgentAvailability | None:
    try:
        return AgentAvailability.model_validate(document)
    except ValidationError:
        return None


def change_text(document: Mapping[str, Any], before: Mapping[str, Any] | None, zone: str) -> str:
    """What a change set: the fields that differ from the change before it (all of them for the first)."""
    after = _readable(document)
    if after is None:
        return "a value that cannot be read"
    previous = _readable(before) if before is not None else None
    names = [n for n in AgentAvailability.model_fields if previous is None or getattr(previous, n) != getattr(after, n)]
    return "; ".join(_field_text(n, after, zone) for n in names) or "saved unchanged"


async def recent_changes(scope: Changes, zone: str, viewer: str) -> list[Change]:
    """The last few changes of the scope's agent's availability, each said against the one before it."""
    history = (await rules_uc.availability_history(scope, RECENT + 1)).items
    names = {a["_id"]: str(a.get("name") or a["_id"]) for a in await scope.settings.agents()}
    local = ZoneInfo(zone)

    def said(change: SettingsChange, before: SettingsChange | None) -> Change:
        at = change.at if change.at.tzinfo else change.at.replace(tzinfo=UTC)
        who = "you" if change.by_user_id == viewer else names.get(change.by_user_id, change.by_user_id)
        what = change_text(change.document, before.document if before else None, zone)
        return Change(at, _shown(at, local), who, what)

    return [said(c, history[i + 1] if i + 1 < len(history) else None) for i, c in enumerate(history[:RECENT])]


# The forms: each changes one part of the availability


def _local(text: str, zone: str) -> datetime | str:
    """A `datetime-local` value in the agent's zone; anything else as sent, for the model to refuse by name."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def _pause_and_away(current: dict[str, Any], form: Mapping[str, str], zone: str) -> dict[str, Any]:
    """Remove one time away (`remove_away` = its position), or set the pause and add a time away when given."""
    away: list[Any] = list(current["away"])
    if POSITION.fullmatch(remove := form.get("remove_away", "")):
        return {"away": [a for i, a in enumerate(away) if i != int(remove)]}
    start, end = form.get("away_start", "").strip(), form.get("away_end", "").strip()
    if start or end:
        away.append({"start": _local(start, zone), "end": _local(end, zone)})
    return {"paused": form.get("paused") == "on", "away": away}


def _hours(form: Mapping[str, str]) -> tuple[dict[str, Any], list[list[int]]]:
    """Each window given on each weekday (a row with neither time is none), days with the same hours in one window;
    and each window's days (where a refusal of it is shown). No window given: any time."""
    same: dict[tuple[str, str], list[int]] = {}
    missing: dict[str, str] = {}
    for day, rows in posted_hours(form).items():
        for start, end in rows:
            if start and end:
                same.setdefault((start, end), []).append(day)  # twice on one day: refused as given twice
            elif start or end:
                missing[f"availability_hours_{day}"] = "give both the start and the end of each window, or neither"
    if missing:
        raise FormError(missing)
    windows = [{"weekdays": days, "start": start, "end": end} for (start, end), days in same.items()]
    return {"working_hours": windows}, list(same.values())


def _holidays(current: dict[str, Any], form: Mapping[str, str]) -> dict[str, Any]:
    """Remove the holiday `remove_holiday` (an ISO date), or add `holiday`."""
    if "remove_holiday" in form:
        return {"holidays": [d for d in current["holidays"] if d.isoformat() != form["remove_holiday"]]}
    added = form.get("holiday", "").strip()
    if not added:
        raise FormError({"availability_holiday": "choose the day"})
    return {"holidays": [*current["holidays"], added]}


def _caps(form: Mapping[str, str]) -> dict[str, Any]:
    """Each period's cap; empty: none."""
    caps = {p: form.get(f"cap_{p}", "").strip() or None for p in PERIODS}
    return {"caps": caps if any(caps.values()) else None}


def edited(current: Availability, form: Mapping[str, str], zone: str) -> tuple[dict[str, Any], list[list[int]]]:
    """The availability with the posted form's part changed (`part`: hours, holidays, caps; none: the pause and
    time away), unchecked, and the days of each of its working-hours windows. Raises `FormError`."""
    whole = current.model_dump()
    part, days = form.get("part", ""), [list(w.weekdays) for w in current.working_hours]
    if part == "":
        whole |= _pause_and_away(whole, form, zone)
    elif part == "hours":
        changed, days = _hours(form)
        whole |= changed
    elif part == "holidays":
        whole |= _holidays(whole, form)
    elif part == "caps":
        whole |= _caps(form)
    else:
        raise FormError({"availability_form": "this is not one of the availability forms; reload the page"})
    return whole, days


def checked(whole: Mapping[str, Any]) -> Availability:
    """The model's checks; holidays in order, each once."""
    body = Availability.model_validate(whole)
    return body.model_copy(update={"holidays": sorted(set(body.holidays))})


def _window_days(rest: Sequence[Any], days: Sequence[Sequence[int]]) -> list[int] | None:
    """The weekdays a refusal of a working-hours window is about: the one it names (`1, "weekdays", 0`), else all
    of the window's; None when it names no window of the form."""
    if not rest or not isinstance(rest[0], int) or not 0 <= rest[0] < len(days):
        return None
    window = days[rest[0]]
    if len(rest) == 3 and rest[1] == "weekdays" and isinstance(rest[2], int) and 0 <= rest[2] < len(window):
        return [window[rest[2]]]
    return list(window)


def errors_of(exc: ValidationError | RequestValidationError, days: Sequence[Sequence[int]]) -> dict[str, str]:
    """Each refusal keyed by the field that shows it: a cap's own, the weekday of a working-hours window it names
    (else the window's days), the holiday being added, else the availability field's (`availability_away`)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = [p for p in error["loc"] if p != "body"]
        name, rest = (str(loc[0]), loc[1:]) if loc else ("form", [])
        keys = [f"availability_{name}"]
        if name == "caps" and rest and rest[0] in PERIODS:
            keys = [f"availability_caps_{rest[0]}"]
        elif name == "working_hours" and (weekdays := _window_days(rest, days)) is not None:
            keys = [f"availability_hours_{d}" for d in weekdays]
        elif name == "holidays":
            keys = ["availability_holiday"]
        for key in keys:
            found.setdefault(key, reason_of(error))
    return found


SAID = {
    "hours": "Working hours saved.",
    "holidays": "Holidays saved.",
    "caps": "Lead caps saved.",
}


async def save(scope: Changes, form: Mapping[str, str], *, own: bool) -> tuple[str, dict[str, str]]:
    """Apply the posted form to the stored availability and save it through the use case (which checks it):
    the message to flash, or the refusals by field."""
    current = await rules_uc.get_availability(scope)  # 404 for an agent not of the account
    zone = time_zone_of(await scope.settings.agent(scope.agent_id) or {})
    try:
        whole, days = edited(current, form, zone)
    except FormError as exc:
        return "", exc.errors
    try:
        saved = await rules_uc.put_availability(scope, checked(whole))
    except (ValidationError, RequestValidationError) as exc:
        return "", errors_of(exc, days)
    if form.get("part", "") in SAID:
        return SAID[form["part"]], {}
    if not saved.paused:
        return "Availability saved.", {}
    return ("Paused: no new leads until you resume." if own else f"{scope.agent_id} is paused: no new leads."), {}


async def section(scope: Changes, action: str, viewer: str) -> AvailabilityView | None:
    """The availability section of a page for the scope's agent; None when it is no agent of the account."""
    agent = await scope.settings.agent(scope.agent_id)
    if agent is None:
        return None
    zone = time_zone_of(agent)
    changes = await recent_changes(scope, zone, viewer)
    return view_of(stored_availability(agent), scope.agent_id == viewer, zone, action, changes)
