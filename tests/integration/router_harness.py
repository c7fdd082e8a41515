"""One RouterService on a fresh database of the real MongoDB-wire server, with a settable clock and
a recording publisher: the harness of the router's command tests (T1 sharing, T2 transfers).

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_router.adapters.account_config import load_account_config
from leadflow_router.adapters.mongo import (
    ROUTER_LEADS,
    AccountSnapshots,
    Contacts,
    LeadRecords,
    Rotations,
    ensure_indexes,
)
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import ROUTING_EVENT, RoutingEvent


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Published:
    """What the router published, as (Kafka key, body); `failing` simulates a broker outage."""

    records: list[tuple[str, bytes]] = field(default_factory=list)
    failing: bool = False

    async def __call__(self, key: str, body: bytes) -> None:
        if self.failing:
            raise ConnectionError("broker down")
        self.records.append((key, body))

    def events(self) -> list[tuple[str, RoutingEvent]]:
        return [(key, ROUTING_EVENT.validate_json(body)) for key, body in self.records]

    def clear(self) -> None:
        self.records.clear()


@dataclass
class Router:
    service: RouterService
    clock: Clock
    published: Published
    db: AsyncDatabase[dict[str, Any]]
    registry: CollectorRegistry

    async def record(self, lead: LeadReceived) -> dict[str, Any]:
        doc = await self.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
        assert doc is not None
        return doc

    def transfers_counted(self, kind: str) -> float:
        return self.registry.get_sample_value("router_transfers_total", {"kind": kind}) or 0.0


@asynccontextmanager
async def router_on(mongo_url: str, config: dict[str, Any], *, now: datetime) -> AsyncIterator[Router]:
    """A router over `config` (the seed file format) in a database of its own, dropped afterwards."""
    name = f"router_{uuid.uuid4().hex[:12]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[name]
    try:
        await load_account_config(db, config)
        await ensure_indexes(db)
        clock, published, registry = Clock(now), Published(), CollectorRegistry()
        service = RouterService(
            records=LeadRecords(db),
            accounts=AccountSnapshots(db, 0),
            contacts=Contacts(db),
            rotations=Rotations(db),
            publish=published,
            metrics=RouterMetrics(registry),
            clock=clock,
        )
        yield Router(service, clock, published, db, registry)
    finally:
        await client.drop_database(name)
        await client.close()
