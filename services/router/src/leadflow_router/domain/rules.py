"""Which rule of an account's rule set decides a general lead, and in what order a rotation goes.

Pure. The rule set's shape and its written semantics are `leadflow_shared.routing_rules`; here
they are applied: `choose_rule` tries the rules in order and says of each why it did or did not
apply (the lead's "routing info"); `rotation_order` is the sequence a rotation's cursor walks.
A cursor only grows, so every order is a function of it: replaying a decision gives the same
agents, and storing the cursor with "keep the larger" stays idempotent.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import (
    DEFAULT_RULE_ID,
    Action,
    Criteria,
    Hours,
    Match,
    RotationAction,
    RotationMode,
    Rule,
    RuleSet,
)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One rule tried for a lead: whether it applied, and why not."""

    rule_id: str
    name: str
    matched: bool
    why_not: str | None = None


@dataclass(frozen=True, slots=True)
class RuleChoice:
    """The rule that decides (`rule_id` DEFAULT_RULE_ID: none matched) and every rule tried before it."""

    rule_id: str
    name: str
    action: Action
    checks: tuple[RuleCheck, ...]

    def describe(self) -> str:
        missed = [f"{c.name} ({c.why_not})" for c in self.checks if not c.matched]
        head = "no rule matched; the default rule" if self.rule_id == DEFAULT_RULE_ID else f"rule {self.name!r}"
        return (
            head
            + (f"; not matched: {'; '.join(missed[:5])}" if missed else "")
            + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
        )


def choose_rule(rules: RuleSet, summary: LeadSummary, now: datetime, time_zone: str) -> RuleChoice:
    """The first enabled rule whose criteria the lead meets; the default rule when none does."""
    local = now.astimezone(ZoneInfo(time_zone))
    checks: list[RuleCheck] = []
    for rule in rules.rules:
        why_not = "disabled" if not rule.enabled else mismatch(rule, summary, local)
        checks.append(RuleCheck(rule.id, rule.name, why_not is None, why_not))
        if why_not is None:
            return RuleChoice(rule.id, rule.name, rule.action, tuple(checks))
    return RuleChoice(DEFAULT_RULE_ID, "default", rules.default.action, tuple(checks))


