"""crm-api's side of "why this agent" and the dry-run (issue 15): the dry-run body becomes what intake would
pass on, a decision from the router is read tolerantly and shown with names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from leadflow_crm_api.domain.routing_info import DryRunLead, DryRunRequest, agents_named, decision_of, shown
from leadflow_shared.events.intake import LeadChannel
from leadflow_shared.routing_info import RoutingDecision

pytestmark = pytest.mark.unit

DECISION: dict[str, Any] = {
    "at": "2026-03-02T15:00:00Z",
    "step": "Rule",
    "rule_id": "villas",
    "rule_name": "Villas",
    "rules": [{"rule_id": "villas", "name": "Villas", "matched": True}],
    "chosen": ["villa1"],
    "skipped": [{"agent_id": "gone", "reason": "inactive"}],
    "waiting": ["villa2"],
    "rotation": {"kind": "rule", "mode": "round_robin", "cursor_before": 0, "cursor_after": 1},
    "explanation": "Routing rules: rule 'Villas'.",
}


def refused(model: type[Any], body: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


def test_a_dry_run_lead_is_what_intake_would_pass_on() -> None:
    lead = DryRunLead.model_validate(
        {
            "first_name": " Val ",
            "email": "Val@Example.COM",
            "phone": "+1 415 555 0123",
            "source": "Zillow",
            "criteria": {"tags": ["VIP", "vip", " Cash "], "place": {"state": "tx", "postal_code": "78701"}},
        }
    )
    summary = lead.summary()
    assert (summary.contact.first_name, summary.contact.email, summary.contact.phone) == (
        "Val",
        "val@example.com",
        "+14155550123",
    )
    assert (summary.source.channel, summary.source.name) == (LeadChannel.BROKERAGE_SITE, "Zillow")
    assert summary.criteria is not None
    assert summary.criteria.tags == ["vip", "cash"]
    assert summary.criteria.place is not None
    assert summary.criteria.place.state == "TX"
    assert DryRunLead().summary().criteria is None, "no criteria: none, as intake sends it"
    assert DryRunLead.model_validate({"criteria": {"tags": []}}).summary().criteria is None


def test_a_dry_run_body_names_the_field_it_refuses() -> None:
    assert refused(DryRunRequest, {}) == [""]  # neither a lead nor a lead id
    assert refused(DryRunRequest, {"lead": {}, "lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"}) == [""]
    assert refused(DryRunRequest, {"lead_id": "not-a-uuid"}) == ["lead_id"]
    assert refused(DryRunRequest, {"lead": {}, "extra": 1}) == ["extra"]
    assert refused(DryRunRequest, {"lead": {"email": "not an address"}}) == ["lead.email"]
    assert refused(DryRunRequest, {"lead": {"phone": "555"}}) == ["lead.phone"]
    assert refused(DryRunRequest, {"lead": {"source": ""}}) == ["lead.source"]
    assert refused(DryRunRequest, {"lead": {"criteria": {"price": {"min": 5, "max": 1}}}}) == ["lead.criteria.price"]
    assert refused(DryRunRequest, {"lead": {"criteria": {"intent": "lease"}}}) == ["lead.criteria.intent"]
    default = {"id": "default", "name": "D", "action": {"kind": "agent", "agent_id": "a"}}
    assert refused(DryRunRequest, {"lead": {}, "rules": {"rules": [default]}}) == ["rules"]


def test_a_decision_from_a_newer_router_is_read_and_shown_with_names() -> None:
    newer = DECISION | {"tie_break": "random", "rules": [{**DECISION["rules"][0], "score": 3}]}
    decision = decision_of(newer)
    assert decision == RoutingDecision.model_validate(DECISION)
    assert agents_named([decision]) == {"villa1", "villa2", "gone"}
    seen = shown(decision, {"villa1": "Vera Villa", "villa2": "Vic Villa"})
    assert [(a.agent_id, a.name) for a in seen.chosen] == [("villa1", "Vera Villa")]
    assert [(a.agent_id, a.name) for a in seen.waiting] == [("villa2", "Vic Villa")]
    assert [(s.agent_id, s.name, s.reason) for s in seen.skipped] == [("gone", None, "inactive")]
    assert (seen.rule_id, seen.rule_name, seen.rotation) == ("villas", "Villas", decision.rotation)
    with pytest.raises(ValueError, match="not a routing decision"):
        decision_of({"at": "yesterday", "step": "R6", "explanation": ""})
