"""Routing decisions (DESIGN section 3) as pure functions: state and snapshot in, outcome out.

A new lead runs through an ordered pipeline of rules, first match wins:
R1 existing contact, R4 pre-assigned, R2 site attribution, R3 direct-to-user, then the
account's routing rules (issue 15, `rules.py`): the first that matches, else the default
rule, whose seeds' form is R5 round robin off, R6/R7 rotation with a lead race. The rule's
pool (`pool_of`) offers the lead and re-offers it. Deadlines (R8-R10) and agents'
actions (R8) then move the lead's state on. Every outcome carries the events to
publish (R12) and an explanation a person can read.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from leadflow_router.domain.availability import OPEN, Gate, Usage
from leadflow_router.domain.frozen import builder, fast_init
from leadflow_router.domain.model import (
    AccountSnapshot,
    Activity,
    Agent,
    LeadSourceConfig,
    LeadState,
    LeadStatus,
    Offer,
    OfferStatus,
    PauseWindow,
)
from leadflow_router.domain.rules import Order, RuleChoice, balanced_first, choose_rule, rotation_order
from leadflow_router.domain.schedule import (
    PAUSE_LIMIT,
    claim_deadline,
    closed_windows,
    isoformat,
    open_after,
    pause_end,
    reopening,
)
from leadflow_router.domain.why import Candidates, Why
from leadflow_shared.envelope import Contract, Envelope
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import LeadChannel
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    ContactMessaged,
    ContactMessagedPayload,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadHeld,
    LeadHeldPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadSummary,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)
from leadflow_shared.routing_info import RoutingDecision
from leadflow_shared.routing_rules import (
    DEFAULT_RULE_ID,
    Action,
    AgentAction,
    Fallback,
    IdleReassignment,
    OwnerAction,
    PondAction,
    RotationMode,
    SourceRotationAction,
)
from leadflow_shared.routing_rules import Rule as RoutingRule

EXPLANATION_MAX = 1000  # characters: the explanation field of the routing events
LISTED_MAX = 10  # agents named per list in an explanation; the rest are counted


@fast_init
@dataclass(frozen=True, slots=True)
class Emit:
    """An event to publish: its type and payload (the envelope is the caller's)."""

    kind: type[Envelope]
    payload: Contract


@dataclass(frozen=True, slots=True)
class ExistingContact:
    """A lead of the same account with the same email or phone (R1)."""

    lead_id: str
    holder: str | None


@fast_init
@dataclass(frozen=True, slots=True)
class Outcome:
    state: LeadState | None  # None: no lead of its own (R1 logged activity on another)
    events: tuple[Emit, ...]
    explanation: str
    rotation: int | None = None  # the source's rotation cursor after this decision, if it moved
    counts: tuple[tuple[str, int], ...] = ()  # a balanced rotation's new lead counts, by agent
    why: Why | None = None  # what a routing decision was made from ("why this agent", issue 15)

    def decision(self) -> RoutingDecision | None:
        """The structured record of the routing decision this outcome made, if it made one."""
        return None if self.why is None else self.why.decision(self.explanation)


# The objects every new lead's decision builds, built by plain functions (`frozen.builder`): the class's own
# call goes through `type.__call__` and a new evaluation loop, a third of each object's cost.
_emit, _outcome, _offer, _why = builder(Emit), builder(Outcome), builder(Offer), builder(Why)
_lead_state = builder(LeadState)


@fast_init
@dataclass(frozen=True, slots=True)
class Standing:
    """Where a lead's rotation stands when it is offered on: the cursor, a balanced rotation's lead counts
    by agent, and the capped agents' usage (None: caps not checked). A bare cursor is enough elsewhere."""

    cursor: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)
    usage: Mapping[str, Usage] | None = None

    @staticmethod
    def of(rotation: int | Standing) -> Standing:
        return rotation if isinstance(rotation, Standing) else Standing(rotation)


@dataclass(frozen=True)  # not slots: `describe` is cached on the instance (a pool's is kept per snapshot)
class Eligibility:
    eligible: tuple[Agent, ...]
    skipped: tuple[tuple[str, str], ...]  # (agent id, why not)
    ids: tuple[str, ...] = field(init=False, repr=False, compare=False)  # the eligible agents' ids
    # Those with a pause, time away, hours or a cap: the only ones the moment can refuse (`_gated`).
    gated: tuple[Agent, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(a.agent_id for a in self.eligible))
        object.__setattr__(self, "gated", tuple(a for a in self.eligible if not a.free))

    def describe(self) -> str:
        """Who was eligible and why each other agent was not; long rosters are summed up, not listed."""
        return self._description

    @functools.cached_property
    def _description(self) -> str:
        # Only the agents shown are written out: a pool of a 500-agent roster skips dozens.
        skipped = _listed([f"{agent}: {why}" for agent, why in self.skipped[:LISTED_MAX]], "; ", len(self.skipped))
        names = _listed(self.ids, ", ") or "none"
        return f"eligible: {names}" + (f"; skipped {skipped}" if skipped else "")

    @functools.cached_property
    def candidates(self) -> Candidates:
        """These agents as a decision records them when none was left out for having had the lead (a new
        lead's first offers): one per pool, not one per decision."""
        return Candidates(self.ids, self.skipped)


def _listed(items: Sequence[str], separator: str, total: int | None = None) -> str:
    """The first LISTED_MAX of `items` (of `total`, when only those were given), then how many more."""
    shown, total = separator.join(items[:LISTED_MAX]), len(items) if total is None else total
    return shown + (f"{separator}and {total - LISTED_MAX} more" if total > LISTED_MAX else "")


def eligibility(account: AccountSnapshot, source: LeadSourceConfig, gate: Gate = OPEN) -> Eligibility:
    """R6: who may receive this source's general leads, in roster order, and why the others may not
    (what the snapshot decides first, then what the moment does: `gate`)."""
    static = account.memo(
        ("source", source), lambda: _sorted_out([(a.agent_id, a, _ineligible(a, source)) for a in account.roster])
    )
    return _gated(static, gate)


def listed_eligibility(account: AccountSnapshot, agent_ids: Sequence[str], gate: Gate = OPEN) -> Eligibility:
    """Who of the agents a rule names may receive its leads, in the rule's order."""

    def static() -> Eligibility:
        agents = [(i, account.agent(i)) for i in agent_ids]
        return _sorted_out([(i, a, _unavailable(a) if a else "not on the roster") for i, a in agents])

    return _gated(account.memo(("listed", tuple(agent_ids)), static), gate)


def _gated(static: Eligibility, gate: Gate) -> Eligibility:
    """`static` without the agents `gate` refuses now (paused, away, off hours, at a cap); only agents
    with such settings are asked."""
    if not static.gated:  # as for most pools: nobody the moment could refuse
        return static
    refused = {a.agent_id: why for a in static.gated if (why := gate.refuses(a)) is not None}
    if not refused:
        return static
    kept = tuple(a for a in static.eligible if a.agent_id not in refused)
    return Eligibility(kept, static.skipped + tuple(refused.items()))


def _sorted_out(candidates: list[tuple[str, Agent | None, str | None]]) -> Eligibility:
    eligible = tuple(agent for _, agent, why in candidates if agent is not None and why is None)
    return Eligibility(eligible, tuple((agent_id, why) for agent_id, _, why in candidates if why is not None))


def _unavailable(agent: Agent) -> str | None:
    if not agent.active:
        return "inactive"
    if not agent.invitation_accepted:
        return "invitation not accepted"
    if not agent.round_robin:
        return "not approved for round robin"
    return None


def _ineligible(agent: Agent, source: LeadSourceConfig) -> str | None:
    if reason := _unavailable(agent):
        return reason
    if source.lead_group and source.lead_group not in agent.lead_groups:
        return f"not in lead group {source.lead_group!r}"
    if source.offices and not (source.offices & agent.offices):
        return "not in the source's offices"
    return None


