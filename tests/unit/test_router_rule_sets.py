"""Routing rules (issue 15): a rule set's validation, its match semantics, each action's pool, and the
rotation orders (round robin, weighted, balanced, random, leads per round, races), all pure."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta, timezone
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from fakes_router import FakeAccounts, Published, router_on_fakes, website_lead
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_router.adapters.codec import decode_record, encode_record
from leadflow_router.domain.availability import counted
from leadflow_router.domain.decisions import (
    NewLead,
    Outcome,
    RoutingContext,
    idle_watch,
    on_activity,
    on_ask_back,
    on_deadline,
    pool_of,
    route_new_lead,
)
from leadflow_router.domain.model import (
    AccountSnapshot,
    Activity,
    Agent,
    LeadSourceConfig,
    LeadState,
    LeadStatus,
    PauseWindow,
)
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord
from leadflow_router.domain.rules import _within, choose_rule, within
from leadflow_router.domain.schedule import CLOCK_CUT, isoformat
from leadflow_router.handlers import rotation_key, source_key
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.criteria import LeadCriteria, LeadIntent, LeadPlace, PropertyType
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadFellBack,
    LeadHeld,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadSummary,
)
from leadflow_shared.routing_rules import DEFAULT_RULE_ID, Hours, RuleSet, rule_set_of

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York
ROSTER = tuple(Agent(i, i.title()) for i in ("broker", "a", "b", "c", "d"))


def rules(*rules: dict[str, Any], default: dict[str, Any] | None = None) -> RuleSet:
    return RuleSet.model_validate({"rules": list(rules), **({"default": {"action": default}} if default else {})})


def rule(rule_id: str, action: dict[str, Any], match: str = "exact", **criteria: Any) -> dict[str, Any]:
    return {"id": rule_id, "name": rule_id.title(), "match": match, "criteria": criteria, "action": action}


def account(rule_set: RuleSet, *, roster: tuple[Agent, ...] = ROSTER, round_robin: bool = True) -> AccountSnapshot:
    return AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=roster,
        round_robin=round_robin,
        time_zone="America/New_York",
        sources={"Zillow": LeadSourceConfig(name="Zillow")},
        rules=rule_set,
    )


def summary(source: str = "Website", phone: str | None = None, site: str | None = None, **criteria: Any) -> LeadSummary:
    return LeadSummary(
        contact=Contact(first_name="Jo", email="jo@example.com", phone=phone),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source, site_host=site),
        criteria=LeadCriteria.model_validate(criteria) if criteria else None,
    )


def route(snapshot: AccountSnapshot, lead: LeadSummary, rotation: int = 0, **context: Any) -> Outcome:
    new = NewLead(str(uuid.uuid4()), "acme", lead)
    return route_new_lead(new, snapshot, RoutingContext(rotation=rotation, **context), NOW)


def offered_to(outcome: Outcome) -> list[str]:
    return [e.payload.agent_id for e in outcome.events if e.kind is LeadOffered]  # type: ignore[attr-defined]


# --- the rule set: what is refused when it is saved ---------------------------------------------------------

AGENT_B = {"kind": "agent", "agent_id": "b"}


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"rules": [rule("x", AGENT_B), rule("x", AGENT_B)]}, "rule ids used twice: ['x']"),
        ({"rules": [rule("default", AGENT_B)]}, "names the default rule"),
        ({"rules": [rule("x", {"kind": "rotation", "agents": []})]}, "at least 1 item"),
        ({"rules": [rule("x", {"kind": "rotation", "agents": ["a", "a"]})]}, "agents listed twice"),
        ({"rules": [rule("x", {"kind": "rotation", "agents": ["a"], "weights": {"a": 2}})]}, "weighted mode only"),
        (
            {"rules": [rule("x", {"kind": "rotation", "mode": "weighted", "agents": ["a"], "weights": {"b": 2}})]},
            "weights name agents not in the rotation: ['b']",
        ),
        (
            {"rules": [rule("x", {"kind": "rotation", "mode": "weighted", "weights": {"a": 11}})]},
            "less than or equal to 10",
        ),
        ({"rules": [rule("x", {"kind": "rotation", "mode": "random", "leads_per_round": 2})]}, "random mode"),
        ({"rules": [rule("x", AGENT_B, price_min=500, price_max=100)]}, "price_min is above price_max"),
        ({"rules": [rule("x", AGENT_B, intents=["lease"])]}, "intents"),
        ({"rules": [rule("x", {"kind": "pond"})]}, "action"),
    ],
)
def test_a_rule_set_that_cannot_work_is_refused_with_the_reason(doc: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        RuleSet.model_validate(doc)


def test_agents_not_on_the_roster_are_refused_per_rule() -> None:
    rule_set = rules(
        rule("one", {"kind": "agent", "agent_id": "zed"}),
        rule("many", {"kind": "rotation", "agents": ["a", "ghost"]}),
        default={"kind": "agent", "agent_id": "nobody"},
    )
    assert rule_set.refusals({"a", "b"}) == [
        "rule 'one': agents not on the roster: ['zed']",
        "rule 'many': agents not on the roster: ['ghost']",
        "rule 'default': agents not on the roster: ['nobody']",
    ]
    assert rules(rule("ok", AGENT_B)).refusals({"b"}) == []


def test_weights_naming_an_agent_not_on_the_roster_are_refused_when_saved() -> None:
    """docs/routing-rules.md, "What is refused": weights naming agents not in the rotation, and agents not on the
    roster, are refused when saved. A weighted rotation of the source's agents (no `agents` list) has no list to
    check its weights against when read; a weight for "ghost", on no roster, is refused by `refusals` with the
    reason (helper 146's review), in a rule's action or its fallbacks."""
    weighted = {"kind": "rotation", "mode": "weighted", "weights": {"a": 3, "ghost": 5}}
    rule_set = rules({**rule("team", weighted), "fallbacks": [{**weighted, "weights": {"zed": 2}}]})
    assert rule_set.refusals({agent.agent_id for agent in ROSTER}) == [
        "rule 'team': weights name agents not on the roster: ['ghost', 'zed']"
    ]
    assert rules(rule("team", {**weighted, "weights": {"a": 3, "b": 5}})).refusals({"a", "b"}) == []


def test_leads_per_round_with_the_balanced_mode_is_refused_when_saved_and_a_stored_one_still_routes() -> None:
    """Decision 0090 (review, helper 73): the balanced mode gives each lead to whoever has had fewest, so
    `leads_per_round` would be ignored; it is refused when saved (crm-api, the configuration loader, a dry run
    all ask `refusals`), with the reason, in a rule's action or its fallbacks. A rule set stored before is read
    and routes as it did."""
    balanced = {"kind": "rotation", "mode": "balanced", "agents": ["a", "b"], "leads_per_round": 2}
    why = "leads_per_round does not apply to the balanced mode (each lead goes to whoever has had fewest)"
    stored = rules({**rule("x", balanced), "fallbacks": [balanced]}, default=balanced)
    assert stored.refusals({"a", "b"}) == [f"rule 'x': {why}", f"rule 'x': {why}", f"rule 'default': {why}"]
    assert rules(rule("x", {**balanced, "leads_per_round": 1})).refusals({"a", "b"}) == []
    assert rules(rule("x", {**balanced, "mode": "round_robin"})).refusals({"a", "b"}) == []
    assert offered_to(route(account(stored), summary())) == ["a"]


def test_a_stored_rule_set_is_read_or_reported_unreadable_never_raised() -> None:
    assert rule_set_of({}) == RuleSet()
    assert rule_set_of({"routing_rules": {"rules": [rule("x", AGENT_B)]}}) == rules(rule("x", AGENT_B))
    assert rule_set_of({"routing_rules": {"rules": "nonsense"}}) is None
    assert rule_set_of({"routing_rules": 7}) is None


# --- match semantics ---------------------------------------------------------------------------------------------


def chosen(rule_set: RuleSet, lead: LeadSummary, at: datetime = NOW) -> str:
    return choose_rule(rule_set, lead, at, "America/New_York").rule_id


def test_values_of_one_field_are_or_ed_and_fields_are_and_ed() -> None:
    rule_set = rules(rule("austin-buyers", AGENT_B, intents=["buy", "rent"], cities=["Austin", "Round Rock"]))
    assert chosen(rule_set, summary(intent="rent", place={"city": "round rock"})) == "austin-buyers"
    assert chosen(rule_set, summary(intent="buy", place={"city": "AUSTIN"})) == "austin-buyers"
    assert chosen(rule_set, summary(intent="sell", place={"city": "Austin"})) == DEFAULT_RULE_ID
    assert chosen(rule_set, summary(intent="buy", place={"city": "Dallas"})) == DEFAULT_RULE_ID


def test_exact_needs_the_field_and_empty_or_match_takes_a_lead_without_it() -> None:
    exact = rules(rule("condos", AGENT_B, property_types=["condo"]))
    loose = rules(rule("condos", AGENT_B, match="empty_or_match", property_types=["condo"]))
    unknown = summary(intent="buy")
    assert chosen(exact, unknown) == DEFAULT_RULE_ID
    assert chosen(loose, unknown) == "condos"
    assert chosen(loose, summary(property_type="land")) == DEFAULT_RULE_ID  # a value that differs never matches


def test_the_first_enabled_rule_that_matches_decides_and_the_others_say_why_not() -> None:
    rule_set = rules(
        {**rule("off", AGENT_B), "enabled": False},
        rule("zillow", AGENT_B, sources=["Zillow"]),
        rule("luxury", AGENT_B, price_min=1_000_000),
        rule("any", AGENT_B),
        rule("never-reached", AGENT_B),
    )
    choice = choose_rule(rule_set, summary(price={"min": 300_000, "max": 450_000}), NOW, "UTC")
    assert choice.rule_id == "any"
    assert [(c.rule_id, c.matched, c.why_not) for c in choice.checks] == [
        ("off", False, "disabled"),
        ("zillow", False, "source 'website' not in 'zillow'"),
        ("luxury", False, "price up to 450000 is below 1000000"),
        ("any", True, None),
    ]
    assert "Zillow (source 'website' not in 'zillow')" in choice.describe()


@pytest.mark.parametrize(
    ("price", "matches"),
    [
        ({"min": 400_000, "max": 600_000}, True),  # overlaps 500k-1M
        ({"min": 1_000_000}, True),  # from the top of the range up
        ({"max": 499_999}, False),
        ({"min": 1_000_001}, False),
        ({"max": 500_000}, True),
    ],
)
def test_a_price_or_range_matches_when_it_overlaps_the_rule_s(price: dict[str, int], matches: bool) -> None:
    rule_set = rules(rule("mid", AGENT_B, price_min=500_000, price_max=1_000_000))
    assert (chosen(rule_set, summary(price=price)) == "mid") is matches


def test_places_tags_sites_and_phone() -> None:
    rule_set = rules(
        rule("zip", AGENT_B, postal_codes=[" 78701 "]),
        rule("state", AGENT_B, states=["tx"], counties=["Travis"]),
        rule("tags", AGENT_B, tags=["VIP", "investor"]),
        rule("site", AGENT_B, sites=["Luxury.Acme.com"]),
        rule("phone", AGENT_B, has_phone=True),
    )
    assert chosen(rule_set, summary(place={"postal_code": "78701"})) == "zip"
    assert chosen(rule_set, summary(place={"state": "TX", "county": "travis"})) == "state"
    assert chosen(rule_set, summary(place={"state": "TX", "county": "Bexar"})) == DEFAULT_RULE_ID
    assert chosen(rule_set, summary(tags=["vip"])) == "tags"
    assert chosen(rule_set, summary(site="luxury.acme.com")) == "site"
    assert chosen(rule_set, summary(phone="+14155550123")) == "phone"
    assert chosen(rule_set, summary()) == DEFAULT_RULE_ID


CODE_PART = st.text(alphabet="abcdefghjkmnpqrstuvwxyz0123456789", min_size=1, max_size=4)
SPACES = st.text(alphabet=" ", min_size=1, max_size=3)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.tuples(CODE_PART, SPACES, SPACES), min_size=1, max_size=2), upper=st.booleans())
def test_a_rule_s_postal_code_matches_the_lead_s_however_either_is_spaced_or_cased(
    parts: list[tuple[str, str, str]], upper: bool
) -> None:
    """Decision 0090 (review, helper 73): a rule's postal code is kept as intake keeps the lead's (one function,
    `normalize_postal_code`): "sw1a  1aa" in a rule matches a lead's "SW1A 1AA"."""
    in_rule = "".join(part + gap for part, gap, _ in parts).strip()
    as_sent = "".join(part + gap for part, _, gap in parts).strip()
    criteria = LeadCriteria.model_validate({"place": {"postal_code": as_sent.upper() if upper else as_sent}})
    lead = summary()
    lead = lead.model_copy(update={"criteria": criteria.normalized()})  # as intake sends it on
    assert chosen(rules(rule("zip", AGENT_B, postal_codes=[in_rule])), lead) == "zip"


def test_hours_and_days_are_the_account_s_clock_and_may_cross_midnight() -> None:
    nights = rules(rule("nights", AGENT_B, hours={"start": "20:00", "end": "08:00"}, weekdays=[0, 1, 2, 3, 4]))
    new_york_9pm_monday = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    new_york_7am_tuesday = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    new_york_9pm_saturday = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    assert chosen(nights, summary(), NOW) == DEFAULT_RULE_ID  # 10:00
    assert chosen(nights, summary(), new_york_9pm_monday) == "nights"
    assert chosen(nights, summary(), new_york_7am_tuesday) == "nights"
    assert chosen(nights, summary(), new_york_9pm_saturday) == DEFAULT_RULE_ID


# --- actions -------------------------------------------------------------------------------------------------------


def test_without_rules_the_seeds_decide_and_say_nothing_of_rules() -> None:
    outcome = route(account(RuleSet()), summary(), rotation=1)
    assert offered_to(outcome) == ["a"]
    assert outcome.explanation.startswith("R6: offered to a (next in rotation")
    assert outcome.state is not None
    assert outcome.state.rule_id is None
    off = route(account(RuleSet(), round_robin=False), summary())
    assert off.state is not None
    assert off.state.holder == "broker"


def test_an_agent_rule_offers_to_its_agent_and_an_unclaimed_offer_falls_back_to_position_1() -> None:
    snapshot = account(
        rules(rule("sellers", {"kind": "agent", "agent_id": "c", "claim_window_seconds": 60}, intents=["sell"]))
    )
    outcome = route(snapshot, summary(intent="sell"))
    assert offered_to(outcome) == ["c"]
    assert outcome.explanation.startswith(
        "Routing rules: rule 'Sellers'. Rule: offered to c (rule 'Sellers', race of 1)"
    )
    state = outcome.state
    assert state is not None
    assert state.rule_id == "sellers"
    assert state.next_deadline == NOW + timedelta(seconds=60)
    later = on_deadline(state, snapshot, 0, NOW + timedelta(seconds=61))
    assert later.state is not None
    assert later.state.status is LeadStatus.FELL_BACK
    assert later.state.holder == "broker"
    assert any(e.kind is LeadFellBack for e in later.events)


def test_a_rule_applies_with_round_robin_off_and_the_default_then_is_position_1() -> None:
    snapshot = account(rules(rule("sellers", AGENT_B, intents=["sell"])), round_robin=False)
    assert offered_to(route(snapshot, summary(intent="sell"))) == ["b"]
    other = route(snapshot, summary(intent="buy"))
    assert other.state is not None
    assert other.state.holder == "broker"
    assert (
        "no rule matched; the default rule; not matched: Sellers (lead kind 'buy' not in 'sell')" in other.explanation
    )


def test_a_rotation_rule_takes_turns_among_its_agents_only_and_races() -> None:
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["d", "b", "c"], "race": 2})))
    first = route(snapshot, summary())
    assert offered_to(first) == ["d", "b"]
    assert first.rotation == 2
    second = route(snapshot, summary(), rotation=2)
    assert offered_to(second) == ["c", "d"]
    # On expiry the race goes on to whom of the rule's agents has not had it, then falls back.
    state = first.state
    assert state is not None
    again = on_deadline(state, snapshot, 2, state.next_deadline or NOW)
    assert offered_to(again) == ["c"]


