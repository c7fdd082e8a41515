"""Epoch-millisecond time, the form every service stores and compares deadlines in (decision 0004).

Pure: domain modules may import it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since 1970 of an aware datetime, in integer arithmetic (a float timestamp
    can lose one: 1972-03-01T00:00:00.005Z would give ...004)."""
    return (moment - EPOCH) // _MS


def epoch_ms_ceil(moment: datetime) -> int:
    """The first whole millisecond at or after `moment`: the form a deadline is stored in, so a
    stored deadline never falls before the stated one (a floored one expired an offer up to a
    millisecond early, refusing a claim made inside its window)."""
    return -((EPOCH - moment) // _MS)


def from_epoch_ms(value: int) -> datetime:
    """The UTC datetime `value` milliseconds after 1970 (exact: the inverse of `epoch_ms`)."""
    return EPOCH + value * _MS


def now_ms() -> int:
    """The current wall-clock time in epoch milliseconds."""
    return epoch_ms(datetime.now(UTC))