def pick(order: Order, cursor: int, count: int, exclude: frozenset[str]) -> tuple[list[str], int]:
    """The next `count` agents in rotation from `cursor`, skipping `exclude`; and the new cursor.

    The cursor only grows (agents are taken at cursor modulo the cycle), so storing
    it with "keep the larger" is idempotent when a decision is replayed.
    """
    # A cycle that is not shuffled is read by index: `Order.at` is a Python call per agent passed, every offer.
    agents, shuffled = order.agents, order.shuffle_seed is not None
    size = len(agents)
    if count == 1 and size and not exclude and not shuffled:  # most offers: the agent at the cursor
        return [agents[cursor % size]], cursor + 1
    picked: list[str] = []
    steps = 0
    for step in range(size):
        agent = order.at(cursor + step) if shuffled else agents[(cursor + step) % size]
        if agent in exclude or agent in picked:
            continue
        picked.append(agent)
        steps = step + 1
        if len(picked) == count:
            break
    return picked, cursor + steps


@dataclass(frozen=True, slots=True)
class Pool:
    """Who a lead's offers go to: the eligible agents, the order they take turns in, how many race at
    once and for how long. `rule`: the routing rule's name; None, the lead source's rotation (R6)."""

    rule: str | None
    who: Eligibility
    order: Order
    race: int
    claim_window: timedelta
    balanced: bool = False
    rule_id: str | None = None
    mode: str = "round_robin"
    pond: str | None = None  # a pond's id: its agents are offered the lead at once (not counted against caps)
    # What every offer from the pool writes of it, worked out once (a pool is kept per snapshot): the step, how its
    # agents were picked and who was eligible, as the explanation says them ("R6", "next in rotation"; "Rule", "rule
    # 'name'"; `who.describe()`), and what its `Why` names: the rotation's kind and mode, and the rule (id, name;
    # None: the source's).
    said: tuple[str, str, str] = field(init=False, repr=False, compare=False)
    turns: tuple[str, str] = field(init=False, repr=False, compare=False)
    named: tuple[str, str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        source = self.rule is None
        step, how = ("R6", "next in rotation") if source else ("Rule", f"rule {self.rule!r}")
        object.__setattr__(self, "said", (step, how, self.who.describe()))
        object.__setattr__(self, "turns", ("source" if source else "rule", self.mode))
        object.__setattr__(self, "named", None if self.rule is None else (self.rule_id or DEFAULT_RULE_ID, self.rule))

    def why(
        self,
        at: datetime,
        chosen: Sequence[str],
        cursors: tuple[int, int],
        excluded: frozenset[str],
        choice: RuleChoice | None = None,
    ) -> Why:
        """What a decision with this pool was made from (`choice`: the routing rules tried for a new lead)."""
        who = self.who
        candidates = Candidates(who.ids, who.skipped, excluded & frozenset(who.ids)) if excluded else who.candidates
        return _why(at, tuple(chosen), candidates, self.turns + cursors, self.named, choice)

    def take(
        self, cursor: int, counts: Mapping[str, int], exclude: frozenset[str]
    ) -> tuple[list[str], int, dict[str, int]]:
        """The agents offered next, the new cursor, and (balanced) their new lead counts."""
        if not self.balanced:
            picked, moved = pick(self.order, cursor, self.race, exclude)
            return picked, moved, {}
        picked = balanced_first(self.who.ids, counts, cursor, exclude, self.race)
        return picked, cursor + (1 if picked else 0), {a: counts.get(a, 0) + 1 for a in picked}


def pool_of(account: AccountSnapshot, source_name: str, rule_id: str | None, gate: Gate = OPEN, step: int = 0) -> Pool:
    """The pool of rule `rule_id` (None, or a rule whose action is `source_rotation`: the source's, R6),
    or of its fallback `step`; `gate` says who cannot take a lead now (paused, away, off hours, at a cap).
    An owner step's pool is empty: roster position 1 then holds the lead (R9)."""
    # What the snapshot decides (who, in what order, for how long) is worked out once per snapshot; it is
    # the pool whenever `gate` refuses nobody more than the snapshot does, as for most leads. Found by the
    # source's name: hashing its config (a dataclass) is a Python call and a tuple of its nine fields.
    static = _static_pool(account, source_name, rule_id, step)
    if _gated(static.who, gate) is static.who:
        return static
    return _pool(account, account.source(source_name), rule_id, gate, step)


def _static_pool(account: AccountSnapshot, source_name: str, rule_id: str | None, step: int) -> Pool:
    """The pool as the snapshot decides it (no gate), once per snapshot. The work is given with its arguments, not
    as a lambda: a lambda's four closure cells are made on every call, and every offer asks."""
    return account.memo(("pool", source_name, rule_id, step), _source_pool, account, source_name, rule_id, step)


def _source_pool(account: AccountSnapshot, source_name: str, rule_id: str | None, step: int) -> Pool:
    return _pool(account, account.source(source_name), rule_id, OPEN, step)


def _pool(account: AccountSnapshot, source: LeadSourceConfig, rule_id: str | None, gate: Gate, step: int) -> Pool:
    action = _action_at(account, rule_id, step)
    if isinstance(action, SourceRotationAction):
        who = eligibility(account, source, gate)
        return Pool(None, who, Order(_ids(who)), max(1, source.race_count), source.claim_window)
    rule = account.rules.find(rule_id)
    name = (rule.name if rule is not None else "default") + (f", fallback {step}" if step else "")
    if isinstance(action, OwnerAction):
        return Pool(name, Eligibility((), ()), Order(()), 1, source.claim_window, rule_id=rule_id, mode="owner")
    if isinstance(action, PondAction):
        return _pond_pool(account, source, rule_id, gate, (name, action.pond))
    window = source.claim_window
    if action.claim_window_seconds is not None:
        window = timedelta(seconds=action.claim_window_seconds)
    if isinstance(action, AgentAction):
        who = listed_eligibility(account, [action.agent_id], gate)
        return Pool(name, who, Order(_ids(who)), 1, window, rule_id=rule_id, mode="agent")
    if action.agents is None:
        who = eligibility(account, source, gate)
    else:
        who = listed_eligibility(account, action.agents, gate)
    order = rotation_order(action, _ids(who), seed=f"{account.account_id}:{rule_id}")
    balanced = action.mode is RotationMode.BALANCED
    return Pool(name, who, order, action.race, window, balanced, rule_id=rule_id, mode=action.mode.value)


def _pond_pool(
    account: AccountSnapshot, source: LeadSourceConfig, rule_id: str | None, gate: Gate, names: tuple[str, str]
) -> Pool:
    """A pond: all its eligible agents offered the lead at once, for the pond's hold (first claim wins)."""
    rule_name, pond_id = names
    pond = account.rules.pond(pond_id)
    if pond is None:  # refused when saved; a stored rule set changed by hand: nobody, so R9
        return Pool(rule_name, Eligibility((), ()), Order(()), 1, source.claim_window, rule_id=rule_id, mode="pond")
    who = eligibility(account, source, gate) if pond.agents is None else listed_eligibility(account, pond.agents, gate)
    hold = timedelta(seconds=pond.hold_seconds)
    label = f"{rule_name}, pond {pond.name!r}"
    return Pool(
        label, who, Order(_ids(who)), max(1, len(who.eligible)), hold, rule_id=rule_id, mode="pond", pond=pond.id
    )


def _action_at(account: AccountSnapshot, rule_id: str | None, step: int) -> Action | Fallback:
    if rule_id is None:
        return SourceRotationAction()
    if step == 0:
        return account.rules.action_of(rule_id)
    fallbacks = account.rules.steps_of(rule_id).fallbacks
    return fallbacks[step - 1] if step <= len(fallbacks) else OwnerAction()


def _pauses(account: AccountSnapshot, rule: RoutingRule | None) -> tuple[PauseWindow, ...]:
    """When a claim clock stops: the account's pauses (R10), and the hours a rule that pauses its clock
    outside them (or holds its leads then) is closed."""
    if rule is None or rule.when_closed == "skip":
        return account.pause
    return (*account.pause, *_closed_hours(rule, account))


def _closed_hours(rule: RoutingRule, account: AccountSnapshot) -> tuple[PauseWindow, ...]:
    """Outside the rule's hours and days, and the office's holidays (closed all day): once per snapshot."""
    c = rule.criteria
    hours = (c.hours.start, c.hours.end) if c.hours else None
    return account.memo(("closed", rule.id), lambda: closed_windows(hours, frozenset(c.weekdays), account.holidays))


def _held(state: LeadState, rule: RoutingRule | None, account: AccountSnapshot, now: datetime) -> Outcome | None:
    """A rule that holds its leads while its hours are closed (`when_closed: hold`): nobody is offered the
    lead until they open, through a closure of weeks (the office's holidays); the sweeper offers it then
    (`on_deadline`). None when it is open (or not such a rule), and when its hours do not open within
    `PAUSE_LIMIT` (60 days: a schedule that never opens holds nothing; the lead is offered now, R10)."""
    if rule is None or rule.when_closed != "hold":
        return None
    until = reopening(now, _closed_hours(rule, account), account.time_zone)
    if until is None:
        return None
    explanation = fit_explanation(
        f"Rule: {rule.name!r} is closed; the lead waits, offered to nobody, until its hours open at "
        f"{until.isoformat()}."
    )
    held = state.evolve(status=LeadStatus.WAITING, next_deadline=until, direct_phase=False, pond=None)
    summary = state.summary
    payload = LeadHeldPayload(
        lead_id=uuid.UUID(state.lead_id),
        rule_id=rule.id,
        until=until,
        explanation=explanation,
        contact=summary.contact,
        source=summary.source,
        message=summary.message,
        referral_fee_percent=state.referral_fee_percent,
        criteria=summary.criteria,
    )
    return Outcome(held, (Emit(LeadHeld, payload),), explanation, why=Why(now, rule=(rule.id, rule.name)))


def current_rule_id(account: AccountSnapshot, rule_id: str | None) -> str | None:
    """The rule a lead of rule `rule_id` goes by now: that rule while the rule set has it; a deleted rule's
    lead goes by the default rule, remembered as a new lead of the default remembers it (`rule_id_of`)."""
    if rule_id is None or rule_id == DEFAULT_RULE_ID or account.rule(rule_id) is not None:
        return rule_id
    return None if account.rules.routes_as_source(DEFAULT_RULE_ID) else DEFAULT_RULE_ID


def _on_current_rule(state: LeadState, account: AccountSnapshot) -> LeadState:
    """`state` on the rule it goes by now: a lead whose rule was deleted starts the default rule at its own
    pool (step 0, the default's rotation), not at the deleted rule's fallback step (decision 0090)."""
    rule_id = current_rule_id(account, state.rule_id)
    return state if rule_id == state.rule_id else state.evolve(rule_id=rule_id, fallback_step=0)


def _idle_of(account: AccountSnapshot, rule_id: str | None) -> IdleReassignment | None:
    """The idle reassignment of the rule a lead of `rule_id` goes by now (the default's when it was deleted);
    none for a lead of its source's settings."""
    return None if rule_id is None else account.rules.steps_of(rule_id).idle


def _fallbacks(account: AccountSnapshot, rule_id: str | None) -> int:
    return 0 if rule_id is None else len(account.rules.steps_of(rule_id).fallbacks)


def _lead_start(lead_id: str) -> int:
    """Where a fallback group's rotation starts for a lead: drawn from its id (fair over many leads,
    the same on a replay, and no cursor of its own to store)."""
    digits = lead_id.replace("-", "")[:8]
    return int(digits, 16) if digits and all(c in "0123456789abcdefABCDEF" for c in digits) else len(lead_id)


def follows_source(account: AccountSnapshot, rule_id: str | None) -> bool:
    """Whether a lead of rule `rule_id` goes by its lead source's settings (the seeds' R5-R7)."""
    return rule_id is None or isinstance(account.rules.action_of(rule_id), SourceRotationAction)


def _ids(who: Eligibility) -> tuple[str, ...]:
    return who.ids


@dataclass(frozen=True, slots=True)
class NextUp:
    """ClientBAY's "who is next": the agents the next general lead of a source is offered to (R6/R7)."""

    source: str
    lead_group: str | None
    round_robin: bool
    next: tuple[str, ...]
    eligibility: Eligibility


def next_up(account: AccountSnapshot, source_name: str, rotation: int, gate: Gate = OPEN) -> NextUp:
    """Who the next general lead of `source_name` goes to, as `offer_next` would pick it now."""
    source = account.source(source_name)
    who = eligibility(account, source, gate)
    if not account.round_robin:  # R5: roster position 1 gets every general lead
        nxt: tuple[str, ...] = (account.pool_holder.agent_id,) if account.roster else ()
    else:
        picked, _ = pick(Order(_ids(who)), rotation, max(1, source.race_count), frozenset())
        nxt = tuple(picked) or ((account.pool_holder.agent_id,) if account.roster else ())
    return NextUp(source.name, source.lead_group, account.round_robin, nxt, who)


# --- new leads -------------------------------------------------------------------------


@fast_init
@dataclass(frozen=True, slots=True)
class NewLead:
    lead_id: str
    account_id: str
    summary: LeadSummary


Rule = Callable[[NewLead, AccountSnapshot, "RoutingContext", datetime], Outcome | None]


@fast_init
@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What the router looked up for this decision besides the snapshot."""

    existing: ExistingContact | None = None
    rotation: int = 0  # the cursor of the rotation the lead's rule uses (its source's, by default)
    counts: Mapping[str, int] = field(default_factory=dict)  # a balanced rotation's lead counts, by agent
    usage: Mapping[str, Usage] | None = None  # each capped agent's counted leads (None: caps not checked)
    choice: RuleChoice | None = None  # the routing rule for the lead, when the caller chose it already


def rule_for(lead: NewLead, account: AccountSnapshot, now: datetime) -> RuleChoice:
    """The account's routing rule for a general lead (`rules.choose_rule`)."""
    offices = account.source(lead.summary.source.name).offices
    return choose_rule(account.rules, lead.summary, now, account.time_zone, offices, account.holidays)


def rule_id_of(choice: RuleChoice | None, account: AccountSnapshot) -> str | None:
    """What a general lead remembers of its rule: None when it goes by its source's settings (the seeds)
    and its rule has no fallbacks nor idle reassignment."""
    if choice is None:
        return None
    # Its hours pausing the claim clock or holding the lead are the rule's own, so a lead of it remembers it.
    return None if account.routes_as_source(choice.rule_id) else choice.rule_id


def _rule_id(context: RoutingContext, account: AccountSnapshot) -> str | None:
    return rule_id_of(context.choice, account)


def _told(context: RoutingContext) -> RuleChoice | None:
    """The routing rules tried for the lead, when there are any to tell of (none: an account without rules)."""
    choice = context.choice
    return choice if choice is not None and choice.tried else None


def _rule_note(choice: RuleChoice | None, account: AccountSnapshot) -> str:
    """Which routing rule decided and why the rules before it did not (`choice`: as `_told` gives it); nothing
    for an account without rules."""
    note = "the stored routing rules cannot be read: routed by the default rule. " if account.rules_unreadable else ""
    return note if choice is None else f"{note}Routing rules: {choice.describe()}. "


def route_new_lead(lead: NewLead, account: AccountSnapshot, context: RoutingContext, now: datetime) -> Outcome:
    """Decide what happens to a lead that just arrived: the first rule that applies decides."""
    if context.choice is None:
        context = replace(context, choice=rule_for(lead, account, now))
    # R5 passes every lead on while round robin is on (`_ROTATING`): one call less for most leads.
    general = (_ROTATING if account.round_robin else GENERAL_RULES) if _general(lead, context) else None
    for rule in general or RULES:
        outcome = rule(lead, account, context, now)
        if outcome is not None:
            why = outcome.why
            # An offer made with the rules tried (`offer_next`), as `_recorded` would keep it, without asking it.
            return outcome if why is not None and why.choice is context.choice else _recorded(outcome, context, now)
    raise AssertionError("the round-robin rule always decides")  # pragma: no cover


def _recorded(outcome: Outcome, context: RoutingContext, now: datetime) -> Outcome:
    """`outcome` with what it was decided from: the pool's (offers) or the agent it went to, and the
    routing rules tried when the account has any."""
    why, choice = outcome.why, _told(context)
    if why is not None and (choice is None or why.choice is choice):
        return outcome  # an offer made with the rules tried (`offer_next`), or with none to tell of: as it is
    if why is None:
        state = outcome.state
        holder = (state.holder,) if state is not None and state.holder else ()
        why = Why(now, holder or tuple(o.agent_id for o in state.open_offers) if state is not None else ())
    return replace(outcome, why=why.with_choice(choice))


def existing_contact(
    lead: NewLead, _account: AccountSnapshot, context: RoutingContext, _now: datetime
) -> Outcome | None:
    """R1: a known contact is not a new lead: log the inquiry on its lead; its agent keeps it and is told."""
    if context.existing is None:
        return None
    existing = context.existing
    payload = ActivityLoggedPayload(
        lead_id=uuid.UUID(existing.lead_id),
        agent_id=existing.holder,
        action=ActivityAction.INQUIRY,
        summary=lead.summary,
    )
    return Outcome(
        None,
        (Emit(ActivityLogged, payload),),
        f"R1: same email or phone as lead {existing.lead_id}; logged on its timeline, its agent keeps it.",
    )


def pre_assigned(lead: NewLead, account: AccountSnapshot, context: RoutingContext, now: datetime) -> Outcome | None:
    """R4: a lead-generation provider already assigned the agent: keep it, round robin does not touch it.

    An agent the account does not have (removed after intake accepted the lead, or another
    account's) cannot keep it, and an accepted lead is never dropped: the rules after R4 route
    it (R2, R3, then R5/R6 as a general lead), and its explanation says why.
    """
    agent_id = lead.summary.source.assigned_agent_id
    if agent_id is None:
        return None
    provider = lead.summary.source.provider or "the provider"
    agent = account.agent(agent_id)
    if agent is None or not agent.active:
        # The rules after R4 decide, in their order: site attribution (R2) and direct-to-user (R3)
        # still apply to this lead, then R5/R6. An agent not active (one who left the office, T3, is on the roster
        # until taken off it) takes nothing: decision 0030 (helper 180's review).
        later = RULES[RULES.index(pre_assigned) + 1 :]
        general = next(outcome for rule in later if (outcome := rule(lead, account, context, now)) is not None)
        who = "not an agent of this account" if agent is None else "not active in this account"
        return _noted(
            general, f"R4 not applied: {provider} pre-assigned {agent_id!r}, who is {who}; routed as a general lead."
        )
    source = account.source(lead.summary.source.name)
    return _assign(
        lead,
        agent,
        AssignmentReason.PRE_ASSIGNED,
        _fee(source),
        now,
        f"R4: {provider} pre-assigned {agent.agent_id}.",
    )


def site_attribution(
    lead: NewLead, account: AccountSnapshot, _context: RoutingContext, now: datetime
) -> Outcome | None:
    """R2: registering on an agent's subdomain or own site makes the visitor that agent's lead (direct-to-user)."""
    host = (lead.summary.source.site_host or "").lower()
    agent = _site_agent(account, host) if host else None
    if agent is None:
        return None
    why = f"came in on {agent.agent_id}'s site {host}"
    return _direct(lead, agent, account, _context, now, (site_attribution, AssignmentReason.SITE_ATTRIBUTION, why))


def _site_agent(account: AccountSnapshot, host: str) -> Agent | None:
    """The first agent in roster order with the site `host`: indexed once per snapshot, not a roster scan per lead."""
    by_host = account.memo(("site_hosts",), lambda: {h: a for a in reversed(account.roster) for h in a.site_hosts})
    return by_host.get(host)


def direct_to_user(lead: NewLead, account: AccountSnapshot, _context: RoutingContext, now: datetime) -> Outcome | None:
    """R3: an inquiry on one of our agent's own listings goes to that agent (direct-to-user)."""
    source = lead.summary.source
    if source.channel is not LeadChannel.LISTING_INQUIRY or source.listing_agent_id is None:
        return None
    agent = account.agent(source.listing_agent_id)
    if agent is None:
        return None  # a listing of another brokerage: a general lead
    why = f"inquiry on {agent.agent_id}'s listing {source.listing_id}"
    return _direct(lead, agent, account, _context, now, (direct_to_user, AssignmentReason.DIRECT_TO_USER, why))


def _direct(
    lead: NewLead,
    agent: Agent,
    account: AccountSnapshot,
    context: RoutingContext,
    now: datetime,
    how: tuple[Rule, AssignmentReason, str],
) -> Outcome | None:
    """A direct-to-user lead (R2, R3; ClientBAY): the agent's at once with auto-accept on, else offered to
    it alone for the source's direct period, then routed as a general lead. When the account does not
    allow direct-to-user leads, None: the rules after it route the lead as a general one. An agent who
    cannot take a lead now (inactive, paused, away, off hours, on a holiday, at a cap) is offered nothing:
    the lead is routed as a general lead at once, as after its direct period, saying why (decision 0101).
    `how`: the rule deciding (`site_attribution`, `direct_to_user`), its reason and what it found."""
    if not account.allow_direct_to_user:
        return None
    direct, reason, why = how
    rule = "R2" if direct is site_attribution else "R3"
    config = account.source(lead.summary.source.name)
    if config.auto_accept and agent.active:  # not active: one who left the office takes nothing (decision 0030)
        return _assign(lead, agent, reason, 0.0, now, f"{rule}: {why}; direct-to-user, auto-accept on, no fee.")
    gate = Gate(now, account.holidays, context.usage, account.time_zone)
    if (cannot := "inactive" if not agent.active else gate.refuses(agent)) is not None:
        later = RULES[RULES.index(direct) + 1 :]
        general = next(outcome for step in later if (outcome := step(lead, account, context, now)) is not None)
        note = f"{rule} not applied: {why}, but {agent.agent_id} cannot take a lead now ({cannot})"
        return _noted(general, f"{note}; routed as a general lead.")
    general_rule = _rule_id(context, account)
    deadline = claim_deadline(now, config.direct_period, account.pause, account.time_zone)
    offer = Offer(agent.agent_id, 1, deadline)
    state = _new_state(
        lead,
        LeadStatus.OFFERED,
        offers=(offer,),
        round=1,
        direct_phase=True,
        next_deadline=deadline,
        rule_id=general_rule,
    )
    explanation = (
        f"{rule}: {why}; auto-accept off, offered to that agent alone until {deadline.isoformat()}, "
        "then routed as a general lead."
    )
    return Outcome(state, (offered_event(state, offer, 1, explanation),), explanation)


def roster_position_1(
    lead: NewLead, account: AccountSnapshot, context: RoutingContext, now: datetime
) -> Outcome | None:
    """R5: with round robin off, position 1 of the roster gets the lead and distributes it by hand
    (when the lead goes by its source's settings: a routing rule of its own decides otherwise)."""
    if account.round_robin or not follows_source(account, _rule_id(context, account)):
        return None
    source = account.source(lead.summary.source.name)
    holder = account.pool_holder
    return _assign(
        lead,
        holder,
        AssignmentReason.ROSTER_POSITION_1,
        _fee(source),
        now,
        _rule_note(_told(context), account)
        + f"R5: round robin is off; roster position 1 ({_position_1(account)}) distributes it.",
    )


def _position_1(account: AccountSnapshot, holder: Agent | None = None) -> str:
    """Who holds the broker pool (`holder`, else `pool_holder`), as explanations name it: position 1, or who stands
    in for it (not active, or leaving)."""
    holder, broker = holder or account.pool_holder, account.broker
    return holder.agent_id if holder is broker else f"{holder.agent_id}, for {broker.agent_id}"


def round_robin(lead: NewLead, account: AccountSnapshot, context: RoutingContext, now: datetime) -> Outcome | None:
    """R6/R7, or the matched routing rule: offer to the next eligible agent(s) of its pool."""
    fee = account.general_fee(lead.summary.source.name)  # `_fee` of the source, worked out once per snapshot
    rule_id = rule_id_of(context.choice, account)
    state = _lead_state(
        lead.lead_id, lead.account_id, lead.summary, LeadStatus.OFFERED, referral_fee_percent=fee, rule_id=rule_id
    )
    choice = _told(context)
    note = _rule_note(choice, account)
    rule = account.rule(rule_id)
    if (rule is None and rule_id is not None and rule_id != DEFAULT_RULE_ID) or (
        rule is not None and rule.when_closed == "hold"
    ):  # a rule no longer there, or one that may hold the lead: as `offer_next` takes them
        standing = Standing(context.rotation, context.counts, context.usage)
        return offer_next(state, account, standing, now, note=note, choice=choice)
    # Otherwise the lead is on its rule, which does not hold it: `offer_next` without asking it again, nor
    # building the `Standing` it would read once.
    turn = (context.rotation, context.counts, context.usage)
    return _offer_from_pool(state, account, rule, turn, now, frozenset(), (note, choice))


RULES: tuple[Rule, ...] = (
    existing_contact,
    pre_assigned,
    site_attribution,
    direct_to_user,
    roster_position_1,
    round_robin,
)
GENERAL_RULES = RULES[RULES.index(roster_position_1) :]  # what can decide a lead R1-R4 have nothing to say on
_ROTATING = RULES[RULES.index(round_robin) :]  # ... when round robin is on (R5 passes every lead on)


def _general(lead: NewLead, context: RoutingContext) -> bool:
    """Whether R1-R4 would all pass the lead on, as each first checks: no known contact (R1), no agent a
    provider named (R4), no site it came in on (R2), no listing agent (R3). Most leads: four calls saved."""
    source = lead.summary.source.__dict__  # its fields, without a pydantic attribute read each (`rules._Lead.of`)
    return (
        context.existing is None
        and source["assigned_agent_id"] is None
        and not source["site_host"]
        and source["listing_agent_id"] is None
    )


# --- offers, deadlines and claims ---------------------------------------------------------------


def offer_next(
    state: LeadState,
    account: AccountSnapshot,
    rotation: int | Standing,
    now: datetime,
    exclude: frozenset[str] = frozenset(),
    *,
    note: str = "",
    choice: RuleChoice | None = None,
) -> Outcome:
    """Offer the lead to the next eligible agents of its pool who have not had it (R6, R7, R9, or its
    routing rule's), or fall back; never to `exclude`, nor to an agent who cannot take a lead now
    (paused, away, off hours; at a cap when `usage` is known). A rule that holds its leads while closed
    offers nobody then (`_held`). `note` goes before the explanation (as `_prefixed` puts it), written
    into the events as they are built rather than copied into them after; `choice`, the routing rules
    tried for a new lead, goes into the decision's `Why` as it is built (not attached after). A lead whose
    rule was deleted is offered from the default rule's own pool (`_on_current_rule`)."""
    if (current := _on_current_rule(state, account)) is not state:
        note += f"Rule {state.rule_id!r} no longer exists: the default rule offers the lead. "
        state = current
    rule = account.rule(state.rule_id)
    if (held := _held(state, rule, account, now)) is not None:
        return _prefixed(held, note) if note else held
    standing = Standing.of(rotation)
    turn = (standing.cursor, standing.counts, standing.usage)
    return _offer_from_pool(state, account, rule, turn, now, exclude, (note, choice))


def _offer_from_pool(
    state: LeadState,
    account: AccountSnapshot,
    rule: RoutingRule | None,
    turn: tuple[int, Mapping[str, int], Mapping[str, Usage] | None],
    now: datetime,
    exclude: frozenset[str],
    told: tuple[str, RuleChoice | None],
) -> Outcome:
    """`offer_next` once the lead is on its current rule (`rule`) and that rule does not hold it; `turn`: where
    its rotation stands (cursor, a balanced rotation's counts, the capped agents' usage); `told`: the note and
    the rule choice. A new lead comes here straight from `round_robin`."""
    rotation, counts, usage = turn
    excluded = state.agents_offered | exclude if state.offers else exclude  # a new lead was offered to nobody
    source_name, step = state.summary.source.name, state.fallback_step
    pool = _pool_now(account, (source_name, state.rule_id, step), now, usage)
    start = rotation if step == 0 else _lead_start(state.lead_id)
    picked, cursor, new_counts = pool.take(start, counts, excluded)
    if not picked and pool.mode != "owner" and step < _fallbacks(account, state.rule_id):
        gate = Gate(now, account.holidays, usage, account.time_zone)
        state, pool, picked = _fallen_through(state, account, excluded, gate)
        start, cursor, new_counts = _lead_start(state.lead_id), rotation, {}
    if not picked:
        return _fell_back(state, account, pool, (start, excluded, exclude), now, told)
    pauses = _pauses(account, rule)
    # Most offers: nothing pauses the claim clock (`claim_deadline` would return at once).
    deadline = claim_deadline(now, pool.claim_window, pauses, account.time_zone) if pauses else now + pool.claim_window
    return _offered_outcome(state, pool, picked, (start, cursor, new_counts, excluded), (now, deadline), told)


def _pool_now(
    account: AccountSnapshot, of: tuple[str, str | None, int], now: datetime, usage: Mapping[str, Usage] | None
) -> Pool:
    """`pool_of` the source, rule and step `of` at `now`: the `Gate` is built only when the pool has agents it could
    refuse (most pools have none: the snapshot's pool is the pool)."""
    source_name, rule_id, step = of
    static = account.memo(("pool", source_name, rule_id, step), _source_pool, account, source_name, rule_id, step)
    if not static.who.gated:
        return static
    return pool_of(account, source_name, rule_id, Gate(now, account.holidays, usage, account.time_zone), step)


def _fallen_through(
    state: LeadState, account: AccountSnapshot, excluded: frozenset[str], gate: Gate
) -> tuple[LeadState, Pool, list[str]]:
    """Nobody left in the lead's pool: its rule's next fallback steps, until one has somebody to offer."""
    picked: list[str] = []
    pool = None
    while not picked and state.fallback_step < _fallbacks(account, state.rule_id):
        state = state.evolve(fallback_step=state.fallback_step + 1)  # nobody left here: the next step
        pool = pool_of(account, state.source_name, state.rule_id, gate, state.fallback_step)
        picked, _, _ = pool.take(_lead_start(state.lead_id), {}, excluded)
        if pool.mode == "owner":
            break
    assert pool is not None  # noqa: S101 (the caller checked there is a next step)
    return state, pool, picked


PAUSE_RECHECK = timedelta(hours=1)  # how often a lead waiting for a pause to close looks at the schedule again


def _waited_out(state: LeadState, account: AccountSnapshot, now: datetime) -> bool:
    """Whether a lead has waited `PAUSE_LIMIT` for a pause that still does not close within it (a schedule that never
    opens, every day 00:00-00:00): it goes on then (R10's cut), not for another `PAUSE_LIMIT` at each look (helper
    188's review: it waited for good). It began to wait when its last offer expired."""
    since = max((offer.deadline for offer in state.offers), default=now)
    return now >= since + PAUSE_LIMIT and reopening(now, account.pause, account.time_zone) is None


def _fell_back(
    state: LeadState,
    account: AccountSnapshot,
    pool: Pool,
    at: tuple[int, frozenset[str], frozenset[str]],
    now: datetime,
    told: tuple[str, RuleChoice | None],
) -> Outcome:
    """R9: every eligible agent of the pool has had the lead: roster position 1 holds it (`pool_holder`; never one
    `offer_next` was told to leave out, an agent leaving the office)."""
    (start, excluded, leaving), (note, choice) = at, told
    broker = account.pool_holder_but(leaving)
    had = pool.who.describe()
    explanation = _after_note(
        note, f"R9: every eligible agent has had the lead ({had}); back to {_position_1(account, broker)}."
    )
    fell_back = state.evolve(
        status=LeadStatus.FELL_BACK,
        holder=broker.agent_id,
        reason=AssignmentReason.FALLBACK,
        next_deadline=None,
        direct_phase=False,
        pond=None,
    )
    payload = LeadFellBackPayload(lead_id=uuid.UUID(state.lead_id), agent_id=broker.agent_id, explanation=explanation)
    why = pool.why(now, (broker.agent_id,), (start, start), excluded, choice)
    return _outcome(fell_back, (_emit(LeadFellBack, payload),), explanation, None, (), why)


def _offered_outcome(
    state: LeadState,
    pool: Pool,
    picked: list[str],
    moved: tuple[int, int, dict[str, int], frozenset[str]],
    times: tuple[datetime, datetime],
    told: tuple[str, RuleChoice | None],
) -> Outcome:
    """The lead offered to `picked` of `pool` until the deadline (`times`: now, the deadline); `moved`: the cursor
    before and after, the balanced counts after, and who was excluded."""
    (start, cursor, new_counts, excluded), (now, deadline), (note, choice) = moved, times, told
    round_ = state.round + 1
    made = []
    for agent in picked:  # a loop: no comprehension frame, nor closure cells for the round and the deadline
        made.append(_offer(agent, round_, deadline))
    offers = tuple(made)
    said, how, who = pool.said
    names = ", ".join(picked) if len(picked) <= LISTED_MAX else _listed(picked, ", ")  # as `_listed`, mostly: no call
    explanation = _after_note(
        note, f"{said}: offered to {names} ({how}, race of {len(picked)}) until {isoformat(deadline)}; {who}."
    )
    offered = state.offered(offers, round_, deadline, pool.pond)
    events = _offered_events(offered, offers, explanation)
    main = state.fallback_step == 0  # a fallback group keeps no cursor
    why = pool.why(now, picked, (start, cursor if main else start), excluded, choice)
    counts_after = tuple(sorted(new_counts.items())) if new_counts else ()
    return _outcome(offered, events, explanation, cursor if main else None, counts_after, why)


def on_deadline(
    state: LeadState,
    account: AccountSnapshot,
    rotation: int | Standing,
    now: datetime,
) -> Outcome:
    """The sweeper's transition: expire due offers (R9), wait out a pause (R10), re-offer or fall back;
    a claimed lead left idle goes on to the next agent (its rule's idle reassignment)."""
    if state.next_deadline is None or now < state.next_deadline:
        return Outcome(state, (), "not due")
    if state.status is LeadStatus.ASSIGNED and state.reason is AssignmentReason.CLAIMED and _idles(state, account):
        return on_idle(state, account, rotation, now)
    if state.status is LeadStatus.ASSIGNED:  # held, and no idle clock (its rule's dropped since): nothing to do
        return Outcome(state.evolve(next_deadline=None), (), "held: its rule does not reassign idle leads")
    events: list[Emit] = []
    offers = []
    for offer in state.offers:
        if offer.status is OfferStatus.OPEN and offer.deadline <= now:
            offer = Offer(offer.agent_id, offer.round, offer.deadline, OfferStatus.EXPIRED)
            events.append(Emit(OfferExpired, _closed(state, offer)))
        offers.append(offer)
    expired = state.evolve(offers=tuple(offers))
    paused_until = pause_end(now, account.pause, account.time_zone)
    if paused_until is not None and not _waited_out(expired, account, now):
        # Looked at again within the hour: a pause lifted or shortened meanwhile lets the lead go on soon after, not
        # at the end it had when the lead began to wait (helper 188's review).
        waiting = expired.evolve(status=LeadStatus.WAITING, next_deadline=min(paused_until, now + PAUSE_RECHECK))
        return Outcome(waiting, tuple(events), f"R10: reassignment paused until {paused_until.isoformat()}.")
    if not account.round_robin and expired.direct_phase and follows_source(account, state.rule_id):
        # R3 with round robin off: the general route is roster position 1.
        source = account.source(state.source_name)
        broker = account.pool_holder
        explanation = f"R3 then R5: direct period over; roster position 1 ({_position_1(account)}) distributes it."
        assigned = expired.evolve(
            status=LeadStatus.ASSIGNED,
            holder=broker.agent_id,
            next_deadline=None,
            reason=AssignmentReason.ROSTER_POSITION_1,
            direct_phase=False,
            referral_fee_percent=_fee(source),
        )
        return Outcome(assigned, (*events, assigned_event(assigned, explanation)), explanation)
    if expired.direct_phase:
        expired = expired.evolve(referral_fee_percent=_fee(account.source(state.source_name)))
    next_step = offer_next(expired, account, rotation, now)
    return replace(next_step, events=(*events, *next_step.events))


def _idles(state: LeadState, account: AccountSnapshot) -> bool:
    """Whether the rule a claimed lead goes by now still takes it back when idle: a clock started before the
    rule set dropped (or lowered) its idle reassignment takes nothing (decision 0090)."""
    idle = _idle_of(account, state.rule_id)
    return idle is not None and state.idle_reassigned < idle.times


def on_idle(
    state: LeadState,
    account: AccountSnapshot,
    rotation: int | Standing,
    now: datetime,
) -> Outcome:
    """Its holder did nothing with the lead in time (the rule's idle reassignment): it is taken back and
    offered to the rule's next agent (never the same one), its broker told; nobody left: R9."""
    holder = state.holder or ""
    idle = _idle_of(account, state.rule_id)
    minutes = idle.minutes if idle is not None else 0
    head = f"Idle: {holder} did nothing with the lead within {minutes} working minutes; "
    taken = state.evolve(
        status=LeadStatus.OFFERED,
        holder=None,
        reason=None,
        next_deadline=None,
        idle_reassigned=state.idle_reassigned + 1,
    )
    after = offer_next(taken, account, rotation, now)
    explanation = fit_explanation(head + after.explanation)
    released = LeadReleasedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=holder,
        broker_agent_id=account.pool_holder.agent_id,
        explanation=explanation,
        reason="idle",
    )
    return replace(after, events=(Emit(LeadReleased, released), *after.events), explanation=explanation)