def test_agents_who_may_not_get_leads_are_skipped_with_the_reason() -> None:
    roster = (Agent("broker", "B"), Agent("a", "A", active=False), Agent("b", "B", round_robin=False), Agent("c", "C"))
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["a", "b", "ghost", "c"]})), roster=roster)
    outcome = route(snapshot, summary())
    assert offered_to(outcome) == ["c"]
    assert "skipped a: inactive; b: not approved for round robin; ghost: not on the roster" in outcome.explanation


def test_a_rule_removed_later_does_not_strand_its_lead_the_default_reoffers_it() -> None:
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["b"]})))
    state = route(snapshot, summary()).state
    assert state is not None
    assert state.rule_id == "team"
    after = on_deadline(state, account(RuleSet()), 0, state.next_deadline or NOW)
    assert offered_to(after) == ["broker"]  # the source's rotation from its cursor, b had it


def test_a_lead_on_a_deleted_rule_s_fallback_starts_the_default_rule_at_its_own_pool_and_cursor() -> None:
    """Decision 0090 (review, helper 73): the lead's fallback step is its deleted rule's, not the default's; it
    starts the default rule at step 0, in the default's rotation (not `<account>:rule:<deleted id>`)."""
    deleted = {**rule("r", {"kind": "agent", "agent_id": "a"}), "fallbacks": [{"kind": "agent", "agent_id": "b"}]}
    before = account(rules(deleted))
    state = route(before, summary()).state
    assert state is not None
    assert state.next_deadline is not None
    state = on_deadline(state, before, 0, state.next_deadline).state  # a let it expire: R's fallback, b
    assert state is not None
    assert (state.fallback_step, [o.agent_id for o in state.open_offers]) == (1, ["b"])
    assert state.next_deadline is not None

    default = {"action": {"kind": "rotation", "agents": ["c"]}, "fallbacks": [{"kind": "agent", "agent_id": "d"}]}
    after = account(RuleSet.model_validate({"rules": [], "default": default}))  # R deleted while b's offer is open
    assert rotation_key(after, "Website", "r") == "acme:rule:default"
    reoffered = on_deadline(state, after, 0, state.next_deadline)
    assert offered_to(reoffered) == ["c"], reoffered.explanation
    assert reoffered.state is not None
    assert (reoffered.state.rule_id, reoffered.state.fallback_step) == (DEFAULT_RULE_ID, 0)
    assert reoffered.rotation == 1  # the default's own cursor moved
    assert "Rule 'r' no longer exists: the default rule offers the lead." in reoffered.explanation


