"""The routing decision core's outputs, written out canonically: a tool to check a change keeps them (issue 15).

Not a test and not a benchmark: run it on the code before a change and after, and compare the two files
byte for byte (under two PYTHONHASHSEED values). From fixed seeds it writes, for

- the benchmark's stream (`rules_bench.py`: 200 rules, 500 agents), 4,000 decisions with cursors and
  balanced counts carried as the router carries them, and 1,500 `pool_of` + `take`;
- 10,000 fuzzed leads over 1,000 random accounts (0-12 rules using every criterion, both match modes,
  disabled rules, every `when_closed`, fallbacks, idle reassignment, ponds; 1-40 agents with pauses, time
  away, working hours, caps, unreadable settings; pre-assigned, site and listing leads, known contacts;
  holidays, pauses, int and float fees, a few inputs the contracts refuse), each followed by up to four
  transitions (deadlines, claims, declines, idle reassignment, ask-backs, views and messages),

the rule chosen, every rule tried with its reason, `describe()`, `mismatch()` of every rule (fuzz), the
new state field by field, each event as the outbox writes it (envelope JSON, plus the payload's set
fields), the explanation, cursor and counts, the `Why` field by field, and the decision's record as
stored. An input the code refuses is written as the exception's type.

    .venv/bin/python bench/rules_equivalence.py /tmp/equiv-before.txt
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import rules_bench
from leadflow_router.domain.availability import Usage
from leadflow_router.domain.decisions import (
    ExistingContact,
    NewLead,
    Outcome,
    RoutingContext,
    Standing,
    idle_watch,
    next_up,
    on_activity,
    on_ask_back,
    on_deadline,
    pool_of,
    route_new_lead,
    rule_for,
    rule_id_of,
)
from leadflow_router.domain.model import (
    AccountSnapshot,
    Activity,
    Agent,
    LeadSourceConfig,
    LeadState,
    OfferStatus,
    PauseWindow,
    SourceKind,
)
from leadflow_router.domain.rules import RuleChoice, mismatch
from leadflow_router.domain.why import Why
from leadflow_shared.availability import AgentAvailability, Away, Caps, WorkWindow
from leadflow_shared.events.activity import ActivityAction, ContactMessage
from leadflow_shared.events.criteria import LeadCriteria, LeadIntent, PropertyType
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import RuleSet

STATE_FIELDS = (
    "lead_id", "account_id", "status", "holder", "reason", "round", "direct_phase", "next_deadline",
    "referral_fee_percent", "share_id", "erased", "rule_id", "fallback_step", "idle_reassigned", "pond", "version",
)  # fmt: skip
CORRELATION = uuid.UUID("00000000-0000-4000-8000-00000000c0de")
ZONES = ("America/Chicago", "America/New_York", "UTC", "Europe/Berlin", "Australia/Sydney")
# Weeks around daylight-saving changes and ordinary ones, on the fuzzed accounts' clocks.
WEEKS = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 10, 30, tzinfo=UTC))
CITIES = ("Austin", "Dallas", "Houston", "El Paso", "Waco")
SOURCES = ("Zillow", "Website", "Realtor.com", "Open House")
TAGS = ("hot", "cash", "first-time buyer", "vip", "investor")
OFFICES = ("north", "South", "downtown")


# --- the canonical dump -------------------------------------------------------------------------------


def _state(state: LeadState | None) -> str:
    if state is None:
        return "state None"
    values = [f"{name}={getattr(state, name)!r}" for name in STATE_FIELDS]
    offers = [f"({o.agent_id!r}, {o.round}, {o.deadline!r}, {o.status!r})" for o in state.offers]
    return f"state {' '.join(values)} offers=[{', '.join(offers)}] summary={state.summary.model_dump_json()}"


def _choice(choice: RuleChoice | None) -> list[str]:
    if choice is None:
        return ["choice None"]
    action = json.dumps(choice.action.model_dump(mode="json"))
    lines = [f"choice {choice.rule_id!r} {choice.name!r} {action} tried={len(choice.tried)}"]
    lines += [f"  check {c.rule_id!r} {c.name!r} {c.matched} {c.why_not!r}" for c in choice.checks]
    lines += [f"  missed {[r.id for r in choice.missed]}", f"  describe {choice.describe()!r}"]
    return lines


def _why(why: Why | None) -> list[str]:
    if why is None:
        return ["why None"]
    lines = [f"why at={why.at!r} chosen={why.chosen!r} rotation={why.rotation!r} rule={why.rule!r}"]
    c = why.candidates
    if c is not None:
        lines.append(f"  candidates {c.eligible!r} {c.skipped!r} {sorted(c.excluded)!r}")
    if why.choice is not None:
        lines.append(f"  why.choice {why.choice.rule_id!r} {len(why.choice.tried)} {why.choice.describe()!r}")
    return lines


def _outcome(outcome: Outcome, tag: str, now: datetime) -> list[str]:
    lines = [_state(outcome.state), f"explanation {outcome.explanation!r}"]
    lines.append(f"rotation {outcome.rotation!r} counts {outcome.counts!r}")
    for index, emit in enumerate(outcome.events):
        envelope = emit.kind.create(
            account_id="acct-x",
            event_id=uuid.uuid5(CORRELATION, f"{tag}:{index}"),
            correlation_id=CORRELATION,
            occurred_at=now,
            payload=emit.payload,
        )
        lines.append(f"event {emit.kind.__name__} {envelope.model_dump_json()}")
        lines.append(f"  set {sorted(emit.payload.model_fields_set)}")
    lines += _why(outcome.why)
    decision = outcome.decision()
    if decision is not None:
        lines.append(f"decision {json.dumps(decision.model_dump(mode='json', exclude_defaults=True), sort_keys=True)}")
        lines.append(f"  full {decision.model_dump_json()}")
    return lines


def _guarded(work: Callable[[], Outcome], tag: str, now: datetime) -> tuple[list[str], Outcome | None]:
    """`work()` dumped, or the type of what it raised (an input the contracts refuse)."""
    try:
        outcome = work()
    except Exception as error:  # noqa: BLE001 (the type is the output compared)
        return [f"raised {type(error).__name__}"], None
    return _outcome(outcome, tag, now), outcome


# --- the benchmark's stream -----------------------------------------------------------------------------


def bench_stream(out: TextIO, decisions: int, takes: int) -> None:
    rng = random.Random(15)  # noqa: S311 (reproducible data), the benchmark's seed
    rules = rules_bench.rule_set(rng, 200)
    account = rules_bench.snapshot(rules)
    stream = rules_bench.leads(rules, 2000, rng)
    cursors: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}
    for n in range(decisions):
        lead, at = stream[n % len(stream)]
        choice = rule_for(lead, account, at)
        key = rule_id_of(choice, account) or f"source:{lead.summary.source.name}"
        tally = counts.setdefault(key, {})
        context = RoutingContext(rotation=cursors.get(key, 0), counts=tally, choice=choice)
        out.write(f"== bench {n} {key}\n")
        _write(out, _choice(choice))
        outcome = route_new_lead(lead, account, context, at)
        _write(out, _outcome(outcome, f"bench-{n}", at))
        if outcome.rotation is not None:
            cursors[key] = outcome.rotation
        tally.update(outcome.counts)
    state: dict[str, Any] = {"cursor": 0, "counts": {}}
    for n in range(takes):
        rule_id = (rules_bench.WEIGHTED_ALL, rules_bench.BALANCED_ALL)[n % 2]
        picked, state["cursor"], moved = pool_of(account, "Website", rule_id).take(
            state["cursor"], state["counts"], frozenset()
        )
        state["counts"] |= moved
        out.write(f"== take {n} {picked!r} {state['cursor']} {sorted(moved.items())!r}\n")


def _write(out: TextIO, lines: list[str]) -> None:
    out.write("".join(line + "\n" for line in lines))


# --- fuzzed accounts ---------------------------------------------------------------------------------


def _some(rng: random.Random, values: tuple[str, ...], most: int = 3) -> list[str]:
    return rng.sample(values, rng.randint(1, min(most, len(values))))


def _availability(rng: random.Random) -> AgentAvailability | None:
    roll = rng.random()
    if roll < 0.03:
        return None  # unreadable
    if roll < 0.6:
        return AgentAvailability()
    start = WEEKS[rng.randrange(len(WEEKS))] + timedelta(hours=rng.randrange(7 * 24))
    days = sorted(rng.sample(range(7), rng.randint(1, 6)))
    hours = WorkWindow(weekdays=days, start=time(rng.randrange(12)), end=time(rng.randrange(24)))
    return AgentAvailability(
        paused=rng.random() < 0.15,
        away=[Away(start=start, end=start + timedelta(hours=rng.randint(1, 72)))] if rng.random() < 0.3 else [],
        working_hours=[hours] if rng.random() < 0.4 else [],
        holidays=[start.date()] if rng.random() < 0.2 else [],
        caps=Caps(day=rng.randint(0, 3), week=rng.choice([None, 5])) if rng.random() < 0.4 else None,
    )


def _agents(rng: random.Random) -> tuple[Agent, ...]:
    count = rng.randint(1, 40)
    ids = [f"ag-{n}" for n in range(count)]
    if rng.random() < 0.01:
        ids[-1] = "x" * rng.choice([64, 65])  # at and over the events' limit on an agent id
    return tuple(
        Agent(
            agent_id,
            agent_id.title(),
            active=rng.random() > 0.1,
            invitation_accepted=rng.random() > 0.05,
            round_robin=rng.random() > 0.1,
            offices=frozenset(_some(rng, OFFICES, 2)) if rng.random() < 0.3 else frozenset(),
            lead_groups=frozenset({"team"}) if rng.random() < 0.3 else frozenset(),
            site_hosts=frozenset({f"{agent_id}.example.com"}) if rng.random() < 0.2 else frozenset(),
            time_zone=rng.choice(ZONES),
            availability=_availability(rng),
        )
        for agent_id in ids
    )


def _criteria(rng: random.Random, closes: bool) -> dict[str, Any]:
    makers: dict[str, Callable[[], Any]] = {
        "offices": lambda: _some(rng, OFFICES),
        "sources": lambda: [s.upper() if rng.random() < 0.2 else s for s in _some(rng, SOURCES)],
        "intents": lambda: _some(rng, tuple(i.value for i in LeadIntent), 2),
        "property_types": lambda: _some(rng, tuple(p.value for p in PropertyType)),
        "cities": lambda: _some(rng, CITIES),
        "postal_codes": lambda: _some(rng, ("78701", "78702", "75001")),
        "counties": lambda: _some(rng, ("Travis", "Dallas")),
        "states": lambda: _some(rng, ("TX", "tx", "Texas", "CA"), 2),
        "tags": lambda: _some(rng, TAGS),
        "sites": lambda: [f"ag-{rng.randrange(5)}.example.com"],
        "has_phone": lambda: rng.random() < 0.5,
        "weekdays": lambda: sorted(rng.sample(range(7), rng.randint(1, 6))),
        "hours": lambda: {"start": f"{rng.randrange(24):02d}:00", "end": f"{rng.randrange(24):02d}:30"},
    }
    doc = {name: make() for name, make in makers.items() if rng.random() < 0.2}
    if rng.random() < 0.2:
        low = rng.choice([100_000, 300_000, 500_000])
        doc |= {"price_min": low} if rng.random() < 0.5 else {"price_max": low * 2}
    if closes and "hours" not in doc and "weekdays" not in doc:
        doc["weekdays"] = sorted(rng.sample(range(7), rng.randint(1, 6)))
    return doc


def _action(rng: random.Random, ids: list[str], ponds: list[str], fallback: bool = False) -> dict[str, Any]:
    kinds = ["agent", "rotation", "rotation"] + (["pond"] if ponds else []) + ([] if fallback else ["source_rotation"])
    kind = rng.choice(kinds)
    if kind == "agent":
        window = rng.choice([None, 60, 600])
        return {"kind": "agent", "agent_id": rng.choice([*ids, "gone"]), "claim_window_seconds": window}
    if kind == "pond":
        return {"kind": "pond", "pond": rng.choice(ponds)}
    if kind == "source_rotation":
        return {"kind": "source_rotation"}
    mode = rng.choice(["round_robin", "weighted", "balanced", "random"])
    agents = None if rng.random() < 0.3 else rng.sample(ids, rng.randint(1, len(ids)))
    doc: dict[str, Any] = {"kind": "rotation", "mode": mode, "agents": agents, "race": rng.choice([1, 1, 2, 3])}
    if mode == "weighted":
        named = agents or ids
        doc["weights"] = {a: rng.randint(1, 10) for a in rng.sample(named, rng.randint(0, len(named)))}
    if mode != "random" and rng.random() < 0.2:
        doc["leads_per_round"] = 2
    if rng.random() < 0.2:
        doc["claim_window_seconds"] = rng.choice([30, 900])
    return doc


def _steps(rng: random.Random, ids: list[str], ponds: list[str]) -> dict[str, Any]:
    fallbacks = [_action(rng, ids, ponds, fallback=True) for _ in range(rng.choice([0, 0, 1, 2, 3]))]
    if fallbacks and rng.random() < 0.3:
        fallbacks[-1] = {"kind": "owner"}
    doc: dict[str, Any] = {"fallbacks": fallbacks}
    if rng.random() < 0.25:
        doc["idle"] = {"minutes": rng.choice([5, 60]), "times": rng.randint(1, 2)}
    return doc


def _rule_set(rng: random.Random, ids: list[str]) -> RuleSet:
    ponds: list[dict[str, Any]] = [
        {"id": f"pond-{n}", "name": f"Pond {n}", "agents": None if rng.random() < 0.5 else _some(rng, tuple(ids), 4)}
        | ({"hold_seconds": 600} if rng.random() < 0.5 else {})
        for n in range(rng.choice([0, 0, 1, 2]))
    ]
    pond_ids = [str(p["id"]) for p in ponds]
    rules = []
    for n in range(rng.choice([0, 1, 3, 6, 12])):
        when_closed = rng.choice(["skip", "skip", "skip", "pause_clock", "hold"])
        rules.append(
            {"id": f"r-{n}", "name": f"Rule {n}", "enabled": rng.random() > 0.1, "when_closed": when_closed}
            | {"match": rng.choice(["exact", "empty_or_match"]), "criteria": _criteria(rng, when_closed != "skip")}
            | {"action": _action(rng, ids, pond_ids)}
            | _steps(rng, ids, pond_ids)
        )
    default = {"action": _action(rng, ids, pond_ids)} if rng.random() < 0.3 else {}
    return RuleSet.model_validate(
        {"version": 1, "rules": rules, "default": default | _steps(rng, ids, pond_ids), "ponds": ponds}
    )


def _sources(rng: random.Random) -> dict[str, LeadSourceConfig]:
    return {
        name: LeadSourceConfig(
            name=name,
            kind=SourceKind.DIRECT if rng.random() < 0.15 else SourceKind.GENERAL,
            lead_group="team" if rng.random() < 0.2 else None,
            offices=frozenset(_some(rng, OFFICES, 2)) if rng.random() < 0.2 else frozenset(),
            race_count=rng.choice([0, 1, 1, 2, 3]),
            claim_window=timedelta(minutes=rng.choice([1, 15, 120])),
            # Ints as a config may give them, and now and then one the events refuse.
            referral_fee_percent=101.0 if rng.random() < 0.02 else rng.choice([0.0, 12.5, 25, 30.0, 100]),
            auto_accept=rng.random() < 0.6,
        )
        for name in SOURCES
        if rng.random() < 0.7
    }


def fuzz_account(rng: random.Random, n: int) -> AccountSnapshot:
    roster = _agents(rng)
    ids = [a.agent_id for a in roster if len(a.agent_id) <= 64]
    zone = rng.choice(ZONES)
    week = rng.choice(WEEKS)
    days = [frozenset(rng.sample(range(7), rng.randint(1, 7))) for _ in range(rng.choice([0, 0, 1, 2]))]
    pause = tuple(PauseWindow(d, time(rng.randrange(24)), time(rng.randrange(24))) for d in days)
    return AccountSnapshot(
        account_id=f"acct-{n}",
        name=f"Account {n}",
        roster=roster,
        round_robin=rng.random() < 0.8,
        time_zone=zone,
        sources=_sources(rng),
        default_source=LeadSourceConfig(name="default", race_count=rng.choice([1, 2]), referral_fee_percent=5),
        pause=pause,
        allow_direct_to_user=rng.random() < 0.8,
        rules=_rule_set(rng, ids or ["ag-0"]),
        rules_unreadable=rng.random() < 0.03,
        holidays=frozenset({(week + timedelta(days=rng.randrange(7))).date()}) if rng.random() < 0.2 else frozenset(),
    )


# --- fuzzed leads and what follows them ------------------------------------------------------------------


def _lead_criteria(rng: random.Random) -> LeadCriteria | None:
    doc: dict[str, Any] = {}
    if rng.random() < 0.7:
        doc["intent"] = rng.choice(list(LeadIntent)).value
    if rng.random() < 0.5:
        doc["property_type"] = rng.choice(list(PropertyType)).value
    if rng.random() < 0.5:
        low = rng.choice([50_000, 200_000, 400_000, 900_000])
        doc["price"] = rng.choice([{"min": low}, {"max": low}, {"min": low, "max": low * 2}])
    place = {
        "city": rng.choice(CITIES).lower() if rng.random() < 0.6 else None,
        "postal_code": rng.choice(["78701", "78702 ", "75001", "99999"]) if rng.random() < 0.6 else None,
        "county": rng.choice(["travis", "Dallas", "Harris"]) if rng.random() < 0.3 else None,
        "state": rng.choice(["tx", "TX", "Texas", "ca"]) if rng.random() < 0.6 else None,
    }
    doc["place"] = {k: v for k, v in place.items() if v is not None}
    doc["tags"] = rng.sample(TAGS, rng.randint(0, 2))
    return LeadCriteria.model_validate(doc).normalized()


def _lead_source(rng: random.Random, account: AccountSnapshot) -> LeadSource:
    ids = [a.agent_id for a in account.roster if len(a.agent_id) <= 64]  # as intake's contract allows
    channel = rng.choice(list(LeadChannel))
    doc: dict[str, Any] = {"channel": channel, "name": rng.choice([*SOURCES, "Walk-in"])}
    if channel is LeadChannel.LISTING_INQUIRY:
        doc |= {"listing_id": "mls-1", "listing_agent_id": rng.choice([*ids, "other-brokerage"])}
    if channel is LeadChannel.AGENT_SITE or rng.random() < 0.05:
        doc["site_host"] = f"{rng.choice([*ids, 'nobody'])}.example.com".upper()
    if channel is LeadChannel.LEAD_GEN and rng.random() < 0.5:
        doc |= {"assigned_agent_id": rng.choice([*ids, "stranger"]), "provider": rng.choice([None, "Zillow Flex"])}
    return LeadSource.model_validate(doc)


def fuzz_lead(rng: random.Random, account: AccountSnapshot, n: int) -> tuple[NewLead, datetime]:
    summary = LeadSummary(
        contact=Contact(
            first_name="Fuzz", last_name=f"Lead {n}", email=f"lead-{n}@example.com" if rng.random() < 0.8 else None,
            phone=f"+1512555{n % 10_000:04d}" if rng.random() < 0.6 else None,
        ),
        source=_lead_source(rng, account),
        message=rng.choice(["", "Call me."]),
        criteria=_lead_criteria(rng),
    )  # fmt: skip
    lead_id = str(uuid.UUID(int=rng.getrandbits(128))) if rng.random() > 0.005 else f"not-a-uuid-{n}"
    at = rng.choice(WEEKS) + timedelta(minutes=rng.randrange(7 * 24 * 60))
    return NewLead(lead_id, account.account_id, summary), at


@dataclass
class Rotations:
    """The fuzzed accounts' rotation cursors and balanced counts, carried as the router carries them."""

    cursors: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def standing(self, key: str, usage: dict[str, Usage] | None) -> Standing:
        return Standing(self.cursors.get(key, 0), self.counts.setdefault(key, {}), usage)

    def moved(self, key: str, outcome: Outcome) -> None:
        if outcome.rotation is not None:
            self.cursors[key] = max(self.cursors.get(key, 0), outcome.rotation)
        self.counts.setdefault(key, {}).update(outcome.counts)


