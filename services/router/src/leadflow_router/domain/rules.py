"""Which rule of an account's rule set decides a general lead, and in what order a rotation goes.

Pure. The rule set's shape and its written semantics are `leadflow_shared.routing_rules`; here
they are applied: `choose_rule` tries the rules in order and says of each why it did or did not
apply (the lead's "routing info"); `rotation_order` is the sequence a rotation's cursor walks.
A cursor only grows, so every order is a function of it: replaying a decision gives the same
agents, and storing the cursor with "keep the larger" stays idempotent.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import random
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import NamedTuple, overload
from zoneinfo import ZoneInfo

from leadflow_router.domain.frozen import builder, fast_init
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


@fast_init
@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One rule tried for a lead: whether it applied, and why not."""

    rule_id: str
    name: str
    matched: bool
    why_not: str | None = None


@fast_init
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
    # The rule set's criteria as compiled (same order as `tried`, the rules after it too: not copied per lead),
    # and the lead as they read it: why a rule did not apply is then one pass over the fields it constrains.
    tests: tuple[_RuleTests, ...] = ()
    lead: _Lead | None = None  # None: no rule was tried
    holidays: frozenset[date] = frozenset()  # the office's: a rule with hours or days is closed on them

    @property
    def checks(self) -> Sequence[RuleCheck]:
        return _Checks(self)

    @property
    def missed(self) -> tuple[Rule, ...]:
        return self.tried if self.rule_id == DEFAULT_RULE_ID else self.tried[:-1]

    def why_not(self, rule: Rule) -> str | None:
        if not rule.enabled:
            return "disabled"
        return mismatch(rule, self.summary, self.local, self.offices, self.holidays)

    def why_not_at(self, index: int) -> str | None:
        """Why the rule tried at `index` did not apply (as `why_not`, from the compiled criteria)."""
        rule = self.tried[index]
        if not rule.enabled:
            return "disabled"
        if self.lead is None or not self.tests:
            return mismatch(rule, self.summary, self.local, self.offices, self.holidays)
        return self.tests[index].why_not(self.lead)

    def rows(self, indices: Iterable[int]) -> list[tuple[str, str, bool, str | None]]:
        """The rules tried at `indices` as `checks` tells them (id, name, applied, why not), without a
        `RuleCheck` each: every new lead's record lists 25."""
        rows: list[tuple[str, str, bool, str | None]] = []
        for index in indices:
            rule = self.tried[index]
            decided = rule.id == self.rule_id
            rows.append((rule.id, rule.name, decided, None if decided else self.why_not_at(index)))
        return rows

    def describe(self) -> str:
        decided = self.rule_id != DEFAULT_RULE_ID
        missed = len(self.tried) - decided
        shown = self._named(missed if missed < 5 else 5)  # not `min`: a builtin's call, on every new lead
        if not decided:
            head = "no rule matched; the default rule"
        else:  # the deciding rule's name as written once per rule set, when it is compiled
            head = self.tests[missed].head if self.tests else f"rule {self.name!r}"
        more = "" if missed <= 5 else _MORE[missed - 5] if missed - 5 < len(_MORE) else f" and {missed - 5} more"
        return head + (f"; not matched: {'; '.join(shown)}{more}" if missed else "")

    def _named(self, count: int) -> list[str]:
        """The first `count` rules tried, each with why it did not apply (as `why_not_at` says), in one pass:
        every new lead's explanation names five."""
        lead, tests = self.lead, self.tests
        if lead is None or not tests:
            return [f"{rule.name} ({self.why_not(rule)})" for rule in self.tried[:count]]
        # The rules tried are the first of those compiled: so are their tests. `_RuleTests.why_not` inlined (a
        # call per rule named, on every new lead).
        named = []
        for t in tests[:count]:
            why = None if t.enabled else "disabled"
            for position, told, reason in () if why else t.steps:
                why = None if position < 0 else told.get(lead[position])  # "": met; None: not told of yet
                if why is None:
                    why = reason(lead)
                if why:
                    break
            named.append(f"{t.name} ({why or None})")  # no criterion failed: None, as `why_not` says
        return named