@given(
    names=st.lists(st.text(max_size=100), min_size=2, max_size=2, unique=True),
    rule_id=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    agent=st.text(min_size=1, max_size=64),
)
@example(names=["rule:r", "Website"], rule_id="r", agent="ana")  # was rule r's cursor
@example(names=["rule:r@ana", "Website"], rule_id="r", agent="ana")  # was rule r's count of ana's leads
@example(names=["Website@ana", "Website"], rule_id="r", agent="ana")  # was the source's own count of ana
@example(names=["source:rule%3Ar", "rule:r"], rule_id="r", agent="ana")
def test_no_lead_source_s_rotation_shares_a_key_with_another_source_or_a_rule(
    names: list[str], rule_id: str, agent: str
) -> None:
    """A lead source's name is whatever a partner sends: a source named `rule:r` took its turns in rule r's cursor
    (helper 175), one named `rule:r@ana` in its count of ana's leads. Every cursor and count of an account's sources
    and rules is its own, and no source's key reads as a rule's (`forget_deleted_rules` drops those of deleted
    rules)."""
    sources = [source_key("acme", name) for name in names]
    rule = "acme:rule:" + rule_id
    keys = [*sources, rule, *(f"{key}@{agent}" for key in [*sources, rule])]
    assert len(set(keys)) == len(keys), keys
    assert not any(":rule:" in key for key in sources)


def test_the_lead_s_criteria_ride_on_its_offers() -> None:
    outcome = route(account(RuleSet()), summary(intent="buy", property_type="condo"))
    [offer] = [e.payload for e in outcome.events]
    assert offer.criteria == LeadCriteria(intent=LeadIntent.BUY, property_type=PropertyType.CONDO)  # type: ignore[attr-defined]


# --- rotation orders -------------------------------------------------------------------------------------------------


def walk(snapshot: AccountSnapshot, leads: int) -> list[str]:
    """The first agent offered each of `leads` leads in a row, the rotation's state carried between them."""
    cursor, counts, firsts = 0, Counter[str](), []
    for _ in range(leads):
        outcome = route(snapshot, summary(), rotation=cursor, counts=dict(counts))
        firsts.append(offered_to(outcome)[0])
        cursor = outcome.rotation if outcome.rotation is not None else cursor
        counts.update({agent: n - counts[agent] for agent, n in outcome.counts})
    return firsts


def rotation(**action: Any) -> AccountSnapshot:
    return account(rules(rule("r", {"kind": "rotation", **action})))


@settings(max_examples=25, deadline=None)
@given(weights=st.lists(st.integers(1, 10), min_size=1, max_size=5))
def test_weights_are_respected_over_10_000_leads(weights: list[int]) -> None:
    names = [f"w{i}" for i in range(len(weights))]
    roster = (Agent("broker", "B"), *(Agent(n, n) for n in names))
    snapshot = dataclasses.replace(
        rotation(mode="weighted", agents=names, weights=dict(zip(names, weights, strict=True))), roster=roster
    )
    pool, cursor, got = pool_of(snapshot, "Website", "r"), 0, Counter[str]()
    for _ in range(10_000):  # the decision core itself: `route` around it is the same for every mode
        picked, cursor, _counts = pool.take(cursor, {}, frozenset())
        got.update(picked)
    total = sum(weights)
    for name, weight in zip(names, weights, strict=True):
        # Smooth weighted round robin is exact per cycle: off by less than one cycle's share.
        assert abs(got[name] - 10_000 * weight / total) <= weight, (name, got)


def test_leads_per_round_gives_each_agent_that_many_in_a_row() -> None:
    assert walk(rotation(agents=["a", "b"], leads_per_round=3), 8) == ["a", "a", "a", "b", "b", "b", "a", "a"]


def test_balanced_gives_the_next_lead_to_whoever_has_fewest() -> None:
    snapshot = rotation(mode="balanced", agents=["a", "b", "c"])
    outcome = route(snapshot, summary(), rotation=0, counts={"a": 5, "b": 2, "c": 2})
    assert offered_to(outcome) == ["b"]
    assert outcome.counts == (("b", 3),)
    assert Counter(walk(snapshot, 30)) == {"a": 10, "b": 10, "c": 10}


@settings(max_examples=30, deadline=None)
@given(size=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_random_is_one_lead_each_per_round_and_never_the_same_agent_twice_in_a_row(size: int, seed: int) -> None:
    names = [f"r{i}" for i in range(size)]
    roster = (Agent("broker", "B"), *(Agent(n, n) for n in names))
    snapshot = dataclasses.replace(rotation(mode="random", agents=names), roster=roster, account_id=f"acct{seed}")
    firsts = walk(snapshot, size * 6)
    assert all(a != b for a, b in itertools.pairwise(firsts))
    for start in range(0, len(firsts), size):
        assert sorted(firsts[start : start + size]) == sorted(names)
    assert walk(snapshot, size * 6) == firsts  # a replayed decision picks the same agents


@settings(max_examples=100, deadline=None)
@given(
    flags=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=6),
    mode=st.sampled_from(["round_robin", "weighted", "balanced", "random"]),
    race=st.integers(1, 3),
)
def test_no_lead_is_offered_to_an_inactive_uninvited_or_unapproved_agent(
    flags: list[tuple[bool, bool, bool]], mode: str, race: int
) -> None:
    names = [f"x{i}" for i in range(len(flags))]
    roster = (Agent("broker", "B"), *(Agent(n, n, a, i, r) for n, (a, i, r) in zip(names, flags, strict=True)))
    snapshot = dataclasses.replace(rotation(mode=mode, agents=names, race=race), roster=roster)
    allowed = {n for n, (a, i, r) in zip(names, flags, strict=True) if a and i and r}
    for cursor in range(len(names) + 1):
        outcome = route(snapshot, summary(), rotation=cursor)
        assert outcome.state is not None
        offered = offered_to(outcome)
        assert set(offered) <= allowed
        assert offered or outcome.state.holder == "broker"


