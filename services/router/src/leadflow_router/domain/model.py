"""The router's domain model: an account's routing configuration and a lead's routing state.

Both are immutable values. `AccountSnapshot` is what the router knows of an account
when it decides; `LeadState` is one lead's routing record, changed only by the pure
transitions in `decisions.py`. The account's routing rules (`rules`, issue 15) choose who a
general lead's offers go to (`domain/rules.py`); a lead remembers the rule (`rule_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Self, TypeVar, TypeVarTuple

from leadflow_router.domain.frozen import builder, fast_init
from leadflow_shared.availability import AgentAvailability
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.activity import ActivityAction, ContactMessage
from leadflow_shared.events.commands import DepartedLeads as DepartedLeads  # an account setting the router reads
from leadflow_shared.events.routing import AssignmentReason, LeadSummary
from leadflow_shared.routing_rules import Rule, RuleSet

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class RoutingRejected(PoisonMessage):
    """The input cannot be routed: unknown account or lead, an impossible transfer or share.

    A poison message: retrying cannot help, so it is dead-lettered at once with this reason.
    """


class SourceKind(StrEnum):
    DIRECT = "direct"  # an agent's own site or listing: direct-to-user (R3)
    GENERAL = "general"  # every other brokerage lead (R5-R9)


@dataclass(frozen=True, slots=True)
class Agent:
    agent_id: str
    name: str
    active: bool = True
    invitation_accepted: bool = True
    round_robin: bool = True  # approved by the broker for round robin (R6)
    offices: frozenset[str] = frozenset()
    lead_groups: frozenset[str] = frozenset()
    site_hosts: frozenset[str] = frozenset()  # the agent's subdomains and own sites (R2)
    time_zone: str = "UTC"  # its working hours and holidays are in it
    availability: AgentAvailability | None = field(default_factory=AgentAvailability)  # None: unreadable
    # Nothing about the moment can keep it from a lead (no pause, time away, hours, holiday nor cap):
    # worked out once, since every pool asks of every agent for every lead.
    free: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        settings = self.availability
        free = settings is not None and not (
            settings.paused or settings.away or settings.working_hours or settings.caps or settings.holidays
        )
        object.__setattr__(self, "free", free)


@dataclass(frozen=True, slots=True)
class LeadSourceConfig:
    name: str
    kind: SourceKind = SourceKind.GENERAL
    lead_group: str | None = None
    offices: frozenset[str] = frozenset()  # empty: every office
    race_count: int = 1  # R7: agents offered at once
    claim_window: timedelta = timedelta(minutes=15)  # R8
    referral_fee_percent: float = 0.0  # R11, general leads only
    auto_accept: bool = True  # R3, direct leads
    direct_period: timedelta = timedelta(minutes=15)  # R3 with auto-accept off

    def general_fee(self) -> float:
        """R11: the referral fee a general lead of this source carries; a direct-to-user source's carry none."""
        return self.referral_fee_percent if self.kind is SourceKind.GENERAL else 0.0


