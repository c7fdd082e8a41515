"""The web app's availability forms (issue 15, web/availability.py), the pure parts: each form changes its own part
and keeps the rest, working hours per weekday in and out of the stored windows, a refusal keyed by the field that
shows it, and the last changes said in words."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_crm_api.domain.rules_and_availability import Availability
from leadflow_crm_api.web.availability import FormError, change_text, checked, day_hours, edited, errors_of
from leadflow_shared.availability import WorkWindow

pytestmark = pytest.mark.unit

ZONE = "America/Chicago"
STORED = Availability.model_validate(
    {"paused": True, "away": [{"start": "2026-08-01T09:00:00-05:00", "end": "2026-08-08T09:00:00-05:00"}],
     "working_hours": [{"weekdays": [0, 1], "start": "09:00", "end": "17:00"}],
     "holidays": ["2026-12-31", "2026-12-24"], "caps": {"day": 4}}
)  # fmt: skip


def saved(form: dict[str, str]) -> Availability:
    whole, _ = edited(STORED, form, ZONE)
    return checked(whole)


def unchanged_but(after: Availability, *names: str) -> None:
    kept = set(Availability.model_fields) - set(names) - {"holidays"}  # every save puts holidays in order
    assert after.model_dump(include=kept) == STORED.model_dump(include=kept)


def test_working_hours_are_one_window_per_set_of_days_with_the_same_hours() -> None:
    form = {"part": "hours", "hours_0_start": "09:00", "hours_0_end": "17:00", "hours_2_start": "09:00",
            "hours_2_end": "17:00", "hours_5_start": "22:00", "hours_5_end": "06:00"}  # fmt: skip
    after = saved(form)
    assert after.working_hours == [
        WorkWindow(weekdays=[0, 2], start=time(9), end=time(17)),
        WorkWindow(weekdays=[5], start=time(22), end=time(6)),
    ]
    unchanged_but(after, "working_hours")
    assert saved({"part": "hours"}).working_hours == [], "no day given: any time"


def test_a_day_with_a_start_and_no_end_is_refused_at_that_day() -> None:
    with pytest.raises(FormError) as refused:
        edited(STORED, {"part": "hours", "hours_3_start": "09:00", "hours_4_end": "10:00"}, ZONE)
    assert set(refused.value.errors) == {"availability_hours_3", "availability_hours_4"}


def test_a_time_the_model_refuses_is_shown_at_every_day_of_its_window() -> None:
    form = {"part": "hours", "hours_1_start": "25:00", "hours_1_end": "17:00", "hours_4_start": "25:00",
            "hours_4_end": "17:00", "hours_6_start": "08:00", "hours_6_end": "12:00"}  # fmt: skip
    whole, days = edited(STORED, form, ZONE)
    assert days == [[1, 4], [6]]
    with pytest.raises(ValidationError) as refused:
        checked(whole)
    errors = errors_of(refused.value, days)
    assert set(errors) == {"availability_hours_1", "availability_hours_4"}
    assert errors["availability_hours_1"].startswith("Input should be in a valid time format")


def test_the_stored_windows_show_per_weekday_and_what_the_form_cannot_hold_is_listed() -> None:
    windows = [WorkWindow(weekdays=[0, 1], start=time(9), end=time(12)), WorkWindow(weekdays=[0], start=time(13),
               end=time(17, 30, 15))]  # fmt: skip
    days, more = day_hours(windows)
    assert days == [("09:00", "12:00"), ("09:00", "12:00"), ("", ""), ("", ""), ("", ""), ("", ""), ("", "")]
    assert more == ["Monday 13:00–17:30:15"]


def test_holidays_are_added_once_in_order_and_removed_by_date() -> None:
    added = saved({"part": "holidays", "holiday": "2026-11-26"})
    assert added.holidays == [date(2026, 11, 26), date(2026, 12, 24), date(2026, 12, 31)]
    unchanged_but(added, "holidays")
    assert saved({"part": "holidays", "holiday": "2026-12-24"}).holidays == [date(2026, 12, 24), date(2026, 12, 31)]
    assert saved({"part": "holidays", "remove_holiday": "2026-12-24"}).holidays == [date(2026, 12, 31)]
    with pytest.raises(FormError) as empty:
        edited(STORED, {"part": "holidays", "holiday": " "}, ZONE)
    assert empty.value.errors == {"availability_holiday": "choose the day"}
    with pytest.raises(ValidationError) as bad:
        checked(edited(STORED, {"part": "holidays", "holiday": "2026-02-30"}, ZONE)[0])
    assert set(errors_of(bad.value, [])) == {"availability_holiday"}


def test_caps_are_set_per_period_and_empty_is_no_cap() -> None:
    after = saved({"part": "caps", "cap_day": "", "cap_week": "20", "cap_month": " 60 "})
    assert after.caps is not None
    assert after.caps.model_dump() == {"day": None, "week": 20, "month": 60}
    unchanged_but(after, "caps")
    assert saved({"part": "caps", "cap_day": "", "cap_week": ""}).caps is None
    with pytest.raises(ValidationError) as refused:
        checked(edited(STORED, {"part": "caps", "cap_day": "-1", "cap_month": "lots"}, ZONE)[0])
    assert errors_of(refused.value, []) == {
        "availability_caps_day": "Input should be greater than or equal to 0",
        "availability_caps_month": "Input should be a valid integer, unable to parse string as an integer",
    }


def test_the_pause_form_keeps_its_fields_and_the_rest() -> None:
    resumed = saved({})
    assert not resumed.paused
    unchanged_but(resumed, "paused")
    planned = saved({"paused": "on", "away_start": "2026-09-01T09:00", "away_end": "2026-09-02T09:00"})
    assert [a.start.isoformat() for a in planned.away] == ["2026-08-01T09:00:00-05:00", "2026-09-01T09:00:00-05:00"]
    assert saved({"remove_away": "0"}).model_dump(exclude={"away"}) == checked(STORED.model_dump()).model_dump(
        exclude={"away"}
    )
    with pytest.raises(FormError):
        edited(STORED, {"part": "everything"}, ZONE)


def test_a_refusal_from_the_use_case_is_keyed_by_its_field() -> None:
    refused = RequestValidationError([
        {"loc": ("body", "caps", "week"), "msg": "no lead could be offered", "type": "value_error"},
        {"loc": ("body", "away", 0), "msg": "end is not after start", "type": "value_error"},
        {"loc": ("body", "working_hours", 0, "weekdays", 0), "msg": "too big", "type": "value_error"},
        {"loc": ("body", "working_hours", 9), "msg": "unknown window", "type": "value_error"},
    ])  # fmt: skip
    assert errors_of(refused, [[2, 3]]) == {
        "availability_caps_week": "no lead could be offered",
        "availability_away": "end is not after start",
        "availability_hours_2": "too big",
        "availability_hours_3": "too big",
        "availability_working_hours": "unknown window",
    }


def document(**fields: Any) -> dict[str, Any]:
    return Availability.model_validate(fields).model_dump(mode="json")


def test_a_change_is_said_by_what_it_changed() -> None:
    first = document(caps={"day": 5})
    assert change_text(first, None, ZONE) == (
        "taking leads; time away: none; working hours: any time; holidays: none; caps: 5 a day"
    )
    hours = document(caps={"day": 5}, working_hours=[{"weekdays": [0, 4], "start": "09:00", "end": "17:00"}])
    assert change_text(hours, first, ZONE) == "working hours: Mon, Fri 09:00–17:00"
    away = {"start": "2026-08-01T14:00:00Z", "end": "2026-08-02T14:00:00Z"}
    assert change_text(document(paused=True, away=[away]), first, ZONE) == (
        "paused; time away: 2026-08-01 09:00 – 2026-08-02 09:00; caps: none"
    )
    assert change_text(first, first, ZONE) == "saved unchanged"
    assert change_text({"paused": "maybe"}, None, ZONE) == "a value that cannot be read"


FORM_FIELDS = ["part", "paused", "away_start", "away_end", "remove_away", "holiday", "remove_holiday",
               *(f"hours_{d}_{e}" for d in (0, 3, 6) for e in ("start", "end")),
               "cap_day", "cap_week", "cap_month"]  # fmt: skip
FORM_VALUES = st.sampled_from(["", "hours", "holidays", "caps", "on", "0", "-1", "09:00", "25:00", "2026-12-24",
                               "2026-02-30", "2026-08-01T09:00", "1e309", "\x00"]) | st.text(max_size=12)  # fmt: skip


def outcome(form: dict[str, str]) -> Availability | dict[str, str]:
    """What a form comes to before the use case: the availability to save, or the refusals by field."""
    try:
        whole, days = edited(STORED, form, ZONE)
    except FormError as exc:
        return exc.errors
    try:
        return checked(whole)
    except ValidationError as exc:
        return errors_of(exc, days)


@settings(max_examples=300, deadline=None)
@given(form=st.dictionaries(st.sampled_from(FORM_FIELDS), FORM_VALUES, max_size=6))
def test_any_form_is_saved_or_refused_by_field_never_an_error(form: dict[str, str]) -> None:
    came = outcome(form)
    if isinstance(came, Availability):
        assert came.holidays == sorted(set(came.holidays))
    else:
        assert came
        assert all(key.startswith("availability_") and reason for key, reason in came.items())
