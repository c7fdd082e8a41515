"""Per-recipient preferences: which channels, and quiet hours for the interrupting ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in the recipient's zone; `end <= start` crosses midnight."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


@dataclass(frozen=True, slots=True)
class Preferences:
    channels: frozenset[Channel] = frozenset(Channel)
    quiet_hours: QuietHours | None = None
    digest: bool = False  # daily digest of new leads (admins and staff)


DEFAULT_PREFERENCES = Preferences()

# Email waits in the inbox; SMS and push wake people up, so only they respect quiet hours.
INTERRUPTING = frozenset({Channel.SMS, Channel.PUSH})


def allowed_channels(prefs: Preferences, *, time_zone: str, now: datetime) -> frozenset[Channel]:
    """The channels a recipient may be reached on at `now` (an aware datetime)."""
    if prefs.quiet_hours is not None and prefs.quiet_hours.contains(now.astimezone(ZoneInfo(time_zone)).time()):
        return prefs.channels - INTERRUPTING
    return prefs.channels