# --- storage ----------------------------------------------------------------------------------------------------


def test_a_record_keeps_its_rule_and_its_balanced_counts() -> None:
    state = route(rotation(mode="balanced", agents=["a", "b"]), summary(intent="buy", place={"city": "Austin"})).state
    assert state is not None
    effects = Effects(rotation=("acme:rule:r", 1), counts=(("acme:rule:r@a", 1),))
    record = RoutingRecord(
        state.lead_id, "acme", 1, state.evolve(version=1), state.lead_id, outbox=Outbox(effects=effects)
    )
    again = decode_record(encode_record(record))
    assert again == record
    assert again.state is not None
    assert again.state.rule_id == "r"
    assert again.state.summary.criteria == LeadCriteria(intent=LeadIntent.BUY, place=LeadPlace(city="Austin"))


def test_a_record_without_criteria_or_rule_keeps_the_shape_it_had() -> None:
    state = route(account(RuleSet()), summary()).state
    assert state is not None
    doc = encode_record(RoutingRecord(state.lead_id, "acme", 1, state, state.lead_id))
    assert "rule_id" not in doc
    assert "criteria" not in doc["summary"]
    assert "counts" not in doc["effects"]


# --- "why this agent" ------------------------------------------------------------------------------------------


def test_a_decision_records_the_rules_tried_and_every_candidate_with_its_reason() -> None:
    roster = (*ROSTER, Agent("e", "E", active=False))
    snapshot = dataclasses.replace(
        account(
            rules(
                rule("sellers", AGENT_B, intents=["sell"]),
                rule("team", {"kind": "rotation", "agents": ["c", "d", "e", "a"], "race": 2}),
            )
        ),
        roster=roster,
    )
    outcome = route(snapshot, summary(intent="buy"), rotation=5)
    decision = outcome.decision()
    assert decision is not None
    assert decision.step == "Rule"
    assert (decision.rule_id, decision.rule_name) == ("team", "Team")
    assert [(r.rule_id, r.matched, r.why_not) for r in decision.rules] == [
        ("sellers", False, "lead kind 'buy' not in 'sell'"),
        ("team", True, None),
    ]
    assert decision.chosen == offered_to(outcome)
    assert [(s.agent_id, s.reason) for s in decision.skipped] == [("e", "inactive")]
    assert sorted(decision.chosen + decision.waiting) == ["a", "c", "d"]
    assert decision.rotation is not None
    assert (decision.rotation.kind, decision.rotation.mode, decision.rotation.cursor_before) == (
        "rule",
        "round_robin",
        5,
    )
    assert decision.explanation == outcome.explanation

    state = outcome.state
    assert state is not None
    again = on_deadline(state, snapshot, outcome.rotation or 0, state.next_deadline or NOW).decision()
    assert again is not None
    assert {s.agent_id: s.reason for s in again.skipped} == {
        "e": "inactive",
        **dict.fromkeys(decision.chosen, "had the lead already"),
    }


def test_a_seeds_decision_names_its_rule_and_holder() -> None:
    outcome = route(account(RuleSet(), round_robin=False), summary())
    decision = outcome.decision()
    assert decision is not None
    assert (decision.step, decision.chosen, decision.rules, decision.rotation) == ("R5", ["broker"], [], None)


@settings(max_examples=150, deadline=None)
@given(
    intents=st.lists(st.sampled_from(["buy", "sell", "rent"]), max_size=3),
    cities=st.lists(st.sampled_from(["Austin", "Dallas"]), max_size=2),
    lead_intent=st.sampled_from(["buy", "sell", "rent", None]),
    lead_city=st.sampled_from(["Austin", "Dallas", None]),
    match=st.sampled_from(["exact", "empty_or_match"]),
    agents=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True),
)
def test_every_decision_names_the_rule_that_decided(
    intents: list[str], cities: list[str], lead_intent: str | None, lead_city: str | None, match: str, agents: list[str]
) -> None:
    rule_set = rules(rule("r", {"kind": "rotation", "agents": agents}, match, intents=intents, cities=cities))
    criteria: dict[str, Any] = {"intent": lead_intent} if lead_intent else {}
    if lead_city:
        criteria["place"] = {"city": lead_city}
    outcome = route(account(rule_set), summary(**criteria))
    decision = outcome.decision()
    assert decision is not None
    choice = choose_rule(rule_set, summary(**criteria), NOW, "America/New_York")
    assert decision.rules[-1].matched is (choice.rule_id == "r")
    if choice.rule_id == "r":
        assert decision.rule_id == "r"
        assert "rule 'R'" in outcome.explanation
        assert set(decision.chosen) <= set(agents)
    else:
        assert decision.rule_id is None
        assert "no rule matched" in outcome.explanation
    assert outcome.state is not None
    assert len(offered_to(outcome)) == 1 or outcome.state.holder is not None  # one holder or one offer


# --- fallbacks and idle reassignment -----------------------------------------------------------------------------


def test_fallback_steps_follow_each_other_then_position_1() -> None:
    snapshot = account(
        rules(
            {
                **rule("team", {"kind": "rotation", "agents": ["a"]}),
                "fallbacks": [
                    {"kind": "rotation", "agents": ["b", "c"], "race": 2},
                    {"kind": "agent", "agent_id": "d"},
                ],
            }
        )
    )
    first = route(snapshot, summary())
    assert offered_to(first) == ["a"]
    state = first.state
    assert state is not None
    steps = []
    for _ in range(3):
        outcome = on_deadline(state, snapshot, 1, state.next_deadline or NOW)
        steps.append((offered_to(outcome), outcome.explanation.split(" until ")[0]))
        assert outcome.state is not None
        state = outcome.state
    assert steps[0][0] in (["b", "c"], ["c", "b"])
    assert "rule 'Team, fallback 1', race of 2" in steps[0][1]
    assert steps[1] == (["d"], "Rule: offered to d (rule 'Team, fallback 2', race of 1)")
    assert steps[2][0] == []
    assert state.status is LeadStatus.FELL_BACK
    assert state.holder == "broker"


def test_an_owner_step_ends_the_chain_and_must_be_last() -> None:
    snapshot = account(rules({**rule("team", AGENT_B), "fallbacks": [{"kind": "owner"}]}))
    state = route(snapshot, summary()).state
    assert state is not None
    after = on_deadline(state, snapshot, 0, state.next_deadline or NOW)
    assert after.state is not None
    assert after.state.holder == "broker"
    with pytest.raises(ValidationError, match="only be the last fallback"):
        rules({**rule("x", AGENT_B), "fallbacks": [{"kind": "owner"}, AGENT_B]})
    with pytest.raises(ValidationError, match="at most 3 items"):
        rules({**rule("x", AGENT_B), "fallbacks": [AGENT_B] * 4})
    assert rules({**rule("x", AGENT_B), "fallbacks": [{"kind": "agent", "agent_id": "zed"}]}).refusals({"b"}) == [
        "rule 'x': agents not on the roster: ['zed']"
    ]