def _usage(rng: random.Random, account: AccountSnapshot) -> dict[str, Usage] | None:
    if rng.random() < 0.5:
        return None
    return {a.agent_id: Usage(rng.randint(0, 3), rng.randint(0, 6), 7) for a in account.roster if rng.random() < 0.5}


def fuzz(out: TextIO, accounts: int, leads_each: int) -> None:
    rng = random.Random(20261130)  # noqa: S311 (reproducible data)
    rotations = Rotations()
    for a in range(accounts):
        account = fuzz_account(rng, a)
        for n in range(leads_each):
            _fuzz_lead(out, rng, account, rotations, a * leads_each + n)
        _write(out, _next_up(account))


def _fuzz_lead(out: TextIO, rng: random.Random, account: AccountSnapshot, rotations: Rotations, n: int) -> None:
    lead, at = fuzz_lead(rng, account, n)
    tag = f"fuzz-{n}"
    out.write(f"== {tag}\n")
    _write(out, _mismatches(account, lead, at))
    choice = rule_for(lead, account, at)
    _write(out, _choice(choice))
    key = f"{rule_id_of(choice, account)}:{lead.summary.source.name}"
    standing = rotations.standing(key, _usage(rng, account))
    existing = ExistingContact("11111111-1111-4111-8111-111111111111", "ag-0") if rng.random() < 0.05 else None
    context = RoutingContext(existing, standing.cursor, standing.counts, standing.usage, choice)
    lines, outcome = _guarded(lambda: route_new_lead(lead, account, context, at), tag, at)
    _write(out, lines)
    if outcome is not None:
        rotations.moved(key, outcome)
        _follow(out, rng, account, outcome.state, at, (rotations, key), tag)


