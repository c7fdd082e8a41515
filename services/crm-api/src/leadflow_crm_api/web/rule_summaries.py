"""Routing rules as the settings page shows them: one line for what a rule matches and one for what it does
(its action, the fallbacks when nobody takes the lead, idle reassignment), and the rule set as the JSON its
form edits. Pure."""

from __future__ import annotations

import json
from typing import Any

from leadflow_shared.routing_rules import (
    Action,
    AgentAction,
    Criteria,
    DefaultRule,
    OwnerAction,
    RotationAction,
    Rule,
    RuleSet,
)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MODES = {
    "round_robin": "round robin",
    "weighted": "weighted",
    "balanced": "balanced (fewest leads first)",
    "random": "random",
}


def _value(name: str, value: Any) -> str:
    if name == "weekdays":
        return ", ".join(WEEKDAYS[d] for d in value)
    if name == "hours":
        return f"{value['start'][:5]}–{value['end'][:5]}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return f"{value:,}" if isinstance(value, int) else str(value)


def criteria_summary(criteria: Criteria) -> str:
    """ "intents: sell; cities: Austin, Round Rock": the fields a rule constrains, or "every lead"."""
    constrained = criteria.model_dump(mode="json", exclude_defaults=True)
    parts = [f"{name.replace('_', ' ')}: {_value(name, value)}" for name, value in constrained.items()]
    return "; ".join(parts) or "every lead"


def action_summary(action: Action) -> str:
    if isinstance(action, AgentAction):
        said = f"offer to {action.agent_id}"
    elif isinstance(action, RotationAction):
        said = f"{_MODES[action.mode.value]} rotation of {', '.join(action.agents or []) or 'the source’s agents'}"
        if action.weights:
            said += " (weights " + ", ".join(f"{a} {w}" for a, w in action.weights.items()) + ")"
        if action.leads_per_round > 1:
            said += f", {action.leads_per_round} leads each in a row"
        if action.race > 1:
            said += f", {action.race} agents race"
    else:
        return "the lead source’s own routing (roster position 1, or its round robin)"
    if action.claim_window_seconds is not None:
        said += f", {action.claim_window_seconds} s to claim"
    return said


def steps_summary(rule: Rule | DefaultRule) -> str:
    """The action, then each fallback step, then idle reassignment."""
    said = action_summary(rule.action)
    for step in rule.fallbacks:
        said += "; nobody took it: " + ("roster position 1" if isinstance(step, OwnerAction) else action_summary(step))
    if rule.idle is not None:
        said += f"; claimed but idle {rule.idle.minutes} min: the next agent (at most {rule.idle.times} times)"
    return said


def _pruned(value: Any) -> Any:
    """Without members that say nothing (null, [] or {}): what a person would write."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def rules_json(rules: RuleSet) -> str:
    """The rule set for the form's text area, its version first."""
    document = {"version": rules.version} | _pruned(rules.model_dump(mode="json"))
    return json.dumps(document, indent=2, ensure_ascii=False)