def test_a_claimed_lead_left_idle_goes_to_the_next_agent_at_most_n_times() -> None:
    team = {**rule("team", {"kind": "rotation", "agents": ["a", "b", "c"]}), "idle": {"minutes": 30, "times": 1}}
    snapshot = account(rules(team))
    state = route(snapshot, summary()).state
    assert state is not None
    claimed = idle_watch(
        state,
        on_activity(state, Activity("a", ActivityAction.ACCEPT), NOW),
        Activity("a", ActivityAction.ACCEPT),
        snapshot,
        NOW,
    )
    held = claimed.state
    assert held is not None
    assert held.holder == "a"
    assert held.next_deadline == NOW + timedelta(minutes=30)

    moved = on_deadline(held, snapshot, 1, NOW + timedelta(minutes=30))
    assert [e.kind for e in moved.events] == [LeadReleased, LeadOffered]
    assert moved.events[0].payload.reason == "idle"  # type: ignore[attr-defined]
    assert offered_to(moved) == ["b"]
    assert moved.explanation.startswith("Idle: a did nothing with the lead within 30 working minutes; ")
    again = moved.state
    assert again is not None
    assert again.idle_reassigned == 1
    at = NOW + timedelta(minutes=31)
    reclaimed = idle_watch(
        again,
        on_activity(again, Activity("b", ActivityAction.CALL), at),
        Activity("b", ActivityAction.CALL),
        snapshot,
        at,
    )
    assert reclaimed.state is not None
    assert reclaimed.state.next_deadline is None  # reassigned once already: b keeps it


def test_the_holder_s_first_action_stops_the_idle_clock() -> None:
    snapshot = account(rules({**rule("team", {"kind": "rotation", "agents": ["a", "b"]}), "idle": {"minutes": 5}}))
    state = route(snapshot, summary()).state
    assert state is not None
    accept = Activity("a", ActivityAction.ACCEPT)
    held = idle_watch(state, on_activity(state, accept, NOW), accept, snapshot, NOW).state
    assert held is not None
    assert held.next_deadline is not None
    call = Activity("a", ActivityAction.CALL)
    worked = idle_watch(held, on_activity(held, call, NOW), call, snapshot, NOW).state
    assert worked is not None
    assert worked.next_deadline is None
    assert worked.holder == "a"


def test_a_listing_lead_its_own_agent_claimed_in_its_direct_period_is_not_taken_back_as_idle() -> None:
    """R3 with auto-accept off: an inquiry on lia's listing is offered to lia alone for the direct period; it is a
    general lead only after it. lia claims it in time. The default rule's `idle` (30 minutes) is for "a lead claimed
    from the rule's pool" (docs/routing-rules.md): lia's own listing lead, with no referral fee, is not taken from
    her and offered to the rule's rotation (helper 146's review): no idle clock starts."""
    rule_set = RuleSet.model_validate(
        {"default": {"action": {"kind": "rotation", "agents": ["a", "b"]}, "idle": {"minutes": 30, "times": 1}}}
    )
    snapshot = AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(*ROSTER, Agent("lia", "Lia")),
        round_robin=True,
        sources={"Listings": LeadSourceConfig(name="Listings", auto_accept=False)},
        rules=rule_set,
    )
    inquiry = LeadSummary(
        contact=Contact(first_name="Jo", email="jo@example.com"),
        source=LeadSource(
            channel=LeadChannel.LISTING_INQUIRY, name="Listings", listing_id="MLS-1", listing_agent_id="lia"
        ),
    )
    routed = route_new_lead(NewLead(str(uuid.uuid4()), "acme", inquiry), snapshot, RoutingContext(), NOW)
    state = routed.state
    assert state is not None
    assert state.direct_phase, routed.explanation
    assert [o.agent_id for o in state.open_offers] == ["lia"]

    at = NOW + timedelta(minutes=1)
    accept = Activity("lia", ActivityAction.ACCEPT)
    claimed = idle_watch(state, on_activity(state, accept, at), accept, snapshot, at).state
    assert claimed is not None
    assert (claimed.holder, claimed.status) == ("lia", LeadStatus.ASSIGNED)
    assert claimed.next_deadline is None, f"an idle clock on lia's own listing lead: {claimed.next_deadline}"

    # After the direct period, the lead is general: a claim from the rule's pool starts the clock, as before.
    general = on_deadline(state, snapshot, 0, state.next_deadline or NOW)
    assert general.state is not None
    assert offered_to(general) == ["a"]
    later = (state.next_deadline or NOW) + timedelta(minutes=1)
    accept = Activity("a", ActivityAction.ACCEPT)
    held = idle_watch(general.state, on_activity(general.state, accept, later), accept, snapshot, later).state
    assert held is not None
    assert (held.holder, held.next_deadline) == ("a", later + timedelta(minutes=30))


def claimed_by_a(snapshot: AccountSnapshot) -> LeadState:
    """A new lead of the rule `team`, offered to a, claimed by a (its idle clock started, if the rule has one)."""
    state = route(snapshot, summary()).state
    assert state is not None
    accept = Activity("a", ActivityAction.ACCEPT)
    held = idle_watch(state, on_activity(state, accept, NOW), accept, snapshot, NOW).state
    assert held is not None
    assert held.holder == "a"
    return held


@pytest.mark.parametrize("later", ["idle dropped", "rule deleted"])
def test_an_idle_clock_started_before_the_rule_dropped_idle_reassignment_does_not_take_the_lead(later: str) -> None:
    """Decision 0090 (review, helper 73): the idle deadline stays on the record when the rule is saved without
    `idle` (or deleted, and the default has none); when it comes, the lead's rule as it is now decides."""
    team = rule("team", {"kind": "rotation", "agents": ["a", "b", "c"]})
    held = claimed_by_a(account(rules({**team, "idle": {"minutes": 30, "times": 1}})))
    assert held.next_deadline == NOW + timedelta(minutes=30)
    now = account(rules(team)) if later == "idle dropped" else account(RuleSet())
    after = on_deadline(held, now, 1, NOW + timedelta(minutes=30))
    assert LeadReleased not in [e.kind for e in after.events], after.explanation
    assert after.state is not None
    assert (after.state.holder, after.state.status, after.state.next_deadline) == ("a", LeadStatus.ASSIGNED, None)


# --- a rule's hours ---------------------------------------------------------------------------------------------


def test_outside_its_hours_a_rule_that_pauses_its_clock_still_offers_and_the_window_waits_for_them() -> None:
    office = {
        **rule(
            "office",
            {"kind": "agent", "agent_id": "b", "claim_window_seconds": 900},
            hours={"start": "09:00", "end": "17:00"},
            weekdays=[0, 1, 2, 3, 4],
        ),
        "when_closed": "pause_clock",
    }
    snapshot = account(rules(office))
    friday_4_55pm = datetime(2026, 3, 6, 21, 55, tzinfo=UTC)  # New York
    new = NewLead(str(uuid.uuid4()), "acme", summary())
    outcome = route_new_lead(new, snapshot, RoutingContext(), friday_4_55pm)
    assert offered_to(outcome) == ["b"]
    state = outcome.state
    assert state is not None
    # It would expire after 17:00: the whole window again from Monday 09:00 (New York), as R10 does.
    assert state.next_deadline == datetime(2026, 3, 9, 13, 15, tzinfo=UTC)
    saturday = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)
    held = route_new_lead(new, snapshot, RoutingContext(), saturday).state
    assert held is not None
    assert held.next_deadline == datetime(2026, 3, 9, 13, 15, tzinfo=UTC)
    skipping = account(rules({**office, "when_closed": "skip"}))
    assert route_new_lead(new, skipping, RoutingContext(), saturday).state.rule_id is None  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="needs the rule's hours or weekdays"):
        rules({**rule("x", AGENT_B), "when_closed": "pause_clock"})


