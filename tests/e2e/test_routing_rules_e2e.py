"""Routing rules through the four processes (issue 15, item 8).

One account of the whole-system `stack` is seeded with a rule of each kind; website leads are posted to
intake, each tagged for the rule it is meant for, and the test reads who the router offered each one to
(LeadOffered on leads.events.v1, and the notifier's offer emails): one agent, round robin, weighted,
balanced, random, a race of two, leads per round, exact and empty-or-match criteria, the default rule,
a fallback chain; a paused agent and one at its daily cap skipped and why; the lead's routing decisions
and the dry-run on the router's internal API.

What takes minutes on a real clock (a claim window running out, idle reassignment across a router
restart) runs on a second system, `clocked`, whose router runs ten times real speed (ROUTER_CLOCK_START,
ROUTER_CLOCK_RATE, as in test_r10_clock.py). One file, not two: a helper module beside the tests would not
be importable both by pytest (tests/e2e is on its path) and by mypy (it is not on mypy_path).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from pydantic import ValidationError
from pymongo import MongoClient
from seeding import seed_in_process

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually, publish_envelopes
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    LeadClaimed,
    LeadFellBack,
    LeadHeld,
    LeadOffered,
    LeadReleased,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


E = TypeVar("E")

# --- helpers: leads in, events and emails out -----------------------------------------------------


def agent_config(agent_id: str, **availability: Any) -> dict[str, Any]:
    """An agent of the seed file, its email `<id>@rules.example`; `availability`: paused, caps..."""
    return {"agent_id": agent_id, "name": agent_id, "email": f"{agent_id}@rules.example", **availability}


def seed_file(directory: Path, account: dict[str, Any]) -> Path:
    """A seed file of the one `account`."""
    path = directory / "accounts.json"
    path.write_text(json.dumps({"accounts": [account]}))
    return path


async def post_lead(
    stack: Stack, client: httpx.AsyncClient, account: str, criteria: dict[str, Any], *, email: str | None = None
) -> uuid.UUID:
    """A website lead about `criteria`, from a new contact unless `email` is given (R1 merges repeats)."""
    body = {
        "account_id": account,
        "first_name": "Rule",
        "email": email or f"rule-{uuid.uuid4().hex[:12]}@example.com",
        "criteria": criteria,
    }
    response = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["event_id"])


async def act(stack: Stack, account: str, lead_id: uuid.UUID, agent_id: str, action: ActivityAction) -> None:
    """An agent's action on a lead, as crm-api publishes it on leads.activity.v1."""
    activity = LeadActivity.create(
        account_id=account,
        occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=lead_id, agent_id=agent_id, action=action),
    )
    await publish_envelopes(stack.bootstrap, topics.LEADS_ACTIVITY, [activity])


class RoutingEvents:
    """One account's lead events on leads.events.v1, from the beginning, by lead id."""

    def __init__(self, stack: Stack, account: str) -> None:
        self._log = TopicLog(stack.bootstrap, topics.LEADS_EVENTS)
        self._account = account
        self.by_lead: defaultdict[uuid.UUID, list[object]] = defaultdict(list)
        self._seen: set[uuid.UUID] = set()  # event ids: a republished copy (same id) is one event, as consumers see it

    async def __aenter__(self) -> RoutingEvents:
        await self._log.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._log.__aexit__(*exc)

    async def poll(self) -> None:
        for raw in await self._log.poll():
            if self._account.encode() not in raw:  # other tests' accounts: not parsed
                continue
            try:
                event = ROUTING_EVENT.validate_json(raw)
            except ValidationError:
                continue
            lead_id = getattr(event.payload, "lead_id", None)
            if (
                event.account_id == self._account
                and isinstance(lead_id, uuid.UUID)
                and event.event_id not in self._seen
            ):
                self._seen.add(event.event_id)
                self.by_lead[lead_id].append(event)

    def story(self, lead_id: uuid.UUID) -> list[str]:
        """The lead's events so far, as `type agent` (for failure messages)."""
        return [
            f"{type(e).__name__} {getattr(getattr(e, 'payload', None), 'agent_id', '')}" for e in self.by_lead[lead_id]
        ]

    def of(self, lead_id: uuid.UUID, kind: type[E]) -> list[E]:
        return [e for e in self.by_lead[lead_id] if isinstance(e, kind)]

    async def wait(self, lead_id: uuid.UUID, kind: type[E], count: int = 1, timeout: float = 30.0) -> list[E]:
        """The lead's events of `kind` once there are `count` of them."""

        async def enough() -> list[E]:
            await self.poll()
            found = self.of(lead_id, kind)
            return found if len(found) >= count else []

        return await eventually(enough, timeout=timeout, what=f"{count} {kind.__name__} of lead {lead_id}")

    async def first_offers(self, lead_ids: list[uuid.UUID]) -> list[str]:
        """Who each lead was first offered to, in the leads' order."""
        return [(await self.wait(lead, LeadOffered))[0].payload.agent_id for lead in lead_ids]

    def offers_to(self, agents: set[str]) -> list[LeadOffered]:
        """Every offer of this account to one of `agents`, of those read so far."""
        offers = (e for events in self.by_lead.values() for e in events if isinstance(e, LeadOffered))
        return [e for e in offers if e.payload.agent_id in agents]


