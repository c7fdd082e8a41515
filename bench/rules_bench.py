"""Routing rules decision core (issue 15 item 9): decisions per CPU second, pure code, no servers.

One account of 500 agents with a rule set of 200 rules (criteria on sources, lead kinds, property
types, prices, cities, postal codes, states, tags, hours and days; actions: one agent, rotations
round robin / weighted / balanced / random of 5-50 listed agents or the source's, races of 2-3,
the source's rotation) and its default rule. A stream of generated leads whose deciding rule is
spread over the list: most are made to meet one rule picked at random (an earlier rule may take
them first), some come from a place no rule names (the default rule), a few are random.

Measured with time.process_time() (CPU seconds of this process) after a warm-up:

choose_rule     the rule for a lead, every rule before it tried (why each did not apply is
                worked out when read: the explanation, in route_new_lead, names five)
route_new_lead  the whole decision: the rule, its pool, the agents, the LeadOffered events, the
                explanation; rotation cursors and balanced counts carried from lead to lead as
                the router does
decision record Outcome.decision() as the router stores it with each new lead (its JSON text,
                one string): the rules tried (at most 25) with their reasons, the candidates
Pool.take       pool_of(...).take(...) alone (no availability gate), for a rule rotating over
                all 500 agents, weighted (weights 1-10) and balanced (the pool is worked out
                once per snapshot, so this is the lookup and the turn); and take() alone on a
                pool built once

Target: at least 20,000 whole decisions (route_new_lead) per CPU second.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_router.domain.decisions import (
    NewLead,
    Outcome,
    RoutingContext,
    pool_of,
    route_new_lead,
    rule_for,
    rule_id_of,
)
from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig
from leadflow_router.domain.rules import choose_rule, mismatch
from leadflow_shared.events.criteria import LeadCriteria, LeadIntent, PropertyType
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_rules import DEFAULT_RULE_ID, RuleSet

ACCOUNT = "bench-realty"
TIME_ZONE = "America/Chicago"
WEEK = datetime(2026, 3, 2, tzinfo=ZoneInfo(TIME_ZONE))  # a Monday, 00:00 local
AGENTS = [f"agent-{n:03d}" for n in range(500)]
SOURCES = ["Zillow", "Realtor.com", "Website", "Facebook", "Google Ads", "Homes.com", "Trulia", "Open House"]
CITIES = [f"City {n:02d}" for n in range(60)]
POSTAL_CODES = [f"{75000 + n * 7}" for n in range(400)]
STATES = ["TX", "CA", "FL", "NY", "WA", "CO", "AZ", "GA", "NC", "IL"]
TAGS = [f"tag-{n:02d}" for n in range(40)]
PRICES = [100_000, 250_000, 400_000, 600_000, 850_000, 1_200_000, 2_000_000, 5_000_000]
TARGET = 20_000  # whole decisions per CPU second
WEIGHTED_ALL, BALANCED_ALL = "everyone-weighted", "everyone-balanced"  # the two 500-agent rotations


def roster() -> tuple[Agent, ...]:
    """500 agents, position 1 first; a few inactive, uninvited or not approved, so pools skip some."""
    return tuple(
        Agent(
            a,
            a.title(),
            active=n % 37 != 5,
            invitation_accepted=n % 53 != 7,
            round_robin=n % 41 != 3,
            lead_groups=frozenset({"listing-team"} if n % 4 == 0 else ()),
        )
        for n, a in enumerate(AGENTS)
    )


def criteria(rng: random.Random) -> dict[str, Any]:
    """A rule's criteria: a place (the narrow field, so that rules seldom overlap) and one to three more."""
    place = rng.choice(["cities", "postal_codes", "postal_codes", "states"])
    values = {
        "cities": lambda: rng.sample(CITIES, rng.randint(1, 3)),
        "postal_codes": lambda: rng.sample(POSTAL_CODES, rng.randint(1, 10)),
        "states": lambda: [rng.choice(STATES).lower()],
    }[place]()
    doc: dict[str, Any] = {place: values}
    for field in rng.sample(["sources", "intents", "property_types", "price", "tags", "clock"], rng.randint(1, 3)):
        if field == "sources":
            doc["sources"] = rng.sample(SOURCES, rng.randint(1, 3))
        elif field == "intents":
            doc["intents"] = rng.sample([i.value for i in LeadIntent], rng.randint(1, 2))
        elif field == "property_types":
            doc["property_types"] = rng.sample([p.value for p in PropertyType], rng.randint(1, 3))
        elif field == "price":
            low = rng.randrange(len(PRICES) - 1)
            doc |= {"price_min": PRICES[low], "price_max": PRICES[rng.randint(low + 1, len(PRICES) - 1)]}
        elif field == "tags":
            doc["tags"] = [t.upper() for t in rng.sample(TAGS, rng.randint(1, 3))]
        else:
            start = rng.randint(0, 23)
            doc["hours"] = {"start": f"{start:02d}:00", "end": f"{(start + rng.randint(4, 14)) % 24:02d}:00"}
            if rng.random() < 0.5:
                doc["weekdays"] = sorted(rng.sample(range(7), rng.randint(3, 6)))
    return doc


