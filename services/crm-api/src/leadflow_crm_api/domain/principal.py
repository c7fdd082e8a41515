"""Who is calling: the claims of a verified bearer token, and what they may see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    # The token's `exp` (epoch seconds): how long a sign-out of it is kept. Not who the caller is: not compared.
    expires_at: float | None = field(default=None, compare=False)
    # The token by what it says (a hash of its verified claims), not by its spelling: a sign-out holds for every
    # spelling of one token (a padded signature, a second ECDSA signature of the same claims). Not compared.
    session: str | None = field(default=None, compare=False)

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


@dataclass(frozen=True, slots=True)
class StaffWord:
    """What the token's office says of a user with no agent record: its staff record's role there ("admin",
    "staff"), or None; and whether the office removed such a record (`crm_removed_staff`)."""

    role: str | None = None
    removed: bool = False


def admitted(caller: Principal, membership: Membership | None, staff: StaffWord | None = None) -> bool:
    """S1 (decisions 0079, 0105): a token holds while its user is who it says. An agent must be of the token's
    office and not inactive; onboarding is admitted: it is how a member arrives from another office (T2),
    holding nothing there yet, and it signs in to set itself up before its broker activates it. A user with no
    agent record is the token's, except that an admin's token holds only while the office has not said
    otherwise: its staff record there, if any, must say admin (a demoted admin is staff), and without one the
    office must not have removed it. An office's silence (an admin only the identity provider knows) leaves the
    token alone, as does a record in another office (ids are global: no office can lock out another's)."""
    if membership is not None:
        return membership.account_id == caller.account_id and membership.status is not TeamStatus.INACTIVE
    if caller.role is not Role.ADMIN or staff is None:
        return True
    if staff.role is not None:
        return staff.role == Role.ADMIN.value
    return not staff.removed