@dataclass(frozen=True, slots=True)
class PauseWindow:
    """Hours in the account's time zone when reassignments wait (R10); may cross midnight."""

    weekdays: frozenset[int]  # 0 = Monday
    start: time
    end: time
    dates: frozenset[date] = frozenset()  # given: on these dates instead of `weekdays` (the office's holidays)

    def __post_init__(self) -> None:
        # Wall-clock times: a UTC offset stored before crm-api refused it (an agent's working hours, decision 0104)
        # means nothing here, and one time with an offset beside one without would fail every comparison.
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=None))
            object.__setattr__(self, "end", self.end.replace(tzinfo=None))


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    account_id: str
    name: str
    roster: tuple[Agent, ...]  # position 1 first: the broker pool's holder
    round_robin: bool = False
    time_zone: str = "UTC"
    sources: Mapping[str, LeadSourceConfig] = field(default_factory=dict)
    default_source: LeadSourceConfig = LeadSourceConfig(name="default")
    pause: tuple[PauseWindow, ...] = ()
    departed_agent_leads: DepartedLeads = DepartedLeads.UNASSIGNED
    allow_direct_to_user: bool = True  # ClientBAY: off, agent-site and listing leads are general leads (R2, R3)
    rules: RuleSet = field(default_factory=RuleSet)  # the account's routing rules (issue 15)
    rules_unreadable: bool = False  # the stored rule set could not be read: routed by the default
    holidays: frozenset[date] = frozenset()  # the office's days off: no agent with working hours works them
    # Worked out once per snapshot (a snapshot serves many leads): the agents by id, and whether some
    # agent has a lead cap (only then are the leads each agent has counted, issue 15).
    _by_id: Mapping[str, Agent] = field(init=False, repr=False, compare=False)
    counts_leads: bool = field(init=False, repr=False, compare=False)
    _memo: dict[Hashable, Any] = field(init=False, repr=False, compare=False)
    # The rule set's own lookups (`RuleSet.lookups`), read here for every lead without pydantic's attribute hook.
    _rule_by_id: Mapping[str, Rule] = field(init=False, repr=False, compare=False)
    _as_source: Mapping[str, bool] = field(init=False, repr=False, compare=False)
    _fees: Mapping[str, float] = field(init=False, repr=False, compare=False)  # `general_fee` by source name

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {a.agent_id: a for a in reversed(self.roster)})  # the first wins
        by_id, as_source = self.rules.lookups()
        object.__setattr__(self, "_rule_by_id", by_id)
        object.__setattr__(self, "_as_source", as_source)
        capped = any(a.availability is not None and a.availability.caps is not None for a in self.roster)
        object.__setattr__(self, "counts_leads", capped)
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_fees", {name: source.general_fee() for name, source in self.sources.items()})

    def memo(self, key: Hashable, work: Callable[[*Ts], T], *args: *Ts) -> T:
        """`work(*args)`, done once per snapshot and key: what only the snapshot decides (who of a source's
        agents is eligible before the moment is asked), not the lead nor the time. (`args`: a caller asking for
        every lead passes a function and its arguments, not a lambda that makes closure cells at each call.)"""
        try:  # one look-up of the key when it is there, as it is for almost every lead
            found: T = self._memo[key]
        except KeyError:
            found = self._memo[key] = work(*args)
        return found

    def agent(self, agent_id: str) -> Agent | None:
        return self._by_id.get(agent_id)

    def rule(self, rule_id: str | None) -> Rule | None:
        """`rules.find(rule_id)`, from the dict it reads."""
        return None if rule_id is None else self._rule_by_id.get(rule_id)

    def routes_as_source(self, rule_id: str) -> bool:
        """`rules.routes_as_source(rule_id)`."""
        found = self._as_source.get(rule_id)
        return self.rules.routes_as_source(rule_id) if found is None else found

    def source(self, name: str) -> LeadSourceConfig:
        return self.sources.get(name, self.default_source)

    def general_fee(self, source_name: str) -> float:
        """`source(source_name).general_fee()`, from a dict: every new lead asks."""
        fee = self._fees.get(source_name)
        return self.default_source.general_fee() if fee is None else fee

    @property
    def broker(self) -> Agent:
        if not self.roster:
            raise RoutingRejected(f"account {self.account_id} has an empty roster")
        return self.roster[0]

    @property
    def pool_holder(self) -> Agent:
        """Who holds the broker pool's leads (R5, R9, T2): roster position 1, or the next active agent when position
        1 is not active (one who left the office, T3, stays on the roster until taken off it); position 1 when none
        is (helper 180's review)."""
        return self.pool_holder_but(frozenset())

    def pool_holder_but(self, leaving: frozenset[str]) -> Agent:
        """`pool_holder`, never one of `leaving` (an agent leaving the office, whom a snapshot read before its
        status was saved still has active: helper 188's review) while another active agent is there."""
        broker = self.broker
        if broker.active and broker.agent_id not in leaving:
            return broker
        return next((a for a in self.roster if a.active and a.agent_id not in leaving), broker)


