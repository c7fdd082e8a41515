"""The partner contract, generated from the pydantic models: AsyncAPI document and JSON Schema files.

`leadflow-intake contract DIR` writes them (docs/partner-contract/ in the repo); the service
serves the same AsyncAPI document at /asyncapi.json and /asyncapi.yaml, and a test fails when
the committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from leadflow_intake.domain import partner_signature
from leadflow_shared import topics
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadReceived

# Minor/patch only within v1: changes are additive (README.md there); 1.2.0: the leadflow-signature header (0098).
CONTRACT_VERSION = "1.2.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
INBOUND_SCHEMA_FILE = "schemas/leads.inbound.v1.LeadSubmitted.schema.json"
EXAMPLE_FILE = "examples/lead-submitted.json"

DLQ_HEADERS = {
    "dlq-reason": "Why: field paths and rules, e.g. 'payload.contact.phone: not a valid phone number'. No values.",
    "dlq-error-type": (
        "ValidationError (schema), PartnerRefused (not signed by the partner it names, or for an account that "
        "partner does not serve), PoisonMessage (normalization, unknown account, reused event_id), "
        "TooLarge (over the size limit, not read), "
        "UnreadableRecord (a header name not UTF-8; a record that cannot be framed, whose dead letter carries "
        "the raw record batch)."
    ),
    "dlq-source-topic": "leads.inbound.v1",
    "dlq-source-partition": "Partition of the original message.",
    "dlq-source-offset": "Offset of the original message.",
    "dlq-service": "intake",
}

EXAMPLE: dict[str, Any] = {
    "event_id": "5f0c3f4e-2b7a-4f3e-9a51-2d0c6f1b7a10",
    "type": "LeadSubmitted",
    "schema_version": 1,
    "account_id": "acme-realty",
    "occurred_at": "2026-03-02T14:05:00Z",
    "correlation_id": "5f0c3f4e-2b7a-4f3e-9a51-2d0c6f1b7a10",
    "payload": {
        "contact": {
            "first_name": "JANE",
            "last_name": "doe",
            "email": "Jane.Doe@Example.com",
            "phone": "(415) 555-0123",
        },
        "source": {
            "partner": "homefinder",
            "name": "HomeFinder",
            "listing_id": "MLS-4471",
            "assigned_agent_id": "blair-chen",
            "utm": {"utm_source": "homefinder", "utm_campaign": "spring"},
        },
        "message": "Is 12 Elm St still available? We would like to see it this weekend.",
    },
}


def inbound_json_schema() -> dict[str, Any]:
    """JSON Schema of a leads.inbound.v1 message (the whole envelope)."""
    schema = LeadSubmitted.model_json_schema(mode="validation")
    return {"$schema": JSON_SCHEMA_DIALECT, **schema}


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3 document of intake's Kafka side: what it receives from partners and what it sends."""
    _, defs = models_json_schema(
        [(LeadSubmitted, "validation"), (LeadReceived, "validation")], ref_template="#/components/schemas/{model}"
    )
    account_key = {"type": "string", "description": "The account_id of the message: keeps an account's leads in order."}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "leadflow intake",
            "version": CONTRACT_VERSION,
            "description": (
                "Partners publish leads to leads.inbound.v1, keyed by account id. Intake validates and normalizes "
                "them (names, E.164 phones, lower-cased emails) and publishes LeadReceived on leads.intake.v1 with "
                "an id derived from the partner's event_id, so resending an event never makes a second lead. Each "
                "message is signed with its partner's secret (header leadflow-signature) and taken only for the "
                "accounts that partner serves. A message that fails validation or its signature goes, unchanged, "
                "to leads.inbound.v1.dlq with the reason in its headers. Within v1 changes are additive only: new "
                "optional fields, looser limits."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {
                "host": "kafka.example.com:9093",
                "protocol": "kafka",
                "description": "The operator's Kafka cluster. Partners authenticate with SASL SCRAM over TLS; "
                "ACLs let each partner's principal write leads.inbound.v1 and nothing else.",
                "security": [{"$ref": "#/components/securitySchemes/saslScram"}],
            }
        },
        "channels": {
            "leadsInbound": {
                "address": topics.LEADS_INBOUND,
                "description": "Leads from partners, one JSON message each, key = account_id.",
                "messages": {"LeadSubmitted": {"$ref": "#/components/messages/LeadSubmitted"}},
            },
            "leadsInboundDlq": {
                "address": topics.dlq(topics.LEADS_INBOUND),
                "description": "Messages intake could not accept, unchanged, with the reason in headers.",
                "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            },
            "leadsIntake": {
                "address": topics.LEADS_INTAKE,
                "description": "Normalized leads for the router, from every intake path.",
                "messages": {"LeadReceived": {"$ref": "#/components/messages/LeadReceived"}},
            },
        },
        "operations": {
            "receiveLeadSubmitted": {
                "action": "receive",
                "channel": {"$ref": "#/channels/leadsInbound"},
                "messages": [{"$ref": "#/channels/leadsInbound/messages/LeadSubmitted"}],
            },
            "sendDeadLetter": {
                "action": "send",
                "channel": {"$ref": "#/channels/leadsInboundDlq"},
                "messages": [{"$ref": "#/channels/leadsInboundDlq/messages/DeadLetter"}],
            },
            "sendLeadReceived": {
                "action": "send",
                "channel": {"$ref": "#/channels/leadsIntake"},
                "messages": [{"$ref": "#/channels/leadsIntake/messages/LeadReceived"}],
            },
        },
        "components": {
            "messages": {
                "LeadSubmitted": {
                    "name": "LeadSubmitted",
                    "title": "A lead from a partner",
                    "contentType": "application/json",
                    "headers": {
                        "type": "object",
                        "required": [partner_signature.HEADER],
                        "properties": {
                            partner_signature.HEADER: {
                                "type": "string",
                                "pattern": "^kafka-v1=[0-9a-fA-F]{64}$",
                                "description": "kafka-v1=<hex HMAC-SHA256 with the partner's secret of 'kafka-v1', "
                                "the topic and the record key in lowercase hex, each followed by a newline, then the "
                                "value's bytes as sent>. The partner is the one payload.source.partner names "
                                "(README.md, Signing).",
                            }
                        },
                    },
                    "payload": {"$ref": "#/components/schemas/LeadSubmitted"},
                    "bindings": {"kafka": {"key": account_key, "bindingVersion": "0.5.0"}},
                    "examples": [{"name": "listing-inquiry", "payload": EXAMPLE}],
                },
                "LeadReceived": {
                    "name": "LeadReceived",
                    "title": "A normalized lead",
                    "contentType": "application/json",
                    "payload": {"$ref": "#/components/schemas/LeadReceived"},
                    "bindings": {"kafka": {"key": account_key, "bindingVersion": "0.5.0"}},
                },
                "DeadLetter": {
                    "name": "DeadLetter",
                    "title": "A message intake refused",
                    "summary": "The original bytes and key, unchanged; the reason is in the headers.",
                    "headers": {
                        "type": "object",
                        "properties": {k: {"type": "string", "description": v} for k, v in DLQ_HEADERS.items()},
                    },
                    "payload": {"description": "The original message bytes, whatever they were."},
                },
            },
            "schemas": defs["$defs"],
            "securitySchemes": {
                "saslScram": {
                    "type": "scramSha512",
                    "description": "SASL SCRAM-SHA-512 over TLS (SASL_SSL); one principal per partner. Which "
                    "accounts a partner may send leads for is its signature's business (header leadflow-signature).",
                }
            },
        },
    }


def render_files() -> dict[str, str]:
    """The contract's files, by path relative to the contract directory."""
    return {
        "asyncapi.yaml": yaml.safe_dump(asyncapi(), sort_keys=False, allow_unicode=True, width=110),
        INBOUND_SCHEMA_FILE: json.dumps(inbound_json_schema(), indent=2, ensure_ascii=False) + "\n",
        EXAMPLE_FILE: json.dumps(EXAMPLE, indent=2, ensure_ascii=False) + "\n",
    }


def write(directory: Path) -> list[Path]:
    """Write the contract's files under `directory`; returns their paths."""
    written = []
    for name, text in render_files().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
