"""Who is calling: the claims of a verified bearer token, and what they may see."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