def action(rng: random.Random) -> dict[str, Any]:
    """One agent, the source's rotation, or a rotation of 5-50 listed agents (or the source's) in any mode."""
    roll = rng.random()
    if roll < 0.15:
        return {"kind": "agent", "agent_id": rng.choice(AGENTS), "claim_window_seconds": rng.choice([None, 300, 900])}
    if roll < 0.25:
        return {"kind": "source_rotation"}
    mode = rng.choice(["round_robin", "weighted", "balanced", "random"])
    agents = None if rng.random() < 0.1 else rng.sample(AGENTS, rng.randint(5, 50))
    doc: dict[str, Any] = {"kind": "rotation", "mode": mode, "agents": agents, "race": 1}
    if rng.random() < 0.25:
        doc["race"] = rng.randint(2, 3)
    if mode == "weighted":
        pool = agents or AGENTS
        doc["weights"] = {a: rng.randint(1, 10) for a in rng.sample(pool, min(len(pool), rng.randint(1, 10)))}
    if mode != "random" and rng.random() < 0.2:
        doc["leads_per_round"] = 2
    return doc


def rule_set(rng: random.Random, count: int) -> RuleSet:
    """`count` rules, the last two rotating over all 500 agents (for Pool.take; no lead of the stream
    has their source, so they are tried like the others and decide none)."""
    rules = []
    for n in range(count - 2):
        match = "empty_or_match" if rng.random() < 0.2 else "exact"
        rules.append(
            {"id": f"rule-{n:03d}", "name": f"Rule {n:03d}", "enabled": rng.random() > 0.05, "match": match}
            | {"criteria": criteria(rng), "action": action(rng)}
        )
    everyone = {"criteria": {"sources": ["Bench pool"]}}
    weights = {a: rng.randint(1, 10) for a in AGENTS}
    rules.append(
        {"id": WEIGHTED_ALL, "name": "Everyone, weighted"}
        | everyone
        | {"action": {"kind": "rotation", "mode": "weighted", "agents": AGENTS, "weights": weights}}
    )
    rules.append(
        {"id": BALANCED_ALL, "name": "Everyone, balanced"}
        | everyone
        | {"action": {"kind": "rotation", "mode": "balanced", "agents": AGENTS}}
    )
    return RuleSet.model_validate({"version": 1, "rules": rules, "default": {"action": {"kind": "source_rotation"}}})


def snapshot(rules: RuleSet) -> AccountSnapshot:
    sources = {
        name: LeadSourceConfig(
            name=name,
            race_count=1 + n % 2,
            lead_group="listing-team" if name == "Open House" else None,
            claim_window=timedelta(minutes=5 + n),
            referral_fee_percent=float(n),
        )
        for n, name in enumerate(SOURCES)
    }
    return AccountSnapshot(
        account_id=ACCOUNT, name="Bench Realty", roster=roster(), round_robin=True, time_zone=TIME_ZONE,
        sources=sources, rules=rules,
    )  # fmt: skip


def random_lead(rng: random.Random) -> tuple[dict[str, Any], datetime]:
    """A lead's fields and arrival time, each field present or not, values from the whole universe."""
    fields: dict[str, Any] = {"source": rng.choice([*SOURCES, "Walk-in", "Referral"])}
    if rng.random() < 0.8:
        fields["intent"] = rng.choice(list(LeadIntent)).value
    if rng.random() < 0.6:
        fields["property_type"] = rng.choice(list(PropertyType)).value
    if rng.random() < 0.6:
        low = rng.choice(PRICES)
        fields["price"] = {"min": low, "max": low + rng.choice([0, 50_000, 200_000])}
    place = {
        "city": rng.choice(CITIES).upper() if rng.random() < 0.7 else None,
        "postal_code": rng.choice(POSTAL_CODES) if rng.random() < 0.7 else None,
        "state": rng.choice(STATES).lower() if rng.random() < 0.8 else None,
    }
    fields["place"] = {k: v for k, v in place.items() if v is not None}
    fields["tags"] = rng.sample(TAGS, rng.randint(0, 3))
    fields["phone"] = rng.random() < 0.7
    return fields, WEEK + timedelta(minutes=rng.randrange(7 * 24 * 60))


