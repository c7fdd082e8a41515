"""The router decision core's optimisation (sessions 30-31): what its caches keep and where a fast path
must say what the loop it skips says (helper 138)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow_router.domain.decisions import pick
from leadflow_router.domain.rules import _TOLD_KEPT, Order, _shuffled, choose_rule
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import RuleSet

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AGENTS = ("a", "b", "c", "d", "e")


def _summary(**criteria: Any) -> LeadSummary:
    return LeadSummary(
        contact=Contact(first_name="Jo", email="jo@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        criteria=LeadCriteria.model_validate(criteria),
    )


def _rules(**criteria: Any) -> RuleSet:
    action = {"kind": "agent", "agent_id": "a"}
    rule = {"id": "r", "name": "R", "match": "exact", "criteria": criteria, "action": action}
    return RuleSet.model_validate({"rules": [rule]})


@pytest.mark.parametrize("position", [-1, -4, -5, -6, -11])
def test_a_random_rotation_reads_a_round_before_the_first_as_it_did(position: int) -> None:
    """`Order._round` starts as (-1, ()): a position in round -1 (cursor + step < 0) on a fresh order found that
    empty tuple "kept" and raised IndexError; before the change it was `_shuffled(..., -1)`'s agent."""
    order = Order(AGENTS, shuffle_seed="seed")
    size = len(AGENTS)
    assert order.at(position) == _shuffled(AGENTS, "seed", position // size)[position % size]


def test_pick_from_a_negative_cursor_on_a_random_rotation_takes_an_agent() -> None:
    order = Order(AGENTS, shuffle_seed="seed")
    picked, cursor = pick(order, -1, 1, frozenset())
    assert picked == [_shuffled(AGENTS, "seed", -1)[-1]]
    assert cursor == 0


# --- guards (pass): what the reasons kept by value say ------------------------------------------------------


def test_a_one_value_reason_is_the_lead_s_own_after_many_leads_and_past_the_cap() -> None:
    """`_one_of`'s `told`: keyed by the lead's value, bounded by `_TOLD_KEPT`, and never another lead's text."""
    rule_set = _rules(postal_codes=["78701"])
    for n in range(_TOLD_KEPT + 50):
        code = f"{n:05d}"
        lead = _summary(place={"postal_code": code})
        choice = choose_rule(rule_set, lead, NOW, "UTC")
        expected = f"postal code {code!r} not in '78701'"
        assert choice.why_not_at(0) == expected
        assert choice.describe() == f"no rule matched; the default rule; not matched: R ({expected})"
    told = choice.tests[0].criteria[0].told
    assert len(told) == 1 + _TOLD_KEPT


def test_a_lead_kind_is_written_as_its_value_whether_told_before_or_not() -> None:
    rule_set = _rules(intents=["buy"])
    for _ in range(2):  # the first time written by `reason`, then read from `told`
        choice = choose_rule(rule_set, _summary(intent="sell"), NOW, "UTC")
        assert [c.why_not for c in choice.checks] == ["lead kind 'sell' not in 'buy'"]
        assert choice.describe() == "no rule matched; the default rule; not matched: R (lead kind 'sell' not in 'buy')"
    assert choose_rule(rule_set, _summary(intent="buy"), NOW, "UTC").describe() == "rule 'R'"
