"""ClientBAY's "who is next" (issue 11.9): for a lead source, or every source of a lead group, the
agents its next general lead goes to; and per routing rule (issue 15, item 7): who the rule's next lead goes
to. The router owns rotation and eligibility, so crm-api asks it (its internal endpoints) and adds names;
brokers and admins only. The use cases the JSON routes register (routes/next_up.py) and the dashboard and
Settings pages call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow_crm_api.adapters.leads import agent_names
from leadflow_crm_api.adapters.router_api import RouterApi, segment
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import Caller, Db, Id, Router
from leadflow_crm_api.domain.routing_info import NamedAgent, SkippedAgent
from leadflow_crm_api.errors import CrmApiError, Forbidden, InvalidRequest, NotFound, Unavailable


class NextAgent(BaseModel):
    agent_id: str
    name: str | None


class Skipped(BaseModel):
    agent_id: str
    reason: str


class NextUp(BaseModel):
    source: str
    lead_group: str | None
    round_robin: bool
    next: list[NextAgent] = Field(description="Who the next general lead is offered to (a race: several).")
    eligible: list[str] = Field(description="The rotation, in roster order.")
    skipped: list[Skipped] = Field(description="Agents left out of the rotation, with why.")


class NextUpList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "source": "Zillow",
                            "lead_group": "buyers",
                            "round_robin": True,
                            "next": [{"agent_id": "blair-chen", "name": "Blair Chen"}],
                            "eligible": ["alex-rivera", "blair-chen"],
                            "skipped": [{"agent_id": "dana-whitehorse", "reason": "inactive"}],
                        }
                    ]
                }
            ]
        }
    )

    items: list[NextUp]


async def who_is_next(
    account_id: Id,
    caller: Caller,
    db: Db,
    request: Request,
    source: Annotated[str | None, Query(min_length=1, max_length=100, description="A lead source.")] = None,
    group: Annotated[str | None, Query(min_length=1, max_length=100, description="Every source of it.")] = None,
) -> NextUpList:
    """Who gets the next general lead of a source (or of each source of a lead group), and why not the others."""
    if account_id != caller.account_id or not caller.sees_whole_account:
        raise Forbidden("Who is next is for brokers and admins of the account.")
    if (source is None) == (group is None):
        raise InvalidRequest("give either source or group")
    account = await AccountSettings(db, account_id).account()
    if account is None:
        raise NotFound("No such account.")
    names = [source] if source else [s["name"] for s in account.get("sources", []) if s.get("lead_group") == group]
    if not names:
        raise NotFound(f"No lead source of the account is in lead group {group!r}.")
    found, failed = await next_per_source(RouterApi.of(request.app.state.runtime.settings), db, account_id, names)
    if failed is not None:
        raise failed
    return NextUpList(items=found)


async def next_per_source(
    router: RouterApi, db: Db, account_id: str, sources: list[str]
) -> tuple[list[NextUp], CrmApiError | None]:
    """Who is next for each lead source (the caller checked), asked PARALLEL_ASKS at a time, and the first error
    (the router not answering, an unknown account): once one call failed, the sources not asked yet are not, so a
    router that hangs costs one timeout, not one per source (the dashboard: helper 175)."""
    gate = asyncio.Semaphore(PARALLEL_ASKS)
    found: dict[str, dict[str, Any]] = {}
    failed: list[CrmApiError] = []

    async def ask(source: str) -> None:
        async with gate:
            if failed:
                return
            path = f"/internal/v1/accounts/{segment(account_id)}/next-up"
            try:
                found[source] = await router.get(path, params={"source": source}, missing=NO_ACCOUNT)
            except CrmApiError as exc:
                failed.append(exc)

    await asyncio.gather(*(ask(s) for s in sources))
    answers = [found[s] for s in sources if s in found]
    people = await agent_names(db, {a for f in answers for a in f["next"]})
    items = [NextUp(**{**f, "next": [NextAgent(agent_id=a, name=people.get(a)) for a in f["next"]]}) for f in answers]
    return items, failed[0] if failed else None


# Who is next per routing rule (issue 15, item 7)

UNREADABLE = "The router's answer could not be read; try again."
NO_ACCOUNT = "No such account for routing."
SOURCE_ROTATION = "the lead source's rotation"  # the router's `pool` for a rule that follows its lead source
PARALLEL_ASKS = 4  # the Settings page's calls at once: a router that hangs costs one timeout, not one per rule


class RuleNextUp(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rule_id": "luxury-austin",
                    "pool": "Luxury Austin",
                    "mode": "round_robin",
                    "next": [{"agent_id": "blair-chen", "name": "Blair Chen"}],
                    "eligible": [
                        {"agent_id": "alex-rivera", "name": "Alex Rivera"},
                        {"agent_id": "blair-chen", "name": "Blair Chen"},
                    ],
                    "skipped": [
                        {"agent_id": "riley-park", "name": "Riley Park", "reason": "at its daily cap (5 of 5)"}
                    ],
                }
            ]
        }
    )

    rule_id: str
    pool: str = Field(description=f"The rule whose agents take turns (its name), or {SOURCE_ROTATION!r}.")
    mode: str = Field(description="round_robin, weighted, balanced or random.")
    next: list[NamedAgent] = Field(description="Who the rule's next lead is offered to (a race: several).")
    eligible: list[NamedAgent] = Field(description="The rule's agents who can take a lead now, in turn order.")
    skipped: list[SkippedAgent] = Field(description="The rule's agents left out now, with why.")


class _RouterRuleNext(BaseModel):
    """The router's answer (`who_is_next_by_rule`); fields a newer router adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    rule_id: str
    pool: str
    mode: str
    next: list[str]
    eligible: list[str]
    skipped: list[Skipped]