class LeadStatus(StrEnum):
    OFFERED = "offered"  # open offers, nobody holds it yet
    WAITING = "waiting"  # offers expired inside a pause; re-offered when it closes (R10)
    ASSIGNED = "assigned"  # an agent holds it
    FELL_BACK = "fell_back"  # the broker pool holds it (R9)
    UNASSIGNED = "unassigned"  # its holder left; nobody holds it until someone distributes it by hand


class OfferStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


@fast_init
@dataclass(frozen=True, slots=True)
class Offer:
    agent_id: str
    round: int
    deadline: datetime
    status: OfferStatus = OfferStatus.OPEN


@fast_init
@dataclass(frozen=True, slots=True)
class LeadState:
    """One lead's routing record. `version` orders writes: every change is a compare-and-set."""

    lead_id: str
    account_id: str
    summary: LeadSummary
    status: LeadStatus
    holder: str | None = None
    reason: AssignmentReason | None = None
    offers: tuple[Offer, ...] = ()
    round: int = 0
    direct_phase: bool = False  # offered to the direct agent alone (R3, auto-accept off)
    next_deadline: datetime | None = None  # when the sweeper must look at it again
    referral_fee_percent: float = 0.0
    share_id: str | None = None  # T1: the lead transfer that gave the holder the lead, while it holds it
    erased: bool = False  # its contact was erased (decision 0050): the summary holds no person any more
    rule_id: str | None = None  # the routing rule whose pool offers it; None: its lead source's rotation (R6)
    fallback_step: int = 0  # 0: the rule's own pool; n: its n-th fallback (issue 15)
    idle_reassigned: int = 0  # times it was taken from an idle holder and offered on (issue 15)
    pond: str | None = None  # the pond its open offers are (issue 15): they do not count against caps
    version: int = 0

    @property
    def source_name(self) -> str:
        return self.summary.source.name

    @property
    def open_offers(self) -> tuple[Offer, ...]:
        return tuple(o for o in self.offers if o.status is OfferStatus.OPEN)

    @property
    def agents_offered(self) -> frozenset[str]:
        return frozenset(o.agent_id for o in self.offers)

    def evolve(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]  # fields checked by the dataclass

    def offered(self, offers: tuple[Offer, ...], round_: int, deadline: datetime, pond: str | None) -> LeadState:
        """This lead offered in round `round_`: `offers` made, due at `deadline`, in `pond` (None: none).
        Every decision offers a lead: rebuilt from its values in field order, in a third of the time `evolve`
        takes (keywords cost CPython a search each), by its builder (no `type.__call__`).
        tests/unit/test_router_offered_state.py checks the order."""
        return _lead_state(
            self.lead_id,
            self.account_id,
            self.summary,
            LeadStatus.OFFERED,  # status
            self.holder,
            self.reason,
            self.offers + offers,  # offers
            round_,  # round
            False,  # direct_phase
            deadline,  # next_deadline
            self.referral_fee_percent,
            self.share_id,
            self.erased,
            self.rule_id,
            self.fallback_step,
            self.idle_reassigned,
            pond,  # pond
            self.version,
        )


_lead_state = builder(LeadState)  # `LeadState(...)` as a plain function: `frozen.builder`


@dataclass(frozen=True, slots=True)
class Activity:
    agent_id: str
    action: ActivityAction
    message: ContactMessage | None = None  # an email or text to the contact, sent if the agent holds the lead
    event_id: uuid.UUID | None = None  # its LeadActivity's id: an answer to an ask back names it (decision 0067)
    # When the agent acted (its LeadActivity's occurred_at, stamped by crm-api): a claim counts by it, not by
    # when the router reads it (decision 0087). None: when it is decided.
    made_at: datetime | None = None
    # The round of the offer the agent acted on (crm-api's, decision 0087): only that round's offer is claimed or
    # declined, not a later offer of the lead to the same agent. None: the agent's open offer, whichever round.
    offer_round: int | None = None
