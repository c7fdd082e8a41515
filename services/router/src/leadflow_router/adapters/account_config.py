"""Loading account configuration (accounts, agents and staff): the seed of a new installation.

The file format is `ConfigFile`; the stored schema is in docs/account-config.md.
Loading replaces each account and agent document, so it can be rerun.
"""

from __future__ import annotations

from datetime import date, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_shared.account_config import known_zone
from leadflow_shared.availability import FIELDS as AVAILABILITY
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.collections import ACCOUNTS, AGENTS, STAFF
from leadflow_shared.events.commands import DepartedLeads
from leadflow_shared.routing_rules import RuleSet

Id = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentConfig(AgentAvailability):
    """An agent; with its availability (pause, time away, working hours, holidays, lead caps: issue 15)."""

    agent_id: str = Id
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    phone: str | None = None
    time_zone: str = "UTC"
    active: bool = True
    status: Literal["active", "onboarding", "inactive"] = Field(
        default="active", description="Team status; crm-api sets onboarding on an office transfer (T2)."
    )
    invitation_accepted: bool = True
    round_robin: bool = Field(default=True, description="Approved by the broker for round robin (R6).")
    offices: list[str] = Field(default_factory=list, max_length=100)
    lead_groups: list[str] = Field(default_factory=list, max_length=100)
    site_hosts: list[str] = Field(default_factory=list, max_length=20, description="Own sites/subdomains (R2).")


class StaffConfig(_Strict):
    """An admin or staff member who is not an agent (crm-api's `staff`; the notifier reaches them)."""

    user_id: str = Id
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    phone: str | None = None
    time_zone: str = "UTC"
    role: Literal["admin", "staff"] = "staff"


class SourceConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["general", "direct"] = "general"
    lead_group: str | None = None
    offices: list[str] = Field(default_factory=list, max_length=100)
    race_count: int = Field(default=1, ge=1, le=50)
    claim_window_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600)
    referral_fee_percent: float = Field(default=0.0, ge=0, le=100)
    auto_accept: bool = True
    direct_period_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600)


class DefaultSourceConfig(SourceConfig):
    name: str = "default"


class PauseWindowConfig(_Strict):
    weekdays: list[int] = Field(min_length=1, max_length=7, description="0 = Monday.")
    start: time
    end: time

    @field_validator("weekdays")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(day not in range(7) for day in value):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")
        return value


class AccountConfig(_Strict):
    account_id: str = Id
    name: str = Field(min_length=1, max_length=200)
    organisation_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="Offices of one organisation can move leads (T2)."
    )
    time_zone: str = "UTC"
    default_region: str = Field(default="US", min_length=2, max_length=2)
    round_robin: bool = False
    agents: list[AgentConfig] = Field(max_length=10_000)
    roster: list[str] = Field(description="Agent ids, position 1 first.")
    sources: list[SourceConfig] = Field(default_factory=list, max_length=500)
    default_source: DefaultSourceConfig = DefaultSourceConfig()
    pause: list[PauseWindowConfig] = Field(default_factory=list, max_length=50)
    departed_agent_leads: DepartedLeads = DepartedLeads.UNASSIGNED
    allow_direct_to_user: bool = Field(default=True, description="Off: agent-site and listing leads are general.")
    digest_hour: int | None = Field(default=None, ge=0, le=23, description="Local; None: the notifier's default.")
    offer_contact_details: Literal["shown", "hidden_for_races", "hidden"] = "hidden_for_races"
    staff: list[StaffConfig] = Field(default_factory=list, max_length=1000)
    holidays: list[date] = Field(default_factory=list, max_length=400, description="The office's days off.")
    routing_rules: RuleSet | None = Field(
        default=None, description="Routing rules (docs/routing-rules.md); none: each source's settings decide."
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if known_zone(value) is None:
            raise ValueError(f"unknown time zone {value!r}")
        return value

    @model_validator(mode="after")
    def _roster_known(self) -> AccountConfig:
        known = {a.agent_id for a in self.agents}
        if unknown := [a for a in self.roster if a not in known]:
            raise ValueError(f"roster names unknown agents {unknown}")
        if not self.roster:
            raise ValueError("the roster needs at least position 1")
        if self.routing_rules is not None and (refused := self.routing_rules.refusals(set(self.roster))):
            raise ValueError("; ".join(refused))
        takers = [a for a in self.agents if a.agent_id in self.roster and a.active and a.round_robin]
        if takers and all(a.caps is not None and 0 in (a.caps.day, a.caps.week, a.caps.month) for a in takers):
            raise ValueError("every agent who takes round-robin leads has a cap of 0: no lead could be offered")
        return self


class ConfigFile(_Strict):
    accounts: list[AccountConfig]


async def load_account_config(db: AsyncDatabase[dict[str, Any]], raw: object) -> int:
    """Validate `raw` (see ConfigFile) and store it; returns the number of accounts."""
    config = ConfigFile.model_validate(raw)
    for account in config.accounts:
        # The replacement repeats _id: nx-27017 does not take it from the filter on upsert.
        for agent in account.agents:
            doc = {
                "_id": agent.agent_id,
                "account_id": account.account_id,
                **agent.model_dump(mode="json", exclude={"agent_id", *AVAILABILITY}),
                # Only what differs from "always available": agents without any keep the shape they had.
                **AgentAvailability.model_validate(agent.model_dump(include=set(AVAILABILITY))).model_dump(
                    mode="json", exclude_defaults=True
                ),
            }
            await db[AGENTS].replace_one({"_id": agent.agent_id}, doc, upsert=True)
        for member in account.staff:
            doc = {
                "_id": member.user_id,
                "account_id": account.account_id,
                **member.model_dump(mode="json", exclude={"user_id"}),
            }
            await db[STAFF].replace_one({"_id": member.user_id}, doc, upsert=True)
        unset = {name for name in ("digest_hour", "routing_rules") if getattr(account, name) is None}
        unset |= set() if account.holidays else {"holidays"}
        exclude = {"account_id", "agents", "staff"} | unset
        doc = {"_id": account.account_id, **account.model_dump(mode="json", exclude=exclude)}
        await db[ACCOUNTS].replace_one({"_id": account.account_id}, doc, upsert=True)
    return len(config.accounts)
