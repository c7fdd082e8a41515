"""Per-recipient preferences: which channels, and quiet hours for the interrupting ones."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from typing import Any
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


def holds_for(owner: object, account_id: object) -> bool:
    """Decision 0076: a preferences record (its `account_id`, `owner`) counts for a user only when written for the
    account the user belongs to (`account_id`: its agent record's, else its staff record's). User ids are global:
    one another office wrote (for an id that was nobody's then) gives it no hold on that office's agent. A record
    with no account (written before crm-api recorded it) counts."""
    return owner is None or owner == account_id


def hears_account(agent: Mapping[str, Any] | None, account_id: str) -> bool:
    """N1 (decision 0079): an account's digest, new-lead notices and team updates reach a subscriber who is an
    agent (`agent`: its record) only while it is active (as the router reads it) and of that account; one made
    inactive (T3) or moved to another office (T2) hears no more of it, whatever its preferences still say. A
    subscriber with no agent record (an admin or staff member) is as its preferences say."""
    if agent is None:
        return True
    # `active` may be stored as 1/0: nx-27017 stores a `$set` boolean so (decision 0018).
    return bool(agent.get("active", True)) and agent.get("account_id") == account_id
