"""R4 with an agent the account does not have (issue 10, item 5): an accepted lead is routed, never dropped.

Intake refuses a lead pre-assigned to an unknown agent, but the agent can be removed from
the roster between intake and routing, or the lead can name another account's agent: the
router then routes it as a general lead (R5/R6) and says why, instead of dead-lettering it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from router_harness import router_on

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_router.adapters.mongo import ACCOUNTS, AGENTS, AccountSnapshots
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, AssignmentReason, LeadAssigned, LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)


def pre_assigned(account_id: str, agent_id: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pre", email=f"pre-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(
                channel=LeadChannel.LEAD_GEN, name="Zillow", provider="Zillow", assigned_agent_id=agent_id
            ),
        ),
    )


async def test_an_agent_removed_between_intake_and_routing_gets_no_lead_and_the_lead_is_offered(
    mongo_url: str,
) -> None:
    agents = ["broker", "a", "b"]
    config = {
        "accounts": [
            {
                "account_id": "acme",
                "name": "Acme",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in agents],
                "roster": agents,
                "sources": [{"name": "Zillow", "referral_fee_percent": 25}],
            }
        ]
    }
    async with router_on(mongo_url, config, now=T0) as router:
        kept = pre_assigned("acme", "b")
        assert not await router.service.on_leads_received([kept])
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"roster": ["broker", "a"]}})  # b leaves
        after = pre_assigned("acme", "b")
        assert not await router.service.on_leads_received([after]), "not rejected: nothing to dead-letter"

        events = {
            e.payload.lead_id: e for _, e in router.published.events() if isinstance(e, LeadAssigned | LeadOffered)
        }
        kept_event = events[kept.event_id]
        assert isinstance(kept_event, LeadAssigned)
        assert kept_event.payload.reason is AssignmentReason.PRE_ASSIGNED
        offered = events[after.event_id]
        assert isinstance(offered, LeadOffered)
        assert offered.payload.agent_id == "broker", "the first in rotation (R6)"
        assert offered.payload.referral_fee_percent == 25, "a general lead carries the source's fee (R11)"
        assert "Zillow pre-assigned 'b', who is not an agent of this account" in offered.payload.explanation
        record = await router.record(after)
        assert record["kind"] == "lead"
        assert record["outbox"] == [], "stored and published"


async def test_an_agent_added_since_the_snapshot_was_cached_keeps_a_lead_pre_assigned_to_them(mongo_url: str) -> None:
    config = {
        "accounts": [
            {
                "account_id": "acme",
                "name": "Acme",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in ("broker", "a")],
                "roster": ["broker", "a"],
            }
        ]
    }
    async with router_on(mongo_url, config, now=T0) as router:
        router.service.accounts = AccountSnapshots(router.db, ttl_seconds=3600)  # the process's cache
        assert not await router.service.on_leads_received([pre_assigned("acme", "a")])  # caches the roster
        await router.db[AGENTS].insert_one({"_id": "new", "name": "New", "email": "new@acme.example"})
        await router.db[ACCOUNTS].update_one({"_id": "acme"}, {"$set": {"roster": ["broker", "a", "new"]}})
        lead = pre_assigned("acme", "new")
        assert not await router.service.on_leads_received([lead])
        events = [e for _, e in router.published.events() if isinstance(e, LeadAssigned)]
        assigned = next(e.payload for e in events if e.payload.lead_id == lead.event_id)
        assert (assigned.agent_id, assigned.reason) == ("new", AssignmentReason.PRE_ASSIGNED)


async def test_a_pre_assigned_lead_to_an_unknown_or_other_accounts_agent_is_routed_by_the_router_process(
    stack: Stack,
) -> None:
    # acme-realty (round robin off: R5 gives general leads to alex-rivera); dana-whitehorse is summit-homes'.
    leads = [pre_assigned("acme-realty", "no-such-agent"), pre_assigned("acme-realty", "dana-whitehorse")]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        for lead in leads:
            await producer.send_and_wait(topics.LEADS_INTAKE, lead.model_dump_json().encode(), key=b"acme-realty")
    finally:
        await producer.stop()

    ours = {lead.event_id for lead in leads}
    decided: dict[uuid.UUID, LeadAssigned] = {}
    events = AIOKafkaConsumer(
        topics.LEADS_EVENTS, bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await events.start()
    try:

        async def all_decided() -> bool:
            for records in (await events.getmany(timeout_ms=200)).values():
                for record in records:
                    event = ROUTING_EVENT.validate_json(record.value or b"")
                    if isinstance(event, LeadAssigned) and event.payload.lead_id in ours:
                        decided[event.payload.lead_id] = event
            return decided.keys() == ours

        await eventually(all_decided, timeout=60, what="a decision on each pre-assigned lead")
    finally:
        await events.stop()
    for lead in leads:
        assigned = decided[lead.event_id].payload
        assert (assigned.agent_id, assigned.reason) == ("alex-rivera", AssignmentReason.ROSTER_POSITION_1)
        assert f"pre-assigned {lead.payload.source.assigned_agent_id!r}" in assigned.explanation
        assert "routed as a general lead" in assigned.explanation

    # A decided lead was not rejected; and none of them is in the dead-letter topic either.
    dlq = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    await dlq.start()
    try:
        partitions = [TopicPartition(topics.dlq(topics.LEADS_INTAKE), 0)]  # dead-letter topics have one
        dlq.assign(partitions)
        await dlq.seek_to_beginning(*partitions)
        ends = await dlq.end_offsets(partitions)
        dead: list[bytes] = []

        async def read_to_end() -> bool:
            for records in (await dlq.getmany(timeout_ms=200)).values():
                dead.extend(r.value or b"" for r in records)
            return all([await dlq.position(p) >= ends[p] for p in partitions])

        await eventually(read_to_end, timeout=30, what="the dead-letter topic read to its end")
    finally:
        await dlq.stop()
    assert not [body for body in dead if any(str(i).encode() in body for i in ours)]