def mails(stack: Stack, lead_id: uuid.UUID | None = None, subject: str = "Lead offer") -> list[EmailMessage]:
    """The emails received whose subject starts with `subject` (offers by default), of `lead_id` if given."""
    assert stack.mail is not None
    return [
        m
        for m in stack.mail.received()
        if str(m["Subject"]).startswith(subject) and (lead_id is None or m["X-Leadflow-Lead-Id"] == str(lead_id))
    ]


def offer_mails_to(stack: Stack, agent_id: str) -> set[str]:
    """The leads (ids) of the offer emails `agent_id` received."""
    return {str(m["X-Leadflow-Lead-Id"]) for m in mails(stack) if str(m["To"]).startswith(f"{agent_id}@")}


async def mail_recipients(stack: Stack, lead_id: uuid.UUID, count: int, subject: str = "Lead offer") -> set[str]:
    """Who the lead's emails (offers by default) went to, once `count` of them arrived."""

    def found() -> set[str]:
        to = [str(m["To"]).split("@")[0] for m in mails(stack, lead_id, subject)]
        return set(to) if len(to) >= count else set()

    return await eventually(found, what=f"{count} emails {subject!r} of lead {lead_id}")


# --- one rule of each kind, on the whole-system stack ---------------------------------------------

ACCOUNT = "rre-realty"
BROKER = "rre-broker"  # roster position 1: holds what nobody takes (R9)


def rule(
    rule_id: str, name: str, tag: str, action: dict[str, Any], *, cities: list[str] | None = None, **more: Any
) -> dict[str, Any]:
    """A rule for the leads tagged `tag` (and about one of `cities`)."""
    criteria: dict[str, Any] = {"tags": [tag]} | ({"cities": cities} if cities else {})
    return {"id": rule_id, "name": name, "criteria": criteria, "action": action, **more}


def rotation(*agents: str, **more: Any) -> dict[str, Any]:
    return {"kind": "rotation", "agents": list(agents), **more}