def meeting(doc: dict[str, Any], fields: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], datetime]:
    """`fields` changed to meet the rule `doc`'s criteria, and a time inside its hours and days."""
    c = doc["criteria"]
    fields = dict(fields)
    place = dict(fields["place"])
    for key, field in (("cities", "city"), ("postal_codes", "postal_code"), ("states", "state")):
        if c.get(key):
            place[field] = rng.choice(c[key])
    fields["place"] = place
    if c.get("sources"):
        fields["source"] = rng.choice(c["sources"])
    if c.get("intents"):
        fields["intent"] = rng.choice(c["intents"])
    if c.get("property_types"):
        fields["property_type"] = rng.choice(c["property_types"])
    if "price_min" in c:
        fields["price"] = {"min": c["price_min"], "max": c["price_max"]}
    if c.get("tags"):
        fields["tags"] = [*fields["tags"][:1], rng.choice(c["tags"])]
    day = rng.choice(c.get("weekdays") or range(7))
    hour = int(c["hours"]["start"][:2]) if "hours" in c else rng.randrange(24)
    return fields, WEEK + timedelta(days=day, hours=hour, minutes=rng.randrange(60))


def summary(fields: dict[str, Any], n: int) -> LeadSummary:
    criteria = {k: fields[k] for k in ("intent", "property_type", "price", "place", "tags") if k in fields}
    return LeadSummary(
        contact=Contact(
            first_name="Bench", last_name=f"Lead {n}", email=f"lead-{n}@bench.example",
            phone=f"+1512555{n % 10_000:04d}" if fields["phone"] else None,
        ),
        source=LeadSource(channel=LeadChannel.PARTNER, name=fields["source"]),
        message="Interested, please call.",
        criteria=LeadCriteria.model_validate(criteria).normalized(),
    )  # fmt: skip


def leads(rules: RuleSet, count: int, rng: random.Random) -> list[tuple[NewLead, datetime]]:
    """`count` leads: 80 % made to meet one rule picked at random (its criteria, hours and days); 12 %
    from a place no rule names (every rule has a place: the default rule); 8 % random. A lead made for
    a rule is made again (up to ten times) until that rule would take it."""
    docs = [r.model_dump(mode="json", exclude_none=True) for r in rules.rules[:-2]]
    made = []
    for n in range(count):
        fields, at = random_lead(rng)
        roll = rng.random()
        if 0.8 <= roll < 0.92:
            fields["place"] = {"city": "Elsewhere", "postal_code": "99999", "state": "OR"}
        elif roll < 0.8:
            target = rng.randrange(len(docs))
            for _ in range(10):
                fields, at = meeting(docs[target], random_lead(rng)[0], rng)
                lead = summary(fields, n)
                if mismatch(rules.rules[target], lead, at.astimezone(ZoneInfo(TIME_ZONE))) is None:
                    break
        made.append((NewLead(str(uuid.UUID(int=rng.getrandbits(128))), ACCOUNT, summary(fields, n)), at))
    return made


def spread(rules: RuleSet, stream: list[tuple[NewLead, datetime]]) -> dict[str, Any]:
    """Where in the list the deciding rule is, and how many rules a decision tries."""
    positions = {r.id: i + 1 for i, r in enumerate(rules.rules)}
    choices = [choose_rule(rules, lead.summary, at, TIME_ZONE) for lead, at in stream]
    decided = sorted(positions[c.rule_id] for c in choices if c.rule_id != DEFAULT_RULE_ID)
    cut = statistics.quantiles(decided, n=4) if len(decided) > 1 else [float("nan")] * 3
    return {
        "leads": len(stream),
        "default_share": 1 - len(decided) / len(stream),
        "position_q1_median_q3": cut,
        "rules_deciding": len(set(decided)),
        "rules_tried_mean": statistics.fmean(len(c.checks) for c in choices),
    }


