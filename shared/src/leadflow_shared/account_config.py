"""Reading the parts of a stored `accounts` document that more than one service parses.

The router routes with them and crm-api shows them (docs/account-config.md has the shape and
the defaults written here). What only one service reads, or reads with its own fallback (intake's
`default_region`, the notifier's `digest_hour` and `offer_contact_details`), stays in that service.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any

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
