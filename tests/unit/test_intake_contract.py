"""The partner contract in docs/partner-contract/: in step with the models, valid, and additive within v1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from leadflow_intake import contract
from leadflow_shared.events.inbound import LeadSubmitted

pytestmark = pytest.mark.unit

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "docs" / "partner-contract"
BASELINE = CONTRACT_DIR / "schemas" / "v1.0.0" / "leads.inbound.v1.LeadSubmitted.schema.json"
REGENERATE = "regenerate with: .venv/bin/leadflow-intake contract docs/partner-contract"


@pytest.mark.parametrize("name", sorted(contract.render_files()))
def test_committed_contract_files_match_the_models(name: str) -> None:
    committed = CONTRACT_DIR / name
    assert committed.is_file(), f"{committed} is missing; {REGENERATE}"
    assert committed.read_text(encoding="utf-8") == contract.render_files()[name], (
        f"{name} drifted from the pydantic models; check the change is additive (README.md), then {REGENERATE}"
    )


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used, got {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_asyncapi_document_has_the_asyncapi_3_structure_and_every_reference_resolves() -> None:
    document = yaml.safe_load((CONTRACT_DIR / "asyncapi.yaml").read_text())
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"]
    assert document["info"]["version"] == contract.CONTRACT_VERSION
    assert {c["address"] for c in document["channels"].values()} == {
        "leads.inbound.v1",
        "leads.inbound.v1.dlq",
        "leads.intake.v1",
    }
    for name, operation in document["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel = resolve(document, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert resolve(document, message["$ref"]) in channel["messages"].values(), name
    for ref in refs(document):
        assert resolve(document, ref) is not None, ref


def test_asyncapi_example_is_a_valid_message() -> None:
    document = contract.asyncapi()
    example = document["components"]["messages"]["LeadSubmitted"]["examples"][0]["payload"]
    LeadSubmitted.model_validate(example)


def committed_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACT_DIR / contract.INBOUND_SCHEMA_FILE).read_text())
    return loaded


def test_json_schema_is_valid_draft_2020_12_and_accepts_the_example() -> None:
    schema = committed_schema()
    jsonschema_rs.meta.validate(schema)
    example = json.loads((CONTRACT_DIR / contract.EXAMPLE_FILE).read_text())
    jsonschema_rs.validate(schema, example)
    LeadSubmitted.model_validate(example)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda m: m["payload"].pop("contact"),
        lambda m: m.update(account_id="acme realty"),
        lambda m: m["payload"]["contact"].update(first_name="x" * 101),
        lambda m: m["payload"]["source"].update(utm={str(i): "v" for i in range(11)}),
        lambda m: m["payload"].update(unknown=1),
        lambda m: m.update(occurred_at="yesterday"),
    ],
)
def test_json_schema_and_model_refuse_the_same_broken_messages(breakage: Any) -> None:
    message = json.loads(json.dumps(contract.EXAMPLE))
    breakage(message)
    validator = jsonschema_rs.validator_for(committed_schema(), validate_formats=True)
    assert not validator.is_valid(message)
    with pytest.raises(ValueError, match="validation error"):
        LeadSubmitted.model_validate(message)


# -- compatibility: within v1, every change is additive ---------------------------------------

_MAX = ("maxLength", "maxItems", "maxProperties", "maximum")
_MIN = ("minLength", "minItems", "minProperties", "minimum")


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a message valid under `old` may be refused under `new` (an empty list: `new` is additive)."""
    problems: list[str] = []

    def walk(path: str, o: dict[str, Any], n: dict[str, Any]) -> None:
        o, n = _deref(old, o), _deref(new, n)
        problems.extend(_tightened(path, o, n))
        for name, sub in o.get("properties", {}).items():
            if name not in n.get("properties", {}):
                problems.append(f"{path}.{name}: removed")
            else:
                walk(f"{path}.{name}", sub, n["properties"][name])
        for sub_path, o_sub, n_sub in _nested(path, o, n):
            walk(sub_path, o_sub, n_sub)

    walk("$", old, new)
    return problems


