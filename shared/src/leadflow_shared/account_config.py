"""Reading the parts of a stored `accounts` document that more than one service parses.

The router routes with them and crm-api shows them; the notifier applies the notice fields and
crm-api shows them (docs/account-config.md has the shape and the defaults written here). Read
here once, with one fallback each for a value that is missing or malformed, so what crm-api shows
is what the other services do. What only one service reads (intake's `default_region`) stays in
that service. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow_shared.events.commands import DepartedLeads


@dataclass(frozen=True, slots=True)
class RoutingFields:
    """How the account routes (R5, R6) and what happens to a departing agent's leads."""

    roster: list[str]  # agent ids, position 1 first
    round_robin: bool
    departed_agent_leads: DepartedLeads
    allow_direct_to_user: bool

    @classmethod
    def of(cls, account: Mapping[str, Any]) -> RoutingFields:
        return cls(
            roster=list(account.get("roster", [])),
            round_robin=bool(account.get("round_robin", False)),
            departed_agent_leads=DepartedLeads(account.get("departed_agent_leads", DepartedLeads.UNASSIGNED.value)),
            allow_direct_to_user=bool(account.get("allow_direct_to_user", True)),
        )


@dataclass(frozen=True, slots=True)
class StoredPause:
    """One pause window (R10), in the account's time zone; `end <= start` crosses midnight."""

    weekdays: list[int]  # 0 = Monday
    start: time
    end: time


def pause_windows(account: Mapping[str, Any]) -> list[StoredPause]:
    """Stored times may carry seconds ("20:00:00" from the seed) or not ("20:00" from crm-api)."""
    return [
        StoredPause(list(w["weekdays"]), time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
        for w in account.get("pause", [])
    ]


class ContactDetails(StrEnum):
    """Whether an offer's notice shows the lead's contact before someone claims it."""

    SHOWN = "shown"
    HIDDEN_FOR_RACES = "hidden_for_races"  # the default: a race's offers hide it until someone claims
    HIDDEN = "hidden"


@dataclass(frozen=True, slots=True)
class NoticeFields:
    """How the account's notices go out: the notifier applies them, crm-api shows them.

    A stored value that is missing or malformed (written by hand, or by an older version) falls
    back: the contact to the cautious default, the digest hour to the deployment's, the time zone
    to UTC. Never an error: one bad field must not stop an account's notices or its settings page.
    """

    contact_details: ContactDetails
    digest_hour: int | None  # local hour 0-23; None: the deployment's default hour
    time_zone: str  # an IANA zone that exists here

    @classmethod
    def of(cls, account: Mapping[str, Any]) -> NoticeFields:
        details = account.get("offer_contact_details")
        hour = account.get("digest_hour")
        return cls(
            contact_details=ContactDetails(details) if details in _CONTACT_NAMES else ContactDetails.HIDDEN_FOR_RACES,
            digest_hour=int(hour) if _is_hour(hour) else None,
            time_zone=time_zone_of(account),
        )


def _is_hour(value: object) -> TypeGuard[int]:
    # An int (PyMongo's Int64 from a 64-bit BSON integer too), not a bool, not 8.5 or "8".
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 23


_CONTACT_NAMES = tuple(ContactDetails)  # a tuple: `in` compares, so an unhashable stored value is just not in it


def time_zone_of(doc: Mapping[str, Any]) -> str:
    """The IANA time zone of a stored account, agent or staff member; UTC when it is missing or
    not a zone this machine knows.

    The router's account snapshots, the notifier's recipients and crm-api's settings and team pages
    read stored zones through this: a zone that fails to load would otherwise stop the router's claim
    clock for each of an account's leads (R8, R10), a recipient's notices, and the pages."""
    name = doc.get("time_zone")
    return name if isinstance(name, str) and known_zone(name) is not None else "UTC"


ZONE_NAME_MAX = 64  # the longest IANA key is 32 characters; crm-api's `TimeZone` takes 64


def known_zone(name: str) -> ZoneInfo | None:
    """The zone of that IANA name, or None when it is not one this machine knows. Never raises: a name is often typed
    or posted (a web form's hidden field), and zoneinfo, without the tzdata package, imports `tzdata.zoneinfo.a.a...`
    for a name of many parts, which hundreds of them take past the recursion limit (helper 191's review)."""
    if not name or len(name) > ZONE_NAME_MAX:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, RecursionError):  # not a key ("../x", NUL), a folder
        return None