def _mismatches(account: AccountSnapshot, lead: NewLead, at: datetime) -> list[str]:
    local = at.astimezone(ZoneInfo(account.time_zone))
    offices = account.source(lead.summary.source.name).offices
    lines = []
    for rule in account.rules.rules:
        why = mismatch(rule, lead.summary, local, offices, account.holidays)
        lines.append(f"mismatch {rule.id} {why!r}")
    return lines


def _next_up(account: AccountSnapshot) -> list[str]:
    lines = []
    for name in (*SOURCES, "Walk-in"):
        try:
            up = next_up(account, name, 3)
        except Exception as error:  # noqa: BLE001 (the type is the output compared)
            lines.append(f"next_up {name} raised {type(error).__name__}")
            continue
        lines.append(f"next_up {name} {up.next!r} {up.eligibility.describe()!r}")
    return lines


def _follow(
    out: TextIO,
    rng: random.Random,
    account: AccountSnapshot,
    state: LeadState | None,
    now: datetime,
    carried: tuple[Rotations, str],
    tag: str,
) -> None:
    """Up to four transitions after a new lead's decision, each dumped."""
    rotations, key = carried
    for step in range(rng.randint(0, 4)):
        if state is None:
            return
        now, work = _next_move(rng, account, state, now, rotations.standing(key, _usage(rng, account)))
        lines, outcome = _guarded(work, f"{tag}-{step}", now)
        out.write(f"-- {tag} step {step} at {now!r}\n")
        _write(out, lines)
        if outcome is None:
            return
        rotations.moved(key, outcome)
        state = outcome.state


