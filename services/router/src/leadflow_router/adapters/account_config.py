"""Loading account configuration (accounts and agents) until crm-api's settings endpoints exist.

Schema: docs/account-config.md. Loading is an upsert per document, so it can be rerun.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_router.adapters.repository import ACCOUNTS, AGENTS


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    phone: str | None = None
    time_zone: str = "UTC"
    active: bool = True


class AccountConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    time_zone: str = "UTC"
    default_region: str = Field(default="US", min_length=2, max_length=2)
    round_robin: bool = False
    agents: list[AgentConfig] = Field(max_length=10_000)
    roster: list[str] = Field(description="Agent ids, position 1 first.")


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: list[AccountConfig]


async def load_account_config(db: AsyncDatabase[dict[str, Any]], raw: object) -> int:
    """Validate `raw` (see ConfigFile) and upsert it; returns the number of accounts."""
    config = ConfigFile.model_validate(raw)
    for account in config.accounts:
        known = {a.agent_id for a in account.agents}
        unknown = [a for a in account.roster if a not in known]
        if unknown:
            raise ValueError(f"account {account.account_id}: roster names unknown agents {unknown}")
        # The replacement repeats _id: nx-27017 does not take it from the filter on upsert.
        for agent in account.agents:
            doc = {"_id": agent.agent_id, "account_id": account.account_id,
                   **agent.model_dump(mode="json", exclude={"agent_id"})}
            await db[AGENTS].replace_one({"_id": agent.agent_id}, doc, upsert=True)
        doc = {"_id": account.account_id, **account.model_dump(mode="json", exclude={"account_id", "agents"})}
        await db[ACCOUNTS].replace_one({"_id": account.account_id}, doc, upsert=True)
    return len(config.accounts)