def idle_watch(
    before: LeadState, outcome: Outcome, activity: Activity, account: AccountSnapshot, now: datetime
) -> Outcome:
    """The idle clock of a lead's rule (issue 15): started when an agent claims the lead from the rule's pool
    (until `times` reassignments were made), stopped by the holder's first qualifying action. A direct-to-user
    lead claimed in its direct period (R2, R3: its own agent's offer) is not from the rule's pool: no clock."""
    after = outcome.state
    if after is None or after.status is not LeadStatus.ASSIGNED:
        return outcome
    idle = _idle_of(account, after.rule_id)
    if after.holder != before.holder:
        if (
            idle is None
            or after.reason is not AssignmentReason.CLAIMED
            or after.idle_reassigned >= idle.times
            or before.direct_phase
        ):
            return outcome
        # Working minutes: the account's pauses (R10) do not count.
        deadline = open_after(now, timedelta(minutes=idle.minutes), account.pause, account.time_zone)
        return replace(outcome, state=after.evolve(next_deadline=deadline))
    if after.holder == activity.agent_id and activity.action.claims and after.next_deadline is not None:
        return replace(outcome, state=after.evolve(next_deadline=None))  # worked: no longer idle
    return outcome


def on_activity(
    state: LeadState, activity: Activity, now: datetime, *, can_claim: bool = True, cannot: str | None = None
) -> Outcome:
    """R8: a qualifying action claims an open offer; the other offers are withdrawn (R7). Views do nothing.

    An action that cannot claim (by the holder, by someone never offered the lead, after the
    offer ended, by an agent no longer active in the office: `can_claim` false) is logged as
    activity and claims nothing: it is never poison.
    """
    if activity.action is ActivityAction.DECLINE:
        return on_decline(state, activity, now)
    if not activity.action.claims:
        return Outcome(state, (), "viewing does not claim")
    offer = acted_on(state, activity)
    # In time if made before the deadline, however late it is read (consumer lag), while the offer is open.
    made = now if activity.made_at is None else min(now, activity.made_at)
    if (
        state.holder == activity.agent_id
        or offer is None
        or state.status is not LeadStatus.OFFERED
        or (made >= offer.deadline or not can_claim)
    ):
        if state.holder == activity.agent_id:
            refused = None
        elif offer is not None and made < offer.deadline and not can_claim:
            refused = cannot or f"{activity.agent_id} is no longer an active agent of this office"
        else:
            refused = stale_round(state, activity) or claim_refusal(state, activity.agent_id)
        payload = ActivityLoggedPayload(
            lead_id=uuid.UUID(state.lead_id),
            agent_id=state.holder,
            action=activity.action,
            by_agent_id=activity.agent_id,
            claim_refused=refused,
        )
        why = f"R8: claims nothing, {refused}" if refused else "activity logged; it claims nothing"
        sent = _message_to_contact(state, activity) if state.holder == activity.agent_id else ()
        return Outcome(state, (Emit(ActivityLogged, payload), *sent), why)
    events: list[Emit] = []
    offers = []
    for other in state.offers:
        if other.status is OfferStatus.OPEN:
            status = OfferStatus.CLAIMED if other is offer else OfferStatus.WITHDRAWN
            other = Offer(other.agent_id, other.round, other.deadline, status)
            if status is OfferStatus.WITHDRAWN:
                events.append(Emit(OfferWithdrawn, _closed(state, other)))
        offers.append(other)
    claimed = state.evolve(
        status=LeadStatus.ASSIGNED,
        holder=activity.agent_id,
        reason=AssignmentReason.CLAIMED,
        offers=tuple(offers),
        next_deadline=None,
        direct_phase=False,
    )
    claim = LeadClaimedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=activity.agent_id,
        action=activity.action,
        offer_round=offer.round,
        referral_fee_percent=claimed.referral_fee_percent,
    )
    return Outcome(
        claimed,
        (Emit(LeadClaimed, claim), *events, *_message_to_contact(claimed, activity)),
        f"R8: {activity.agent_id} claimed the lead by {activity.action.value}.",
    )