def test_a_rule_that_holds_its_leads_offers_nobody_while_closed_and_offers_when_it_opens() -> None:
    office = {
        **rule("office", {"kind": "agent", "agent_id": "b"}, hours={"start": "09:00", "end": "17:00"}, weekdays=[0, 1]),
        "when_closed": "hold",
    }
    snapshot = account(rules(office))
    monday_6pm = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # New York
    tuesday_9am = datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    outcome = route_new_lead(NewLead(str(uuid.uuid4()), "acme", summary()), snapshot, RoutingContext(), monday_6pm)
    state = outcome.state
    assert state is not None
    assert (state.status, state.next_deadline, state.rule_id, state.offers) == (
        LeadStatus.WAITING, tuesday_9am, "office", ()
    )  # fmt: skip
    [held] = outcome.events
    assert held.kind is LeadHeld
    assert (held.payload.rule_id, held.payload.until) == ("office", tuesday_9am)  # type: ignore[attr-defined]
    assert held.payload.contact == summary().contact  # type: ignore[attr-defined]
    decision = outcome.decision()
    assert decision is not None
    assert (decision.rule_id, decision.chosen) == ("office", [])
    assert "'Office' is closed" in decision.explanation

    assert on_deadline(state, snapshot, 0, tuesday_9am - timedelta(minutes=1)).events == ()
    opened = on_deadline(state, snapshot, 0, tuesday_9am)
    assert offered_to(opened) == ["b"]
    assert opened.state is not None
    assert opened.state.status is LeadStatus.OFFERED

    # Offered at 16:55 Tuesday, its claim clock waits for Monday; declined at 17:05 (closed), it is held
    # again until Monday 09:00, its next open day, not offered on at once.
    tuesday_4_55pm, tuesday_5_05pm = datetime(2026, 3, 3, 21, 55, tzinfo=UTC), datetime(2026, 3, 3, 22, 5, tzinfo=UTC)
    late = on_deadline(state, snapshot, 0, tuesday_4_55pm).state
    assert late is not None
    assert late.next_deadline == datetime(2026, 3, 9, 13, 15, tzinfo=UTC)
    declined = on_activity(late, Activity("b", ActivityAction.DECLINE), tuesday_5_05pm)
    assert declined.state is not None
    again = on_deadline(declined.state, snapshot, 0, tuesday_5_05pm)
    assert [e.kind for e in again.events] == [LeadHeld]
    assert again.state is not None
    assert again.state.next_deadline == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)


def test_a_rule_with_hours_is_closed_on_the_office_s_holidays() -> None:
    """Skipped (the next rule decides, saying why), or holding its lead until the first open hour after."""
    hours = {"start": "09:00", "end": "17:00"}
    office = rule("office", {"kind": "agent", "agent_id": "b"}, hours=hours)
    always = rule("always", {"kind": "agent", "agent_id": "c"})  # no hours: holidays are nothing to it
    friday = date(2026, 3, 6)
    snapshot = dataclasses.replace(account(rules(office, always)), holidays=frozenset({friday}))
    friday_10am = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)  # New York
    new = NewLead(str(uuid.uuid4()), "acme", summary())
    skipped = route_new_lead(new, snapshot, RoutingContext(), friday_10am)
    assert offered_to(skipped) == ["c"]
    assert "Office (an office holiday (2026-03-06))" in skipped.explanation
    thursday_10am = friday_10am - timedelta(days=1)
    assert offered_to(route_new_lead(new, snapshot, RoutingContext(), thursday_10am)) == ["b"]

    held = dataclasses.replace(snapshot, rules=rules({**office, "when_closed": "hold"}, always))
    outcome = route_new_lead(new, held, RoutingContext(), friday_10am)
    assert [e.kind for e in outcome.events] == [LeadHeld]
    assert outcome.state is not None
    assert outcome.state.next_deadline == datetime(2026, 3, 7, 14, 0, tzinfo=UTC), "Saturday 09:00 (no days: all open)"


def test_a_rule_that_holds_its_leads_waits_out_a_closure_of_weeks_but_not_a_schedule_that_never_opens() -> None:
    """Helper 83's review (helper 84): a rule open every day, closed on the office's holidays, holds its lead
    through three weeks of them over the year's end (`pause_end` cut one window after 14 steps: held until
    day 14 of the closure); a closure longer than 60 days (`PAUSE_LIMIT`: a schedule that never opens) holds
    nothing: the lead is offered at once, its claim clock cut at two weeks (R10)."""
    action = {"kind": "agent", "agent_id": "b", "claim_window_seconds": 900}
    office = {**rule("office", action, weekdays=list(range(7))), "when_closed": "hold"}
    year_end = date(2026, 12, 21)
    closure = frozenset(year_end + timedelta(days=n) for n in range(21))  # Dec 21 .. Jan 10
    snapshot = dataclasses.replace(account(rules(office)), holidays=closure)
    monday_10am = datetime(2026, 12, 21, 10, 0, tzinfo=NEW_YORK).astimezone(UTC)
    reopens = datetime(2027, 1, 11, 0, 0, tzinfo=NEW_YORK).astimezone(UTC)
    new = NewLead(str(uuid.uuid4()), "acme", summary())
    held = route_new_lead(new, snapshot, RoutingContext(), monday_10am)
    assert [e.kind for e in held.events] == [LeadHeld]
    assert held.state is not None
    assert (held.state.status, held.state.next_deadline) == (LeadStatus.WAITING, reopens)
    assert held.events[0].payload.until == reopens  # type: ignore[attr-defined]
    assert offered_to(on_deadline(held.state, snapshot, 0, reopens)) == ["b"]

    never = dataclasses.replace(snapshot, holidays=frozenset(year_end + timedelta(days=n) for n in range(70)))
    at_once = route_new_lead(new, never, RoutingContext(), monday_10am)
    assert offered_to(at_once) == ["b"], at_once.explanation
    assert at_once.state is not None
    assert at_once.state.next_deadline == monday_10am + CLOCK_CUT + timedelta(seconds=900)


def test_a_source_rotation_rule_keeps_its_hours_clock_with_its_leads() -> None:
    """A rule whose action is the source's rotation, with no fallbacks: its leads still remember the rule when
    it pauses its claim clock or holds them (else the sweeper would not know its hours)."""
    hours = {"start": "09:00", "end": "17:00"}
    for when in ("pause_clock", "hold"):
        snapshot = account(rules({**rule("office", {"kind": "source_rotation"}, hours=hours), "when_closed": when}))
        state = route(snapshot, summary()).state
        assert state is not None
        assert state.rule_id == "office", when


NEW_YORK = ZoneInfo("America/New_York")


def office_9_to_5(window_hours: int) -> dict[str, Any]:
    action = {"kind": "agent", "agent_id": "b", "claim_window_seconds": window_hours * 3600}
    return {**rule("office", action, hours={"start": "09:00", "end": "17:00"}), "when_closed": "pause_clock"}


@pytest.mark.parametrize(
    ("window_hours", "deadline"),
    [
        (9, datetime(2026, 3, 4, 10, 0, tzinfo=NEW_YORK)),  # would end Tuesday 01:00: 9 open hours from 09:00
        (20, datetime(2026, 3, 5, 12, 0, tzinfo=NEW_YORK)),  # 1 + 8 + 8 + 3 open hours, the nights not counted
    ],
)
def test_a_claim_window_longer_than_the_rule_s_open_hours_runs_only_while_it_is_open(
    window_hours: int, deadline: datetime
) -> None:
    """Review (helper 73): a rule that pauses its clock counts its claim window in open hours only, so a window
    longer than a day's opening neither runs through the closed night nor runs out inside it (decision 0089)."""
    monday_4pm = datetime(2026, 3, 2, 16, 0, tzinfo=NEW_YORK).astimezone(UTC)
    new = NewLead(str(uuid.uuid4()), "acme", summary())
    outcome = route_new_lead(new, account(rules(office_9_to_5(window_hours))), RoutingContext(), monday_4pm)
    assert offered_to(outcome) == ["b"]
    assert outcome.state is not None
    assert outcome.state.next_deadline == deadline


def test_a_rule_that_holds_its_leads_opens_when_its_hours_open_on_the_spring_forward_day() -> None:
    """Review (helper 73): on 8 March 2026 New York's clocks jump from 02:00 to 03:00, so a rule open 02:30-10:00
    is open at 03:00 (the same rule with `skip` matches then), and one that holds its leads offers at once,
    rather than at 02:30 EST = 03:30 EDT."""
    hours = {"start": "02:30", "end": "10:00"}
    three_am = datetime(2026, 3, 8, 3, 0, tzinfo=NEW_YORK).astimezone(UTC)
    new = NewLead(str(uuid.uuid4()), "acme", summary())
    office = {**rule("office", AGENT_B, hours=hours), "when_closed": "skip"}
    skipping = route_new_lead(new, account(rules(office)), RoutingContext(), three_am)
    assert skipping.state is not None
    assert skipping.state.rule_id == "office", "by its hours the rule is open at 03:00"
    holding = route_new_lead(new, account(rules({**office, "when_closed": "hold"})), RoutingContext(), three_am)
    assert [e.kind for e in holding.events] == [LeadOffered], holding.explanation
    assert holding.state is not None
    assert holding.state.status is LeadStatus.OFFERED
    at_one = datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK).astimezone(UTC)  # closed: held until the clock jumps
    held = route_new_lead(new, account(rules({**office, "when_closed": "hold"})), RoutingContext(), at_one).state
    assert held is not None
    assert held.next_deadline == three_am