def mismatch(rule: Rule, summary: LeadSummary, local: datetime) -> str | None:
    """Why the lead does not meet the rule's criteria (the first field that fails), or None."""
    facts = _Facts.of(summary)
    for check in _CHECKS:
        why = check(rule.criteria, facts, rule.match)
        if why is not None:
            return why
    return _clock(rule.criteria, local)


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the criteria look at, read once per lead: text folded the way the criteria are."""

    source: str
    site: str | None
    has_phone: bool
    criteria: LeadCriteria

    @classmethod
    def of(cls, summary: LeadSummary) -> _Facts:
        site = summary.source.site_host.lower() if summary.source.site_host else None
        return cls(
            summary.source.name.casefold(), site, bool(summary.contact.phone), summary.criteria or LeadCriteria()
        )


def _one_of(field: str, wanted: Sequence[str], value: str | None, match: Match) -> str | None:
    """A field whose listed values are OR-ed; None when the lead meets it."""
    if not wanted:
        return None
    if value is None:
        return None if match is Match.EMPTY_OR_MATCH else f"no {field}"
    if value in wanted:
        return None
    return f"{field} {value!r} not in {_few(wanted)}"


def _few(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _folded(values: Sequence[str]) -> list[str]:
    return [v.casefold() for v in values]


def _source(c: Criteria, f: _Facts, match: Match) -> str | None:
    return _one_of("source", _folded(c.sources), f.source, match)


def _site(c: Criteria, f: _Facts, match: Match) -> str | None:
    return _one_of("site", c.sites, f.site, match)


def _intent(c: Criteria, f: _Facts, match: Match) -> str | None:
    value = f.criteria.intent.value if f.criteria.intent else None
    return _one_of("lead kind", [i.value for i in c.intents], value, match)


def _property_type(c: Criteria, f: _Facts, match: Match) -> str | None:
    value = f.criteria.property_type.value if f.criteria.property_type else None
    return _one_of("property type", [p.value for p in c.property_types], value, match)


def _place(c: Criteria, f: _Facts, match: Match) -> str | None:
    place = f.criteria.place
    fields = (
        ("city", _folded(c.cities), place.city.casefold() if place and place.city else None),
        ("postal code", c.postal_codes, place.postal_code if place else None),
        ("county", _folded(c.counties), place.county.casefold() if place and place.county else None),
        ("state", _folded(c.states), place.state.casefold() if place and place.state else None),
    )
    return next((why for name, wanted, value in fields if (why := _one_of(name, wanted, value, match))), None)


def _tags(c: Criteria, f: _Facts, match: Match) -> str | None:
    if not c.tags:
        return None
    wanted = _folded(c.tags)
    if not f.criteria.tags:
        return None if match is Match.EMPTY_OR_MATCH else "no tags"
    if any(tag in wanted for tag in f.criteria.tags):
        return None
    return f"none of the tags {_few(wanted)}"


def _price(c: Criteria, f: _Facts, match: Match) -> str | None:
    if c.price_min is None and c.price_max is None:
        return None
    price = f.criteria.price
    if price is None:
        return None if match is Match.EMPTY_OR_MATCH else "no price"
    low, high = price.min, price.max  # an open end reaches as far as it needs to
    if c.price_min is not None and high is not None and high < c.price_min:
        return f"price up to {high} is below {c.price_min}"
    if c.price_max is not None and low is not None and low > c.price_max:
        return f"price from {low} is above {c.price_max}"
    return None


def _phone(c: Criteria, f: _Facts, _match: Match) -> str | None:
    if c.has_phone is None or c.has_phone == f.has_phone:
        return None
    return "no phone" if c.has_phone else "has a phone"


_CHECKS: tuple[Callable[[Criteria, _Facts, Match], str | None], ...] = (
    _source, _site, _intent, _property_type, _price, _place, _tags, _phone,
)  # fmt: skip


def _clock(c: Criteria, local: datetime) -> str | None:
    if c.weekdays and local.weekday() not in c.weekdays:
        return f"not on the rule's days ({local:%A})"
    if c.hours is not None and not within(c.hours, local.time()):
        return f"outside the rule's hours ({local:%H:%M})"
    return None


def within(hours: Hours, moment: time) -> bool:
    if hours.start < hours.end:
        return hours.start <= moment < hours.end
    return moment >= hours.start or moment < hours.end  # crosses midnight (start == end: all day)


# --- rotation orders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """The agent at each cursor position: a cycle of `period` positions (random: a new one each round)."""

    agents: tuple[str, ...]  # the cycle (random: the agents, shuffled per round)
    shuffle_seed: str | None = None

    @property
    def period(self) -> int:
        return len(self.agents)

    def at(self, position: int) -> str:
        if self.shuffle_seed is None:
            return self.agents[position % self.period]
        return _shuffled(self.agents, self.shuffle_seed, position // self.period)[position % self.period]


def rotation_order(action: RotationAction, eligible: Sequence[str], seed: str) -> Order:
    """The cycle a rotation walks over `eligible` (agent ids, in the rule's order)."""
    if not eligible:
        return Order(())
    repeat = action.leads_per_round
    if action.mode is RotationMode.WEIGHTED:
        cycle = _smooth_weighted([(a, action.weights.get(a, 1)) for a in eligible])
        return Order(tuple(a for a in cycle for _ in range(repeat)))
    agents = tuple(a for a in eligible for _ in range(repeat))
    return Order(agents, shuffle_seed=seed if action.mode is RotationMode.RANDOM else None)


def _smooth_weighted(weighted: Sequence[tuple[str, int]]) -> list[str]:
    """Nginx's smooth weighted round robin: each agent as often as its weight, spread out evenly."""
    total = sum(w for _, w in weighted)
    current = [0] * len(weighted)
    cycle: list[str] = []
    for _ in range(total):
        for i, (_, weight) in enumerate(weighted):
            current[i] += weight
        best = max(range(len(weighted)), key=lambda i: (current[i], -i))
        current[best] -= total
        cycle.append(weighted[best][0])
    return cycle


@functools.lru_cache(maxsize=64)
def _shuffled(agents: tuple[str, ...], seed: str, round_: int) -> tuple[str, ...]:
    """Round `round_` of a random rotation: the agents in a seeded random order, never starting with
    the agent that ended the round before (no agent first twice in a row). Two agents alternate."""
    if len(agents) <= 2:
        return agents
    order = _raw_shuffle(agents, seed, round_)
    # The swap below never moves a round's last agent (more than two): the raw order says who it is.
    if round_ > 0 and order[0] == _raw_shuffle(agents, seed, round_ - 1)[-1]:
        order[0], order[1] = order[1], order[0]
    return tuple(order)


def _raw_shuffle(agents: tuple[str, ...], seed: str, round_: int) -> list[str]:
    order = list(agents)
    random.Random(f"{seed}:{round_}").shuffle(order)  # noqa: S311 (fair turns, not secrets)
    return order


def balanced_first(eligible: Sequence[str], counts: Mapping[str, int], cursor: int) -> list[str]:
    """Balanced mode: the agents by how few leads the rule gave them; ties in turn from `cursor`."""
    size = len(eligible)
    turn = {agent: (i - cursor) % size for i, agent in enumerate(eligible)}
    return sorted(eligible, key=lambda a: (counts.get(a, 0), turn[a]))
