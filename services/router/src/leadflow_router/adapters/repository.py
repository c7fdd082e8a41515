"""MongoDB adapters of the router: account configuration and the leads' routing records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_router.domain.model import AccountSnapshot

ACCOUNTS = "accounts"
AGENTS = "agents"
ROUTER_LEADS = "router_leads"


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """A lead's routing outcome and the events it must publish (a transactional outbox)."""

    lead_id: str
    account_id: str
    agent_id: str
    outbox: tuple[str, ...]  # event JSON, published in order
    published: bool


class AccountRepository(Protocol):
    async def get(self, account_id: str) -> AccountSnapshot | None: ...


class RoutingRecords(Protocol):
    async def get(self, lead_id: str) -> RoutingRecord | None: ...
    async def add(self, record: RoutingRecord) -> RoutingRecord: ...
    async def mark_published(self, lead_id: str) -> None: ...


class MongoAccounts:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._accounts = db[ACCOUNTS]

    async def get(self, account_id: str) -> AccountSnapshot | None:
        doc = await self._accounts.find_one({"_id": account_id})
        if doc is None:
            return None
        return AccountSnapshot(
            account_id=doc["_id"],
            name=doc["name"],
            roster=tuple(doc.get("roster", [])),
            round_robin=bool(doc.get("round_robin", False)),
            time_zone=doc.get("time_zone", "UTC"),
        )


class MongoRoutingRecords:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._records = db[ROUTER_LEADS]

    async def get(self, lead_id: str) -> RoutingRecord | None:
        doc = await self._records.find_one({"_id": lead_id})
        return None if doc is None else _record(doc)

    async def add(self, record: RoutingRecord) -> RoutingRecord:
        """Insert `record`, or return the one a concurrent delivery stored first."""
        try:
            await self._records.insert_one(
                {
                    "_id": record.lead_id,
                    "account_id": record.account_id,
                    "agent_id": record.agent_id,
                    "outbox": list(record.outbox),
                    "published": record.published,
                }
            )
        except DuplicateKeyError:
            existing = await self.get(record.lead_id)
            assert existing is not None  # noqa: S101 (the duplicate key proves it exists)
            return existing
        return record

    async def mark_published(self, lead_id: str) -> None:
        await self._records.update_one({"_id": lead_id}, {"$set": {"published": True}})


def _record(doc: dict[str, Any]) -> RoutingRecord:
    return RoutingRecord(
        lead_id=doc["_id"],
        account_id=doc["account_id"],
        agent_id=doc["agent_id"],
        outbox=tuple(doc["outbox"]),
        published=bool(doc["published"]),
    )