def _next_move(
    rng: random.Random, account: AccountSnapshot, state: LeadState, now: datetime, standing: Standing
) -> tuple[datetime, Callable[[], Outcome]]:
    """One of what can happen to a lead next: its deadline, a claim (or decline, view, message), an ask-back."""
    roll = rng.random()
    had = [o.agent_id for o in state.offers]
    agent = rng.choice(had) if had and rng.random() < 0.9 else rng.choice([a.agent_id for a in account.roster])
    if roll < 0.4 and state.next_deadline is not None:
        due = state.next_deadline + timedelta(seconds=rng.choice([0, 1, 3600]))
        return due, lambda: on_deadline(state, account, standing, due)
    later = now + timedelta(minutes=rng.choice([1, 10, 200]))
    if roll < 0.55 and any(o.status is not OfferStatus.OPEN for o in state.offers):
        ask = Activity(agent, ActivityAction.ASK_BACK, event_id=uuid.UUID(int=rng.getrandbits(128)))
        cannot = "paused" if rng.random() < 0.1 else None
        return later, lambda: on_ask_back(state, ask, account, later, cannot=cannot)
    action = rng.choice(list(ActivityAction))
    message = ContactMessage(subject="Hi", body="Hello there") if rng.random() < 0.5 else None
    activity = Activity(agent, action, message)
    can_claim = rng.random() > 0.1

    def act() -> Outcome:
        return idle_watch(state, on_activity(state, activity, later, can_claim=can_claim), activity, account, later)

    return later, act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the dump to write")
    parser.add_argument("--decisions", type=int, default=4000, help="decisions of the benchmark's stream")
    parser.add_argument("--takes", type=int, default=1500, help="pool_of + take on the 500-agent rotations")
    parser.add_argument("--accounts", type=int, default=1000, help="fuzzed accounts")
    parser.add_argument("--leads", type=int, default=10, help="fuzzed leads per account")
    args = parser.parse_args()
    with args.out.open("w", encoding="utf-8") as out:
        bench_stream(out, args.decisions, args.takes)
        fuzz(out, args.accounts, args.leads)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {sum(1 for _ in _lines(args.out)):,} lines)")


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from handle


if __name__ == "__main__":
    main()
