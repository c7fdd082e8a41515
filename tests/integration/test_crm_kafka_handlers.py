"""crm-api's Kafka edge (crm-api/entrypoints/kafka.py) on FastStream's in-memory test broker: the
projection's batch subscriber of leads.events.v1 folds a race into the views once, however often it
is delivered, and dead-letters poison. The views are real (nx-27017): they are MongoDB queries.

tests/integration/test_kafka_handlers_on_tansu.py runs the same test against the real broker.
"""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import CollectorRegistry
from test_consumer_edge import Edge, edge
from test_crm_store import race

from leadflow_crm_api.adapters.leads import CRM_LEADS, CRM_TIMELINE, ensure_indexes
from leadflow_crm_api.entrypoints import kafka
from leadflow_crm_api.metrics import CrmMetrics
from leadflow_devstack.testing import eventually, fresh_database
from leadflow_shared import topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)


async def test_a_race_is_projected_once_however_often_delivered_and_poison_is_dead_lettered(
    edge: Edge, mongo_url: str
) -> None:
    async with fresh_database(mongo_url, "crm") as db:
        await ensure_indexes(db)
        metrics = CrmMetrics(CollectorRegistry())
        kafka.subscribe(edge.runtime, metrics, group_id=f"crm-{uuid.uuid4().hex[:6]}", database=lambda: db)
        edge.collect_dead_letters(topics.LEADS_EVENTS)
        await edge.start()
        lead = uuid.uuid4()
        events = race(lead)  # ana and ben offered, ana claims, ben's offer withdrawn (account "acme")
        key = f"crm-edge-{lead}".encode()  # the test's own key: its dead letters among others' on a shared topic
        bodies = [event.model_dump_json().encode() for event in events]
        await edge.publish(topics.LEADS_EVENTS, bodies[0], key)
        await edge.publish(topics.LEADS_EVENTS, b'{"type": "LeadOffered", "account_id": 7}', key)
        for body in [*bodies, *bodies[1:]]:  # the first offer again, then a redelivery of the rest
            await edge.publish(topics.LEADS_EVENTS, body, key)

        async def projected() -> bool:
            # An event's timeline entry is written after its row's changes: the last one is awaited too.
            row = await db[CRM_LEADS].find_one({"_id": str(lead)})
            entries = await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)})
            return row is not None and row["open_offers"] == [] and entries >= len(events) and bool(edge.dead_of(key))

        await eventually(projected, timeout=60, what="the race to be projected and the poison dead-lettered")
        row = await db[CRM_LEADS].find_one({"_id": str(lead)})
        assert row is not None
        assert (row["account_id"], row["status"], row["owner_agent_id"], row["offered_to"]) == (
            "acme",
            "assigned",
            "ana",
            [],
        )
        assert await db[CRM_LEADS].count_documents({"_id": str(lead)}) == 1
        assert await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == len(events)
        assert [(d["dlq-source-topic"], d["dlq-error-type"]) for d in edge.dead_of(key)] == [
            (topics.LEADS_EVENTS, "ValidationError")
        ]


async def test_an_event_no_view_can_hold_is_dead_lettered_and_writes_nothing(edge: Edge, mongo_url: str) -> None:
    """An offer of round 2**70 (the contract bounds it below only) used to insert the lead's row, then fail on its
    timeline entry (BSON holds 64 bits), at every retry, and end dead-lettered with the row left half-projected.
    Decision 0083: refused before the projection, naming the field; the lead's next good event is projected."""
    async with fresh_database(mongo_url, "crm") as db:
        await ensure_indexes(db)
        kafka.subscribe(edge.runtime, CrmMetrics(CollectorRegistry()), group_id=f"crm-{uuid.uuid4().hex[:6]}",
                        database=lambda: db)  # fmt: skip
        edge.collect_dead_letters(topics.LEADS_EVENTS)
        await edge.start()
        lead = uuid.uuid4()
        offered, *rest = race(lead)
        huge = offered.model_copy(update={"payload": offered.payload.model_copy(update={"offer_round": 2**70})})
        key = f"crm-edge-{lead}".encode()
        await edge.publish(topics.LEADS_EVENTS, huge.model_dump_json().encode(), key)

        async def dead_lettered() -> bool:
            return bool(edge.dead_of(key))

        await eventually(dead_lettered, timeout=60, what="the offer of round 2**70 to be dead-lettered")
        assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
            ("NotStrictRecord", "NotStrictRecord: payload.offer_round: an integer beyond the 64-bit range")
        ]
        assert await db[CRM_LEADS].count_documents({"_id": str(lead)}) == 0, "a row of the refused offer"
        assert await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == 0

        for event in (offered, *rest):
            await edge.publish(topics.LEADS_EVENTS, event.model_dump_json().encode(), key)

        async def projected() -> bool:
            return await db[CRM_TIMELINE].count_documents({"lead_id": str(lead)}) == len(rest) + 1

        await eventually(projected, timeout=60, what="the lead's good events to be projected")
        row = await db[CRM_LEADS].find_one({"_id": str(lead)})
        assert row is not None
        assert (row["status"], row["owner_agent_id"]) == ("assigned", "ana")
        assert len(edge.dead_of(key)) == 1