def on_ask_back(
    state: LeadState, activity: Activity, account: AccountSnapshot, now: datetime, *, cannot: str | None = None
) -> Outcome:
    """A missed offer asked back (issue 15): an agent whose offer ended unclaimed gets a new one, joining
    the race if others still have theirs, alone if the lead fell back or waits; never while someone holds
    the lead or when the agent cannot take it now (`cannot`). A refusal is logged with its reason. Either
    answer names the ask (`answers_activity_id`: `activity.event_id`), so crm-api matches it to its ask
    (decision 0067). Only a missed offer is asked back: never by an agent who claimed the lead and lost it
    (taken back for idleness, say), nor by one no pool may offer a lead (not approved for round robin, its
    invitation not accepted: decision 0090). A lead whose rule was deleted goes by the default rule."""
    if (why := _ask_back_refusal(state, activity, account, cannot)) is not None:
        return _refused(state, activity, f"cannot ask it back: {why}")
    state = _on_current_rule(state, account)
    pool = pool_of(account, state.source_name, state.rule_id, step=state.fallback_step)
    racing = state.status is LeadStatus.OFFERED and state.next_deadline is not None and bool(state.open_offers)
    pauses = _pauses(account, account.rules.find(state.rule_id))
    deadline = state.next_deadline if racing and state.next_deadline else (
        claim_deadline(now, pool.claim_window, pauses, account.time_zone)
    )  # fmt: skip
    round_ = state.round if racing else state.round + 1
    offer = Offer(activity.agent_id, round_, deadline)
    offered = state.evolve(
        status=LeadStatus.OFFERED, holder=None, reason=None, offers=(*state.offers, offer), round=round_,
        next_deadline=deadline, direct_phase=False,
    )  # fmt: skip
    explanation = fit_explanation(
        f"{activity.agent_id} asked back the offer it missed: offered to it again until {deadline.isoformat()}"
        + ("; the race goes on." if racing else ".")
    )
    race = len(offered.open_offers)
    answer = offered_event(offered, offer, race, explanation, answers=activity.event_id)
    return Outcome(offered, (answer,), explanation)