_rule_choice = builder(RuleChoice)  # `RuleChoice(...)` as a plain function, for every lead: `frozen.builder`
_MORE = tuple(f" and {n} more" for n in range(256))  # a number written costs a thousand instructions


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
        return RuleCheck(rule.id, rule.name, False, choice.why_not_at(index))


def choose_rule(
    rules: RuleSet,
    summary: LeadSummary,
    now: datetime,
    time_zone: str,
    offices: frozenset[str] = frozenset(),
    holidays: frozenset[date] = frozenset(),
) -> RuleChoice:
    """The first enabled rule whose criteria the lead meets (`offices`: those its lead source is for; on one
    of the office's `holidays` a rule with hours or days does not apply); the default rule when none does."""
    local = now.astimezone(ZoneInfo(time_zone))
    if not rules.rules:  # the seeds' routing: nothing to read off the lead
        return RuleChoice(DEFAULT_RULE_ID, "default", rules.default.action, (), summary, local, offices)
    compiled, lead = _compiled(rules), _Lead.of(summary, local, offices, holidays)
    n, tried, tests = compiled.first_met(lead), compiled.rules, compiled.tests
    if n is None:
        default = compiled.default
        return _rule_choice(DEFAULT_RULE_ID, "default", default, tried, summary, local, offices, tests, lead, holidays)
    rule_id, name, action = compiled.decides[n]
    return _rule_choice(rule_id, name, action, tried[: n + 1], summary, local, offices, tests, lead, holidays)


def mismatch(
    rule: Rule,
    summary: LeadSummary,
    local: datetime,
    offices: frozenset[str] = frozenset(),
    holidays: frozenset[date] = frozenset(),
) -> str | None:
    """Why the lead does not meet the rule's criteria (the first field that fails), or None."""
    return _RuleTests.of(rule).why_not(_Lead.of(summary, local, offices, holidays))


def within(hours: Hours, moment: time) -> bool:
    if hours.start < hours.end:
        return hours.start <= moment < hours.end
    return moment >= hours.start or moment < hours.end  # crosses midnight (start == end: all day)


# --- the criteria compiled ----------------------------------------------------------------------
# A rule's criteria become, once per rule set, one `_Criterion` per field it constrains (values folded
# into frozensets): a fast yes or no, and why not, worked out only when an explanation asks. The rule
# set is indexed by the lead fields its rules list values of (`_FieldIndex`): a lead's own values (or
# their absence) leave the few rules they meet, and only those are tested on the other criteria, in
# the rules' order: the first that passes decides.


class _Lead(NamedTuple):
    """What the criteria look at, read and folded once per lead: text folded the way the criteria are.
    (A named tuple: one is built for every lead, in about half the time of a frozen dataclass.)"""

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
    offices: frozenset[str]  # folded
    local: datetime  # the account's clock
    weekday: int
    time: time
    holiday: bool  # one of the office's holidays, on the account's clock

    @classmethod
    def of(
        cls,
        summary: LeadSummary,
        local: datetime,
        offices: frozenset[str] = frozenset(),
        holidays: frozenset[date] = frozenset(),
    ) -> _Lead:
        # Each model's fields read from its `__dict__`, where pydantic keeps them: every attribute read on a model
        # goes through `BaseModel.__getattr__`'s slot hook (about twice a dict lookup), and a lead has 17.
        fields = summary.__dict__
        source, c = fields["source"].__dict__, (fields["criteria"] or _NO_CRITERIA).__dict__
        intent, kind, price, place = c["intent"], c["property_type"], c["price"], (c["place"] or _NO_PLACE).__dict__
        city, county, state, site = place["city"], place["county"], place["state"], source["site_host"]
        # Built by `tuple.__new__`, which the named tuple's own `__new__` calls from Python, and in field order:
        # by keyword that `__new__` matched 16 keywords one by one (1.4 µs more per lead in the benchmark, a
        # third of the time reading it took). The lead kind and property type are kept as the StrEnum members they
        # are: a member hashes and compares as its value does (the reasons write its value: `_one_of`).
        return tuple.__new__(
            cls,
            (
                source["name"].casefold(),
                site.lower() if site else None,
                intent,
                kind,
                None if price is None else (price.__dict__["min"], price.__dict__["max"]),
                city.casefold() if city else None,
                place["postal_code"],
                county.casefold() if county else None,
                state.casefold() if state else None,
                tuple(c["tags"]),
                bool(fields["contact"].phone),
                frozenset(o.casefold() for o in offices) if offices else _NO_OFFICES,
                local,
                local.weekday(),
                local.time(),
                bool(holidays) and local.date() in holidays,
            ),
        )


