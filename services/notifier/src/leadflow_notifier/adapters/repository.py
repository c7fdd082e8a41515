"""MongoDB adapters of the notifier: the agent directory and the delivery log."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_notifier.domain.messages import Recipient

AGENTS = "agents"
DELIVERIES = "notifier_deliveries"


class AgentDirectory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._agents = db[AGENTS]

    async def get(self, agent_id: str) -> Recipient | None:
        doc = await self._agents.find_one({"_id": agent_id})
        if doc is None:
            return None
        return Recipient(agent_id=agent_id, name=doc["name"], email=doc["email"], time_zone=doc.get("time_zone", "UTC"))


class DeliveryLog:
    """One record per (event, channel, recipient): the N3 at-most-once key."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._deliveries = db[DELIVERIES]

    async def begin(self, key: str, *, channel: str) -> bool:
        """True when this delivery still has to be made (new, or started but never finished)."""
        try:
            await self._deliveries.insert_one({"_id": key, "channel": channel, "status": "pending"})
        except DuplicateKeyError:
            doc = await self._deliveries.find_one({"_id": key})
            return doc is None or doc.get("status") != "sent"
        return True

    async def sent(self, key: str) -> None:
        await self._deliveries.update_one({"_id": key}, {"$set": {"status": "sent"}})
