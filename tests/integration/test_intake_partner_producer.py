"""The example partner producer (examples/partner_producer/): its messages meet the contract, it signs as intake checks
and authenticates as configured. e2e/test_partner_producer_process.py sends its lead through the whole system."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path

import jsonschema_rs
import pytest
from aiokafka.errors import KafkaConnectionError
from example_scripts import load_example
from scram_endpoint import ScramAttempt, ScramEndpoint
from tls_certs import write_cert

from leadflow_intake import contract
from leadflow_intake.domain import partner_signature
from leadflow_shared import topics
from leadflow_shared.events.inbound import LeadSubmitted

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "partner_producer"


@pytest.mark.unit
def test_example_messages_meet_the_committed_json_schema_and_the_model() -> None:
    producer = load_example("partner_producer/producer.py")
    schema = json.loads((ROOT / "docs" / "partner-contract" / contract.INBOUND_SCHEMA_FILE).read_text())
    lead = json.loads((EXAMPLE / "lead.json").read_text())
    for message in (producer.lead_submitted(**lead),
                    producer.lead_submitted(account_id="acme-realty", partner="p", source_name="P", first_name="A",
                                            phone="2125550101")):  # fmt: skip
        jsonschema_rs.validate(schema, message)
        LeadSubmitted.model_validate(message)


@pytest.mark.unit
def test_example_producer_signs_as_intake_checks() -> None:
    """The example's own signing (no leadflow code, as a partner has none) gives the header intake checks."""
    producer = load_example("partner_producer/producer.py")
    key, value = b"acme-realty", json.dumps(producer.lead_submitted(**json.loads((EXAMPLE / "lead.json").read_text())))
    assert producer.signature("s3cret", key, value.encode()) == partner_signature.sign(
        b"s3cret", topics.LEADS_INBOUND, key, value.encode()
    )


@pytest.mark.integration
@pytest.mark.asyncio
async def test_example_producer_authenticates_with_scram_over_tls_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LEADFLOW_KAFKA_SASL_MECHANISM and the credentials make the producer authenticate over TLS: an
    endpoint that only speaks TLS sees the mechanism, the user name and a proof of the password."""
    ca_cert, ca_key = write_cert(tmp_path / "ca", "partner test CA", ca=True)
    write_cert(tmp_path / "server", "127.0.0.1", ca_key, ca_cert)
    # The example verifies the broker against the system's CAs (ssl.create_default_context): here, the test's.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    password = uuid.uuid4().hex
    async with ScramEndpoint(context, mechanism="SCRAM-SHA-512", password=password) as endpoint:
        producer = load_example("partner_producer/producer.py").producer_from_env({
            "LEADFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{endpoint.port}", "LEADFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LEADFLOW_KAFKA_USERNAME": "homefinder", "LEADFLOW_KAFKA_PASSWORD": password,
        })  # fmt: skip
        with pytest.raises(KafkaConnectionError):  # the endpoint refuses once it has checked the proof
            await producer.start()
        await producer.stop()
    assert endpoint.attempts == [ScramAttempt(mechanism="SCRAM-SHA-512", username="homefinder", proof_valid=True)]