def _deref(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = resolve(root, node["$ref"])
    return node


def _types(node: dict[str, Any]) -> set[str]:
    options = node.get("anyOf") or [node]
    return {str(o.get("type") or o.get("$ref") or o.get("const") or "any") for o in options}


def _tightened(path: str, o: dict[str, Any], n: dict[str, Any]) -> list[str]:
    """What the schema node `n` refuses that `o` took, apart from its properties and the schemas inside it."""
    problems: list[str] = []
    if not _types(o) <= _types(n):
        problems.append(f"{path}: types {sorted(_types(o))} became {sorted(_types(n))}")
    lowered = [key for key in _MAX if key in n and (key not in o or n[key] < o[key])]
    raised = [key for key in _MIN if key in n and n[key] > o.get(key, 0)]
    problems += [f"{path}: {key} tightened to {n[key]}" for key in (*lowered, *raised)]
    problems += [f"{path}: {key} changed to {n[key]!r}" for key in ("pattern", "format", "const")
                 if key in n and n.get(key) != o.get(key)]  # fmt: skip
    if "enum" in o and not set(o["enum"]) <= set(n.get("enum", o["enum"])):
        problems.append(f"{path}: enum values removed")
    if added := set(n.get("required", [])) - set(o.get("required", [])):
        problems.append(f"{path}: new required fields {sorted(added)}")
    return problems


def _nested(path: str, o: dict[str, Any], n: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The schemas inside both nodes to compare in turn: the options of an anyOf, and items or values."""
    for o_opt, n_opt in zip(o.get("anyOf", []), n.get("anyOf", []), strict=False):
        yield path, o_opt, n_opt
    for key in ("items", "additionalProperties"):
        if isinstance(o.get(key), dict) and isinstance(n.get(key), dict):
            yield f"{path}[{key}]", o[key], n[key]


RELEASES = sorted(CONTRACT_DIR.glob("schemas/v1.*/leads.inbound.v1.LeadSubmitted.schema.json"))


@pytest.mark.parametrize("release", RELEASES, ids=lambda path: path.parent.name)
def test_current_schema_is_additive_over_every_v1_release(release: Path) -> None:
    problems = incompatibilities(json.loads(release.read_text()), contract.inbound_json_schema())
    assert not problems, "leads.inbound.v1 changed incompatibly (make it leads.inbound.v2 instead): " + "; ".join(
        problems
    )


def test_the_current_contract_version_is_frozen_as_released() -> None:
    frozen = CONTRACT_DIR / "schemas" / f"v{contract.CONTRACT_VERSION}" / BASELINE.name
    assert frozen in RELEASES, f"freeze schemas/v{contract.CONTRACT_VERSION}/ when releasing it (README.md)"
    assert json.loads(frozen.read_text()) == contract.inbound_json_schema(), "a released version changed"


def test_the_compatibility_check_catches_breaking_changes() -> None:
    # The check itself must be able to fail, or the test above passes vacuously.
    baseline = json.loads(BASELINE.read_text())
    contact = baseline["$defs"]["InboundContact"]
    changed = json.loads(json.dumps(baseline))
    changed["$defs"]["InboundContact"]["properties"]["first_name"]["maxLength"] = 50
    changed["$defs"]["InboundContact"]["required"] = [*contact.get("required", []), "email"]
    del changed["$defs"]["InboundContact"]["properties"]["last_name"]
    problems = incompatibilities(baseline, changed)
    assert any("first_name: maxLength" in p for p in problems), problems
    assert any("new required fields ['email']" in p for p in problems), problems
    assert any("last_name: removed" in p for p in problems), problems
    additive = json.loads(json.dumps(baseline))
    additive["$defs"]["InboundContact"]["properties"]["middle_name"] = {"type": "string", "default": ""}
    additive["$defs"]["InboundContact"]["properties"]["first_name"]["maxLength"] = 200
    assert incompatibilities(baseline, additive) == []
