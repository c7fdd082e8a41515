"""R4 with an agent the account does not have (issue 10, item 5), through the stack's router process: a lead
pre-assigned to an unknown agent, or to another account's, is routed as a general lead, never dead-lettered.
The same decisions on the router's state alone: tests/integration/test_router_pre_assigned.py.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fakes_router import pre_assigned

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT, AssignmentReason, LeadAssigned

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


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
