"""The web app's availability forms (issue 15, web/availability.py), the pure parts: each form changes its own part
and keeps the rest, working hours per weekday (several windows a day) in and out of the stored windows, the API's
refusal of overlapping windows (domain `window_refusals`), a refusal keyed by the field that shows it, and the last
changes said in words."""

from __future__ import annotations

from datetime import date, time
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_crm_api.domain.rules_and_availability import (
    WEEKDAYS,
    Availability,
    stored_availability,
    window_refusals,
)
from leadflow_crm_api.web.availability import (
    AvailabilityView,
    FormError,
    change_text,
    checked,
    day_hours,
    edited,
    errors_of,
    view_of,
)
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


def test_the_stored_windows_show_per_weekday_each_in_its_row_with_an_empty_one_to_add_more() -> None:
    windows = [WorkWindow(weekdays=[0], start=time(13), end=time(17, 30, 15)),
               WorkWindow(weekdays=[0, 1], start=time(9), end=time(12))]  # fmt: skip
    assert day_hours(windows) == [[("09:00", "12:00"), ("13:00", "17:30:15")], [("09:00", "12:00")], [], [], [], [], []]
    view = view_of(Availability(working_hours=windows), True, ZONE, "/app/me/availability", [])
    monday = view.rows(0, {})
    assert [(r.stem, r.label, r.start, r.end) for r in monday] == [
        ("hours_0", "Monday", "09:00", "12:00"),  # the day's first window keeps the one-a-day form's fields
        ("hours_0_1", "Monday, window 2,", "13:00", "17:30:15"),
        ("hours_0_2", "Monday, window 3,", "", ""),
    ]
    assert [(r.stem, r.start) for r in view.rows(1, {})] == [("hours_1", "09:00"), ("hours_1_1", "")]
    assert [(r.stem, r.start) for r in view.rows(2, {})] == [("hours_2", ""), ("hours_2_1", "")]
    # A refused hours form comes back as typed, its empty rows kept; another form's refusal shows the saved hours.
    typed = {"part": "hours", "hours_0_start": "09:00", "hours_0_end": "12:00", "hours_0_1_start": "11:00",
             "hours_0_1_end": "13:00", "hours_0_2_start": "", "hours_0_2_end": ""}  # fmt: skip
    assert [(r.start, r.end) for r in view.rows(0, typed)] == [("09:00", "12:00"), ("11:00", "13:00"), ("", "")]
    assert [r.start for r in view.rows(1, typed)] == ["", ""]
    assert [r.start for r in view.rows(1, {"part": "caps", "cap_day": "x"})] == ["09:00", ""]


def test_a_split_shift_is_two_windows_on_its_day_and_days_with_the_same_hours_share_one() -> None:
    form = {"part": "hours", "hours_0_start": "09:00", "hours_0_end": "12:00", "hours_0_1_start": "13:00",
            "hours_0_1_end": "17:00", "hours_1_start": "09:00", "hours_1_end": "12:00", "hours_1_1_start": "",
            "hours_1_1_end": "", "hours_2_3_start": "10:00", "hours_2_3_end": "11:00"}  # fmt: skip
    whole, days = edited(STORED, form, ZONE)
    after = checked(whole)
    assert after.working_hours == [
        WorkWindow(weekdays=[0, 1], start=time(9), end=time(12)),
        WorkWindow(weekdays=[0], start=time(13), end=time(17)),
        WorkWindow(weekdays=[2], start=time(10), end=time(11)),  # any row of a day counts, in order
    ]
    assert days == [[0, 1], [0], [2]]
    assert window_refusals(after, STORED) == []
    with pytest.raises(FormError) as half:
        edited(STORED, {"part": "hours", "hours_0_start": "09:00", "hours_0_end": "12:00", "hours_0_1_start": "13:00"},
               ZONE)  # fmt: skip
    assert half.value.errors == {"availability_hours_0": "give both the start and the end of each window, or neither"}


def refusals_of(after: Availability, days: list[list[int]], before: Availability = STORED) -> dict[str, str]:
    """What the use case refuses of the form's availability (as `_refuse` raises it), keyed by the form's fields."""
    violations = window_refusals(after, before)
    raised = [{"loc": ("body", *loc), "msg": reason, "type": "value_error"} for loc, reason in violations]
    return errors_of(RequestValidationError(raised), days) if raised else {}