RULES = [
    rule("one-agent", "One agent", "agent", {"kind": "agent", "agent_id": "rre-a1"}),
    rule("rr", "Round robin", "rr", rotation("rre-r1", "rre-r2", "rre-r3")),
    rule("weighted", "Weighted", "weighted", rotation("rre-w1", "rre-w2", mode="weighted", weights={"rre-w1": 2})),
    rule("balanced", "Balanced", "balanced", rotation("rre-b1", "rre-b2", "rre-b3", mode="balanced")),
    rule("random", "Random", "random", rotation("rre-x1", "rre-x2", "rre-x3", mode="random")),
    rule("race", "Race of two", "race", rotation("rre-c1", "rre-c2", "rre-c3", race=2)),
    rule("per-round", "Two per round", "per-round", rotation("rre-p1", "rre-p2", leads_per_round=2)),
    rule(
        "fallback",
        "Fallback chain",
        "fallback",
        {"kind": "agent", "agent_id": "rre-f1"},
        fallbacks=[rotation("rre-f2"), {"kind": "agent", "agent_id": "rre-f3"}],
    ),
    rule("avail", "Availability", "avail", rotation("rre-v-paused", "rre-v-capped", "rre-v-ok")),
    rule("dry", "Dry run", "dry", rotation("rre-dr1", "rre-dr2")),
    # Both for leads tagged "match" in Austin; only the second takes one that names no city.
    rule("exact-city", "Austin exact", "match", {"kind": "agent", "agent_id": "rre-e1"}, cities=["Austin"]),
    rule(
        "loose-city",
        "Austin or no city",
        "match",
        {"kind": "agent", "agent_id": "rre-e2"},
        cities=["Austin"],
        match="empty_or_match",
    ),
]
RULE_IDS = [r["id"] for r in RULES]
AGENTS = sorted(
    {a for r in RULES for action in (r["action"], *r.get("fallbacks", ())) for a in action.get("agents", ())}
    | {r["action"]["agent_id"] for r in RULES if r["action"]["kind"] == "agent"}
    | {"rre-f3", "rre-d1", "rre-b4"}  # b4: on the roster, in no rule (a draft's)
)
AVAILABILITY: dict[str, dict[str, Any]] = {"rre-v-paused": {"paused": True}, "rre-v-capped": {"caps": {"day": 1}}}


