"""crm-api's routing rules and availability settings (issue 15), the pure parts: versions and their guard,
refusals placed at the field they are about, the all-caps-zero check, what is stored as the router reads
it, and the settings page's summaries."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.domain.rules_and_availability import (
    ALL_CAPPED,
    Availability,
    RoutingRules,
    availability_fields,
    capacity_refusals,
    rule_refusals,
    stored_availability,
    stored_rules,
    zero_cap,
)
from leadflow_crm_api.openapi import with_short_names
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.web.rule_summaries import action_summary, criteria_summary, rules_json, steps_summary
from leadflow_shared.availability import Caps, availability_of
from leadflow_shared.routing_rules import Criteria, RuleSet, rule_set_of

pytestmark = pytest.mark.unit

RULES: dict[str, Any] = {
    "version": 4,
    "rules": [
        {"id": "sellers", "name": "Sellers", "criteria": {"intents": ["sell"]},
         "action": {"kind": "agent", "agent_id": "ana", "claim_window_seconds": 600}},
        {"id": "lux", "name": "Luxury", "match": "empty_or_match",
         "criteria": {"price_min": 1_000_000, "cities": ["Austin", "Round Rock"], "weekdays": [5, 6],
                      "hours": {"start": "20:00", "end": "08:00"}},
         "action": {"kind": "rotation", "agents": ["ben", "cy"], "mode": "weighted", "weights": {"ben": 3},
                    "race": 2}},
    ],
    "default": {"action": {"kind": "rotation", "agents": ["cy"], "leads_per_round": 2}},
}  # fmt: skip


def test_an_account_without_rules_is_at_version_0_and_guarded_by_the_missing_version() -> None:
    stored = stored_rules({"_id": "acc"})
    assert (stored.rules, stored.readable, stored.version) == (RuleSet(), True, 0)
    assert stored.guard == {"routing_rules.version": {"$exists": False}}


def test_a_stored_version_is_what_a_change_must_name_and_what_the_guard_matches() -> None:
    stored = stored_rules({"routing_rules": RULES})
    assert stored.version == 4
    assert stored.guard == {"routing_rules.version": 4}
    assert stored.rules == RuleSet.model_validate(RULES)


@pytest.mark.parametrize(
    ("routing_rules", "version", "guard"),
    [
        ({"rules": "nonsense", "version": 7}, 7, 7),  # unreadable rules keep their version
        ({"rules": [], "version": "seven"}, 0, "seven"),  # a version that is no count reads as 0, matched as stored
        ({"rules": [], "version": -2}, 0, -2),
        ("not a document", 0, {"$exists": False}),
    ],
)
def test_an_unreadable_rule_set_reads_as_the_default_and_can_still_be_replaced(
    routing_rules: Any, version: int, guard: Any
) -> None:
    stored = stored_rules({"routing_rules": routing_rules})
    assert stored.rules == RuleSet()
    assert stored.version == version
    assert stored.guard == {"routing_rules.version": guard}
    assert stored.readable is False


def test_agents_off_the_roster_are_refused_at_the_action_that_names_them() -> None:
    rules = RuleSet.model_validate(RULES)
    assert rule_refusals(rules, ["ana", "ben", "cy"]) == []
    refused = rule_refusals(rules, ["ana", "ben"])
    assert refused == [
        (("rules", 1), "rule 'lux': agents not on the roster: ['cy']"),
        (("default",), "rule 'default': agents not on the roster: ['cy']"),
    ]
    assert [reason for _, reason in refused] == rules.refusals(["ana", "ben"])  # the shared rule, placed


def test_what_crm_api_stores_is_what_the_router_reads() -> None:
    saved = RoutingRules.model_validate(RULES)
    read = rule_set_of({"routing_rules": saved.model_dump(mode="json")})
    assert read is not None
    assert read.model_dump() == saved.model_dump()
    availability = Availability.model_validate({
        "paused": True,
        "away": [{"start": datetime(2026, 8, 1, tzinfo=UTC), "end": datetime(2026, 8, 2, tzinfo=UTC)}],
        "working_hours": [{"weekdays": [0, 4], "start": time(9), "end": time(17)}],
        "holidays": [date(2026, 12, 24)],
        "caps": {"day": 3},
    })  # fmt: skip
    fields = availability_fields(availability)
    assert set(fields) == {"paused", "away", "working_hours", "holidays", "caps"}
    assert json.loads(json.dumps(fields)) == fields, "JSON types only: nx-27017 mangles $set datetimes"
    router_reads = availability_of(fields)
    assert router_reads is not None
    assert router_reads.model_dump() == availability.model_dump()
    assert stored_availability(fields) == availability


def test_a_stored_field_that_cannot_be_read_shows_as_its_default() -> None:
    agent = {"paused": True, "caps": {"day": -1}, "holidays": ["2026-12-24"], "away": "soon"}
    assert availability_of(agent) is None  # the router offers this agent nothing
    assert stored_availability(agent) == Availability(paused=True, holidays=[date(2026, 12, 24)])


def agent(agent_id: str, caps: dict[str, int] | None = None, **fields: Any) -> dict[str, Any]:
    return {"_id": agent_id, "caps": caps, **fields}


def test_zero_cap_names_the_first_period_capped_at_0() -> None:
    assert zero_cap(None) is None
    assert zero_cap(Caps(day=1, week=0, month=0)) == "week"
    assert zero_cap(Caps(day=5)) is None


def test_a_cap_of_0_is_refused_only_when_every_agent_taking_leads_would_have_one() -> None:
    zero_day, roster = Availability(caps=Caps(day=0)), ["ana", "ben", "cy", "dee", "eve"]
    others = [agent("ben", {"month": 0}), agent("cy", None, round_robin=False), agent("dee", None, active=False)]
    refused = capacity_refusals("ana", zero_day, [agent("ana"), *others], roster)
    assert refused == [(("caps", "day"), ALL_CAPPED)]
    assert ALL_CAPPED.startswith("every agent who takes round-robin leads")
    # Another agent taking leads without a cap of 0: allowed; off the roster, it takes none.
    assert capacity_refusals("ana", zero_day, [agent("ana"), *others, agent("eve", {"day": 2})], roster) == []
    assert capacity_refusals("ana", zero_day, [agent("ana"), *others, agent("fay")], roster) == refused
    # An agent who takes no leads anyway may be capped at 0; a cap above 0 is always fine.
    assert capacity_refusals("cy", zero_day, [agent("ana", {"day": 0}), *others], roster) == []
    assert capacity_refusals("ana", zero_day, [agent("ana"), *others], ["ben"]) == []
    assert capacity_refusals("ana", Availability(caps=Caps(day=1)), [agent("ana"), *others], roster) == []
    # Flags as nx-27017 stores them after a $set (1/0).
    stored_flags = [agent("ana", active=1), agent("ben", {"day": 0}, round_robin=1)]
    assert capacity_refusals("ana", zero_day, stored_flags, roster) == refused


def test_the_settings_page_summarises_each_rule() -> None:
    rules = RuleSet.model_validate(RULES)
    sellers, lux = rules.rules
    assert criteria_summary(sellers.criteria) == "intents: sell"
    assert action_summary(sellers.action) == "offer to ana, 600 s to claim"
    assert criteria_summary(lux.criteria) == (
        "price min: 1,000,000; cities: Austin, Round Rock; hours: 20:00–08:00; weekdays: Sat, Sun"
    )
    assert action_summary(lux.action) == "weighted rotation of ben, cy (weights ben 3), 2 agents race"
    assert action_summary(rules.default.action) == "round robin rotation of cy, 2 leads each in a row"
    assert criteria_summary(Criteria()) == "every lead"
    assert action_summary(RuleSet().default.action).startswith("the lead source’s own routing")


def test_fallbacks_and_idle_reassignment_are_summarised_after_the_action() -> None:
    rule = RuleSet.model_validate({"rules": [{
        "id": "r", "name": "R", "action": {"kind": "agent", "agent_id": "ana"},
        "fallbacks": [{"kind": "rotation", "agents": ["ben", "cy"]}, {"kind": "owner"}],
        "idle": {"minutes": 30, "times": 2},
    }]}).rules[0]  # fmt: skip
    assert steps_summary(rule) == (
        "offer to ana; nobody took it: round robin rotation of ben, cy; nobody took it: roster position 1; "
        "claimed but idle 30 min: the next agent (at most 2 times)"
    )
    assert steps_summary(RuleSet().default) == action_summary(RuleSet().default.action)


def test_the_forms_json_is_short_and_reads_back_as_the_same_rule_set() -> None:
    rules = RuleSet.model_validate(RULES)
    text = rules_json(rules)
    assert text.startswith('{\n  "version": 4,')
    assert '"has_phone"' not in text, "criteria a rule leaves empty are not written out"
    assert RuleSet.model_validate(json.loads(text)) == rules
    assert RuleSet.model_validate(json.loads(rules_json(RuleSet()))) == RuleSet()


def _refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {r for v in value.values() for r in _refs(v)} | ({value["$ref"]} if "$ref" in value else set())
    if isinstance(value, list):
        return {r for v in value for r in _refs(v)}
    return set()


def test_the_openapi_document_keeps_its_schema_names_beside_the_shared_rule_set() -> None:
    spec = create_app(CrmApiSettings()).openapi()
    schemas = spec["components"]["schemas"]
    assert schemas["AgentAction"]["enum"][0] == "accept", "the activity enum keeps its published name"
    assert schemas["RoutingRulesAgentAction"]["properties"]["kind"]["const"] == "agent"
    assert not [n for n in schemas if n.startswith("leadflow_shared__") or n.endswith(("-Input", "-Output"))]
    assert {r.removeprefix("#/components/schemas/") for r in _refs(spec)} <= set(schemas), "every $ref resolves"


def test_only_names_that_stay_unique_are_shortened() -> None:
    schemas = {
        "leadflow_crm_api__a__Kind": {"enum": ["x"]},
        "leadflow_shared__routing_rules__Kind": {"type": "object"},
        "Kind-Output": {"type": "object"},
        "leadflow_crm_api__b__Skipped": {"title": "1"},
        "leadflow_crm_api__c__Skipped": {"title": "2"},
        "Body": {"properties": {"k": {"$ref": "#/components/schemas/Kind-Output"}}},
    }
    tidy = with_short_names({"components": {"schemas": schemas}})["components"]["schemas"]
    assert tidy == {
        "Body": {"properties": {"k": {"$ref": "#/components/schemas/RoutingRulesKind"}}},
        "Kind": {"enum": ["x"]},
        "RoutingRulesKind": {"type": "object"},
        "leadflow_crm_api__b__Skipped": {"title": "1"},
        "leadflow_crm_api__c__Skipped": {"title": "2"},
    }
