"""Helper 191's review (session 39, wall-clock times and time zones): properties of the pure functions that compute
with an office's or agent's wall clock, over zones the existing properties do not draw (Lord Howe's 30-minute change,
Chatham's 02:45 change, Santiago, Havana, Cairo and Beirut changing at midnight, Kiritimati at UTC+14, Etc/GMT+12,
Dublin's negative DST, Casablanca), around each of their changes of clock in 2026-2027; and the lead page's `tz`
field, which the Work form loads with `ZoneInfo`.

`test_the_work_form_s_zone_is_read_or_refused_never_raises_past_the_route` failed before `known_zone` (a
RecursionError, a 500); the properties pin what was checked sound.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow_crm_api.web.leads import _local_time
from leadflow_notifier.domain.digest import due_window, due_windows
from leadflow_router.domain.availability import period_start, usage_of
from leadflow_router.domain.model import PauseWindow
from leadflow_router.domain.schedule import CLOCK_CUT, claim_deadline, open_after, pause_end, wall_time
from leadflow_shared.clock import epoch_ms

ZONES = (
    "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "America/Havana", "Africa/Cairo", "Asia/Beirut",
    "America/Asuncion", "Pacific/Kiritimati", "Pacific/Apia", "Etc/GMT+12", "Europe/Dublin", "Africa/Casablanca",
    "America/St_Johns", "Antarctica/Troll", "Asia/Kolkata", "America/New_York", "Europe/London",
)  # fmt: skip


def _changes(zone: str) -> list[datetime]:
    """The instants (to the half hour) its offset changes in 2026 and 2027."""
    tz, found = ZoneInfo(zone), []
    at = datetime(2026, 1, 1, tzinfo=UTC)
    before = at.astimezone(tz).utcoffset()
    while at.year < 2028:
        at += timedelta(minutes=30)
        if (offset := at.astimezone(tz).utcoffset()) != before:
            found.append(at)
            before = offset
    return found or [datetime(2026, 6, 1, tzinfo=UTC)]


CHANGES = {zone: _changes(zone) for zone in ZONES}
MINUTE = st.integers(0, 24 * 60 - 1).map(lambda m: time(m // 60, m % 60))
WINDOWS = st.lists(st.builds(PauseWindow, st.frozensets(st.integers(0, 6), min_size=1), MINUTE, MINUTE), min_size=1,
                   max_size=3).map(tuple)  # fmt: skip


def relaxed(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@st.composite
def near_a_change(draw: st.DrawFn, zone: str, days: int = 3) -> datetime:
    return draw(st.sampled_from(CHANGES[zone])) + timedelta(minutes=draw(st.integers(-days * 1440, days * 1440)))


@relaxed(400)
@given(data=st.data(), zone=st.sampled_from(ZONES), at=MINUTE, shift=st.integers(-1, 1))
def test_a_wall_clock_time_is_itself_or_the_instant_the_clock_jumps_over_it(
    data: st.DataObject, zone: str, at: time, shift: int
) -> None:
    tz = ZoneInfo(zone)
    day = data.draw(near_a_change(zone, 0)).astimezone(tz).date() + timedelta(days=shift)
    moment = wall_time(day, at, tz)
    shown = moment.astimezone(tz).replace(tzinfo=None)
    wanted = datetime.combine(day, at)
    if datetime.combine(day, at, tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wanted:  # it exists
        assert shown == wanted, (zone, day, at, moment)
    else:  # skipped: the first instant after the jump
        assert shown > wanted > (moment - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None), (zone, moment)


@relaxed(300)
@given(data=st.data(), zone=st.sampled_from(ZONES), windows=WINDOWS, seconds=st.integers(10, 7 * 24 * 3600))
def test_no_claim_clock_ends_inside_or_at_the_start_of_a_pause_in_any_zone(
    data: st.DataObject, zone: str, windows: tuple[PauseWindow, ...], seconds: int
) -> None:
    offered = data.draw(near_a_change(zone))
    span = timedelta(seconds=seconds)
    bound = offered + CLOCK_CUT + span
    deadline = claim_deadline(offered, span, windows, zone)
    assert offered + span <= deadline <= bound
    if deadline != bound:
        assert pause_end(deadline - timedelta(microseconds=1), windows, zone) is None, deadline
        assert pause_end(deadline, windows, zone) is None, deadline
    assert offered + span <= open_after(offered, span, windows, zone) <= bound


@relaxed(300)
@given(data=st.data(), zone=st.sampled_from(ZONES), windows=WINDOWS)
def test_a_pause_covers_every_moment_up_to_its_end_and_not_its_end(
    data: st.DataObject, zone: str, windows: tuple[PauseWindow, ...]
) -> None:
    moment = data.draw(near_a_change(zone))
    end = pause_end(moment, windows, zone)
    if end is None:
        return
    assert end > moment
    if end < moment + timedelta(days=60):
        assert pause_end(end, windows, zone) is None, (moment, end)
    for k in range(7):
        assert pause_end(moment + (end - moment) * k / 7, windows, zone) is not None


@relaxed(400)
@given(data=st.data(), zone=st.sampled_from(ZONES), back=st.integers(0, 40 * 1440))
def test_every_lead_a_cap_counts_was_offered_after_the_period_start_the_log_is_read_from(
    data: st.DataObject, zone: str, back: int
) -> None:
    now = data.draw(near_a_change(zone, 40))
    offered = now - timedelta(minutes=back)
    usage = usage_of([offered], now, zone)
    if usage.day or usage.week or usage.month:
        assert offered >= period_start(now, zone), (zone, now, offered)


@relaxed(400)
@given(data=st.data(), zone=st.sampled_from(ZONES), hour=st.integers(0, 23))
def test_the_digests_due_are_past_contiguous_and_a_day_each(data: st.DataObject, zone: str, hour: int) -> None:
    now = data.draw(near_a_change(zone, 40))
    windows = due_windows(now, hour=hour, time_zone=zone)
    for window in windows:
        assert window.start_ms < window.end_ms <= epoch_ms(now), (zone, hour, window)
    for one, two in pairwise(windows):
        assert (one.end_ms, one.day + timedelta(days=1)) == (two.start_ms, two.day)
    later = due_window(now + timedelta(minutes=1), hour=hour, time_zone=zone).day
    assert later in {windows[-1].day, windows[-1].day + timedelta(days=1)}


def test_the_work_form_s_zone_is_read_or_refused_never_raises_past_the_route() -> None:
    """An unknown zone is read as UTC. A deep key ("a/a/.../b") made `ZoneInfo` recurse through its `tzdata` import:
    a RecursionError, which nothing caught (a 500)."""
    for zone in ("No/Such_Zone", "a/" * 600 + "b", "a/" * 30 + "b", "../x", "America", "\x00"):
        assert _local_time("2026-03-08T09:00", zone) == "2026-03-08T09:00:00+00:00", zone
    assert _local_time("2026-03-08T09:00", "Asia/Kolkata") == "2026-03-08T09:00:00+05:30"


def test_leap_day_and_year_edges_in_the_far_zones() -> None:
    """A pause on 29 February and one at the year's end at UTC+14 and UTC-12 close when their days end there."""
    leap = PauseWindow(frozenset(), time(0), time(0), frozenset({date(2028, 2, 29)}))
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        tz = ZoneInfo(zone)
        inside = datetime(2028, 2, 29, 12, tzinfo=tz)
        assert pause_end(inside, (leap,), zone) == datetime(2028, 3, 1, tzinfo=tz)