_NO_CRITERIA = LeadCriteria()
_NO_PLACE = LeadPlace()
_NO_OFFICES: frozenset[str] = frozenset()


def _folded(values: Sequence[str]) -> list[str]:
    return [v.casefold() for v in values]


def _few(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")


_Test = Callable[[_Lead], bool]
_Reason = Callable[[_Lead], str | None]  # why a lead does not meet a criterion; None: it does
_TOLD_KEPT = 256  # the reasons a one-value criterion keeps, by the lead's value (one for each value told of)


@dataclass(frozen=True, slots=True)
class _Criterion:
    """One field a rule constrains: whether a lead meets it (`met`, as the rule set's index tests it), and why a
    lead does not (`reason`, None when it does: asked only for the rules an explanation names)."""

    met: _Test
    reason: _Reason
    # A one-value field of `_Lead` the rule lists values of, and those values: what the index finds it by.
    field: str | None = None
    values: frozenset[str] = frozenset()
    # A one-value field's reasons by the lead's value ("": met), as `reason` wrote them: read without a call.
    told: Mapping[object, str] = dataclasses.field(default_factory=dict, compare=False)  # `field`: a name here


@dataclass(frozen=True, slots=True)
class _RuleTests:
    """A rule's criteria, in the order `mismatch` names the first that fails; and its name and whether it
    is enabled, as the explanation reads them for five rules per lead (a pydantic attribute is slower)."""

    criteria: tuple[_Criterion, ...]
    name: str = ""
    enabled: bool = True
    head: str = field(init=False, repr=False, compare=False)  # the rule as an explanation names the one that decides
    # Each criterion as `why_not` reads it, for five rules per lead: a one-value field's position in `_Lead` (-1: not
    # one), its reasons by value, and its `reason` (for a value not told of yet, and for the other criteria).
    steps: tuple[tuple[int, Mapping[object, str], _Reason], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "head", f"rule {self.name!r}")
        steps = tuple((_position(c.field), c.told, c.reason) for c in self.criteria)
        object.__setattr__(self, "steps", steps)

    @classmethod
    def of(cls, rule: Rule) -> _RuleTests:
        c, loose = rule.criteria, rule.match is Match.EMPTY_OR_MATCH
        found = (
            _offices(c.offices, loose),
            _one_of("source", "source", _folded(c.sources), loose),
            _one_of("site", "site", c.sites, loose),
            _one_of("lead kind", "intent", [i.value for i in c.intents], loose),
            _one_of("property type", "property_type", [p.value for p in c.property_types], loose),
            _price(c.price_min, c.price_max, loose),
            _one_of("city", "city", _folded(c.cities), loose),
            _one_of("postal code", "postal_code", c.postal_codes, loose),
            _one_of("county", "county", _folded(c.counties), loose),
            _one_of("state", "state", _folded(c.states), loose),
            _tags(_folded(c.tags), loose),
            _phone(c.has_phone),
            # Days and hours are criteria only when the rule skips outside them (else they are its opening hours).
            *(_clock(c) if rule.when_closed == "skip" else ()),
        )
        return cls(tuple(criterion for criterion in found if criterion is not None), rule.name, rule.enabled)

    def why_not(self, lead: _Lead) -> str | None:
        """Why the lead does not meet these criteria (the first that fails), or None: a one-value field's reason is
        looked up by the lead's value (a call less for each such field read)."""
        for position, told, reason in self.steps:
            why = None if position < 0 else told.get(lead[position])  # "": met; None: not told of yet
            if why is None:
                why = reason(lead)
            if why:
                return why
        return None


def _position(field: str | None) -> int:
    return -1 if field is None else _Lead._fields.index(field)


def _one_of(name: str, field: str, wanted: Sequence[str], loose: bool) -> _Criterion | None:
    """A field whose listed values are OR-ed (`name`: as the explanation calls it; `field`: `_Lead`'s)."""
    if not wanted:
        return None
    position = _Lead._fields.index(field)  # read by index: an `attrgetter` is one more call per rule told of
    values, listed = frozenset(wanted), _few(wanted)
    told: dict[object, str] = dict.fromkeys(values, "") | ({None: ""} if loose else {})  # met: "" (no reason)
    kept = len(told) + _TOLD_KEPT  # the reasons written, by the lead's value: the same few, lead after lead

    def met(lead: _Lead) -> bool:
        value = lead[position]
        return value in values or (loose and value is None)  # None is never a listed value

    def reason(lead: _Lead) -> str | None:
        value = lead[position]
        if value in values or (loose and value is None):
            return None
        why = f"no {name}" if value is None else f"{name} {str(value)!r} not in {listed}"  # a StrEnum's: its value
        if len(told) < kept:
            told[value] = why
        return why

    return _Criterion(met, reason, field, values, told)


def _offices(offices: Sequence[str], loose: bool) -> _Criterion | None:
    if not offices:
        return None
    wanted, listed = frozenset(_folded(offices)), _few(offices)

    def met(lead: _Lead) -> bool:
        return not wanted.isdisjoint(lead.offices) or (loose and not lead.offices)

    def reason(lead: _Lead) -> str | None:
        if met(lead):
            return None
        if not lead.offices:
            return "its source is for no office"
        return f"source's offices {_few(sorted(lead.offices))} not in {listed}"

    return _Criterion(met, reason)


def _tags(tags: Sequence[str], loose: bool) -> _Criterion | None:
    if not tags:
        return None
    wanted, listed = frozenset(tags), _few(tags)
    missed = f"none of the tags {listed}"

    def met(lead: _Lead) -> bool:
        return not wanted.isdisjoint(lead.tags) or (loose and not lead.tags)

    def reason(lead: _Lead) -> str | None:
        if not wanted.isdisjoint(lead.tags):
            return None
        if not lead.tags:
            return None if loose else "no tags"
        return missed

    return _Criterion(met, reason)


def _price(least: int | None, most: int | None, loose: bool) -> _Criterion | None:
    """The lead's price or range overlaps the rule's; an open end reaches as far as it needs to."""
    if least is None and most is None:
        return None
    # The rule's ends written once, not for each reason: a number written is a thousand instructions.
    below, above = f"is below {least}", f"is above {most}"

    def met(lead: _Lead) -> bool:
        if lead.price is None:
            return loose
        low, high = lead.price
        return not (least is not None and high is not None and high < least) and not (
            most is not None and low is not None and low > most
        )

    def reason(lead: _Lead) -> str | None:  # None where `met` is true
        if lead.price is None:
            return None if loose else "no price"
        low, high = lead.price
        if least is not None and high is not None and high < least:
            return f"price up to {high} {below}"
        if most is not None and low is not None and low > most:
            return f"price from {low} {above}"
        return None

    return _Criterion(met, reason)


def _phone(has_phone: bool | None) -> _Criterion | None:
    if has_phone is None:
        return None
    why = "no phone" if has_phone else "has a phone"
    return _Criterion(
        lambda lead: lead.has_phone == has_phone, lambda lead: None if lead.has_phone == has_phone else why
    )


def _clock(c: Criteria) -> tuple[_Criterion, ...]:
    """A rule's days and hours, as criteria; a rule that has either is closed on the office's holidays."""
    if not c.weekdays and c.hours is None:
        return ()
    found = [_Criterion(lambda lead: not lead.holiday, _holiday)]
    if c.weekdays:
        days = frozenset(c.weekdays)
        found.append(_Criterion(lambda lead: lead.weekday in days, _days_reason(days)))
    if c.hours is not None:
        within_hours = _within(c.hours)
        found.append(_Criterion(within_hours, lambda lead: None if within_hours(lead) else _outside_hours(lead)))
    return tuple(found)


def _days_reason(days: frozenset[int]) -> _Reason:
    told: dict[int, str] = {}  # by weekday: `%A` goes through `time.strftime` (15,000 instructions)

    def reason(lead: _Lead) -> str | None:
        if lead.weekday in days:
            return None
        why = told.get(lead.weekday)
        if why is None:
            why = told[lead.weekday] = f"not on the rule's days ({lead.local:%A})"
        return why

    return reason


def _holiday(lead: _Lead) -> str | None:
    return f"an office holiday ({lead.local:%Y-%m-%d})" if lead.holiday else None


def _outside_hours(lead: _Lead) -> str:
    """Why a lead's time is not in a rule's hours: the time written as `strftime` writes `%H:%M` (two digits
    each), without it (a `%` format spec goes through `time.strftime`: ten times as long)."""
    moment = lead.time
    return f"outside the rule's hours ({moment.hour:02d}:{moment.minute:02d})"


def _within(hours: Hours) -> _Test:
    """`within(hours, lead.time)` with the hours read once per rule set: `within` read up to four pydantic
    attributes, in one more call, for each lead the rule was tested on. Its two cases, as `within` has them
    (`unit/test_router_rule_sets.py` checks both against each other)."""
    start, end = hours.start, hours.end
    if start < end:
        return lambda lead: start <= lead.time < end
    return lambda lead: lead.time >= start or lead.time < end  # crosses midnight (start == end: all day)


@dataclass(frozen=True, slots=True)
class _FieldIndex:
    """One of the lead's one-value fields across the rule set: for each value a rule lists (and for
    None), the rules whose criterion on the field that value meets, as bits (rule n is bit n)."""

    position: int  # the field's, in `_Lead`: read by index, not by an `attrgetter` call per field and lead
    meets: Mapping[Hashable, int]  # by value (a str; None: the lead has none), looked up with what `_Lead` holds
    unlisted: int  # a value no rule lists: only the rules that do not constrain the field

    @classmethod
    def of(cls, field: str, rules: Sequence[tuple[int, Rule, _Criterion | None]]) -> _FieldIndex:
        """`rules`: each enabled rule's position, the rule, and its criterion on `field` (None: none)."""
        free = sum(1 << n for n, _, criterion in rules if criterion is None)
        meets: dict[Hashable, int] = {None: free}
        for n, rule, criterion in rules:
            if criterion is None:
                continue
            for value in criterion.values:
                meets[value] = meets.get(value, free) | (1 << n)
            if rule.match is Match.EMPTY_OR_MATCH:  # a lead without the field meets it
                meets[None] |= 1 << n
        return cls(_Lead._fields.index(field), meets, free)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A rule set's rules compiled, and indexed by the one-value fields they list values of (place,
    source, site, lead kind, property type): a lead's values pick, one lookup per field, the rules
    that all its fields meet; only those are tested on the rest (offices, price, tags, phone, clock)."""

    rules: tuple[Rule, ...]  # the rules tried for a lead are a slice of these
    tests: tuple[_RuleTests, ...]  # each rule's criteria, in the same order
    enabled: int  # the enabled rules, as bits
    fields: tuple[_FieldIndex, ...]  # the fields some rule lists values of
    rest: tuple[tuple[_Test, ...], ...]  # each rule's tests on the fields the index does not cover
    # Each rule's id, name and action, and the default rule's action, as a choice names them: read here, not
    # through pydantic's attribute hook (three to five reads for every lead).
    decides: tuple[tuple[str, str, Action], ...]
    default: Action
    # Each field's index as `first_met` reads it for every lead, unpacked: not three attribute look-ups per field.
    lookups: tuple[tuple[int, Mapping[Hashable, int], int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lookups", tuple((f.position, f.meets, f.unlisted) for f in self.fields))

    @classmethod
    def of(cls, rules: Sequence[Rule], default: Action) -> _Compiled:
        compiled = tuple(_RuleTests.of(rule) for rule in rules)
        by_field = [{c.field: c for c in tests.criteria if c.field is not None} for tests in compiled]
        enabled = [(n, rule, by_field[n]) for n, rule in enumerate(rules) if rule.enabled]
        listed = sorted({field for fields in by_field for field in fields})
        return cls(
            tuple(rules),
            compiled,
            sum(1 << n for n, _, _ in enabled),
            tuple(_FieldIndex.of(f, [(n, rule, fields.get(f)) for n, rule, fields in enabled]) for f in listed),
            tuple(tuple(c.met for c in tests.criteria if c.field is None) for tests in compiled),
            tuple((rule.id, rule.name, rule.action) for rule in rules),
            default,
        )

    def first_met(self, lead: _Lead) -> int | None:
        """The position of the first rule whose criteria the lead meets, or None."""
        candidates = self.enabled
        for position, meets, unlisted in self.lookups:
            candidates &= meets.get(lead[position], unlisted)
        while candidates:
            lowest = candidates & -candidates  # the first rule left
            n = lowest.bit_length() - 1
            for test in self.rest[n]:
                if not test(lead):
                    break
            else:  # every test passed
                return n
            candidates ^= lowest
        return None


_COMPILED: dict[int, tuple[weakref.ref[RuleSet], _Compiled]] = {}


def _compiled(rules: RuleSet) -> _Compiled:
    """The rule set compiled, once per rule set (a rule set is immutable) and dropped with it."""
    key = id(rules)
    entry = _COMPILED.get(key)
    if entry is not None and entry[0]() is rules:
        return entry[1]
    compiled = _Compiled.of(rules.rules, rules.default.action)
    _COMPILED[key] = (weakref.ref(rules, lambda _: _COMPILED.pop(key, None)), compiled)
    return compiled


# --- rotation orders ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """The agent at each cursor position: a cycle of `period` positions (random: a new one each round)."""

    agents: tuple[str, ...]  # the cycle (random: the agents, shuffled per round)
    shuffle_seed: str | None = None
    # A random rotation's last round read (round, its order): the next offers are mostly in it. `_shuffled`'s cache is
    # keyed by the agents too, whose tuple (hundreds of a source's agents) it hashes at every look-up.
    # (None: no round read yet; not -1, a round a position below 0 is in.)
    _round: tuple[int | None, tuple[str, ...]] = field(default=(None, ()), init=False, repr=False, compare=False)

    @property
    def period(self) -> int:
        return len(self.agents)

    def at(self, position: int) -> str:
        agents = self.agents  # `period` is a Python call: every offer asks `at` once per agent it passes
        if self.shuffle_seed is None:
            return agents[position % len(agents)]
        round_, kept = self._round
        if round_ != position // len(agents):
            round_ = position // len(agents)
            kept = _shuffled(agents, self.shuffle_seed, round_)
            object.__setattr__(self, "_round", (round_, kept))  # a cache of what `_shuffled` gives, not a value
        return kept[position % len(agents)]


def rotation_order(action: RotationAction, eligible: Sequence[str], seed: str) -> Order:
    """The cycle a rotation walks over `eligible` (agent ids, in the rule's order)."""
    if not eligible:
        return Order(())
    repeat, agents = action.leads_per_round, tuple(eligible)
    if action.mode is RotationMode.WEIGHTED:
        # Each agent's weight read in C (an agent not named weighs 1): the cache key, without a tuple per agent.
        weights = tuple(map(action.weights.get, agents, itertools.repeat(1)))
        return Order(_weighted_cycle(agents, weights, repeat))
    if repeat > 1:
        agents = tuple(a for a in agents for _ in range(repeat))
    return Order(agents, shuffle_seed=seed if action.mode is RotationMode.RANDOM else None)


@functools.lru_cache(maxsize=64)
def _weighted_cycle(agents: tuple[str, ...], weights: tuple[int, ...], repeat: int) -> tuple[str, ...]:
    """A weighted rotation's cycle, built once per set of eligible agents and weights."""
    return tuple(a for a in _smooth_weighted(tuple(zip(agents, weights, strict=True))) for _ in range(repeat))


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
