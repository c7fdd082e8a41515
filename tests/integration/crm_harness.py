"""crm-api's side of the integration tests (rebuilds, erasure, actions): a topic of the test's own on Tansu that the
projection consumes, and how to compare stored documents.

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.generations import Write, replayed_already, writing
from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.handlers import project
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload, RoutingEvent
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import TopicSpec

Doc = dict[str, Any]
DATETIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")


class Topic:
    """A topic of one test (leads.events.v1's stand-in for a rebuild); `publish` answers where the record landed."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.name = name
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def publish(self, event: RoutingEvent) -> tuple[bytes, int, int]:
        body = event.model_dump_json().encode()
        sent = await self.producer.send_and_wait(self.name, body, key=event.account_id.encode())
        return body, sent.partition, sent.offset

    async def live(self, db: AsyncDatabase[Doc], event: RoutingEvent) -> Write:
        """On the topic, then projected as crm-api's consumer does (bootstrap.create_app's `handle`)."""
        body, partition, offset = await self.publish(event)
        write = Write(event=body, partition=partition, offset=offset)
        async with writing(db, write) as names:
            if not await replayed_already(db, write):
                await project(event, views=LeadViews(db, names))
        return write


@asynccontextmanager
async def views_database(mongo_url: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    """A database of its own on nx-27017 with the views' indexes, dropped after."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_{uuid.uuid4().hex[:12]}"
    await ensure_indexes(client[name])
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@asynccontextmanager
async def topic_on(bootstrap: str, prefix: str) -> AsyncIterator[Topic]:
    """A new two-partition topic named `prefix-<random>`, with its producer started."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(name, 2)])
    log = Topic(bootstrap, name)
    await log.producer.start()
    try:
        yield log
    finally:
        await log.producer.stop()


async def docs(db: AsyncDatabase[Doc], collection: str) -> list[Doc]:
    return [doc async for doc in db[collection].find({}).sort("_id", 1)]


def canonical(value: Any) -> Any:
    """`value` with its datetimes as aware datetimes: nx-27017 stores a datetime that `$set` writes on an
    existing document as naive UTC text (a bulk replace or an insert keeps it a datetime; decision 0045)."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, str) and DATETIME_TEXT.fullmatch(value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


class Published:
    """leads.activity.v1 as crm-api's use cases and routes see it: what they publish, kept."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    async def __call__(self, account_id: str, body: bytes) -> None:
        self.records.append((account_id, body))


def offered(account_id: str, lead: uuid.UUID, agent: str, *, offer_round: int, at: datetime) -> LeadOffered:
    """A website lead's offer to `agent` (round `offer_round`, 15 minutes to claim from `at`), as routed."""
    return LeadOffered.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadOfferedPayload(
            lead_id=lead, agent_id=agent, offer_round=offer_round, race_size=1,
            deadline=at + timedelta(minutes=15), explanation="R6",
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            contact=Contact(first_name="Rae", email="rae@x.example"),
        ),
    )  # fmt: skip