def rate(step: Callable[[int], object], count: int, warmup: int) -> dict[str, float]:
    """CPU seconds for `count` steps after `warmup` steps, and the steps per CPU second."""
    for n in range(warmup):
        step(n)
    started = time.process_time()
    for n in range(count):
        step(n)
    cpu = time.process_time() - started
    return {"decisions": count, "cpu_s": cpu, "per_cpu_s": count / cpu, "us_each": cpu / count * 1e6}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)  # noqa: S311 (reproducible test data)
    rules = rule_set(rng, args.rules)
    account = snapshot(rules)
    stream = leads(rules, args.leads, rng)
    size = len(stream)

    def choose(n: int) -> object:
        lead, at = stream[n % size]
        return choose_rule(rules, lead.summary, at, TIME_ZONE)

    cursors: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}

    def decide(n: int) -> Outcome:
        """As the router decides a new lead: its rule, that rule's rotation state, the decision."""
        lead, at = stream[n % size]
        choice = rule_for(lead, account, at)
        key = rule_id_of(choice, account) or f"source:{lead.summary.source.name}"
        tally = counts.setdefault(key, {})
        context = RoutingContext(rotation=cursors.get(key, 0), counts=tally, choice=choice)
        outcome = route_new_lead(lead, account, context, at)
        if outcome.rotation is not None:
            cursors[key] = outcome.rotation
        tally.update(outcome.counts)
        return outcome

    result: dict[str, Any] = {
        "rules": len(rules.rules),
        "agents": len(account.roster),
        "spread": spread(rules, stream),
        "choose_rule": rate(choose, args.decisions, args.warmup),
        "route_new_lead": rate(decide, args.decisions, args.warmup) | {"target_per_cpu_s": TARGET},
    }
    result["route_new_lead"]["met"] = result["route_new_lead"]["per_cpu_s"] >= TARGET
    outcomes = [decide(n) for n in range(size)]

    def record(n: int) -> object:
        decision = outcomes[n % size].decision()
        return None if decision is None else decision.model_dump_json(exclude_defaults=True)

    result["decision_record"] = rate(record, args.decisions, args.warmup)
    for rule_id in (WEIGHTED_ALL, BALANCED_ALL):
        result[f"pool_take:{rule_id}"] = pool_rate(account, rule_id, args)
    return result


def pool_rate(account: AccountSnapshot, rule_id: str, args: argparse.Namespace) -> dict[str, Any]:
    """pool_of(...).take(...) for a 500-agent rotation, cursor and counts carried; then take() alone."""
    state: dict[str, Any] = {"cursor": 0, "counts": {}}

    def whole(_n: int) -> object:
        picked, state["cursor"], moved = pool_of(account, "Website", rule_id).take(
            state["cursor"], state["counts"], frozenset()
        )
        state["counts"] |= moved
        return picked

    built = pool_of(account, "Website", rule_id)

    def take(_n: int) -> object:
        picked, state["cursor"], moved = built.take(state["cursor"], state["counts"], frozenset())
        state["counts"] |= moved
        return picked

    return rate(whole, args.pool_decisions, args.warmup) | {"take_only": rate(take, args.decisions, args.warmup)}


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"routing rules decision core: {result['rules']} rules, {result['agents']} agents")
    for column in ("measure", "decisions", "CPU s", "per CPU s", "µs each", "goal"):
        table.add_column(column, justify="left" if column in ("measure", "goal") else "right")

    def row(name: str, figures: dict[str, Any], goal: str = "") -> None:
        table.add_row(
            name, f"{figures['decisions']:,}", f"{figures['cpu_s']:.2f}", f"{figures['per_cpu_s']:,.0f}",
            f"{figures['us_each']:.1f}", goal,
        )  # fmt: skip

    whole = result["route_new_lead"]
    row("choose_rule", result["choose_rule"])
    row("route_new_lead (whole)", whole, f">= {TARGET:,}" + ("" if whole["met"] else " NOT MET"))
    row("decision record", result["decision_record"])
    for rule_id in (WEIGHTED_ALL, BALANCED_ALL):
        figures = result[f"pool_take:{rule_id}"]
        mode = rule_id.split("-")[1]
        row(f"pool_of + take, {mode} 500", figures)
        row(f"take alone, {mode} 500", figures["take_only"])
    console.print(table)
    s = result["spread"]
    q1, median, q3 = s["position_q1_median_q3"]
    console.print(
        f"{s['leads']:,} distinct leads: the default rule decides {s['default_share']:.0%}; the deciding rule's "
        f"position q1/median/q3 {q1:.0f}/{median:.0f}/{q3:.0f} ({s['rules_deciding']} rules decide some); "
        f"{s['rules_tried_mean']:.0f} rules tried per lead on average"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=200, help="rules in the rule set (at most 200)")
    parser.add_argument("--leads", type=int, default=2000, help="distinct leads in the stream (repeated)")
    parser.add_argument("--decisions", type=int, default=20_000, help="measured decisions per measure")
    parser.add_argument("--pool-decisions", type=int, default=2000, help="measured pool_of + take per rotation")
    parser.add_argument("--warmup", type=int, default=2000, help="decisions before each measure")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    result = measure(args)
    result["params"] = {"leads": args.leads, "warmup": args.warmup, "seed": args.seed}
    bench_results.save(result, name="rules", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
