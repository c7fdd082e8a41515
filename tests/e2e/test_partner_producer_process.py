"""The partner producer example (examples/partner_producer) against the whole system: its lead, signed as the
embedded stack's demo partner, is normalized by intake onto the intake topic."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from example_scripts import load_example

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord
from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_shared import topics
from leadflow_shared.events.inbound import received_event_id

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partner_producer"


async def test_example_producer_sends_a_lead_that_intake_normalizes_onto_the_intake_topic(
    stack: Stack, wait_for_record: WaitForRecord
) -> None:
    producer_module = load_example("partner_producer/producer.py")
    lead = json.loads((EXAMPLE / "lead.json").read_text()) | {"last_name": f"doe-{uuid.uuid4().hex[:6]}"}
    message = producer_module.lead_submitted(**lead)
    # Tansu has no idempotent producer (docs/decisions/0003); a real cluster keeps the default (on).
    producer = producer_module.producer_from_env(
        {"LEADFLOW_KAFKA_BOOTSTRAP": stack.bootstrap, "LEADFLOW_KAFKA_IDEMPOTENCE": "false"}
    )
    await producer.start()
    try:
        await producer_module.send(producer, message, DEVELOPMENT_SECRET)  # the embedded stack's demo partner
    finally:
        await producer.stop()

    lead_id = str(received_event_id(uuid.UUID(message["event_id"]), message["account_id"]))
    needle = f'"event_id":"{lead_id}"'.encode()
    record = await wait_for_record(topics.LEADS_INTAKE, lambda r: needle in (r.value or b""))
    event = json.loads(record.value or b"")
    assert event["payload"]["contact"]["email"] == "jane.doe@example.com"
    assert event["payload"]["source"]["provider"] == "homefinder"
