"""Where the published JSON Schema of leads.inbound.v1 and intake differ, the contract says so (helper 170's review).

A partner that validates each message against the schema before producing still had some dead-lettered, and intake
took messages the schema refuses, and the contract said neither. The schema cannot be narrowed within v1 (the
compatibility rule), so the README lists each difference ("What the schema cannot say"), and these tests hold intake
and the README to that list: a difference that goes away, or a new one among these cases, fails here. Each case: a
one-field change to the contract's own example (examples/lead-submitted.json), validated with a strict 2020-12
validator (formats asserted), and sent through intake's real Kafka edge (FastStream's in-memory broker, the same
subscriber, signature check and handler as production: test_intake_kafka_handlers.py).

Causes: the models strip whitespace before checking lengths (`Contract.model_config` `str_strip_whitespace=True`,
shared/src/leadflow_shared/envelope.py) where the schema counts it; checks the schema cannot carry (an email or a phone:
`InboundContact._reachable`, `site_host` as a host name in intake/domain/normalize.py); pydantic's lax parsing of UUIDs,
datetimes and integers; AwareDatetime refusing RFC 3339's leap second.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from test_consumer_edge import Edge, edge
from test_intake_kafka_handlers import partner_intake

from leadflow_intake import contract

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "partner-contract"
SCHEMA = jsonschema_rs.validator_for(
    json.loads((DOCS / contract.INBOUND_SCHEMA_FILE).read_text()), validate_formats=True
)
EXAMPLE = json.loads((DOCS / "examples" / "lead-submitted.json").read_text())


def changed(path: str, value: Any) -> dict[str, Any]:
    message: dict[str, Any] = copy.deepcopy(EXAMPLE)
    *parents, last = path.split(".")
    place = message
    for part in parents:
        place = place[part]
    place[last] = value
    return message


README = (DOCS / "README.md").read_text()

# (case, path, value, the README's words for it): the schema accepts each; intake dead-letters it.
SCHEMA_ACCEPTS_INTAKE_REFUSES = [
    ("source-name-blank", "payload.source.name", "  ", "a source `name`"),
    ("no-email-no-phone", "payload.contact", {"first_name": "Jane", "last_name": "Doe"}, "neither an `email` nor"),
    ("site-host-not-a-host", "payload.source.site_host", "homes for sale", "`site_host` that is not a host name"),
    ("criteria-city-blank", "payload.criteria", {"place": {"city": " "}}, "criteria `city`"),
    ("criteria-tag-blank", "payload.criteria", {"tags": ["  "]}, "or tag"),
    ("utm-key-blank", "payload.source.utm", {" ": "homefinder"}, "a `utm` key of spaces"),
    ("occurred-at-leap-second", "occurred_at", "2016-12-31T23:59:60Z", "leap second (`23:59:60`)"),
]

# (case, path, value, the README's words for it): the schema refuses each; intake takes it as a lead.
SCHEMA_REFUSES_INTAKE_ACCEPTS = [
    ("event-id-not-canonical", "event_id", "5f0c3f4e2b7a4f3e9a512d0c6f1b7a10", "`event_id` without its hyphens"),
    ("occurred-at-a-number", "occurred_at", 1772460300, "`occurred_at` as a number"),
    ("occurred-at-with-a-space", "occurred_at", "2026-03-02 14:05:00Z", "a space instead of `T`"),
    ("schema-version-a-string", "schema_version", "1", '`schema_version` as the string `"1"`'),
    ("partner-with-a-newline", "payload.source.partner", "homefinder\n", "a `partner` with a line break"),
    ("first-name-101-characters-with-a-space", "payload.contact.first_name", "J" * 100 + " ", "over its length"),
]


async def taken_by_intake(edge: Edge, message: dict[str, Any]) -> bool:
    intake = await partner_intake(edge)
    message = {**message, "account_id": intake.account}
    value, key = json.dumps(message).encode(), intake.account.encode()
    await intake.send(value, key)
    await edge.settle(lambda: len(intake.received) + len(edge.dead_of(key)) == 1)
    return len(intake.received) == 1


def schema_valid(message: dict[str, Any]) -> bool:
    return SCHEMA.is_valid(message)


async def test_the_documented_example_is_valid_and_taken(edge: Edge) -> None:
    assert schema_valid(EXAMPLE)
    assert await taken_by_intake(edge, EXAMPLE)


@pytest.mark.parametrize(("case", "path", "value", "said"), SCHEMA_ACCEPTS_INTAKE_REFUSES,
                         ids=[c[0] for c in SCHEMA_ACCEPTS_INTAKE_REFUSES])  # fmt: skip
async def test_what_the_schema_allows_and_intake_refuses_is_in_the_contract(
    edge: Edge, case: str, path: str, value: Any, said: str
) -> None:
    message = changed(path, value)
    assert schema_valid(message), f"{case}: the schema refuses it now: take it off the README's list"
    assert not await taken_by_intake(edge, message), f"{case}: intake takes it now: take it off the README's list"
    assert said in README, f"{case}: valid under the published schema and dead-lettered, and the contract does not say"


@pytest.mark.parametrize(("case", "path", "value", "said"), SCHEMA_REFUSES_INTAKE_ACCEPTS,
                         ids=[c[0] for c in SCHEMA_REFUSES_INTAKE_ACCEPTS])  # fmt: skip
async def test_what_the_schema_refuses_and_intake_takes_is_in_the_contract(
    edge: Edge, case: str, path: str, value: Any, said: str
) -> None:
    message = changed(path, value)
    assert not schema_valid(message), f"{case}: the schema allows it now: take it off the README's list"
    assert await taken_by_intake(edge, message), f"{case}: intake refuses it now: take it off the README's list"
    assert said in README, f"{case}: invalid under the published schema and taken, and the contract does not say"