@pytest.mark.parametrize(
    ("rows", "refused"),
    [
        ({"0": ("09:00", "12:00"), "0_1": ("11:00", "13:00")},
         {"availability_hours_0": "Monday 11:00–13:00 overlaps Monday 09:00–12:00"}),
        ({"0": ("09:00", "12:00"), "0_1": ("09:00", "12:00")},
         {"availability_hours_0": "Monday 09:00–12:00 is given twice"}),
        ({"0": ("22:00", "06:00"), "1": ("05:00", "09:00")},  # past midnight into Tuesday
         {"availability_hours_1": "Tuesday 05:00–09:00 overlaps Monday 22:00–06:00"}),
        ({"0": ("00:30", "02:00"), "6": ("23:00", "01:00")},  # Sunday's night into Monday
         {"availability_hours_6": "Sunday 23:00–01:00 overlaps Monday 00:30–02:00"}),
        ({"0": ("09:00", "09:00"), "0_1": ("20:00", "21:00")},  # the same start and end: the whole 24 hours
         {"availability_hours_0": "Monday 20:00–21:00 overlaps Monday 09:00–09:00"}),
        ({"0": ("09:00", "12:00"), "0_1": ("12:00", "13:00"), "0_2": ("13:00", "09:00")}, {}),  # back to back
        ({"0": ("09:00", "09:00"), "1": ("09:00", "09:00")}, {}),
    ],
)  # fmt: skip
def test_overlapping_windows_are_refused_at_their_day_with_both_windows_said(
    rows: dict[str, tuple[str, str]], refused: dict[str, str]
) -> None:
    form = {"part": "hours"} | {
        f"hours_{k}_{e}": v for k, (s, t) in rows.items() for e, v in (("start", s), ("end", t))
    }
    whole, days = edited(STORED, form, ZONE)
    assert refusals_of(checked(whole), days) == refused


def test_hours_saved_before_the_overlap_check_are_not_checked_again_while_unchanged() -> None:
    overlapping = Availability.model_validate(
        {"working_hours": [{"weekdays": [0], "start": "09:00", "end": "12:00"},
                           {"weekdays": [0], "start": "11:00", "end": "13:00"}]}
    )  # fmt: skip
    caps_saved = checked(edited(overlapping, {"part": "caps", "cap_day": "3"}, ZONE)[0])
    assert window_refusals(caps_saved, overlapping) == []
    assert window_refusals(overlapping, Availability()) == [
        (("working_hours", 1, "weekdays", 0), "Monday 11:00–13:00 overlaps Monday 09:00–12:00")
    ]


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
        {"loc": ("body", "working_hours", 0, "start"), "msg": "bad start", "type": "value_error"},
    ])  # fmt: skip
    assert errors_of(refused, [[2, 3]]) == {
        "availability_caps_week": "no lead could be offered",
        "availability_away": "end is not after start",
        "availability_hours_2": "too big",  # the weekday it names
        "availability_hours_3": "bad start",  # the window's: each of its days
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
               *(f"hours_{d}_{n}_{e}" for d in (0, 6) for n in (1, 2) for e in ("start", "end")),
               "cap_day", "cap_week", "cap_month"]  # fmt: skip
FORM_VALUES = st.sampled_from(["", "hours", "holidays", "caps", "on", "0", "-1", "09:00", "11:00", "25:00",
                               "2026-12-24", "2026-02-30", "2026-08-01T09:00", "1e309", "\x00"]
                              ) | st.text(max_size=12)  # fmt: skip


def outcome(form: dict[str, str]) -> Availability | dict[str, str]:
    """What a form comes to through the use case's checks: the availability to save, or the refusals by field."""
    try:
        whole, days = edited(STORED, form, ZONE)
    except FormError as exc:
        return exc.errors
    try:
        after = checked(whole)
    except ValidationError as exc:
        return errors_of(exc, days)
    return refusals_of(after, days) or after


@settings(max_examples=300, deadline=None)
@given(form=st.dictionaries(st.sampled_from(FORM_FIELDS), FORM_VALUES, max_size=6))
def test_any_form_is_saved_or_refused_by_field_never_an_error(form: dict[str, str]) -> None:
    came = outcome(form)
    if isinstance(came, Availability):
        assert came.holidays == sorted(set(came.holidays))
    else:
        assert came
        assert all(key.startswith("availability_") and reason for key, reason in came.items())


# Any set of windows that do not overlap: form -> availability -> form

