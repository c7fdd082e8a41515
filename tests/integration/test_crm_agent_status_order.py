"""crm-api saves an agent's status before it tells the router (helper 188's review, session 38: told first, a router
snapshot read before the save gave the agent who left new leads): the command goes after the save, and when Kafka
refuses it the status goes back as it was (503, the client retries), so no agent stays inactive with its leads never
released. On crm-api's use case and nx-27017."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.settings import AgentStatus
from leadflow_crm_api.errors import Unavailable
from leadflow_crm_api.use_cases.settings import put_agent_status
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.commands import ReleaseAgentLeads

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
BOSS = Principal("boss", Role.BROKER, "north")


class NoCallers:
    async def recheck(self, agent_id: str, account_id: str | None = None) -> None:
        del agent_id, account_id


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_status_{uuid.uuid4().hex[:12]}"]
    await database[ACCOUNTS].insert_one({"_id": "north", "name": "North", "roster": ["boss", "ana"]})
    await database[AGENTS].insert_many([
        {"_id": a, "account_id": "north", "name": a.title(), "email": f"{a}@north.example", "status": "active",
         "active": True}
        for a in ("boss", "ana")
    ])  # fmt: skip
    yield database
    await client.drop_database(database.name)
    await client.close()


async def _status(db: Db) -> tuple[str, bool]:
    doc = await db[AGENTS].find_one({"_id": "ana"})
    assert doc is not None
    return doc["status"], bool(doc["active"])


async def test_the_status_is_saved_before_the_router_is_told_and_put_back_when_kafka_refuses(db: Db) -> None:
    seen: list[tuple[str, bool]] = []

    async def kafka_down(account_id: str, body: bytes) -> None:
        del account_id, body
        seen.append(await _status(db))
        raise Unavailable("Kafka is down")

    settings, members = AccountSettings(db, "north"), NoCallers()
    inactive = AgentStatus.model_validate({"status": "inactive"})
    with pytest.raises(Unavailable):
        await put_agent_status(settings, BOSS, kafka_down, members, "ana", inactive)  # type: ignore[arg-type]
    assert seen == [("inactive", False)], "the router is told once the status is saved"
    assert await _status(db) == ("active", True), "Kafka refused: the status is as it was"

    told: list[bytes] = []

    async def kafka_up(account_id: str, body: bytes) -> None:
        del account_id
        seen.append(await _status(db))
        told.append(body)

    await put_agent_status(settings, BOSS, kafka_up, members, "ana", inactive)  # type: ignore[arg-type]
    assert seen[-1] == ("inactive", False)
    assert ReleaseAgentLeads.model_validate_json(told[0]).payload.agent_id == "ana"
    assert await _status(db) == ("inactive", False)