def _ask_back_refusal(state: LeadState, activity: Activity, account: AccountSnapshot, cannot: str | None) -> str | None:
    """Why the agent cannot ask the lead back (`cannot`: what the caller found, paused, away, at a cap...);
    None: its offer ended unclaimed and a pool may offer it the lead now."""
    had = [o for o in state.offers if o.agent_id == activity.agent_id]
    open_now = any(o.status is OfferStatus.OPEN for o in had)
    if not had or open_now or state.status not in {LeadStatus.OFFERED, LeadStatus.WAITING, LeadStatus.FELL_BACK}:
        return (
            f"{activity.agent_id} was never offered the lead" if not had
            else "its offer is still open" if open_now
            else f"the lead is held by {state.holder}" if state.holder
            else "nobody can be offered the lead now"
        )  # fmt: skip
    if any(o.status is OfferStatus.CLAIMED for o in had):
        return f"{activity.agent_id} claimed the lead before and no longer holds it; only a missed offer is asked back"
    if cannot is not None:
        return cannot
    agent = account.agent(activity.agent_id)
    if agent is None:
        return "not an agent of this office"
    return _unavailable(agent) or _outside_pools(_on_current_rule(state, account), activity.agent_id, account)


def _outside_pools(state: LeadState, agent_id: str, account: AccountSnapshot) -> str | None:
    """Why no pool the lead goes by now has the agent (its rule's own and its fallback steps up to the lead's, as
    the rule set is now: decision 0090): the reason a pool skips it for (not in the source's lead group or
    offices...), or that the rule no longer names it; None: one of them has it (the moment is asked apart)."""
    named = None
    for step in range(state.fallback_step + 1):
        pool = pool_of(account, state.source_name, state.rule_id, step=step)
        if agent_id in pool.who.ids:
            return None
        if (why := dict(pool.who.skipped).get(agent_id)) is not None:
            return why
        named = named or pool.rule
    return f"{agent_id} is not among the agents of rule {named!r}" if named else f"{agent_id} is not in the rotation"


