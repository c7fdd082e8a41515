"""The routing rules' published JSON Schema is the one the code validates with, and it says what
the code refuses (issue 15: rule sets are validated against a published schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from leadflow_shared.routing_rules import json_schema

pytestmark = pytest.mark.unit

PUBLISHED = Path(__file__).parents[2] / "docs" / "routing-rules.schema.json"


def test_the_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text() == json_schema(), (
        "regenerate: python -m leadflow_shared.routing_rules > docs/routing-rules.schema.json"
    )


@pytest.mark.parametrize(
    ("doc", "valid"),
    [
        ({}, True),
        ({"rules": [{"id": "a", "name": "A", "action": {"kind": "agent", "agent_id": "x"}}]}, True),
        ({"rules": [{"id": "a", "name": "A", "action": {"kind": "pond"}}]}, False),
        ({"rules": [{"id": "a b", "name": "A", "action": {"kind": "agent", "agent_id": "x"}}]}, False),
        ({"rules": [], "extra": 1}, False),
        ({"rules": [{"id": "a", "name": "A", "action": {"kind": "rotation", "race": 51}}]}, False),
    ],
)
def test_the_schema_accepts_and_refuses_documents_as_the_code_does(doc: dict[str, Any], valid: bool) -> None:
    schema = json.loads(PUBLISHED.read_text())
    jsonschema_rs.meta.validate(schema)
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(doc) is valid
