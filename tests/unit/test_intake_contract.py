"""The partner contract in docs/partner-contract/: in step with the models, valid, and additive within v1. The
same compatibility check holds leadflow's own leads.events.v1 to its frozen schema (decision 0067)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml
from pydantic import create_model

from leadflow_intake import contract
from leadflow_shared.envelope import Contract, Envelope
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged, LeadOffered, LeadOfferedPayload

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


# -- leadflow's own events: leads.events.v1 is additive within v1 too (decisions 0056, 0067) ---------------

# leads.events.v1 as it stood before its answers named the asks they answer (decision 0067): every later v1 must
# take what it took. Freeze a new file only with leads.events.v2.
EVENTS_V1 = Path(__file__).resolve().parent / "frozen_contracts" / "leads.events.v1.schema.json"
# Answers to an ask back as the router wrote them before they named the ask: a history every reader meets.
OLD_OFFERED = (
    '{"event_id":"5f0c3b1e-8d2a-5e4f-9a6b-7c8d9e0f1a2b","type":"LeadOffered","schema_version":1,'
    '"account_id":"acme-realty","occurred_at":"2026-11-24T14:20:06Z","correlation_id":"5f0c3b1e-8d2a-5e4f-9a6b-'
    '7c8d9e0f1a2b","payload":{"lead_id":"0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01","agent_id":"ana","offer_round":2,'
    '"race_size":1,"deadline":"2026-11-24T14:35:06Z","explanation":"ana asked back the offer it missed: offered '
    'to it again until 2026-11-24T14:35:06+00:00.","contact":{"first_name":"Jane","last_name":"","email":'
    '"jane@example.com","phone":null},"source":{"channel":"brokerage_site","name":"Website","site_host":null,'
    '"listing_id":null,"listing_agent_id":null,"assigned_agent_id":null,"provider":null,"utm":{}},"message":"",'
    '"referral_fee_percent":0.0,"criteria":null,"pond":null}}'
)
OLD_REFUSAL = (
    '{"event_id":"6a1d4c2f-9e3b-5f5a-8b7c-8d9e0f1a2b3c","type":"ActivityLogged","schema_version":1,'
    '"account_id":"acme-realty","occurred_at":"2026-11-24T14:20:06Z","correlation_id":"6a1d4c2f-9e3b-5f5a-8b7c-'
    '8d9e0f1a2b3c","payload":{"lead_id":"0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01","agent_id":"bo","action":'
    '"ask_back","by_agent_id":"ana","summary":null,"claim_refused":"cannot ask it back: the lead is held by bo"}}'
)


def event_incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`incompatibilities` of every event type and definition of the frozen union (`oneOf` with a discriminator,
    which the walk from the root does not enter), each walked from its own definition."""
    problems = [f"event type {t}: removed" for t in old["discriminator"]["mapping"]
                if t not in new["discriminator"]["mapping"]]  # fmt: skip
    for name, definition in old["$defs"].items():
        if name not in new["$defs"]:
            problems.append(f"$defs.{name}: removed")
            continue
        rooted_old = {"$defs": old["$defs"], **definition}
        rooted_new = {"$defs": new["$defs"], **new["$defs"][name]}
        problems += [p.replace("$", name, 1) for p in incompatibilities(rooted_old, rooted_new)]
    return list(dict.fromkeys(problems))


def test_leads_events_v1_is_additive_over_its_frozen_schema() -> None:
    problems = event_incompatibilities(json.loads(EVENTS_V1.read_text()), ROUTING_EVENT.json_schema())
    assert not problems, "leads.events.v1 changed incompatibly (make it leads.events.v2 instead): " + "; ".join(
        problems
    )


def test_answers_written_before_they_named_their_ask_still_validate() -> None:
    frozen, current = json.loads(EVENTS_V1.read_text()), ROUTING_EVENT.json_schema()
    for raw in (OLD_OFFERED, OLD_REFUSAL):
        jsonschema_rs.validate(frozen, json.loads(raw))  # what the frozen v1 took...
        jsonschema_rs.validate(current, json.loads(raw))  # ...the current schema takes, and the models read
        event = ROUTING_EVENT.validate_json(raw)
        assert isinstance(event, LeadOffered | ActivityLogged)
        assert event.payload.answers_activity_id is None, "an old answer names no ask"
    named = json.loads(OLD_REFUSAL)
    named["payload"]["answers_activity_id"] = "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f"
    event = ROUTING_EVENT.validate_python(named)
    assert isinstance(event, ActivityLogged)
    assert str(event.payload.answers_activity_id) == "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f"
    jsonschema_rs.validate(current, named)