MINUTES_A_DAY, MINUTES_A_WEEK = 24 * 60, 7 * 24 * 60


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def week_of_windows(draw: st.DrawFn) -> list[list[tuple[str, str]]]:
    """Windows laid one after another round the week from a random moment (gaps of 0: back to back; a length of a
    whole day: the same start and end), so that none overlaps another; each day's (start, end), in drawn order."""
    moment = draw(st.integers(0, MINUTES_A_WEEK - 1))
    used, days = 0, [list[tuple[str, str]]() for _ in WEEKDAYS]
    for gap, length in draw(st.lists(st.tuples(st.integers(0, 900), st.integers(1, MINUTES_A_DAY)), max_size=16)):
        if used + gap + length > MINUTES_A_WEEK:
            break
        start = (moment + used + gap) % MINUTES_A_WEEK
        days[start // MINUTES_A_DAY].append((_clock(start % MINUTES_A_DAY), _clock((start + length) % MINUTES_A_DAY)))
        used += gap + length
    return days


def form_of(days: list[list[tuple[str, str]]]) -> dict[str, str]:
    form = {"part": "hours"}
    for day, windows in enumerate(days):
        for n, (start, end) in enumerate(windows):
            stem = f"hours_{day}" if n == 0 else f"hours_{day}_{n}"
            form |= {f"{stem}_start": start, f"{stem}_end": end}
    return form


def shown(view: AvailabilityView) -> dict[str, str]:
    """The hours form as the page fills it in (the empty rows included), posted back as it is."""
    return {"part": "hours"} | {
        f"{row.stem}_{edge}": value
        for day in range(len(WEEKDAYS))
        for row in view.rows(day, {})
        for edge, value in (("start", row.start), ("end", row.end))
    }


@settings(max_examples=200, deadline=None)
@given(days=week_of_windows())
def test_any_windows_that_do_not_overlap_come_back_in_the_form_as_they_were_saved(
    days: list[list[tuple[str, str]]],
) -> None:
    after = outcome(form_of(days))
    assert isinstance(after, Availability), after
    view = view_of(after, True, ZONE, "/app/me/availability", [])
    assert view.hours == [sorted(windows) for windows in days], "each day's windows, by their start"
    for day, windows in enumerate(days):
        rows = view.rows(day, {})
        assert [(r.start, r.end) for r in rows[: len(windows)]] == sorted(windows)
        assert [(r.start, r.end) for r in rows[len(windows) :]] in ([("", "")], [("", ""), ("", "")])
    again = outcome(shown(view))
    assert isinstance(again, Availability), again
    assert day_hours(again.working_hours) == view.hours, "the form as shown saves the same windows again"


@settings(max_examples=200, deadline=None)
@given(
    day=st.integers(0, 6),
    start=st.integers(0, MINUTES_A_DAY - 1),
    length=st.integers(1, MINUTES_A_DAY),
    into=st.floats(0, 1, exclude_max=True),
    other_length=st.integers(1, MINUTES_A_DAY),
    first=st.booleans(),
)
def test_a_window_starting_inside_another_on_its_day_is_refused_there_with_the_reason(
    day: int, start: int, length: int, into: float, other_length: int, first: bool
) -> None:
    inside = start + int(into * min(length, MINUTES_A_DAY - start))  # on the same day, before the first one ends
    one = (_clock(start), _clock((start + length) % MINUTES_A_DAY))
    other = (_clock(inside), _clock((inside + other_length) % MINUTES_A_DAY))
    windows = [one, other] if first else [other, one]
    came = outcome(form_of([windows if d == day else [] for d in range(7)]))
    said = [f"{WEEKDAYS[day]} {s}–{e}" for s, e in windows]
    reason = f"{said[1]} is given twice" if said[0] == said[1] else f"{said[1]} overlaps {said[0]}"
    assert came == {f"availability_hours_{day}": reason}


def test_working_hours_with_a_utc_offset_are_refused_and_stored_ones_still_show() -> None:
    # Times are the agent's wall clock: an offset is refused at the field (the router would ignore it) ...
    with pytest.raises(ValidationError) as refused:
        Availability.model_validate({"working_hours": [{"weekdays": [1], "start": "09:00+01:00", "end": "12:00"}]})
    assert refused.value.errors()[0]["loc"] == ("working_hours",)
    assert "UTC offset" in refused.value.errors()[0]["msg"]
    # ... and hours stored with one before (mixed with plain times) still show instead of failing the page.
    stored = [WorkWindow(weekdays=[0], start=time(13), end=time(17)),
              WorkWindow.model_validate({"weekdays": [0], "start": "09:00+01:00", "end": "12:00+01:00"})]  # fmt: skip
    assert day_hours(stored)[0] == [("09:00+01:00", "12:00+01:00"), ("13:00", "17:00")]  # as stored, in order
    shown = stored_availability({"working_hours": [w.model_dump(mode="json") for w in stored]})
    assert [w.start for w in shown.working_hours] == [w.start for w in stored]
    view = view_of(shown, True, ZONE, "/app/me/availability", [])
    assert [r.start for r in view.rows(0, {})] == ["09:00+01:00", "13:00", ""]
