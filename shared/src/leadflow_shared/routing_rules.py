"""A brokerage's routing rules (issue 15): the rule set stored on its account as `routing_rules`.

crm-api validates a rule set when it is saved (`RuleSet.refusals` against the roster) and the
router decides with it (`leadflow_router.domain.rules`). Written semantics, also in
docs/routing-rules.md:

- Rules are tried in order; the first enabled rule whose criteria all hold decides. A lead that
  matches none goes to the `default` rule, which every rule set has and which cannot be removed.
- Criteria: the values listed for one field are OR-ed (any of them), fields are AND-ed (all of
  them). A field left empty does not constrain. Text compares without case; postal codes and
  two-letter states as intake normalizes them (upper case; a postal code with one space between its
  parts, `normalize_postal_code`).
- `match`: "exact", a lead that lacks a field the rule constrains does not match (Lofty's "match
  exactly"); "empty_or_match", it does ("empty or match"). Time of day and day of week are the
  account's clock, never missing.
- Actions: offer to one `agent`; a `rotation` (round robin, weighted 1-10, balanced by count, or
  random with no agent first twice in a row; several leads per round; a race of N); or
  `source_rotation`, the lead source's own settings: roster position 1 when round robin is off
  (R5), else its rotation and race (R6, R7). The default rule's default is `source_rotation`: an
  account without rules routes as the seeds describe (R1-R12).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from leadflow_shared.events.criteria import LeadIntent, Price, PropertyType, Tag, normalize_postal_code
from leadflow_shared.times import WallClock

MAX_RULES = 200
MAX_VALUES = 200  # values per criterion
MAX_ROTATION = 1000  # agents named by one rotation

RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
AgentRef = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
PostalCode = Annotated[  # compared with the lead's as intake normalizes it: one function for both
    str,
    StringConstraints(
        strip_whitespace=True, to_upper=True, min_length=1, max_length=16, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]*$"
    ),
    AfterValidator(normalize_postal_code),
]
Host = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=253)]
Weight = Annotated[int, Field(ge=1, le=10)]
ClaimWindow = Annotated[int, Field(ge=10, le=7 * 24 * 3600, description="Seconds an offer waits for a claim.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(StrEnum):
    EXACT = "exact"  # a lead without a constrained field does not match
    EMPTY_OR_MATCH = "empty_or_match"  # a lead without a constrained field matches


class Hours(_Strict):
    """Local time of day in the account's time zone, `start` included, `end` not; `end <= start`
    crosses midnight."""

    start: WallClock
    end: WallClock


class Criteria(_Strict):
    """What a lead must be for the rule to apply: values of one field OR-ed, fields AND-ed."""

    offices: list[Text] = Field(
        default_factory=list, max_length=MAX_VALUES, description="Offices the lead's source is for (per-office rules)."
    )
    sources: list[Text] = Field(default_factory=list, max_length=MAX_VALUES, description="Lead source names.")
    intents: list[LeadIntent] = Field(default_factory=list, description="Lead kind: buyer, seller or renter.")
    property_types: list[PropertyType] = Field(default_factory=list)
    price_min: Price | None = Field(default=None, description="The lead's price or range must reach this.")
    price_max: Price | None = Field(default=None, description="... and start at or below this.")
    cities: list[Text] = Field(default_factory=list, max_length=MAX_VALUES)
    postal_codes: list[PostalCode] = Field(default_factory=list, max_length=MAX_VALUES)
    counties: list[Text] = Field(default_factory=list, max_length=MAX_VALUES)
    states: list[Text] = Field(default_factory=list, max_length=MAX_VALUES)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_VALUES, description="Any of them.")
    sites: list[Host] = Field(default_factory=list, max_length=MAX_VALUES, description="Hosts the lead came in on.")
    has_phone: bool | None = None
    hours: Hours | None = None
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, description="0 = Monday.")

    @model_validator(mode="after")
    def _price_ordered(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is above price_max")
        return self


class AgentAction(_Strict):
    """Offer the lead to this agent alone; unclaimed, it falls back to roster position 1 (R9)."""

    kind: Literal["agent"] = "agent"
    agent_id: AgentRef
    claim_window_seconds: ClaimWindow | None = None  # None: the lead source's


class RotationMode(StrEnum):
    ROUND_ROBIN = "round_robin"  # in the listed order
    WEIGHTED = "weighted"  # an agent of weight 3 gets three leads where one of weight 1 gets one
    BALANCED = "balanced"  # the agent with the fewest leads from this rule first
    RANDOM = "random"  # each agent once per round in a random order; no agent first twice in a row


class RotationAction(_Strict):
    kind: Literal["rotation"] = "rotation"
    agents: list[AgentRef] | None = Field(
        default=None, min_length=1, max_length=MAX_ROTATION, description="None: the lead source's eligible agents."
    )
    mode: RotationMode = RotationMode.ROUND_ROBIN
    weights: dict[AgentRef, Weight] = Field(default_factory=dict, description="Weighted mode; agents not named: 1.")
    leads_per_round: int = Field(default=1, ge=1, le=10, description="Leads in a row each agent gets.")
    race: int = Field(default=1, ge=1, le=50, description="Agents offered at once; the first to claim wins.")
    claim_window_seconds: ClaimWindow | None = None

    @model_validator(mode="after")
    def _weights_fit(self) -> Self:
        if self.weights and self.mode is not RotationMode.WEIGHTED:
            raise ValueError("weights apply to the weighted mode only")
        if self.leads_per_round > 1 and self.mode is RotationMode.RANDOM:
            raise ValueError("leads_per_round does not apply to the random mode (one lead per agent per round)")
        if self.agents is not None:
            if duplicates := sorted(a for a, n in Counter(self.agents).items() if n > 1):
                raise ValueError(f"agents listed twice: {duplicates}")
            if outside := sorted(set(self.weights) - set(self.agents)):
                raise ValueError(f"weights name agents not in the rotation: {outside}")
        return self


class SourceRotationAction(_Strict):
    """The seeds' routing: the lead source's settings (R5 when round robin is off, else R6/R7)."""

    kind: Literal["source_rotation"] = "source_rotation"


class PondAction(_Strict):
    """Put the lead in a pond (`RuleSet.ponds`): every agent of the pond is offered it at once, without
    counting it against their caps, and the first to claim it has it; unclaimed for the pond's
    `hold_seconds`, it goes on (the next fallback step, else roster position 1)."""

    kind: Literal["pond"] = "pond"
    pond: RuleId


Action = Annotated[AgentAction | RotationAction | SourceRotationAction | PondAction, Field(discriminator="kind")]


class OwnerAction(_Strict):
    """Roster position 1 holds the lead (what R9 does at the end of every chain): ends a chain early."""

    kind: Literal["owner"] = "owner"


Fallback = Annotated[AgentAction | RotationAction | PondAction | OwnerAction, Field(discriminator="kind")]
MAX_FALLBACKS = 3


class IdleReassignment(_Strict):
    """A claimed lead with no activity by its holder within `minutes` (outside the account's pauses, R10)
    goes on to the rule's next agent, at most `times` times."""

    minutes: int = Field(ge=1, le=7 * 24 * 60)
    times: int = Field(default=1, ge=1, le=5)


class _Steps(_Strict):
    """What happens when nobody takes the lead: fallback steps in order, then roster position 1 (R9);
    and, once claimed, idle reassignment."""

    fallbacks: list[Fallback] = Field(default_factory=list, max_length=MAX_FALLBACKS)
    idle: IdleReassignment | None = None

    @model_validator(mode="after")
    def _owner_last(self) -> Self:
        if any(isinstance(step, OwnerAction) for step in self.fallbacks[:-1]):
            raise ValueError("an owner step ends the chain: it can only be the last fallback")
        return self


class Rule(_Steps):
    id: RuleId
    name: Text
    enabled: bool = True
    match: Match = Match.EXACT
    criteria: Criteria = Criteria()
    action: Action
    # The rule's `hours` and `weekdays` outside them: "skip", the rule does not apply (a criterion like
    # the others); "pause_clock", it applies and the offer's claim window runs only while they are open
    # (R10's pause, for this rule); "hold", as pause_clock, and a lead that comes (or is to be offered
    # again) while they are closed waits unoffered until they open (`LeadHeld`).
    when_closed: Literal["skip", "pause_clock", "hold"] = "skip"

    @model_validator(mode="after")
    def _hours_to_close(self) -> Self:
        if self.when_closed != "skip" and self.criteria.hours is None and not self.criteria.weekdays:
            raise ValueError(f"when_closed {self.when_closed!r} needs the rule's hours or weekdays")
        return self


class DefaultRule(_Steps):
    """What a lead no rule matches gets."""

    action: Action = SourceRotationAction()


DEFAULT_RULE_ID = "default"


class Pond(_Strict):
    """A shared pool of leads that eligible agents browse and claim from."""

    id: RuleId
    name: Text
    agents: list[AgentRef] | None = Field(
        default=None, min_length=1, max_length=MAX_ROTATION, description="None: the lead source's eligible agents."
    )
    hold_seconds: int = Field(default=7 * 24 * 3600, ge=60, le=90 * 24 * 3600, description="How long a lead waits.")


class RuleSet(_Strict):
    version: int = Field(default=0, ge=0, description="Raised by one on every saved change.")
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    default: DefaultRule = DefaultRule()
    ponds: list[Pond] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _ids_unique(self) -> Self:
        ids = Counter(rule.id for rule in self.rules)
        if DEFAULT_RULE_ID in ids:
            raise ValueError(f"{DEFAULT_RULE_ID!r} names the default rule; give the rule another id")
        if duplicates := sorted(i for i, n in ids.items() if n > 1):
            raise ValueError(f"rule ids used twice: {duplicates}")
        ponds = {pond.id for pond in self.ponds}
        if len(ponds) < len(self.ponds):
            raise ValueError("pond ids used twice")
        for rule_id, steps in [(r.id, r) for r in self.rules] + [(DEFAULT_RULE_ID, self.default)]:
            named = [a.pond for a in (steps.action, *steps.fallbacks) if isinstance(a, PondAction)]
            if unknown := sorted(set(named) - ponds):
                raise ValueError(f"rule {rule_id!r}: unknown ponds {unknown}")
        return self

    def pond(self, pond_id: str) -> Pond | None:
        return next((pond for pond in self.ponds if pond.id == pond_id), None)

    _by_id: dict[str, Rule] = PrivateAttr(default_factory=dict)  # the rules by id: a lookup per lead
    _as_source: dict[str, bool] = PrivateAttr(default_factory=dict)  # `routes_as_source` by rule id, default's too

    def model_post_init(self, _context: Any, /) -> None:
        self._by_id = {rule.id: rule for rule in self.rules}
        as_source = {rule.id: _routes_as_source(rule) for rule in self.rules}
        self._as_source = as_source | {DEFAULT_RULE_ID: _routes_as_source(self.default)}

    def find(self, rule_id: str | None) -> Rule | None:
        if rule_id is None:
            return None
        # Read from pydantic's slot of private values: `self._by_id` goes through BaseModel.__getattr__,
        # which raises and catches AttributeError on the way (ten times as long as this), and a decision
        # asks for its rule about eight times.
        private = self.__pydantic_private__  # a dict on every model with private attributes
        by_id: dict[str, Rule] = private["_by_id"] if private else {}
        return by_id.get(rule_id)

    def routes_as_source(self, rule_id: str) -> bool:
        """Whether rule `rule_id` (the default rule when it is the default or no longer there) only routes as
        the lead's source does: the source's rotation, no fallbacks, no idle reassignment, no hours that pause
        the claim clock or hold the lead. The router asks it twice per new lead: worked out once."""
        private = self.__pydantic_private__  # as in `find`
        found = (private["_as_source"] if private else {}).get(rule_id)
        return _routes_as_source(self.find(rule_id) or self.default) if found is None else found

    def lookups(self) -> tuple[Mapping[str, Rule], Mapping[str, bool]]:
        """What `find` and `routes_as_source` read: the rules by id, and whether each routes as its source does (the
        default rule's under DEFAULT_RULE_ID). For the router's snapshot of an account, which asks them for every
        lead: a method of a model is read through pydantic's attribute hook, and so are its private values."""
        private = self.__pydantic_private__  # as in `find`
        return (private["_by_id"], private["_as_source"]) if private else ({}, {})

    def action_of(self, rule_id: str | None) -> Action:
        """The action of rule `rule_id`; the default rule's when it is the default or no longer there."""
        rule = self.find(rule_id)
        return self.default.action if rule is None else rule.action

    def steps_of(self, rule_id: str | None) -> _Steps:
        """The fallbacks and idle reassignment of rule `rule_id` (the default rule's, as `action_of`)."""
        return self.find(rule_id) or self.default

    def refusals(self, roster: Collection[str]) -> list[str]:
        """Why this rule set cannot be saved for an account with `roster` (agent ids); empty: it can."""
        reasons: list[str] = []
        for rule_id, rule in [(r.id, r) for r in self.rules] + [(DEFAULT_RULE_ID, self.default)]:
            named = [agent for action in (rule.action, *rule.fallbacks) for agent in _named(action)]
            if unknown := sorted({a for a in named if a not in roster}):
                reasons.append(f"rule {rule_id!r}: agents not on the roster: {unknown}")
            weighted = [agent for action in (rule.action, *rule.fallbacks) for agent in _weighted_alone(action)]
            if unknown := sorted({a for a in weighted if a not in roster}):
                reasons.append(f"rule {rule_id!r}: weights name agents not on the roster: {unknown}")
            reasons += [
                f"rule {rule_id!r}: {why}" for action in (rule.action, *rule.fallbacks) if (why := _ignored(action))
            ]
        for pond in self.ponds:
            if unknown := sorted({a for a in pond.agents or () if a not in roster}):
                reasons.append(f"pond {pond.id!r}: agents not on the roster: {unknown}")
        return reasons


def _ignored(action: Action | Fallback) -> str | None:
    """A setting of `action` its mode would ignore, refused when the rule set is saved (not when a stored one is
    read: routing goes on as before, without it). Decision 0090."""
    if isinstance(action, RotationAction) and action.mode is RotationMode.BALANCED and action.leads_per_round > 1:
        return "leads_per_round does not apply to the balanced mode (each lead goes to whoever has had fewest)"
    return None


def _routes_as_source(rule: Rule | DefaultRule) -> bool:
    closes = isinstance(rule, Rule) and rule.when_closed != "skip"
    return isinstance(rule.action, SourceRotationAction) and not rule.fallbacks and rule.idle is None and not closes


def _named(action: Action | Fallback) -> list[str]:
    if isinstance(action, AgentAction):
        return [action.agent_id]
    if isinstance(action, RotationAction):
        return list(action.agents or [])
    return []


def _weighted_alone(action: Action | Fallback) -> list[str]:
    """The agents a rotation of the source's agents (no `agents` of its own) gives weights to: a listed rotation's
    are checked against its list when it is read (`_weights_fit`), these only against the roster, when saved."""
    if isinstance(action, RotationAction) and action.agents is None:
        return list(action.weights)
    return []


def rule_set_of(account: Mapping[str, Any]) -> RuleSet | None:
    """The account's stored rule set; `RuleSet()` (the seeds' routing) when it has none; None when
    the stored one cannot be read (the router then routes by the default and says so)."""
    stored = account.get("routing_rules")
    if stored is None:
        return RuleSet()
    try:
        return RuleSet.model_validate(stored)
    except ValidationError:
        return None


def json_schema() -> str:
    """The rule set's published JSON Schema (docs/routing-rules.schema.json), as committed."""
    schema = RuleSet.model_json_schema(mode="validation")
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m leadflow_shared.routing_rules > docs/routing-rules.schema.json
    sys.stdout.write(json_schema())
