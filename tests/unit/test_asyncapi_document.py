"""docs/asyncapi.yaml: generated from the services' typed subscribers and declared publishers, in step
with the code, resolvable, and saying the same message type at both ends of every topic."""

from __future__ import annotations

import typing
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadflow_ops import asyncapi
from leadflow_shared import topics
from leadflow_shared.events.commands import LeadCommand
from leadflow_shared.events.routing import RoutingEvent

pytestmark = pytest.mark.unit

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
REGENERATE = "regenerate with: .venv/bin/leadflow-ops asyncapi --out docs/asyncapi.yaml"


@pytest.fixture(scope="module")
def generated() -> str:
    return asyncapi.document()


@pytest.fixture(scope="module")
def document(generated: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(generated)
    return loaded


def test_the_committed_document_is_the_generated_one(generated: str) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == generated, REGENERATE


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[urllib.parse.unquote(part)]
    return node


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [node["$ref"]] if "$ref" in node else [r for value in node.values() for r in refs(value)]
        return [r for value in node for r in refs(value)] if isinstance(node, list) else []

    found = refs(document)
    assert found
    for ref in found:
        resolve(document, ref)  # a KeyError names the broken reference


def message_types(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The event types a payload schema admits (titles of the objects it leads to)."""
    if "$ref" in schema:
        return message_types(document, resolve(document, schema["$ref"]))
    for combined in ("oneOf", "anyOf", "allOf"):
        if combined in schema:
            return {t for part in schema[combined] for t in message_types(document, part)}
    if schema.get("format") == "binary":
        return {"bytes"}
    return {str(schema["title"])}


def operations_by_topic(document: dict[str, Any]) -> dict[str, dict[str, dict[str, set[str]]]]:
    """topic -> action (send/receive) -> service -> the message types it says."""
    found: dict[str, dict[str, dict[str, set[str]]]] = {}
    for name, operation in document["operations"].items():
        channel = resolve(document, operation["channel"]["$ref"])
        service = name.split(" -> ")[0 if operation["action"] == "send" else 1]
        types: set[str] = set()
        for reference in operation["messages"]:
            message = resolve(document, resolve(document, reference["$ref"])["$ref"])  # channel's, then component
            types |= message_types(document, message["payload"])
        found.setdefault(channel["address"], {}).setdefault(operation["action"], {})[service] = types
    return found


def members(union: Any) -> set[str]:
    return {member.__name__ for member in typing.get_args(typing.get_args(union)[0])}


def test_every_topic_is_documented_with_the_same_message_type_at_both_ends(document: dict[str, Any]) -> None:
    found = operations_by_topic(document)
    assert set(found) == {spec.name for spec in topics.all_topics()}
    expected = {
        topics.LEADS_INBOUND: ({"LeadSubmitted"}, set(), {"intake"}),  # partners send it: not a service
        topics.LEADS_INTAKE: ({"LeadReceived"}, {"intake"}, {"router"}),
        topics.LEADS_ACTIVITY: ({"LeadActivity"}, {"crm-api"}, {"router"}),
        topics.LEADS_COMMANDS: (members(LeadCommand), {"crm-api"}, {"router"}),
        topics.LEADS_EVENTS: (members(RoutingEvent), {"router"}, {"notifier", "crm-api"}),
    }
    for topic, (types, senders, receivers) in expected.items():
        said = found[topic]
        assert set(said.get("send", {})) == senders, topic
        assert set(said["receive"]) == receivers, topic
        for action in said.values():
            for service, declared in action.items():
                assert declared == types, f"{service} on {topic}"
        dead_letters = found[topics.dlq(topic)]
        assert set(dead_letters["send"]) == receivers, f"every consumer of {topic} dead-letters to its .dlq"
        assert all(declared == {"bytes"} for declared in dead_letters["send"].values())
