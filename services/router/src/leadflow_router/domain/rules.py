"""Which rule of an account's rule set decides a general lead, and in what order a rotation goes.

Pure. The rule set's shape and its written semantics are `leadflow_shared.routing_rules`; here
they are applied: `choose_rule` tries the rules in order and says of each why it did or did not
apply (the lead's "routing info"); `rotation_order` is the sequence a rotation's cursor walks.
A cursor only grows, so every order is a function of it: replaying a decision gives the same
agents, and storing the cursor with "keep the larger" stays idempotent.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import overload
from zoneinfo import ZoneInfo

from leadflow_shared.events.criteria import LeadCriteria, LeadPlace
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
    """The rule that decides (`rule_id` DEFAULT_RULE_ID: none matched) and every rule tried before it.

    Why each rule tried did not apply is worked out when it is read (`checks`, `describe`): a lead
    tries dozens of rules, and its explanation names five of them.
    """

    rule_id: str
    name: str
    action: Action
    tried: tuple[Rule, ...]  # in order; the deciding rule last, unless it is the default
    summary: LeadSummary
    local: datetime  # the account's clock when the rules were tried
    offices: frozenset[str] = frozenset()  # the offices the lead's source is for

    @property
    def checks(self) -> Sequence[RuleCheck]:
        return _Checks(self)

    @property
    def missed(self) -> tuple[Rule, ...]:
        return self.tried if self.rule_id == DEFAULT_RULE_ID else self.tried[:-1]

    def why_not(self, rule: Rule) -> str | None:
        return "disabled" if not rule.enabled else mismatch(rule, self.summary, self.local, self.offices)

    def describe(self) -> str:
        missed = self.missed
        shown = [f"{rule.name} ({self.why_not(rule)})" for rule in missed[:5]]
        head = "no rule matched; the default rule" if self.rule_id == DEFAULT_RULE_ID else f"rule {self.name!r}"
        return (
            head
            + (f"; not matched: {'; '.join(shown)}" if missed else "")
            + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
        )


class _Checks(Sequence[RuleCheck]):
    """A choice's rules tried, each with why it did not apply, worked out as it is read."""

    __slots__ = ("_choice",)

    def __init__(self, choice: RuleChoice) -> None:
        self._choice = choice

    def __len__(self) -> int:
        return len(self._choice.tried)

    @overload
    def __getitem__(self, index: int) -> RuleCheck: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RuleCheck]: ...

    def __getitem__(self, index: int | slice) -> RuleCheck | Sequence[RuleCheck]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        choice = self._choice
        rule = choice.tried[index]
        if rule.id == choice.rule_id:
            return RuleCheck(rule.id, rule.name, True)
        return RuleCheck(rule.id, rule.name, False, choice.why_not(rule))


def choose_rule(
    rules: RuleSet, summary: LeadSummary, now: datetime, time_zone: str, offices: frozenset[str] = frozenset()
) -> RuleChoice:
    """The first enabled rule whose criteria the lead meets (`offices`: those its lead source is for);
    the default rule when none does."""
    local = now.astimezone(ZoneInfo(time_zone))
    # Without rules (the seeds' routing) there is nothing to read off the lead.
    n = _first_met(_compiled(rules), _Lead.of(summary, local, offices)) if rules.rules else None
    if n is None:
        return RuleChoice(DEFAULT_RULE_ID, "default", rules.default.action, tuple(rules.rules), summary, local, offices)
    rule = rules.rules[n]
    return RuleChoice(rule.id, rule.name, rule.action, tuple(rules.rules[: n + 1]), summary, local, offices)