def _refused(state: LeadState, activity: Activity, why: str) -> Outcome:
    payload = ActivityLoggedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=state.holder,
        action=activity.action,
        by_agent_id=activity.agent_id,
        claim_refused=why,
        answers_activity_id=activity.event_id,
    )
    return Outcome(state, (Emit(ActivityLogged, payload),), why)


def on_decline(state: LeadState, activity: Activity, now: datetime) -> Outcome:
    """The offered agent passes: its offer is withdrawn (`declined`). When no other offer of the lead is open,
    the lead is due at once, so the sweeper offers it on exactly as after an expiry (R9, R10 included);
    a racer's decline leaves the others racing. Declining without a live offer is logged and changes nothing."""
    offer = acted_on(state, activity)
    if offer is None or state.status is not LeadStatus.OFFERED or now >= offer.deadline:
        refused = (
            stale_round(state, activity) or claim_refusal(state, activity.agent_id)
            if state.holder != activity.agent_id
            else None
        )
        payload = ActivityLoggedPayload(
            lead_id=uuid.UUID(state.lead_id),
            agent_id=state.holder,
            action=activity.action,
            by_agent_id=activity.agent_id,
            claim_refused=refused or "there was no open offer to decline",
        )
        return Outcome(state, (Emit(ActivityLogged, payload),), "nothing to decline")
    declined = Offer(offer.agent_id, offer.round, offer.deadline, OfferStatus.WITHDRAWN)
    offers = tuple(declined if o is offer else o for o in state.offers)
    still_open = any(o.status is OfferStatus.OPEN for o in offers)
    after = state.evolve(offers=offers, next_deadline=state.next_deadline if still_open else now)
    withdrawn = OfferClosedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=offer.agent_id,
        offer_round=offer.round,
        reason=WithdrawalReason.DECLINED,
    )
    why = f"{activity.agent_id} declined the offer" + (
        "; the others still race." if still_open else "; the lead goes on to the next agent."
    )
    return Outcome(after, (Emit(OfferWithdrawn, withdrawn),), why)


