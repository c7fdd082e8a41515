"""One RouterService on a fresh database of the real MongoDB-wire server, with a settable clock and
a recording publisher (tests/unit/fakes_*.py): the harness of the router's state and command tests.

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fakes_router import Published
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_router.adapters.account_config import load_account_config
from leadflow_router.adapters.mongo import AccountSnapshots, Capacity, Contacts, LeadRecords, Rotations, ensure_indexes
from leadflow_router.handlers import RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.collections import ROUTER_LEADS
from leadflow_shared.events.intake import LeadReceived


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


def router_service(
    db: AsyncDatabase[dict[str, Any]],
    published: Published,
    clock: Clock,
    registry: CollectorRegistry,
    *,
    cache_seconds: float = 0,
) -> RouterService:
    """The router's use cases on the real MongoDB adapters, with no snapshot cache (or one of `cache_seconds`)."""
    metrics = RouterMetrics(registry)
    return RouterService(
        records=LeadRecords(db, unreadable=metrics.unreadable_records),
        accounts=AccountSnapshots(db, cache_seconds),
        contacts=Contacts(db),
        rotations=Rotations(db),
        capacity=Capacity(db),
        publish=published,
        metrics=metrics,
        clock=clock,
    )


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
        yield Router(router_service(db, published, clock, registry), clock, published, db, registry)
    finally:
        await client.drop_database(name)
        await client.close()
