""" "Why this agent" (issue 15, item 6): what a routing decision was made from, kept cheap until recorded.

A decision carries a `Why`: the rules tried, the pool's candidates (chosen, skipped with the reason, or
waiting their turn) and where its rotation stood. It becomes a `RoutingDecision` (the structured record
crm-api shows) only when the router stores the lead: the decision core itself stays a few object
allocations per lead. Pure.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter

from leadflow_router.domain.frozen import fast_init
from leadflow_router.domain.rules import RuleChoice
from leadflow_shared.routing_info import MAX_LISTED, RULES_LISTED, RotationUsed, RoutingDecision, RuleTried, Skipped

# `\b(R\d{1,2}|Rule):`, searched from its literal "R": a pattern that starts with `\b` is tried at every
# position of a note of 500 characters (7 µs a record); the word boundary is checked as `re` checks it.
_STEP = re.compile(r"(R(?:\d{1,2}|ule)):")


def step_of(explanation: str) -> str:
    """The rule an explanation says decided ("R5", "R6", "Rule"...): the first one it names as a word."""
    for found in _STEP.finditer(explanation):  # no "R" inside a match: none hides another
        before = found.start() - 1
        if before < 0 or not (explanation[before].isalnum() or explanation[before] == "_"):  # `re`'s \w
            return found.group(1)
    return explanation.split(":", 1)[0][:8]


@fast_init
@dataclass(frozen=True, slots=True)
class Candidates:
    """A pool's agents at a decision: eligible in turn order, skipped with why, and those left out
    because they had the lead already."""

    eligible: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    excluded: frozenset[str] = frozenset()


@fast_init
@dataclass(frozen=True, slots=True)
class Why:
    at: datetime
    chosen: tuple[str, ...] = ()
    candidates: Candidates | None = None
    rotation: tuple[str, str, int, int] | None = None  # kind ("source" or "rule"), mode, cursor before, after
    rule: tuple[str, str] | None = None  # the routing rule whose pool was used: id, name
    choice: RuleChoice | None = None  # how the routing rules were tried, when the account has any

    def with_choice(self, choice: RuleChoice | None) -> Why:
        """This decision, with how the routing rules were tried (built at once: `dataclasses.replace` is
        several times slower, and every new lead is recorded this way)."""
        return Why(self.at, self.chosen, self.candidates, self.rotation, self.rule, choice)

    def decision(self, explanation: str) -> RoutingDecision:
        """The structured record of this decision, with the explanation the events carry."""
        skipped, waiting = _sorted_out(self.candidates, self.chosen)
        # Built from values this router made: constructed without validating them again (the hot path).
        rotation = None
        if self.rotation is not None:
            kind, mode, before, after = self.rotation
            rotation = RotationUsed.model_construct(kind="rule" if kind == "rule" else "source", mode=mode,
                                                    cursor_before=before, cursor_after=after)  # fmt: skip
        return RoutingDecision.model_construct(
            at=self.at,
            step=step_of(explanation),
            rule_id=self.rule[0] if self.rule else None,
            rule_name=self.rule[1] if self.rule else None,
            rules=_tried(self.choice),
            rules_not_listed=max(0, len(self.choice.tried) - RULES_LISTED) if self.choice else 0,
            chosen=list(self.chosen),
            skipped=skipped,
            waiting=waiting,
            rotation=rotation,
            explanation=explanation,
        )


def _sorted_out(candidates: Candidates | None, chosen: Sequence[str]) -> tuple[list[Skipped], list[str]]:
    if candidates is None:
        return [], []
    excluded = candidates.excluded
    had = [(a, "had the lead already") for a in candidates.eligible if a in excluded] if excluded else []
    if had:
        skipped = [_skipped(agent, why) for agent, why in [*candidates.skipped, *had][:MAX_LISTED]]
    else:  # as for every new lead: the pool's skipped agents, the same tuple lead after lead
        skipped = list(_skipped_of(candidates.skipped))
    passed = excluded.union(chosen)
    # Filtered in C: a source's rotation has every roster agent waiting (hundreds, on every new lead's record).
    waiting = list(itertools.filterfalse(passed.__contains__, candidates.eligible))
    return skipped, waiting[:MAX_LISTED]


@functools.lru_cache(maxsize=4096)
def _skipped(agent_id: str, reason: str) -> Skipped:
    """One (immutable) model per agent and reason: the same agents are skipped for the same reasons lead
    after lead, and a `model_construct` is a few µs."""
    return Skipped.model_construct(agent_id=agent_id, reason=reason)


@functools.lru_cache(maxsize=256)
def _skipped_of(skipped: tuple[tuple[str, str], ...]) -> tuple[Skipped, ...]:
    """A pool's skipped agents as models, once per pool (its `skipped` is kept per snapshot): a source's
    rotation skips dozens of a large roster, and one `_skipped` look-up is 0.1 µs."""
    return tuple(_skipped(agent, why) for agent, why in skipped[:MAX_LISTED])


# The rules tried are validated in one call to pydantic-core, four times faster than a `model_construct` per
# rule, and the same models: ids, names (stripped when the rule set was) and reasons have nothing to strip.
_RULES_TRIED: TypeAdapter[list[RuleTried]] = TypeAdapter(list[RuleTried])


def _tried(choice: RuleChoice | None) -> list[RuleTried]:
    if choice is None:
        return []
    tried = len(choice.tried)
    listed = range(tried) if tried <= RULES_LISTED else [*range(RULES_LISTED - 1), tried - 1]
    return _RULES_TRIED.validate_python(
        [
            {"rule_id": rule_id, "name": name, "matched": matched, "why_not": why_not}
            for rule_id, name, matched, why_not in choice.rows(listed)
        ]
    )
