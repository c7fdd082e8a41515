"""Pause schedules (R10): when reassignments wait, in the account's time zone, DST-correct."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from leadflow_router.domain.model import PauseWindow

MIDNIGHT = time(0)


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
        closes = current = end
    return None if closes is None else closes.astimezone(moment.tzinfo)


def _covering_end(local: datetime, windows: tuple[PauseWindow, ...], zone: ZoneInfo) -> datetime | None:
    ends: list[datetime] = []
    for window in windows:
        # A window that started yesterday may still be open now if it crosses midnight.
        for days_back in (0, 1):
            day = local.date() - timedelta(days=days_back)
            if (day not in window.dates) if window.dates else (day.weekday() not in window.weekdays):
                continue
            # Wall-clock times resolved by zoneinfo on their own date: DST shifts are respected.
            start = datetime.combine(day, window.start, zone)
            end_day = day + timedelta(days=1) if window.end <= window.start else day
            end = datetime.combine(end_day, window.end, zone)
            if start.astimezone(UTC) <= local.astimezone(UTC) < end.astimezone(UTC):  # absolute, not wall-clock
                ends.append(end)
    return max(ends) if ends else None


def claim_deadline(offered_at: datetime, window: timedelta, pauses: Iterable[PauseWindow], time_zone: str) -> datetime:
    """R10: an offer that would expire inside a pause gets the full claim window after it closes."""
    deadline = offered_at + window
    if not pauses:  # as for most offers: no call to `pause_end`
        return deadline
    closes = pause_end(deadline, pauses, time_zone)
    return deadline if closes is None else closes + window


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