@pytest.mark.parametrize(
    ("claimed_at", "minutes", "deadline"),
    [
        ((11, 0), 120, (13, 30)),  # a pause wholly inside the idle minutes does not count
        ((11, 50), 15, (12, 35)),  # working minutes: 10 before the pause and 5 after it
    ],
)
def test_idle_minutes_are_working_minutes_the_account_s_pauses_do_not_count(
    claimed_at: tuple[int, int], minutes: int, deadline: tuple[int, int]
) -> None:
    """Review (helper 73): idle reassignment's clock counts working minutes only (routing-rules.md), around a
    12:00-12:30 pause."""
    lunch = (PauseWindow(frozenset(range(7)), time(12), time(12, 30)),)
    team = {**rule("team", {"kind": "rotation", "agents": ["a", "b"]}), "idle": {"minutes": minutes, "times": 1}}
    snapshot = dataclasses.replace(account(rules(team)), pause=lunch)
    at = datetime(2026, 3, 2, *claimed_at, tzinfo=NEW_YORK).astimezone(UTC)
    state = route_new_lead(NewLead(str(uuid.uuid4()), "acme", summary()), snapshot, RoutingContext(), at).state
    assert state is not None
    accept = Activity("a", ActivityAction.ACCEPT)
    held = idle_watch(state, on_activity(state, accept, at), accept, snapshot, at).state
    assert held is not None
    assert held.holder == "a"
    assert held.next_deadline == datetime(2026, 3, 2, *deadline, tzinfo=NEW_YORK)


# --- ponds -----------------------------------------------------------------------------------------------------


def pond_rules(**pond: Any) -> RuleSet:
    return RuleSet.model_validate(
        {
            "ponds": [{"id": "buyers", "name": "Buyers", "agents": ["b", "c", "d"], "hold_seconds": 3600, **pond}],
            "rules": [{**rule("pool", {"kind": "pond", "pond": "buyers"}), "fallbacks": [AGENT_B]}],
        }
    )


def test_a_pond_offers_the_lead_to_all_its_agents_at_once_and_counts_it_against_none() -> None:
    outcome = route(account(pond_rules()), summary())
    assert offered_to(outcome) == ["b", "c", "d"]
    payloads = [e.payload for e in outcome.events]
    assert {p.pond for p in payloads} == {"buyers"}  # type: ignore[attr-defined]
    assert {p.race_size for p in payloads} == {3}  # type: ignore[attr-defined]
    state = outcome.state
    assert state is not None
    assert state.pond == "buyers"
    assert state.next_deadline == NOW + timedelta(hours=1)
    assert counted(state) == frozenset()
    claimed = on_activity(state, Activity("c", ActivityAction.ACCEPT), NOW).state
    assert claimed is not None
    assert (claimed.holder, counted(claimed)) == ("c", frozenset({"c"}))


def test_an_unclaimed_pond_lead_goes_on_to_the_next_step() -> None:
    snapshot = account(pond_rules(agents=["c", "d"]))
    state = route(snapshot, summary()).state
    assert state is not None
    after = on_deadline(state, snapshot, 0, NOW + timedelta(hours=1))
    assert offered_to(after) == ["b"]  # the fallback step
    assert after.state is not None
    assert after.state.pond is None


def test_ponds_must_exist_and_name_agents_of_the_roster() -> None:
    with pytest.raises(ValidationError, match=r"rule 'x': unknown ponds \['nowhere'\]"):
        rules(rule("x", {"kind": "pond", "pond": "nowhere"}))
    assert pond_rules(agents=["b", "ghost"]).refusals({"b", "c", "d"}) == [
        "pond 'buyers': agents not on the roster: ['ghost']"
    ]


# --- a missed offer asked back ----------------------------------------------------------------------------------


def test_a_missed_offer_asked_back_joins_the_race_or_comes_back_alone() -> None:
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["a", "b", "c"]})))
    first = route(snapshot, summary())
    state = first.state
    assert state is not None
    declined = on_activity(state, Activity("a", ActivityAction.DECLINE), NOW).state
    assert declined is not None
    moved_on = on_deadline(declined, snapshot, 1, NOW)  # the decline made the lead due: b has it now
    racing = moved_on.state
    assert racing is not None
    assert offered_to(moved_on) == ["b"]
    back = on_ask_back(racing, Activity("a", ActivityAction.ASK_BACK), snapshot, NOW)
    assert offered_to(back) == ["a"]
    assert back.state is not None
    assert sorted(o.agent_id for o in back.state.open_offers) == ["a", "b"]  # both race now
    assert back.state.next_deadline == racing.next_deadline
    claimed = on_activity(back.state, Activity("a", ActivityAction.CALL), NOW).state
    assert claimed is not None
    assert claimed.holder == "a"
    refused = on_ask_back(claimed, Activity("b", ActivityAction.ASK_BACK), snapshot, NOW)
    assert refused.state == claimed
    assert refused.explanation == "cannot ask it back: the lead is held by a"


def test_an_agent_never_offered_or_who_cannot_take_it_now_cannot_ask_it_back() -> None:
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["a"]})))
    state = route(snapshot, summary()).state
    assert state is not None
    never = on_ask_back(state, Activity("d", ActivityAction.ASK_BACK), snapshot, NOW)
    assert never.explanation == "cannot ask it back: d was never offered the lead"
    still = on_ask_back(state, Activity("a", ActivityAction.ASK_BACK), snapshot, NOW)
    assert still.explanation == "cannot ask it back: its offer is still open"
    fell = on_deadline(state, snapshot, 1, state.next_deadline or NOW).state  # a let it expire: R9
    assert fell is not None
    assert fell.status is LeadStatus.FELL_BACK
    paused = on_ask_back(fell, Activity("a", ActivityAction.ASK_BACK), snapshot, NOW, cannot="paused")
    assert paused.explanation == "cannot ask it back: paused"
    alone = on_ask_back(fell, Activity("a", ActivityAction.ASK_BACK), snapshot, NOW)
    assert alone.state is not None
    assert (alone.state.status, alone.state.holder, offered_to(alone)) == (LeadStatus.OFFERED, None, ["a"])


def test_a_holder_whose_lead_was_taken_for_idleness_cannot_ask_it_back() -> None:
    """Decision 0090 (review, helper 73): only a missed offer (ended unclaimed) is asked back; the holder the
    lead was taken from for doing nothing (its offer claimed) would race the agent it was reassigned to."""
    snapshot = account(
        rules({**rule("team", {"kind": "rotation", "agents": ["a", "b", "c"]}), "idle": {"minutes": 30}})
    )
    moved = on_deadline(claimed_by_a(snapshot), snapshot, 1, NOW + timedelta(minutes=30))
    assert [e.kind for e in moved.events] == [LeadReleased, LeadOffered]
    assert moved.state is not None
    again = on_ask_back(moved.state, Activity("a", ActivityAction.ASK_BACK), snapshot, NOW + timedelta(minutes=31))
    assert offered_to(again) == [], f"the idle holder got the lead back: {again.explanation}"
    assert again.explanation == (
        "cannot ask it back: a claimed the lead before and no longer holds it; only a missed offer is asked back"
    )