def mismatch(rule: Rule, summary: LeadSummary, local: datetime, offices: frozenset[str] = frozenset()) -> str | None:
    """Why the lead does not meet the rule's criteria (the first field that fails), or None."""
    facts = _Facts.of(summary, offices)
    for check in _CHECKS:
        why = check(rule.criteria, facts, rule.match)
        if why is not None:
            return why
    return _clock(rule.criteria, local) if rule.when_closed == "skip" else None


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the criteria look at, read once per lead: text folded the way the criteria are."""

    source: str
    site: str | None
    has_phone: bool
    criteria: LeadCriteria
    offices: frozenset[str] = frozenset()  # folded

    @classmethod
    def of(cls, summary: LeadSummary, offices: frozenset[str] = frozenset()) -> _Facts:
        site = summary.source.site_host.lower() if summary.source.site_host else None
        folded = frozenset(o.casefold() for o in offices)
        criteria = summary.criteria or LeadCriteria()
        return cls(summary.source.name.casefold(), site, bool(summary.contact.phone), criteria, folded)


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


def _office(c: Criteria, f: _Facts, match: Match) -> str | None:
    if not c.offices:
        return None
    if not f.offices:
        return None if match is Match.EMPTY_OR_MATCH else "its source is for no office"
    if f.offices & frozenset(_folded(c.offices)):
        return None
    return f"source's offices {_few(sorted(f.offices))} not in {_few(c.offices)}"


_CHECKS: tuple[Callable[[Criteria, _Facts, Match], str | None], ...] = (
    _office, _source, _site, _intent, _property_type, _price, _place, _tags, _phone,
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


# --- the criteria compiled: yes or no, fast -------------------------------------------------------
# `choose_rule` tries each rule with tests built once per rule set (values folded, in frozensets);
# they agree with `mismatch`, which says why not when an explanation asks.


@dataclass(frozen=True, slots=True)
class _Lead:
    """What the compiled tests look at, read and folded once per lead."""

    source: str
    site: str | None
    intent: str | None
    property_type: str | None
    price: tuple[int | None, int | None] | None  # (min, max); None: the lead has no price
    city: str | None
    postal_code: str | None
    county: str | None
    state: str | None
    tags: tuple[str, ...]
    has_phone: bool
    weekday: int
    time: time
    offices: frozenset[str]

    @classmethod
    def of(cls, summary: LeadSummary, local: datetime, offices: frozenset[str] = frozenset()) -> _Lead:
        facts = _Facts.of(summary, offices)
        c = facts.criteria
        place = c.place or _NO_PLACE
        return cls(
            source=facts.source,
            site=facts.site,
            intent=c.intent.value if c.intent else None,
            property_type=c.property_type.value if c.property_type else None,
            price=None if c.price is None else (c.price.min, c.price.max),
            city=_fold(place.city),
            postal_code=place.postal_code,
            county=_fold(place.county),
            state=_fold(place.state),
            tags=tuple(c.tags),
            has_phone=facts.has_phone,
            weekday=local.weekday(),
            time=local.time(),
            offices=facts.offices,
        )


_NO_PLACE = LeadPlace()


def _fold(value: str | None) -> str | None:
    return value.casefold() if value else None


_Test = Callable[[_Lead], bool]
_COMPILED: dict[int, tuple[weakref.ref[RuleSet], tuple[tuple[_Test, ...], ...]]] = {}


def _compiled(rules: RuleSet) -> tuple[tuple[_Test, ...], ...]:
    """Each rule's tests, built once per rule set (a rule set is immutable) and dropped with it."""
    key = id(rules)
    entry = _COMPILED.get(key)
    if entry is not None and entry[0]() is rules:
        return entry[1]
    compiled = tuple(_tests(rule) for rule in rules.rules)
    _COMPILED[key] = (weakref.ref(rules, lambda _: _COMPILED.pop(key, None)), compiled)
    return compiled


def _tests(rule: Rule) -> tuple[_Test, ...]:
    """The rule's criteria as tests that only say yes or no; an empty field has none."""
    if not rule.enabled:
        return (_never,)
    c, loose = rule.criteria, rule.match is Match.EMPTY_OR_MATCH
    listed: list[tuple[Callable[[_Lead], str | None], Sequence[str]]] = [
        (lambda f: f.city, _folded(c.cities)),
        (lambda f: f.postal_code, c.postal_codes),
        (lambda f: f.county, _folded(c.counties)),
        (lambda f: f.state, _folded(c.states)),
        (lambda f: f.source, _folded(c.sources)),
        (lambda f: f.site, c.sites),
        (lambda f: f.intent, [i.value for i in c.intents]),
        (lambda f: f.property_type, [p.value for p in c.property_types]),
    ]
    tests = [_any_of(value, frozenset(wanted), loose) for value, wanted in listed if wanted]
    if c.offices:
        tests.append(_any_office(frozenset(_folded(c.offices)), loose))
    if c.tags:
        tests.append(_any_tag(frozenset(_folded(c.tags)), loose))
    if c.price_min is not None or c.price_max is not None:
        tests.append(_price_test(c.price_min, c.price_max, loose))
    return (*tests, *_other_tests(c, clock=rule.when_closed == "skip"))


def _first_met(compiled: Sequence[tuple[_Test, ...]], lead: _Lead) -> int | None:
    """The position of the first rule whose tests the lead passes, or None."""
    for n, tests in enumerate(compiled):
        for test in tests:
            if not test(lead):
                break
        else:
            return n
    return None