def _message_to_contact(state: LeadState, activity: Activity) -> tuple[Emit, ...]:
    """The holder's email or text to the contact, to send (RealHub's qualifying actions); nothing when the
    action carries none, or the contact has no address for that channel."""
    if activity.message is None or activity.action not in {ActivityAction.EMAIL, ActivityAction.SMS}:
        return ()
    contact = state.summary.contact
    channel: Literal["email", "sms"] = "email" if activity.action is ActivityAction.EMAIL else "sms"
    to = contact.email if channel == "email" else contact.phone
    if not to:
        return ()
    payload = ContactMessagedPayload(
        lead_id=uuid.UUID(state.lead_id),
        agent_id=activity.agent_id,
        channel=channel,
        to=to,
        subject=activity.message.subject if channel == "email" else "",
        body=activity.message.body,
    )
    return (Emit(ContactMessaged, payload),)


# --- helpers --------------------------------------------------------------------------------------


def acted_on(state: LeadState, activity: Activity) -> Offer | None:
    """The agent's open offer its action was made on: the one of the round the action names (crm-api's), or
    whichever is open when it names none. An action on an offer that since ended acts on no later one."""
    wanted = activity.offer_round
    return next(
        (o for o in state.open_offers if o.agent_id == activity.agent_id and wanted in (None, o.round)),
        None,
    )