def test_the_event_compatibility_check_catches_breaking_changes() -> None:
    frozen = json.loads(EVENTS_V1.read_text())
    changed = json.loads(json.dumps(frozen))
    offered = changed["$defs"]["LeadOfferedPayload"]
    offered["properties"]["answers_activity_id"] = {"format": "uuid", "type": "string"}
    offered["required"] = [*offered["required"], "answers_activity_id"]  # a new field, but required: breaking
    del changed["$defs"]["ActivityLoggedPayload"]["properties"]["claim_refused"]
    del changed["discriminator"]["mapping"]["LeadHeld"]
    problems = event_incompatibilities(frozen, changed)
    assert any("LeadOfferedPayload: new required fields ['answers_activity_id']" in p for p in problems), problems
    assert any("claim_refused: removed" in p for p in problems), problems
    assert "event type LeadHeld: removed" in problems, problems
    additive = json.loads(json.dumps(frozen))
    additive["$defs"]["LeadOfferedPayload"]["properties"]["answers_activity_id"] = {
        "anyOf": [{"format": "uuid", "type": "string"}, {"type": "null"}],
        "default": None,
    }
    assert event_incompatibilities(frozen, additive) == []


# -- leads.activity.v1 (crm-api -> router) is additive within v1 too (decision 0087) ----------------------------

# leads.activity.v1 as it stood before an action named the offer round it was made on: every later v1 must take
# what it took. Freeze a new file only with leads.activity.v2.
ACTIVITY_V1 = Path(__file__).resolve().parent / "frozen_contracts" / "leads.activity.v1.schema.json"
# An accept as crm-api wrote it before it named the round: in the topic when the router is upgraded.
OLD_ACCEPT = (
    '{"event_id":"7b2e5d3a-0f4c-5a6b-9c8d-9e0f1a2b3c4d","type":"LeadActivity","schema_version":1,'
    '"account_id":"acme-realty","occurred_at":"2026-11-24T14:20:06Z","correlation_id":"7b2e5d3a-0f4c-5a6b-9c8d-'
    '9e0f1a2b3c4d","payload":{"lead_id":"0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01","agent_id":"ana","action":"accept",'
    '"message":null}}'
)


def test_leads_activity_v1_is_additive_over_its_frozen_schema() -> None:
    problems = incompatibilities(json.loads(ACTIVITY_V1.read_text()), LeadActivity.model_json_schema())
    assert not problems, "leads.activity.v1 changed incompatibly (make it leads.activity.v2 instead): " + "; ".join(
        problems
    )


def test_an_activity_written_before_it_named_its_offer_round_still_validates() -> None:
    frozen, current = json.loads(ACTIVITY_V1.read_text()), LeadActivity.model_json_schema()
    jsonschema_rs.validate(frozen, json.loads(OLD_ACCEPT))  # what the frozen v1 took...
    jsonschema_rs.validate(current, json.loads(OLD_ACCEPT))  # ...the current schema takes, and the router reads
    assert LeadActivity.model_validate_json(OLD_ACCEPT).payload.offer_round is None, "an old action names no round"
    named = json.loads(OLD_ACCEPT)
    named["payload"]["offer_round"] = 3
    jsonschema_rs.validate(current, named)
    assert LeadActivity.model_validate(named).payload.offer_round == 3
    # A reader of the frozen v1 refuses a named round (no unknown fields): the router is upgraded before crm-api.
    assert not jsonschema_rs.is_valid(frozen, named)
    named["payload"]["offer_round"] = 0
    assert not jsonschema_rs.is_valid(current, named), "rounds start at 1"
    with pytest.raises(ValueError, match="validation error"):
        LeadActivity.model_validate(named)


def test_lead_events_with_and_without_the_router_version_are_read_by_readers_old_and_new() -> None:
    """Decision 0093 amended: `router_version` is optional (absent: unknown), and a reader that predates it (its
    payload model without the field, decoding as every subscription does, unknown fields ignored) reads it too."""
    frozen, current = json.loads(EVENTS_V1.read_text()), ROUTING_EVENT.json_schema()
    old = ROUTING_EVENT.validate_json(OLD_OFFERED)
    assert isinstance(old, LeadOffered)
    assert old.payload.router_version is None
    stamped = json.loads(OLD_OFFERED)
    stamped["payload"]["router_version"] = 7
    jsonschema_rs.validate(current, stamped)
    event = ROUTING_EVENT.validate_python(stamped)
    assert isinstance(event, LeadOffered)
    assert event.payload.router_version == 7
    fields: dict[str, Any] = {
        n: (f.annotation, f) for n, f in LeadOfferedPayload.model_fields.items() if n != "router_version"
    }
    # The payload as the previous consumer code had it.
    previous_payload = create_model("PreviousLeadOfferedPayload", __base__=Contract, **fields)
    previous = create_model("PreviousLeadOffered", __base__=Envelope, payload=(previous_payload, ...))
    assert previous.model_validate_json(json.dumps(stamped), extra="ignore").payload.agent_id == "ana"
    assert not jsonschema_rs.is_valid(frozen, stamped), "the frozen v1 names no version: readers ignore it (0056)"