def _never(_lead: _Lead) -> bool:
    return False


def _any_of(value: Callable[[_Lead], str | None], wanted: frozenset[str], loose: bool) -> _Test:
    if loose:
        return lambda f: (v := value(f)) is None or v in wanted
    return lambda f: value(f) in wanted  # None is never wanted


def _any_office(wanted: frozenset[str], loose: bool) -> _Test:
    if loose:
        return lambda f: not f.offices or not wanted.isdisjoint(f.offices)
    return lambda f: not wanted.isdisjoint(f.offices)


def _any_tag(wanted: frozenset[str], loose: bool) -> _Test:
    if loose:
        return lambda f: not f.tags or not wanted.isdisjoint(f.tags)
    return lambda f: not wanted.isdisjoint(f.tags)


def _price_test(least: int | None, most: int | None, loose: bool) -> _Test:
    def test(f: _Lead) -> bool:
        if f.price is None:
            return loose
        low, high = f.price  # an open end reaches as far as it needs to
        return not (least is not None and high is not None and high < least) and not (
            most is not None and low is not None and low > most
        )

    return test


def _other_tests(c: Criteria, *, clock: bool) -> list[_Test]:
    """Phone, and days and hours when they are criteria (`clock`), not the rule's opening hours."""
    tests: list[_Test] = []
    if c.has_phone is not None:
        phone = c.has_phone
        tests.append(lambda f: f.has_phone == phone)
    if not clock:
        return tests
    if c.weekdays:
        days = frozenset(c.weekdays)
        tests.append(lambda f: f.weekday in days)
    if c.hours is not None:
        hours = c.hours
        tests.append(lambda f: within(hours, f.time))
    return tests


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
        return Order(_weighted_cycle(tuple((a, action.weights.get(a, 1)) for a in eligible), repeat))
    agents = tuple(a for a in eligible for _ in range(repeat))
    return Order(agents, shuffle_seed=seed if action.mode is RotationMode.RANDOM else None)


@functools.lru_cache(maxsize=64)
def _weighted_cycle(weighted: tuple[tuple[str, int], ...], repeat: int) -> tuple[str, ...]:
    """A weighted rotation's cycle, built once per set of eligible agents and weights."""
    return tuple(a for a in _smooth_weighted(weighted) for _ in range(repeat))


def _smooth_weighted(weighted: Sequence[tuple[str, int]]) -> list[str]:
    """Nginx's smooth weighted round robin: each agent as often as its weight, spread out evenly.

    At step t (from 1) agent i's counter is t * weight - total * (times it was picked); the highest
    counter is picked, the lowest index on a tie. Agents of one weight stay in the same order among
    themselves (fewest picks, then lowest index: a heap), so a step compares one agent per weight.
    """
    total = sum(w for _, w in weighted)
    by_weight: dict[int, list[tuple[int, int]]] = {}
    for i, (_, weight) in enumerate(weighted):
        by_weight.setdefault(weight, []).append((0, i))  # (picks, index), in index order: a heap
    cycle: list[str] = []
    for step in range(1, total + 1):
        weight = max(by_weight, key=lambda w: (step * w - total * by_weight[w][0][0], -by_weight[w][0][1]))
        heap = by_weight[weight]
        picks, i = heap[0]
        heapq.heapreplace(heap, (picks + 1, i))
        cycle.append(weighted[i][0])
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


def balanced_first(
    eligible: Sequence[str], counts: Mapping[str, int], cursor: int, exclude: frozenset[str], race: int
) -> list[str]:
    """Balanced mode: the `race` agents (not in `exclude`) the rule gave the fewest leads; ties in turn
    from `cursor`. Usually the fewest are many: found by one pass in C and a short walk from the cursor."""
    size = len(eligible)
    if not size:
        return []
    fewest = min(map(counts.get, eligible, itertools.repeat(0)))
    picked = []
    for step in range(size):
        agent = eligible[(cursor + step) % size]
        if agent not in exclude and counts.get(agent, 0) == fewest:
            picked.append(agent)
            if len(picked) == race:
                return picked
    ranked = (
        (counts.get(agent, 0), (i - cursor) % size, agent) for i, agent in enumerate(eligible) if agent not in exclude
    )  # not enough at the fewest (a race, or those excluded): all of them by count, then turn
    return [agent for _, _, agent in heapq.nsmallest(race, ranked)]
