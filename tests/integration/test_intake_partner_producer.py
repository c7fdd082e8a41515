"""The example partner producer (examples/partner_producer/): its messages meet the contract and become leads."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from types import ModuleType

import jsonschema_rs
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord
from leadflow_intake import contract
from leadflow_shared import topics
from leadflow_shared.events.inbound import LeadSubmitted, received_event_id

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "partner_producer"


def load_producer() -> ModuleType:
    # The example is a stand-alone script, not a package of this workspace: load it from its file.
    spec = importlib.util.spec_from_file_location("partner_producer", EXAMPLE / "producer.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_example_messages_meet_the_committed_json_schema_and_the_model() -> None:
    producer = load_producer()
    schema = json.loads((ROOT / "docs" / "partner-contract" / contract.INBOUND_SCHEMA_FILE).read_text())
    lead = json.loads((EXAMPLE / "lead.json").read_text())
    for message in (producer.lead_submitted(**lead),
                    producer.lead_submitted(account_id="acme-realty", partner="p", source_name="P", first_name="A",
                                            phone="2125550101")):  # fmt: skip
        jsonschema_rs.validate(schema, message)
        LeadSubmitted.model_validate(message)


@pytest.mark.integration
@pytest.mark.asyncio
async def test_example_producer_sends_a_lead_that_intake_normalizes_onto_the_intake_topic(
    stack: Stack, wait_for_record: WaitForRecord
) -> None:
    producer_module = load_producer()
    lead = json.loads((EXAMPLE / "lead.json").read_text()) | {"last_name": f"doe-{uuid.uuid4().hex[:6]}"}
    message = producer_module.lead_submitted(**lead)
    # Tansu has no idempotent producer (docs/decisions/0003); a real cluster keeps the default (on).
    producer = producer_module.producer_from_env(
        {"LEADFLOW_KAFKA_BOOTSTRAP": stack.bootstrap, "LEADFLOW_KAFKA_IDEMPOTENCE": "false"}
    )
    await producer.start()
    try:
        await producer_module.send(producer, message)
    finally:
        await producer.stop()

    lead_id = str(received_event_id(uuid.UUID(message["event_id"]), message["account_id"]))
    needle = f'"event_id":"{lead_id}"'.encode()
    record = await wait_for_record(topics.LEADS_INTAKE, lambda r: needle in (r.value or b""))
    event = json.loads(record.value or b"")
    assert event["payload"]["contact"]["email"] == "jane.doe@example.com"
    assert event["payload"]["source"]["provider"] == "homefinder"


@pytest.mark.unit
@pytest.mark.asyncio
async def test_example_producer_takes_sasl_over_tls_from_the_environment() -> None:
    producer = load_producer().producer_from_env({
        "LEADFLOW_KAFKA_BOOTSTRAP": "kafka.example.com:9093", "LEADFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LEADFLOW_KAFKA_USERNAME": "homefinder", "LEADFLOW_KAFKA_PASSWORD": uuid.uuid4().hex,
    })  # fmt: skip
    # aiokafka checks the options when the producer is built (a SASL_SSL producer without an SSL context fails).
    await producer.stop()  # never started: nothing is sent