@pytest.fixture(scope="module")
def account(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One account for the module: every rule, long claim windows (nothing expires while the suite runs)."""
    config = {
        "account_id": ACCOUNT,
        "name": "Rules Realty",
        "round_robin": True,
        "agents": [agent_config(a, **AVAILABILITY.get(a, {})) for a in [BROKER, *AGENTS]],
        "roster": [BROKER, *AGENTS],
        "default_source": {"claim_window_seconds": 3600},
        "routing_rules": {"rules": RULES, "default": {"action": rotation("rre-d1")}},
    }
    stack.seed(seed_file(tmp_path_factory.mktemp("rules"), config))
    return ACCOUNT


@pytest_asyncio.fixture
async def events(stack: Stack, account: str) -> AsyncIterator[RoutingEvents]:
    async with RoutingEvents(stack, account) as log:
        yield log


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def leads(stack: Stack, client: httpx.AsyncClient, account: str, tag: str, n: int) -> list[uuid.UUID]:
    """`n` leads tagged `tag`, posted one after the other (so the router sees them in this order)."""
    return [await post_lead(stack, client, account, {"tags": [tag]}) for _ in range(n)]


async def routing_of(stack: Stack, account: str, lead_id: uuid.UUID) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers=stack.router_auth()) as client:  # crm-api's service token
        response = await client.get(f"{stack.url('router')}/internal/v1/accounts/{account}/leads/{lead_id}/routing")
    assert response.status_code == 200, response.text
    decisions: list[dict[str, Any]] = response.json()["decisions"]
    return decisions


def rules_tried_up_to(rule_id: str, tried: list[dict[str, Any]]) -> None:
    """The rules were tried in order up to `rule_id`, which matched; each before it says why not."""
    assert [r["rule_id"] for r in tried] == RULE_IDS[: RULE_IDS.index(rule_id) + 1]
    assert tried[-1]["matched"] is True
    assert all(not r["matched"] and r["why_not"] for r in tried[:-1]), tried


async def test_an_agent_rule_offers_the_lead_to_that_agent_alone(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    lead = await post_lead(stack, http, account, {"tags": ["agent"]})
    [offer] = await events.wait(lead, LeadOffered)
    assert (offer.payload.agent_id, offer.payload.race_size) == ("rre-a1", 1)
    assert "rule 'One agent'" in offer.payload.explanation
    assert await mail_recipients(stack, lead, 1) == {"rre-a1"}


async def test_a_round_robin_rotation_takes_its_agents_in_the_listed_order(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    three = await leads(stack, http, account, "rr", 3)
    assert await events.first_offers(three) == ["rre-r1", "rre-r2", "rre-r3"]
    for lead, agent in zip(three, ["rre-r1", "rre-r2", "rre-r3"], strict=True):
        assert await mail_recipients(stack, lead, 1) == {agent}


async def test_a_weighted_rotation_gives_the_agent_of_weight_2_two_leads_of_every_3(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    six = await leads(stack, http, account, "weighted", 6)
    offered = await events.first_offers(six)
    # 2:1 in each cycle of three, spread out (w1 never three times running); round robin would alternate.
    assert offered == ["rre-w1", "rre-w2", "rre-w1"] * 2


async def test_a_balanced_rotation_gives_the_next_lead_to_whoever_has_fewest_from_the_rule(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    four = await leads(stack, http, account, "balanced", 4)
    offered = await events.first_offers(four)
    assert sorted(offered[:3]) == ["rre-b1", "rre-b2", "rre-b3"], offered
    assert offered[3] == offered[0], "all even: the tie goes in turn"
    [decision] = await routing_of(stack, account, four[3])
    assert decision["rotation"]["mode"] == "balanced"

    # In a history this even, round robin would have offered the same. What only a balanced rotation does,
    # with the counts the router stored for the rule (b1 2, b2 1, b3 1): a draft of the same rule with
    # b4 added (no lead from the rule yet) gives b4 the next lead, where round robin's turn is b1's.
    dry_run = f"{stack.url('router')}/internal/v1/accounts/{account}/routing/dry-run"
    lead = {
        "contact": {"first_name": "Even", "email": f"even-{uuid.uuid4().hex[:12]}@example.com"},
        "source": {"channel": "brokerage_site", "name": "Website"},
        "criteria": {"tags": ["balanced"]},
    }
    next_of: dict[str, list[str]] = {}
    for mode in ("balanced", "round_robin"):
        agents = ("rre-b1", "rre-b2", "rre-b3", "rre-b4")
        draft = {"rules": [rule("balanced", "Balanced", "balanced", rotation(*agents, mode=mode))]}
        answer = await http.post(dry_run, json={"lead": lead, "rules": draft}, headers=stack.router_auth())
        assert answer.status_code == 200, answer.text
        next_of[mode] = answer.json()["offered_to"]
    assert next_of == {"balanced": ["rre-b4"], "round_robin": ["rre-b1"]}


async def test_a_random_rotation_offers_each_agent_once_a_round_never_twice_in_a_row(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    six = await leads(stack, http, account, "random", 6)
    offered = await events.first_offers(six)
    agents = ["rre-x1", "rre-x2", "rre-x3"]
    assert sorted(offered[:3]) == agents, offered
    assert sorted(offered[3:]) == agents, offered
    assert all(a != b for a, b in itertools.pairwise(offered)), offered
    # The order is the rule's seeded shuffle (the same on every run), not the listed one twice over,
    # which a shuffle gives one time in 36.
    assert offered != agents * 2


async def test_a_race_of_two_offers_the_lead_to_two_agents_at_once(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    lead = await post_lead(stack, http, account, {"tags": ["race"]})
    offers = await events.wait(lead, LeadOffered, 2)
    assert {o.payload.agent_id for o in offers} == {"rre-c1", "rre-c2"}
    assert {(o.payload.offer_round, o.payload.race_size, o.payload.deadline) for o in offers} == {
        (1, 2, offers[0].payload.deadline)
    }, "one round, both at once"
    assert await mail_recipients(stack, lead, 2) == {"rre-c1", "rre-c2"}


async def test_leads_per_round_gives_each_agent_two_leads_in_a_row(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    four = await leads(stack, http, account, "per-round", 4)
    assert await events.first_offers(four) == ["rre-p1", "rre-p1", "rre-p2", "rre-p2"]


async def test_exact_and_empty_or_match_and_a_lead_no_rule_matches_goes_to_the_default(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    no_city = await post_lead(stack, http, account, {"tags": ["match"]})
    austin = await post_lead(stack, http, account, {"tags": ["match"], "place": {"city": "austin"}})
    dallas = await post_lead(stack, http, account, {"tags": ["match"], "place": {"city": "Dallas"}})
    miss = await post_lead(stack, http, account, {"tags": ["elsewhere"], "intent": "buy"})
    offered = await events.first_offers([no_city, austin, dallas, miss])
    # Without a city only the empty_or_match rule applies; Austin meets the exact one first; Dallas neither.
    assert offered == ["rre-e2", "rre-e1", "rre-d1", "rre-d1"]

    [decision] = await routing_of(stack, account, no_city)
    rules_tried_up_to("loose-city", decision["rules"])
    exact = {"rule_id": "exact-city", "name": "Austin exact", "matched": False, "why_not": "no city"}
    assert decision["rules"][-2] == exact
    for lead in (dallas, miss):
        [decision] = await routing_of(stack, account, lead)
        assert (decision["rule_id"], decision["chosen"]) == ("default", ["rre-d1"])
        assert [r["rule_id"] for r in decision["rules"]] == RULE_IDS, "every rule tried, none matched"
        assert not any(r["matched"] for r in decision["rules"])
        [offer] = events.of(lead, LeadOffered)
        assert offer.payload.explanation.startswith("Routing rules: no rule matched; the default rule")
    [dallas_decision] = await routing_of(stack, account, dallas)
    assert dallas_decision["rules"][-1]["why_not"] == "city 'dallas' not in 'austin'", "a value that differs"


async def test_a_declined_offer_goes_through_the_rules_fallbacks_then_to_roster_position_1(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    lead = await post_lead(stack, http, account, {"tags": ["fallback"]})
    for n, agent in enumerate(["rre-f1", "rre-f2", "rre-f3"], start=1):
        offers = await events.wait(lead, LeadOffered, n)
        assert [o.payload.agent_id for o in offers] == ["rre-f1", "rre-f2", "rre-f3"][:n]
        await act(stack, account, lead, agent, ActivityAction.DECLINE)
        withdrawn = await events.wait(lead, OfferWithdrawn, n)
        assert (withdrawn[-1].payload.agent_id, withdrawn[-1].payload.reason) == (agent, WithdrawalReason.DECLINED), (
            events.story(lead)
        )
    [fell_back] = await events.wait(lead, LeadFellBack)
    assert fell_back.payload.agent_id == BROKER
    assert [o.payload.offer_round for o in events.of(lead, LeadOffered)] == [1, 2, 3]
    assert await mail_recipients(stack, lead, 3) == {"rre-f1", "rre-f2", "rre-f3"}

    decisions = await routing_of(stack, account, lead)
    assert [d["chosen"] for d in decisions] == [["rre-f1"], ["rre-f2"], ["rre-f3"], [BROKER]]
    names = ["Fallback chain", "Fallback chain, fallback 1", "Fallback chain, fallback 2"]
    assert [d["rule_name"] for d in decisions[:3]] == names


async def test_a_paused_agent_and_an_agent_at_its_daily_cap_are_skipped_saying_why(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    first, second = await leads(stack, http, account, "avail", 2)
    assert await events.first_offers([first, second]) == ["rre-v-capped", "rre-v-ok"]
    [first_offer], [second_offer] = events.of(first, LeadOffered), events.of(second, LeadOffered)
    assert "rre-v-paused: paused" in first_offer.payload.explanation
    assert "rre-v-paused: paused" in second_offer.payload.explanation
    assert "rre-v-capped: at its daily cap (1 of 1)" in second_offer.payload.explanation

    # Why this agent: the router's record of the decision, as crm-api reads it.
    [decision] = await routing_of(stack, account, second)
    assert (decision["rule_id"], decision["rule_name"], decision["chosen"]) == ("avail", "Availability", ["rre-v-ok"])
    rules_tried_up_to("avail", decision["rules"])
    assert {(s["agent_id"], s["reason"]) for s in decision["skipped"]} >= {
        ("rre-v-paused", "paused"),
        ("rre-v-capped", "at its daily cap (1 of 1)"),
    }
    assert (decision["rotation"]["kind"], decision["rotation"]["mode"]) == ("rule", "round_robin")
    assert decision["explanation"] == second_offer.payload.explanation

    async with httpx.AsyncClient(headers=stack.router_auth()) as client:
        unknown = f"{stack.url('router')}/internal/v1/accounts/{account}/leads/{uuid.uuid4()}/routing"
        assert (await client.get(unknown)).status_code == 404
        other_account = f"{stack.url('router')}/internal/v1/accounts/acme-realty/leads/{second}/routing"
        assert (await client.get(other_account)).status_code == 404, "another account's lead is not shown"


async def test_a_dry_run_decides_by_the_rules_or_a_draft_and_changes_nothing(
    stack: Stack, account: str, http: httpx.AsyncClient, events: RoutingEvents
) -> None:
    dry_run = f"{stack.url('router')}/internal/v1/accounts/{account}/routing/dry-run"
    email = f"dry-{uuid.uuid4().hex[:12]}@example.com"
    lead = {
        "contact": {"first_name": "Dry", "email": email},
        "source": {"channel": "brokerage_site", "name": "Website"},
        "criteria": {"tags": ["dry"]},
    }
    auth = stack.router_auth()
    answers = [await http.post(dry_run, json={"lead": lead}, headers=auth) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    answer = answers[0].json()
    assert (answer["status"], answer["holder"], answer["offered_to"]) == ("offered", None, ["rre-dr1"])
    decision = answer["decision"]
    assert (decision["rule_id"], decision["chosen"]) == ("dry", ["rre-dr1"])
    rules_tried_up_to("dry", decision["rules"])
    assert answers[1].json()["decision"]["chosen"] == ["rre-dr1"], "the first dry-run moved the rotation"

    draft = {"rules": [rule("draft", "Draft", "dry", {"kind": "agent", "agent_id": "rre-dr2"})]}
    drafted = await http.post(dry_run, json={"lead": lead, "rules": draft}, headers=auth)
    assert drafted.status_code == 200, drafted.text
    assert (drafted.json()["decision"]["rule_id"], drafted.json()["offered_to"]) == ("draft", ["rre-dr2"])
    outsider = {"rules": [rule("draft", "Draft", "dry", {"kind": "agent", "agent_id": "rre-nobody"})]}
    refused = await http.post(dry_run, json={"lead": lead, "rules": outsider}, headers=auth)
    assert refused.status_code == 422
    assert "rre-nobody" in refused.text

    # The same contact, for real: a new lead (a dry-run stores no contact, else R1 would merge it), offered
    # to the agent the dry-runs named (they did not move the rotation).
    real = await post_lead(stack, http, account, {"tags": ["dry"]}, email=email)
    [offer] = await events.wait(real, LeadOffered)
    assert offer.payload.agent_id == "rre-dr1"
    by_id = await http.post(dry_run, json={"lead_id": str(real)}, headers=auth)  # a past lead, by its stored summary
    assert by_id.status_code == 200, by_id.text
    assert (by_id.json()["decision"]["rule_id"], by_id.json()["offered_to"]) == ("dry", ["rre-dr2"])
    after = await post_lead(stack, http, account, {"tags": ["dry"]})
    [after_offer] = await events.wait(after, LeadOffered)
    assert after_offer.payload.agent_id == "rre-dr2", "the dry-run by id moved the rotation"
    assert await mail_recipients(stack, real, 1) == {"rre-dr1"}
    assert await mail_recipients(stack, after, 1) == {"rre-dr2"}

    # The dry-runs answered before the real leads were posted: whatever they had published or mailed would
    # be on the topic and in the mail sink by now. Only the two real leads reached the rule's agents.
    await events.poll()
    assert {(o.payload.lead_id, o.payload.agent_id) for o in events.offers_to({"rre-dr1", "rre-dr2"})} == {
        (real, "rre-dr1"),
        (after, "rre-dr2"),
    }
    assert offer_mails_to(stack, "rre-dr1") == {str(real)}
    assert offer_mails_to(stack, "rre-dr2") == {str(after)}


# --- on a fast clock: a claim window running out, idle reassignment across a router restart ---------

CLOCKED = "rri-realty"
CLOCK_START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # a Wednesday afternoon: no day ends during the test
RATE = 10  # the router's clock runs ten times real speed (its most): a rule's idle minute takes a real 6 s


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A whole system of its own (the four services), its router on the fast clock; one account."""
    work = tmp_path_factory.mktemp("rules-clock")
    config = {
        "account_id": CLOCKED,
        "name": "Clocked Realty",
        "round_robin": True,
        "agents": [agent_config(a) for a in ("rri-broker", "rri-i1", "rri-i2", "rri-i3", "rri-s1", "rri-s2")],
        "roster": ["rri-broker", "rri-i1", "rri-i2", "rri-i3", "rri-s1", "rri-s2"],
        "default_source": {"claim_window_seconds": 600},  # a real minute
        "routing_rules": {
            "rules": [
                rule(
                    "short",
                    "Short window",
                    "short",
                    {"kind": "agent", "agent_id": "rri-s1", "claim_window_seconds": 10},
                    fallbacks=[rotation("rri-s2")],
                ),
                rule("idle", "Idle watch", "idle", rotation("rri-i1", "rri-i2", "rri-i3"), idle={"minutes": 1}),
            ]
        },
    }
    router_clock = {"ROUTER_CLOCK_START": CLOCK_START.isoformat(), "ROUTER_CLOCK_RATE": str(RATE)}
    accounts = seed_file(work, config)
    system = Stack(work, accounts_file=accounts, seed_loader=seed_in_process, extra_env={"router": router_clock})
    try:
        system.start_infra()
        system.start_services(timeout=90)
        for service in ("router", "notifier"):  # an offer and its expiry, seconds apart on this clock, in two batches
            system.wait_consuming(service, timeout=90)
        yield system
    finally:
        system.stop()


def router_record(stack: Stack, lead_id: uuid.UUID) -> dict[str, Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_url)
    try:
        record = client["leadflow"]["router_leads"].find_one({"_id": str(lead_id)})
    finally:
        client.close()
    assert record is not None
    return record


async def test_an_offer_whose_short_claim_window_runs_out_goes_to_the_rules_fallback(clocked: Stack) -> None:
    async with httpx.AsyncClient() as http, RoutingEvents(clocked, CLOCKED) as events:
        lead = await post_lead(clocked, http, CLOCKED, {"tags": ["short"]})
        [offer] = await events.wait(lead, LeadOffered, timeout=60)
        assert offer.payload.agent_id == "rri-s1"
        assert offer.payload.deadline - offer.occurred_at == timedelta(seconds=10), "the rule's claim window"
        [expired] = await events.wait(lead, OfferExpired)
        assert expired.payload.agent_id == "rri-s1"
        assert expired.occurred_at >= offer.payload.deadline
        _, fallback = await events.wait(lead, LeadOffered, 2)
        assert (fallback.payload.agent_id, fallback.payload.offer_round) == ("rri-s2", 2)
        assert "rule 'Short window, fallback 1'" in fallback.payload.explanation
        assert await mail_recipients(clocked, lead, 2) == {"rri-s1", "rri-s2"}


async def test_a_claimed_lead_left_idle_goes_to_the_rules_next_agent_after_a_router_restart(clocked: Stack) -> None:
    async with httpx.AsyncClient() as http, RoutingEvents(clocked, CLOCKED) as events:
        lead = await post_lead(clocked, http, CLOCKED, {"tags": ["idle"]})
        [offer] = await events.wait(lead, LeadOffered, timeout=60)
        assert offer.payload.agent_id == "rri-i1"
        await act(clocked, CLOCKED, lead, "rri-i1", ActivityAction.ACCEPT)
        [claimed] = await events.wait(lead, LeadClaimed)
        seen = time.monotonic()

        # SIGKILLed inside the idle minute (a real 6 s): only the restarted router, reading the deadline
        # from MongoDB, can take the lead back.
        clocked.services["router"].kill()
        assert (time.monotonic() - seen) * RATE < 30, "killed too late: the idle minute was half gone"
        await events.poll()
        assert not events.of(lead, LeadReleased)
        # The restarted router's clock goes on from where the killed one stood (a little behind it, never ahead).
        went_on = claimed.occurred_at + timedelta(seconds=(time.monotonic() - seen) * RATE)
        clocked.extra_env["router"]["ROUTER_CLOCK_START"] = went_on.isoformat()
        clocked.start_service("router")
        clocked.wait_ready("router", timeout=90)

        [released] = await events.wait(lead, LeadReleased, timeout=60)
        assert (released.payload.agent_id, released.payload.reason) == ("rri-i1", "idle")
        assert released.payload.broker_agent_id == "rri-broker"
        assert released.occurred_at >= claimed.occurred_at + timedelta(minutes=1), "not before the idle minute"
        _, second = await events.wait(lead, LeadOffered, 2)
        assert (second.payload.agent_id, second.payload.offer_round) == ("rri-i2", 2), "the rule's next agent"
        assert await mail_recipients(clocked, lead, 1, subject="A lead moved on") == {"rri-broker"}
        assert await mail_recipients(clocked, lead, 2) == {"rri-i1", "rri-i2"}

        # At most once (`times` 1): the next holder's claim starts no idle clock.
        await act(clocked, CLOCKED, lead, "rri-i2", ActivityAction.ACCEPT)
        await events.wait(lead, LeadClaimed, 2, timeout=60)
        record = router_record(clocked, lead)
        assert (record["holder"], record.get("idle_reassigned"), record["next_deadline_ms"]) == ("rri-i2", 1, None)


async def test_a_lead_that_comes_while_its_rule_is_closed_is_held_then_offered_when_it_opens(clocked: Stack) -> None:
    """`when_closed: hold`, saved through crm-api: the lead is listed held (offered to nobody) until the rule's
    hours open, then offered (and emailed) at once. Its hours open a few router minutes after now (a real 20-30 s)."""
    router = clocked.url("router")
    dry_run = f"{router}/internal/v1/accounts/{CLOCKED}/routing/dry-run"
    probe = {"contact": {"first_name": "Probe"}, "source": {"channel": "brokerage_site", "name": "Website"},
             "criteria": {"tags": ["hold"]}}  # fmt: skip
    broker = clocked.auth("rri-broker", "broker", CLOCKED)
    rules_url = f"/v1/accounts/{CLOCKED}/settings/routing-rules"
    crm = httpx.AsyncClient(base_url=clocked.url("crm-api"), timeout=30)
    async with httpx.AsyncClient() as http, crm, RoutingEvents(clocked, CLOCKED) as events:
        probed = await http.post(dry_run, json={"lead": probe}, headers=clocked.router_auth())
        now = datetime.fromisoformat(probed.json()["decision"]["at"])
        opens = (now + timedelta(minutes=5)).replace(second=0, microsecond=0)
        hours = {"start": f"{opens:%H:%M}", "end": f"{opens + timedelta(hours=2):%H:%M}"}
        held_rule = rule("hold", "Office hours", "hold", {"kind": "agent", "agent_id": "rri-i3"}, when_closed="hold")
        held_rule["criteria"]["hours"] = hours
        current = (await crm.get(rules_url, headers=broker)).json()
        saved = await crm.put(rules_url, headers=broker, json=current | {"rules": [*current["rules"], held_rule]})
        assert saved.status_code == 200, saved.text

        async def router_holds() -> bool:  # the router reads the account again within its cache's 5 s
            answer = (await http.post(dry_run, json={"lead": probe}, headers=clocked.router_auth())).json()
            return answer["status"] == "waiting" and "'Office hours' is closed" in answer["decision"]["explanation"]

        await eventually(router_holds, what="the router holding leads of the new rule")
        lead = await post_lead(clocked, http, CLOCKED, {"tags": ["hold"]})
        [held] = await events.wait(lead, LeadHeld, timeout=60)
        assert (held.payload.rule_id, held.payload.until) == ("hold", opens), events.story(lead)
        assert held.occurred_at < opens, "the machine was too slow: the rule opened before the lead came"
        assert not events.of(lead, LeadOffered)

        async def listed_held() -> dict[str, Any] | None:
            got = await crm.get(f"/v1/accounts/{CLOCKED}/leads/{lead}", headers=broker)
            return got.json() if got.status_code == 200 and got.json()["status"] == "held" else None

        row = await eventually(listed_held, what="crm-api listing the lead held")
        assert datetime.fromisoformat(row["held_until"]) == opens
        assert row["owner_agent_id"] is None

        [offer] = await events.wait(lead, LeadOffered, timeout=90)
        assert offer.payload.agent_id == "rri-i3"
        assert offer.occurred_at >= opens, "offered only once its hours opened"
        assert await mail_recipients(clocked, lead, 1) == {"rri-i3"}

        async def listed_offered() -> bool:
            got = (await crm.get(f"/v1/accounts/{CLOCKED}/leads/{lead}", headers=broker)).json()
            return bool(got["status"] == "offered" and got["held_until"] is None)

        await eventually(listed_offered, what="crm-api listing the lead offered")
