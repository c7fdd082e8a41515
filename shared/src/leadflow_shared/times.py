"""Times people type that leadflow keeps, as pydantic field types: each refusal names the field and says why.

- `WallClock`: a time of day read in the time zone it belongs to (an account's, an agent's): one written with a UTC
  offset ("09:00:00-05:00") would be compared with the lead's local time of day, which has none, and the comparison
  fails (a rule's hours saved so stopped the router routing its account's leads: helper 167).
- `KeptInstant`: an aware date-time between the years 1970 and 2999 in UTC. One at the calendar's edge with an offset
  (9999-12-31T23:00-14:00) has no UTC value, and shown in another time zone may have none either (time away saved so
  stopped the router for its office when it said "away until ..."; a task due so failed its timeline: helper 130).

Pure: domain modules may import it.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

KEPT_FROM = datetime(1970, 1, 1, tzinfo=UTC)
KEPT_BEFORE = datetime(3000, 1, 1, tzinfo=UTC)
KEPT_RANGE = "between the years 1970 and 2999 (UTC)"


def wall_clock(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("a time of day without a UTC offset: it is read in the time zone it belongs to")
    return value


def kept_instant(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time has no UTC value (out of range)") from exc
    if not KEPT_FROM <= utc < KEPT_BEFORE:
        raise ValueError(f"a time {KEPT_RANGE}")
    return value


WallClock = Annotated[time, AfterValidator(wall_clock)]
KeptInstant = Annotated[AwareDatetime, AfterValidator(kept_instant)]