def stale_round(state: LeadState, activity: Activity) -> str | None:
    """Why an action on an ended offer claims nothing while the agent holds a later offer of the lead (the
    round it named is not the one open now, decision 0087); None otherwise."""
    wanted = activity.offer_round
    open_now = [o.round for o in state.open_offers if o.agent_id == activity.agent_id]
    if wanted is None or not open_now or wanted in open_now:
        return None
    return (
        f"it was made on the round-{wanted} offer to {activity.agent_id}, which ended; "
        f"the round-{max(open_now)} offer is open to it now"
    )


def claim_refusal(state: LeadState, agent_id: str) -> str | None:
    """Why `agent_id`'s action could not claim the lead, if it had been offered it (None if never)."""
    offers = [o for o in state.offers if o.agent_id == agent_id]
    if not offers:
        return None
    last = max(offers, key=lambda o: o.round)
    at = f"{last.deadline:%Y-%m-%d %H:%M} UTC"
    if last.status is OfferStatus.OPEN or last.status is OfferStatus.EXPIRED:
        ended = f"the offer to {agent_id} expired at {at}"
    elif last.status is OfferStatus.WITHDRAWN:
        ended = f"the offer to {agent_id} was withdrawn"
    else:
        ended = f"{agent_id} claimed the lead before and no longer holds it"
    held = f"the lead is held by {state.holder}" if state.holder else "nobody holds the lead now"
    return f"{ended}; {held}"


def withdraw_open_offers(state: LeadState, reason: WithdrawalReason) -> tuple[tuple[Offer, ...], list[Emit]]:
    """Every open offer withdrawn (the lead leaves the race: T1, T2), with an OfferWithdrawn for each."""
    offers: list[Offer] = []
    events: list[Emit] = []
    for offer in state.offers:
        if offer.status is OfferStatus.OPEN:
            offer = Offer(offer.agent_id, offer.round, offer.deadline, OfferStatus.WITHDRAWN)
            closed = OfferClosedPayload(
                lead_id=uuid.UUID(state.lead_id), agent_id=offer.agent_id, offer_round=offer.round, reason=reason
            )
            events.append(Emit(OfferWithdrawn, closed))
        offers.append(offer)
    return tuple(offers), events


def fit_explanation(explanation: str, limit: int = EXPLANATION_MAX) -> str:
    """`explanation` cut to what the events carry: a long roster must not make a lead unroutable."""
    return explanation if len(explanation) <= limit else explanation[: limit - 1].rstrip() + "…"


def _noted(outcome: Outcome, note: str) -> Outcome:
    """`outcome` with `note` after its explanation, on the outcome and on every event that explains."""
    return _explained(outcome, f"{fit_explanation(outcome.explanation, EXPLANATION_MAX - len(note) - 1)} {note}")


def _prefixed(outcome: Outcome, note: str) -> Outcome:
    """`outcome` with `note` before its explanation, on the outcome and on every event that explains."""
    return _explained(outcome, fit_explanation(note + outcome.explanation))


def _after_note(note: str, explanation: str) -> str:
    """`explanation` cut to fit, then `note` before it, cut again: what `_prefixed` makes of the two. (Every
    offer's explanation: `fit_explanation` is called only for a text too long, as it changes nothing else.)"""
    if len(explanation) > EXPLANATION_MAX:
        explanation = fit_explanation(explanation)
    noted = note + explanation
    return noted if len(noted) <= EXPLANATION_MAX else fit_explanation(noted)


def _explained(outcome: Outcome, explanation: str) -> Outcome:
    events = tuple(
        Emit(e.kind, e.payload.model_copy(update={"explanation": explanation}))
        if "explanation" in type(e.payload).model_fields
        else e
        for e in outcome.events
    )
    return replace(outcome, explanation=explanation, events=events)


def _fee(source: LeadSourceConfig) -> float:
    """R11: general leads carry the source's referral fee; direct-to-user leads none."""
    return source.general_fee()


def _new_state(lead: NewLead, status: LeadStatus, **changes: Any) -> LeadState:
    # Built at once, not built then evolved: a dataclass `replace` is a few µs on every new lead.
    return LeadState(lead_id=lead.lead_id, account_id=lead.account_id, summary=lead.summary, status=status, **changes)


def _assign(
    lead: NewLead, agent: Agent, reason: AssignmentReason, fee: float, _now: datetime, explanation: str
) -> Outcome:
    state = _new_state(lead, LeadStatus.ASSIGNED, holder=agent.agent_id, reason=reason, referral_fee_percent=fee)
    explanation = fit_explanation(explanation)
    return Outcome(state, (assigned_event(state, explanation),), explanation)


def assigned_event(state: LeadState, explanation: str) -> Emit:
    assert state.holder is not None  # noqa: S101 (assigned states have a holder and a reason)
    assert state.reason is not None  # noqa: S101
    return Emit(
        LeadAssigned,
        LeadAssignedPayload(
            lead_id=uuid.UUID(state.lead_id),
            agent_id=state.holder,
            reason=state.reason,
            explanation=explanation,
            contact=state.summary.contact,
            source=state.summary.source,
            message=state.summary.message,
            referral_fee_percent=state.referral_fee_percent,
            criteria=state.summary.criteria,
        ),
    )


# What `LeadOfferedPayload.model_validate` calls, every check included (pydantic's documented validator).
_OFFERED: Callable[[dict[str, Any]], LeadOfferedPayload] = LeadOfferedPayload.__pydantic_validator__.validate_python


def offered_event(
    state: LeadState, offer: Offer, race_size: int, explanation: str, *, answers: uuid.UUID | None = None
) -> Emit:
    """The offer's `LeadOffered`; `answers`: the ask back it answers (decision 0067), if any."""
    return _offered_events(state, (offer,), explanation, race_size, answers)[0]


def _offered_events(
    state: LeadState,
    offers: tuple[Offer, ...],
    explanation: str,
    race_size: int | None = None,
    answers: uuid.UUID | None = None,
) -> tuple[Emit, ...]:
    """The `LeadOffered` of each of `offers`, in a race of `race_size` (None: of `len(offers)`); `answers`: the ask
    back they answer (decision 0067), if any. Each payload is validated from a dict by pydantic-core itself:
    keywords go through BaseModel.__init__ (0.7 µs a decision, measured in the benchmark), and `model_validate`
    wraps the same call in Python (0.6 µs an offer). The dict is written whole for each offer: a copy of what the
    offers share, added to, grew twice (most races are of one)."""
    summary = state.summary.__dict__  # its fields, without a pydantic attribute read each (as `rules._Lead.of`)
    race = len(offers) if race_size is None else race_size
    events = []
    for offer in offers:  # a loop rather than a comprehension: no frame, no closure cells
        fields = {
            "lead_id": state.lead_id,  # validated into a UUID by pydantic, in less time than uuid.UUID takes
            "agent_id": offer.agent_id,
            "offer_round": offer.round,
            "race_size": race,
            "deadline": offer.deadline,
            "explanation": explanation,
            "contact": summary["contact"],
            "source": summary["source"],
            "message": summary["message"],
            "referral_fee_percent": state.referral_fee_percent,
            "criteria": summary["criteria"],
            "pond": state.pond,
            "answers_activity_id": answers,
        }
        events.append(_emit(LeadOffered, _OFFERED(fields)))
    return tuple(events)


def _closed(state: LeadState, offer: Offer) -> OfferClosedPayload:
    return OfferClosedPayload(lead_id=uuid.UUID(state.lead_id), agent_id=offer.agent_id, offer_round=offer.round)
