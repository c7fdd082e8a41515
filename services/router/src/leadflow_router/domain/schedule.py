"""Pause schedules (R10): when reassignments wait, in the account's time zone, DST-correct."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow_router.domain.model import PauseWindow


def pause_end(moment: datetime, windows: Iterable[PauseWindow], time_zone: str) -> datetime | None:
    """When the pause covering `moment` closes, or None if no window covers it.

    Back-to-back windows count as one pause; a schedule that never closes is cut at
    two weeks, so a misconfiguration cannot stall a lead forever.
    """
    windows = tuple(windows)
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
            if day.weekday() not in window.weekdays:
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
    pauses = tuple(pauses)
    deadline = offered_at + window
    closes = pause_end(deadline, pauses, time_zone)
    return deadline if closes is None else closes + window