async def who_is_next_by_rule(
    account_id: Id,
    rule_id: Id,
    caller: Caller,
    db: Db,
    router: Router,
    source: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="A lead source (rules that rotate over its agents)."),
    ] = None,
) -> RuleNextUp:
    """Who the next lead of routing rule `rule_id` (`default`: the default rule) goes to now, and why the rule's
    other agents would not get it (paused, away, at a cap...)."""
    if account_id != caller.account_id or not caller.sees_whole_account:
        raise Forbidden("Who is next is for brokers and admins of the account.")
    if await AccountSettings(db, account_id).account() is None:
        raise NotFound("No such account.")
    answer = await _rule_next(router, account_id, rule_id, source)
    return _named(answer, await agent_names(db, _agents([answer])))


async def next_per_rule(
    router: RouterApi, db: Db, account_id: str, rule_ids: list[str], source: str | None
) -> tuple[dict[str, RuleNextUp], str | None]:
    """Who is next for each rule (the Settings page's; the caller checked), and why some could not be asked:
    once the router fails to answer, the rules not asked yet are not. A rule the router does not know is left out."""
    gate = asyncio.Semaphore(PARALLEL_ASKS)
    answers: list[_RouterRuleNext] = []
    failed: list[str] = []

    async def ask(rule_id: str) -> None:
        async with gate:
            if failed:
                return
            try:
                answers.append(await _rule_next(router, account_id, rule_id, source))
            except NotFound:
                return
            except CrmApiError as exc:  # down, or answering nonsense
                failed.append(exc.detail)

    await asyncio.gather(*(ask(r) for r in rule_ids))
    names = await agent_names(db, _agents(answers))
    return {a.rule_id: _named(a, names) for a in answers}, failed[0] if failed else None


async def _rule_next(router: RouterApi, account_id: str, rule_id: str, source: str | None) -> _RouterRuleNext:
    path = f"/internal/v1/accounts/{segment(account_id)}/routing/rules/{segment(rule_id)}/next"
    answer = await router.get(path, params={"source": source} if source else None, missing="No such routing rule.")
    try:
        return _RouterRuleNext.model_validate(answer)
    except ValidationError as exc:
        raise Unavailable(UNREADABLE) from exc


def _agents(answers: Iterable[_RouterRuleNext]) -> set[str]:
    return {a for r in answers for a in (*r.next, *r.eligible, *(s.agent_id for s in r.skipped))}


def _named(answer: _RouterRuleNext, names: dict[str, str]) -> RuleNextUp:
    return RuleNextUp(
        rule_id=answer.rule_id,
        pool=answer.pool,
        mode=answer.mode,
        next=[NamedAgent(agent_id=a, name=names.get(a)) for a in answer.next],
        eligible=[NamedAgent(agent_id=a, name=names.get(a)) for a in answer.eligible],
        skipped=[
            SkippedAgent(agent_id=s.agent_id, name=names.get(s.agent_id), reason=s.reason) for s in answer.skipped
        ],
    )
