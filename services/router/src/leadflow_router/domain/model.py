"""Routing decisions as pure functions over an account snapshot (DESIGN section 3).

Only rule R5 (round robin off: roster position 1) is here yet; the snapshot and the
decision carry what the other rules will need without changing shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from leadflow_shared.events.intake import LeadReceivedPayload
from leadflow_shared.events.routing import AssignmentReason


class RoutingError(Exception):
    """The lead cannot be routed with this account's configuration."""


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What the router knows of a brokerage account when it decides."""

    account_id: str
    name: str
    roster: tuple[str, ...]  # agent ids, position 1 first
    round_robin: bool = False
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Assignment:
    agent_id: str
    reason: AssignmentReason
    explanation: str
    referral_fee_percent: float = 0.0


def decide(lead: LeadReceivedPayload, account: AccountSnapshot, now: datetime) -> Assignment:
    """Choose who gets `lead` (R5: with round robin off, roster position 1)."""
    del lead, now  # used by the rules still to come (R1-R4, R6-R10)
    if not account.roster:
        raise RoutingError(f"account {account.account_id} has an empty roster")
    agent = account.roster[0]
    return Assignment(
        agent_id=agent,
        reason=AssignmentReason.ROSTER_POSITION_1,
        explanation="Round robin is off: new leads go to the agent in roster position 1.",
    )
