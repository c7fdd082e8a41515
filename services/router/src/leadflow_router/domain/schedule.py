"""Pause schedules (R10): when reassignments wait, in the account's time zone, DST-correct."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadflow_router.domain.model import PauseWindow

MIDNIGHT = time(0)
PAUSE_LIMIT = timedelta(days=60)  # the longest one pause may last: a schedule that never opens is cut there
CLOCK_CUT = timedelta(days=14)  # the most pause time one claim or idle clock skips (R10's two-week cut)


# `isoformat`'s pieces, kept: what it writes for a day (up to the "T") and after the time for a UTC offset, both read
# off its own text, and the two digits of each hour, minute and second.
_DAYS: dict[tuple[int, int, int], str] = {}
_OFFSETS: dict[timedelta | None, str] = {}
_KEPT = 4096  # days or offsets at most (a router runs for months: one day a day, a few offsets per zone)
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))


def isoformat(moment: datetime) -> str:
    """`moment.isoformat()`, in a third of the instructions: its day and its UTC offset written as `isoformat` wrote
    them for an earlier moment of that day and offset, its time from two-digit strings (`datetime.isoformat`
    formats seven numbers through `sprintf`, 9,000 instructions of the 12,000 an offer's deadline took). A day or
    offset not seen yet is written by `isoformat` itself."""
    offset = moment.utcoffset()
    day = _DAYS.get((moment.year, moment.month, moment.day))
    after = _OFFSETS.get(offset)
    if day is None or after is None:
        return _isoformat_kept(moment, offset)
    two, micro = _TWO_DIGITS, moment.microsecond
    if micro:
        return f"{day}{two[moment.hour]}:{two[moment.minute]}:{two[moment.second]}.{micro:06d}{after}"
    return f"{day}{two[moment.hour]}:{two[moment.minute]}:{two[moment.second]}{after}"


def _isoformat_kept(moment: datetime, offset: timedelta | None) -> str:
    """`moment.isoformat()`, its day's and offset's text kept for `isoformat`."""
    text = moment.isoformat()
    clock = 19 if not moment.microsecond else 26  # "YYYY-MM-DDTHH:MM:SS" and ".ffffff"
    if len(_DAYS) < _KEPT:
        _DAYS[(moment.year, moment.month, moment.day)] = text[:11]
    if len(_OFFSETS) < _KEPT:
        _OFFSETS[offset] = text[clock:]
    return text


def pause_end(
    moment: datetime, windows: Iterable[PauseWindow], time_zone: str, limit: timedelta = PAUSE_LIMIT
) -> datetime | None:
    """When the pause covering `moment` closes, or None if no window covers it.

    Back-to-back windows count as one pause. A closure the brokerage configured (three weeks of holidays)
    is waited out; a pause still not closed `limit` after `moment` (a schedule that never opens) is cut
    there, so a misconfiguration cannot stall a lead forever.
    """
    walked = _walk(moment, tuple(windows), time_zone, moment + limit)
    return None if walked is None else walked[0]


def reopening(
    moment: datetime, windows: Iterable[PauseWindow], time_zone: str, within: timedelta = PAUSE_LIMIT
) -> datetime | None:
    """When the pause covering `moment` closes, if it closes within `within`; None when no window covers
    `moment`, and when the pause has not closed by then (a schedule that never opens: nothing to wait for)."""
    walked = _walk(moment, tuple(windows), time_zone, moment + within)
    return None if walked is None or not walked[1] else walked[0]


def _walk(
    moment: datetime, windows: tuple[PauseWindow, ...], time_zone: str | ZoneInfo, until: datetime
) -> tuple[datetime, bool] | None:
    """The end of the pause covering `moment` (in `moment`'s zone) and True, or `until` and False when it
    has not closed by then; None when no window covers `moment`."""
    if not windows:  # most accounts pause nothing
        return None
    zone = time_zone if isinstance(time_zone, ZoneInfo) else ZoneInfo(time_zone)
    current, covered = moment.astimezone(UTC), False
    while (end := _covering_end(current.astimezone(zone), windows, zone)) is not None:
        covered = True  # each end is later than `current`: the walk moves on, a window a day at most
        if end > until:
            return until.astimezone(moment.tzinfo), False
        current = end  # the next window read on the zone's date
    return (current.astimezone(moment.tzinfo), True) if covered else None


def _covering_end(local: datetime, windows: tuple[PauseWindow, ...], zone: ZoneInfo) -> datetime | None:
    ends: list[datetime] = []
    for window in windows:
        # A window that started yesterday may still be open now if it crosses midnight.
        for days_back in (0, 1):
            day = local.date() - timedelta(days=days_back)
            if not _on(window, day):
                continue
            start, end = _span(window, day, zone)
            if start <= local.astimezone(UTC) < end:  # absolute (UTC), not wall-clock
                ends.append(end)
    return max(ends) if ends else None


def _on(window: PauseWindow, day: date) -> bool:
    return (day in window.dates) if window.dates else (day.weekday() in window.weekdays)


def _span(window: PauseWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The window's start and end when it starts on `day`: wall-clock times on their own date."""
    end_day = day + timedelta(days=1) if window.end <= window.start else day
    return wall_time(day, window.start, zone), wall_time(end_day, window.end, zone)


def wall_time(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a clock in `zone` shows `at` on `day`, DST-correct: a time the clock skips (spring
    forward) is the instant it jumps, the first that exists after it; a time it shows twice (fall back), the
    first. In UTC: Python never finds a time shown twice equal to a time in another zone."""
    first = datetime.combine(day, at, zone)  # fold 0: the first of two; in a gap, read with the offset before
    after = first.replace(fold=1)
    offset, offset_after = first.utcoffset(), after.utcoffset()
    if offset is None or offset_after is None or offset >= offset_after:
        return first.astimezone(UTC)  # it exists (once, or twice)
    # Skipped: the jump comes after `after` (read with the later offset) and not after `first`.
    low, high = int(after.timestamp()), int(first.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (
            (low, middle) if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after else (middle, high)
        )
    return datetime.fromtimestamp(high, UTC)


def _next_start(moment: datetime, windows: tuple[PauseWindow, ...], zone: ZoneInfo) -> datetime | None:
    """When (UTC) the first pause starting after `moment` (UTC) starts: in the next eight days, or on an
    office holiday however far; None if none does."""
    today = moment.astimezone(zone).date()
    starts: list[datetime] = []
    for window in windows:
        days = sorted(d for d in window.dates if d >= today)[:2] if window.dates else _week(today, window)
        for day in days:
            start = wall_time(day, window.start, zone)
            if start > moment:
                starts.append(start)
                break
    return min(starts) if starts else None


def _week(today: date, window: PauseWindow) -> list[date]:
    days = (today + timedelta(days=n) for n in range(8))
    return [day for day in days if day.weekday() in window.weekdays]


def open_after(
    start: datetime, span: timedelta, pauses: Iterable[PauseWindow], time_zone: str, skip: timedelta = CLOCK_CUT
) -> datetime:
    """The instant when `span` of open time (outside `pauses`) has passed since `start`: a clock that stops
    while a pause covers it and runs again when it closes (R10's working time; a rule's opening hours). It
    ends at an open moment or at a pause's start, never inside a pause, unless the cut applied: the clock
    skips at most `skip` of pause time (two weeks: a schedule that never opens), then runs through the
    pauses, so it ends by `start + skip + span` whatever the pauses."""
    pauses = tuple(pauses)
    if not pauses:
        return start + span
    zone = ZoneInfo(time_zone)
    at, left, budget = start.astimezone(UTC), span, max(skip, timedelta(0))  # in UTC: not wall-clock arithmetic
    while True:  # ends: every turn passes a pause start, and skips pause time only within the budget
        if (walked := _walk(at, pauses, zone, at + budget)) is not None:
            budget -= walked[0] - at
            at = walked[0]
            if not walked[1]:
                break  # cut: the rest of the span runs through the pauses
        next_pause = _next_start(at, pauses, zone)
        if next_pause is None or at + left <= next_pause:
            break
        left -= next_pause - at
        at = next_pause
    return (at + left).astimezone(start.tzinfo)


def claim_deadline(offered_at: datetime, window: timedelta, pauses: Iterable[PauseWindow], time_zone: str) -> datetime:
    """R10: a claim window runs only while no pause covers it (pauses inside it do not count), and an offer
    that would expire inside a pause gets the full claim window after it closes (decision 0089). The clock
    skips at most two weeks of pauses from the offer on, whether waiting for that pause to close or inside
    the window after it: the deadline is at most `offered_at + CLOCK_CUT + window`, and is inside a pause
    only when that cut applied (it is then exactly that bound)."""
    deadline = offered_at + window
    pauses = tuple(pauses)
    if not pauses:  # as for most offers: no schedule to read
        return deadline
    zone = ZoneInfo(time_zone)
    if window < timedelta(days=1) and not _overlaps(offered_at, deadline, pauses, zone):
        return deadline  # the common case: nothing pauses between the offer and its deadline
    horizon = offered_at + CLOCK_CUT
    walked = _walk(deadline, pauses, zone, horizon) if deadline < horizon else None
    if walked is None:  # the deadline is open (or past the cut): count the window's open time
        return open_after(offered_at, window, pauses, time_zone)
    closes = walked[0]  # the whole window again after the pause, within what is left of the cut
    return open_after(closes, window, pauses, time_zone, skip=horizon - closes)


def _overlaps(start: datetime, end: datetime, windows: tuple[PauseWindow, ...], zone: ZoneInfo) -> bool:
    """Whether a pause covers any moment from `start` to `end`, or starts at `end` (R10: a deadline at a
    pause's start is in it). Reads only the windows starting on the days around them."""
    first, last = start.astimezone(zone).date() - timedelta(days=1), end.astimezone(zone).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    for window in windows:
        for day in days:
            if _on(window, day):
                begins, stops = _span(window, day, zone)
                if begins <= end and stops > start:
                    return True
    return False


def closed_windows(
    hours: tuple[time, time] | None, weekdays: frozenset[int], holidays: frozenset[date] = frozenset()
) -> tuple[PauseWindow, ...]:
    """The week outside opening `hours` (start, end; end <= start crosses midnight) on `weekdays` (none:
    every day), as pause windows, and the `holidays` all day. A day not open is closed all day; a window
    past midnight is closed from its end to its start the same day."""
    days = weekdays or frozenset(range(7))
    closed = [PauseWindow(frozenset({d}), MIDNIGHT, MIDNIGHT) for d in range(7) if d not in days]
    closed += [PauseWindow(frozenset(), MIDNIGHT, MIDNIGHT, holidays)] if holidays else []
    if hours is None:
        return tuple(closed)
    start, end = hours
    if start < end:
        closed += [PauseWindow(days, MIDNIGHT, start)] if start != MIDNIGHT else []
        closed += [PauseWindow(days, end, MIDNIGHT)]
    elif end < start:
        closed += [PauseWindow(days, end, start)]
    return tuple(closed)
