"""Intake's Kafka edge (intake/entrypoints/kafka.py) on FastStream's in-memory test broker: a partner's
lead in, a LeadReceived out through the declared publisher; what cannot be accepted dead-lettered with
its reason and counted. In-memory ports (fakes_intake.py).

tests/integration/test_kafka_handlers_on_tansu.py runs the same test against the real broker.
"""

from __future__ import annotations

import json
import uuid

import pytest
from fakes_intake import FakeAccounts, FakeStore
from test_consumer_edge import Edge, edge

from leadflow_intake import contract
from leadflow_intake.entrypoints import kafka
from leadflow_intake.handlers import Intake
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

MAX_BYTES = 4096


def submitted(account: str, message: str = "Is it still available?", **changes: object) -> bytes:
    payload = {**contract.EXAMPLE["payload"], "message": message}
    lead = {**contract.EXAMPLE, "event_id": str(uuid.uuid4()), "account_id": account, "payload": payload, **changes}
    return json.dumps(lead).encode()


async def test_a_partner_lead_becomes_one_lead_received_and_what_cannot_be_accepted_is_dead_lettered(
    edge: Edge,
) -> None:
    account = f"edge-{uuid.uuid4().hex[:8]}"
    metrics = IntakeMetrics(edge.runtime.registry)
    publish = edge.runtime.publisher(topics.LEADS_INTAKE, LeadReceived, description="leads in")
    intake = Intake(
        accounts=FakeAccounts({account: "US"}, {account: {"blair-chen"}}), store=FakeStore(), publish=publish
    )
    kafka.subscribe(edge.runtime, intake=lambda: intake, metrics=metrics, group_id=f"intake-{account}",
                    max_bytes=MAX_BYTES)  # fmt: skip
    received: list[LeadReceived] = []

    async def on_leads(leads: Batch[LeadReceived]) -> BatchRejections:
        received.extend(lead.event for lead in leads if lead.event.account_id == account)
        return []

    edge.runtime.subscribe(topics.LEADS_INTAKE, on_leads, group_id=f"watcher-{account}")
    edge.collect_dead_letters(topics.LEADS_INBOUND)
    await edge.start()
    key = account.encode()
    good = submitted(account, message="the first lead")
    await edge.publish(topics.LEADS_INBOUND, good, key)
    await edge.publish(topics.LEADS_INBOUND, good, key)  # a partner's resend: one lead
    await edge.publish(topics.LEADS_INBOUND, submitted(account, message="x" * MAX_BYTES), key)
    await edge.publish(topics.LEADS_INBOUND, submitted(account, account_id=7), key)
    await edge.publish(topics.LEADS_INBOUND, submitted(f"{account}-unknown"), key)
    last = submitted(account, message="the last lead")  # same key, same partition: handled after all the others
    await edge.publish(topics.LEADS_INBOUND, last, key)

    await edge.settle(lambda: len(received) == 2 and len(edge.dead_of(key)) == 3)
    assert [lead.payload.message for lead in received] == ["the first lead", "the last lead"]
    assert sorted(d["dlq-error-type"] for d in edge.dead_of(key)) == ["PoisonMessage", "TooLarge", "ValidationError"]
    assert {d["dlq-service"] for d in edge.dead_of(key)} == {"edge-test"}

    def count(name: str, **labels: str) -> float:
        return edge.runtime.registry.get_sample_value(name, {"source": "partner", **labels}) or 0.0

    assert count("intake_leads_received_total") == 6
    assert count("intake_leads_rejected_total", reason="too_large") == 1
    assert count("intake_leads_rejected_total", reason="invalid") == 1
    assert count("intake_leads_duplicate_total") == 1
    assert count("intake_leads_rejected_total", reason="unknown_account") == 1
