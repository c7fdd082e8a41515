"""Pause schedules (R10): when reassignments wait, in the account's time zone, DST-correct."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadflow_router.domain.model import PauseWindow

MIDNIGHT = time(0)
_MAX_SPANS = 1000  # open spans one clock may walk: years of a daily schedule


def pause_end(moment: datetime, windows: Iterable[PauseWindow], time_zone: str) -> datetime | None:
    """When the pause covering `moment` closes, or None if no window covers it.

    Back-to-back windows count as one pause; a schedule that never closes is cut at
    two weeks, so a misconfiguration cannot stall a lead forever.
    """
    windows = tuple(windows)
    if not windows:  # most accounts pause nothing: every offer's deadline asks
        return None
    zone = ZoneInfo(time_zone)
    closes: datetime | None = None
    current = moment.astimezone(zone)
    for _ in range(14 * max(1, len(windows))):
        end = _covering_end(current, windows, zone)
        if end is None:
            break
        closes, current = end, end.astimezone(zone)  # the next window read on the zone's date
    return None if closes is None else closes.astimezone(moment.tzinfo)


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


def open_after(start: datetime, span: timedelta, pauses: Iterable[PauseWindow], time_zone: str) -> datetime:
    """The instant when `span` of open time (outside `pauses`) has passed since `start`: a clock that stops
    while a pause covers it and runs again when it closes (R10's working time; a rule's opening hours). It
    ends at an open moment or at a pause's start, never inside a pause."""
    pauses = tuple(pauses)
    if not pauses:
        return start + span
    zone = ZoneInfo(time_zone)
    at, left = start.astimezone(UTC), span  # in UTC: a zone's wall-clock arithmetic would skip DST changes
    for _ in range(_MAX_SPANS):  # a schedule closed for good is cut (as `pause_end` cuts it)
        closes = pause_end(at, pauses, time_zone)
        at = at if closes is None else closes.astimezone(UTC)
        next_pause = _next_start(at, pauses, zone)
        if next_pause is None or at + left <= next_pause:
            break
        left -= next_pause - at
        at = next_pause
    return (at + left).astimezone(start.tzinfo)


def claim_deadline(offered_at: datetime, window: timedelta, pauses: Iterable[PauseWindow], time_zone: str) -> datetime:
    """R10: a claim window runs only while no pause covers it (pauses inside it do not count), and an offer
    that would expire inside a pause gets the full claim window after it closes (decision 0089)."""
    deadline = offered_at + window
    if not pauses:  # as for most offers: no call to `pause_end`
        return deadline
    closes = pause_end(deadline, pauses, time_zone)
    return open_after(offered_at if closes is None else closes, window, pauses, time_zone)


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
