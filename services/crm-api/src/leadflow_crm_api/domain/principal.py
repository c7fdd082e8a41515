"""Who is calling: the claims of a verified bearer token, and what they may see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from leadflow_crm_api.domain.offices import TeamStatus


class Role(StrEnum):
    BROKER = "broker"
    ADMIN = "admin"
    REALTOR = "realtor"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. `sub` is the user id, which is also the agent id in routing events."""

    sub: str
    role: Role
    account_id: str
    organisation_id: str | None = None

    @property
    def sees_whole_account(self) -> bool:
        """Brokers and admins see every lead of their account; realtors only their own (S1)."""
        return self.role in {Role.BROKER, Role.ADMIN}


_STATUSES = frozenset(s.value for s in TeamStatus)


@dataclass(frozen=True, slots=True)
class Membership:
    """What a caller's agent record (`agents`, `_id` = the user id) says of it now: its office and team status."""

    account_id: str
    status: TeamStatus

    @classmethod
    def of(cls, agent: Mapping[str, Any]) -> Membership:
        """From the stored record; one without `status` (written before it existed) is read by its `active`
        (which nx-27017 may store as 1/0, decision 0018)."""
        stored = agent.get("status")
        if isinstance(stored, str) and stored in _STATUSES:
            status = TeamStatus(stored)
        else:
            status = TeamStatus.ACTIVE if bool(agent.get("active", True)) else TeamStatus.INACTIVE
        return cls(str(agent.get("account_id", "")), status)


def admitted(caller: Principal, membership: Membership | None) -> bool:
    """S1 (decision 0079): a token holds while its user is who it says. A user with no agent record (an admin
    or staff member, a broker who is no agent) is the token's alone; an agent must be of the token's office
    and not inactive. Onboarding is admitted: it is how a member arrives from another office (T2), holding
    nothing there yet, and it signs in to set itself up before its broker activates it."""
    if membership is None:
        return True
    return membership.account_id == caller.account_id and membership.status is not TeamStatus.INACTIVE