@pytest.mark.parametrize(
    ("a", "why"),
    [
        (Agent("a", "A", round_robin=False), "not approved for round robin"),
        (Agent("a", "A", invitation_accepted=False), "invitation not accepted"),
    ],
)
@pytest.mark.asyncio
async def test_an_agent_no_pool_may_offer_a_lead_is_not_offered_one_it_asks_back(a: Agent, why: str) -> None:
    """Decision 0090 (review, helper 73): an agent whose round-robin approval was taken away (or whose invitation
    is no longer accepted) after its offer ended asks the lead back: refused, as no pool may offer it a lead."""
    team = rules(rule("team", {"kind": "rotation", "agents": ["a", "b"]}))
    now = [NOW]
    out = Published()
    router = router_on_fakes(account(team), clock=lambda: now[0], publish=out)
    lead = website_lead("acme", NOW)
    assert not await router.on_leads_received([lead])

    def offers() -> list[str]:
        return [e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)]

    def activity(agent_id: str, action: ActivityAction) -> LeadActivity:
        payload = LeadActivityPayload(lead_id=lead.event_id, agent_id=agent_id, action=action)
        return LeadActivity.create(account_id="acme", occurred_at=now[0], payload=payload)

    assert offers() == ["a"]
    await router.on_activity(activity("a", ActivityAction.DECLINE))
    await router.sweep_once()  # due at once: offered on to b
    assert offers() == ["a", "b"]
    roster = tuple(a if agent.agent_id == "a" else agent for agent in ROSTER)
    router.accounts = FakeAccounts(account(team, roster=roster))
    out.clear()
    now[0] = NOW + timedelta(minutes=1)
    await router.on_activity(activity("a", ActivityAction.ASK_BACK))
    assert offers() == [], f"a ({why}) was offered the lead again"
    [refusal] = out.lead_events()
    assert isinstance(refusal, ActivityLogged)
    assert refusal.payload.claim_refused == f"cannot ask it back: {why}"


def test_every_answer_to_an_ask_names_the_ask_the_offer_and_each_refusal() -> None:
    """Decision 0067: the router's one answer to an ask (a new offer, or a refusal with its reason) carries the
    ask's LeadActivity id, so crm-api matches an ask to its own answer without comparing clocks."""
    snapshot = account(rules(rule("team", {"kind": "rotation", "agents": ["a"]})))
    offered = route(snapshot, summary()).state
    assert offered is not None
    fell = on_deadline(offered, snapshot, 1, offered.next_deadline or NOW).state  # a let its offer expire: R9
    claimed = on_activity(offered, Activity("a", ActivityAction.CALL), NOW).state
    assert fell is not None
    assert claimed is not None
    nobody = dataclasses.replace(fell, status=LeadStatus.UNASSIGNED, holder=None)  # its holder left
    cases = [  # (the answer's words, the lead, the asking agent, why it cannot take it now)
        ("a asked back the offer it missed", fell, "a", None),
        ("cannot ask it back: d was never offered the lead", offered, "d", None),
        ("cannot ask it back: its offer is still open", offered, "a", None),
        ("cannot ask it back: the lead is held by a", claimed, "a", None),
        ("cannot ask it back: nobody can be offered the lead now", nobody, "a", None),
        ("cannot ask it back: a is paused", fell, "a", "a is paused"),
    ]
    for said, state, agent, cannot in cases:
        ask = uuid.uuid4()
        outcome = on_ask_back(
            state, Activity(agent, ActivityAction.ASK_BACK, event_id=ask), snapshot, NOW, cannot=cannot
        )
        assert outcome.explanation.startswith(said), (said, outcome.explanation)
        [answer] = outcome.events
        assert answer.kind is (LeadOffered if "asked back" in said else ActivityLogged), said
        assert isinstance(answer.payload, LeadOfferedPayload | ActivityLoggedPayload)
        assert answer.payload.answers_activity_id == ask, said
    [claim_refused] = on_activity(offered, Activity("d", ActivityAction.DECLINE, event_id=uuid.uuid4()), NOW).events
    assert isinstance(claim_refused.payload, ActivityLoggedPayload)
    assert claim_refused.payload.claim_refused is not None
    assert claim_refused.payload.answers_activity_id is None, "only answers to asks name what they answer"


def test_a_rule_can_be_for_the_offices_a_lead_s_source_is_for() -> None:
    offices = {
        "Downtown site": LeadSourceConfig(name="Downtown site", offices=frozenset({"downtown"})),
        "Uptown site": LeadSourceConfig(name="Uptown site", offices=frozenset({"uptown"})),
    }
    downtown = dataclasses.replace(account(rules(rule("dt", AGENT_B, offices=["Downtown"]))), sources=offices)
    assert offered_to(route(downtown, summary(source="Downtown site"))) == ["b"]
    other = route(downtown, summary(source="Uptown site"))
    assert "Dt (source's offices 'uptown' not in 'Downtown')" in other.explanation
    assert "Dt (its source is for no office)" in route(downtown, summary(source="Website")).explanation
    loose = dataclasses.replace(
        account(rules(rule("dt", AGENT_B, "empty_or_match", offices=["downtown"]))), sources=offices
    )
    assert offered_to(route(loose, summary(source="Website"))) == ["b"]


def _in_group(*agents: str) -> AccountSnapshot:
    """The default rule's source rotation, the Website source's lead group "west" of `agents`."""
    roster = tuple(
        dataclasses.replace(x, lead_groups=frozenset({"west"} if x.agent_id in agents else ())) for x in ROSTER
    )
    snapshot = account(RuleSet(), roster=roster)
    return dataclasses.replace(snapshot, sources={"Website": LeadSourceConfig(name="Website", lead_group="west")})


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        (account(rules(rule("team", {"kind": "rotation", "agents": ["a", "b"]}))),
         account(rules(rule("team", {"kind": "rotation", "agents": ["b", "c"]}))),
         "a is not among the agents of rule 'Team'"),
        (_in_group("a", "b", "c"), _in_group("b", "c"), "not in lead group 'west'"),
    ],
)  # fmt: skip
def test_an_agent_no_longer_in_the_pool_the_lead_goes_by_now_cannot_ask_it_back(
    before: AccountSnapshot, after: AccountSnapshot, why: str
) -> None:
    """Decision 0090 (helper 88): a lead goes by its rule as the rule set is now, and so does an ask back: an agent
    taken off the rule's list (or out of the source's lead group or offices) since its offer ended is refused, with
    the reason its pool skips it for, and is not offered the lead again."""
    offered = route(before, summary()).state
    assert offered is not None
    assert [o.agent_id for o in offered.offers] == ["a"]
    expired = on_deadline(offered, before, 1, offered.next_deadline or NOW)  # a missed it: offered on to b
    assert expired.state is not None
    assert [o.agent_id for o in expired.state.open_offers] == ["b"]
    ask = Activity("a", ActivityAction.ASK_BACK)
    asked = on_ask_back(expired.state, ask, after, NOW + timedelta(minutes=20))
    assert offered_to(asked) == [], f"a, outside the pool now, was offered the lead again: {asked.explanation}"
    assert asked.explanation == f"cannot ask it back: {why}"
    assert offered_to(on_ask_back(expired.state, ask, before, NOW + timedelta(minutes=20))) == ["a"]  # as it was


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        timezones=st.sampled_from(
            [UTC, ZoneInfo("America/Chicago"), ZoneInfo("Australia/Lord_Howe"), timezone(timedelta(seconds=-3661.5))]
        )
        | st.none()
    ),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
)
def test_an_offer_s_deadline_is_written_as_isoformat_writes_it(moment: datetime, later: timedelta) -> None:
    """`schedule.isoformat` (every offer's deadline in its explanation) keeps `datetime.isoformat`'s text: for a day
    and UTC offset it has not seen, which it reads off that text, and again for another moment of them."""
    assert isoformat(moment) == moment.isoformat()
    if moment.year < 9999:
        again = moment + later
        assert isoformat(again) == again.isoformat()


@settings(max_examples=300, deadline=None)
@given(start=st.times(), end=st.times(), moment=st.times())
def test_a_rules_compiled_hours_agree_with_within(start: time, end: time, moment: time) -> None:
    """`_within` (the compiled test of a rule's hours) keeps `within`'s two cases, midnight crossed included."""
    hours = Hours(start=start, end=end)
    lead = cast(Any, SimpleNamespace(time=moment))
    assert _within(hours)(lead) is within(hours, moment)
