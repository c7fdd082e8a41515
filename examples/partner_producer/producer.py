"""Example partner producer: publish a lead to leadflow's leads.inbound.v1 topic.

Depends on aiokafka only (no leadflow code): a partner builds the JSON message the contract
describes (docs/partner-contract/), keys it with the account id and sends it with acks=all.

    LEADFLOW_KAFKA_BOOTSTRAP=kafka.example.com:9093 \
    LEADFLOW_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 LEADFLOW_KAFKA_USERNAME=homefinder \
    LEADFLOW_KAFKA_PASSWORD=... LEADFLOW_PARTNER_SECRET=... python producer.py lead.json

Every message is signed with the secret leadflow's operator gave the partner (header
`leadflow-signature`, HMAC-SHA256 over the topic, the key and the exact value bytes): without it,
or for an account the partner does not serve, intake dead-letters the message.

Keep the event_id of a lead you send: if you are unsure it arrived, send the same message
again (same event_id). leadflow makes one lead of it, however often it arrives.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import ssl
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

TOPIC = "leads.inbound.v1"
SIGNATURE_HEADER = "leadflow-signature"


def lead_submitted(
    *,
    account_id: str,
    partner: str,
    source_name: str,
    first_name: str,
    last_name: str = "",
    email: str | None = None,
    phone: str | None = None,
    message: str = "",
    listing_id: str | None = None,
    assigned_agent_id: str | None = None,
    site_host: str | None = None,
    utm: Mapping[str, str] | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A LeadSubmitted message (leads.inbound.v1); fields left None are left out."""
    event_id = event_id or uuid.uuid4()
    source = {
        "partner": partner,
        "name": source_name,
        "listing_id": listing_id,
        "assigned_agent_id": assigned_agent_id,
        "site_host": site_host,
        "utm": dict(utm or {}),
    }
    contact = {"first_name": first_name, "last_name": last_name, "email": email, "phone": phone}
    return {
        "event_id": str(event_id),
        "type": "LeadSubmitted",
        "schema_version": 1,
        "account_id": account_id,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "correlation_id": str(event_id),
        "payload": {
            "contact": {k: v for k, v in contact.items() if v is not None},
            "source": {k: v for k, v in source.items() if v is not None},
            "message": message,
        },
    }


def producer_from_env(env: Mapping[str, str] = os.environ) -> AIOKafkaProducer:
    """A producer configured from LEADFLOW_KAFKA_* variables: SASL over TLS when a mechanism is set."""
    options: dict[str, Any] = {
        "bootstrap_servers": env["LEADFLOW_KAFKA_BOOTSTRAP"],
        "acks": "all",
        # Idempotent producers avoid duplicates on producer retries; leadflow de-duplicates by event_id anyway.
        "enable_idempotence": env.get("LEADFLOW_KAFKA_IDEMPOTENCE", "true") == "true",
    }
    if mechanism := env.get("LEADFLOW_KAFKA_SASL_MECHANISM"):
        options |= {
            "security_protocol": "SASL_SSL",
            "ssl_context": ssl.create_default_context(),
            "sasl_mechanism": mechanism,
            "sasl_plain_username": env["LEADFLOW_KAFKA_USERNAME"],
            "sasl_plain_password": env["LEADFLOW_KAFKA_PASSWORD"],
        }
    return AIOKafkaProducer(**options)


def signature(secret: str, key: bytes, value: bytes, topic: str = TOPIC) -> str:
    """The leadflow-signature header: HMAC-SHA256 of "kafka-v1", the topic, the key in hex and the value,
    joined by newlines (docs/partner-contract/README.md). Sign the exact bytes you send."""
    text = f"kafka-v1\n{topic}\n{key.hex()}\n".encode("ascii") + value
    return "kafka-v1=" + hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


async def send(producer: AIOKafkaProducer, message: Mapping[str, Any], secret: str) -> None:
    """Send one message keyed by its account and signed, and wait until Kafka has it (acks=all)."""
    key, value = message["account_id"].encode(), json.dumps(message).encode()
    headers = [(SIGNATURE_HEADER, signature(secret, key, value).encode())]
    await producer.send_and_wait(TOPIC, value, key=key, headers=headers)


async def main(lead: Mapping[str, Any]) -> None:
    message = lead_submitted(**lead)
    producer = producer_from_env()
    await producer.start()
    try:
        await send(producer, message, os.environ["LEADFLOW_PARTNER_SECRET"])
    finally:
        await producer.stop()
    sys.stdout.write(f"sent {message['event_id']}\n")


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
