"""Ponds (issue 15, item 5), for the JSON routes (routes/leads.py) and the web app's Ponds page (web/ponds.py).

A routing rule (or a fallback step) puts a lead in a pond: every eligible agent of the pond is offered it at
once (`LeadOffered.pond`) and the first to claim it has it. The projection keeps the pond on the lead's row
(`pond`, while one of those offers is open), so a pond's leads are a query. An agent sees the pond leads it
holds an offer of; brokers and admins see all of the account's. Claiming is the ordinary claim
(`use_cases.leads.act_on_lead`, action `accept`): the router decides, first claim wins.

Whether the caller can claim is its open offer and the router's word: a pond claim by an agent who is paused,
away, off hours, on a holiday, at a cap or inactive is refused by the router, which alone knows (its usage
counts, its clock), so crm-api asks it (`RouterApi.can_take`) once per request, and only when the caller holds an
open pond offer (`ClaimCheck`). A router that does not answer leaves the offers to decide, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import ScopedLeads, agent_names, offered_to, pond_counts
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.api import LeadPublic, lead_public
from leadflow_crm_api.domain.lead_row import LeadRow, Offer
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.rules_and_availability import stored_rules
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, encode_cursor
from leadflow_crm_api.errors import CrmApiError, Forbidden, NotFound
from leadflow_crm_api.use_cases.leads import cursor_after, shown_rows
from leadflow_shared.mongo import Document
from leadflow_shared.routing_rules import Pond

Db = AsyncDatabase[Document]
ROUTER_NOT_ASKED = "the router could not be asked whether you can take a lead now, so a claim may be refused"

_POND_LEAD: dict[str, Any] = {
    "lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12",
    "account_id": "acme-realty",
    "name": "Jordan Lee",
    "email": "jordan.lee@example.com",
    "phone": "+12125550143",
    "source": "Zillow",
    "status": "offered",
    "owner_agent_id": None,
    "assigned_to": None,
    "created_at": "2026-11-24T14:02:11Z",
    "last_activity_at": "2026-11-24T14:02:11Z",
    "pond": "open-house",
    "claim_before": "2026-12-01T14:02:11Z",
    "can_claim": True,
    "cannot_claim": None,
    "offered_to": [],
}


class PondSummary(BaseModel):
    pond_id: str = Field(description="The pond's id in the routing rules.")
    name: str = Field(description="Its name (its id, when the rules no longer declare it but leads are still in it).")
    open_leads: int = Field(
        description="Leads in the pond now: for an agent, those it holds an open offer of (deadline not passed; "
        "whether the router lets it claim now: `cannot_claim`); for brokers and admins, all."
    )


class Ponds(BaseModel):
    """The account's ponds: for an agent, those it is an agent of or holds an offer in; for brokers and admins,
    every one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ponds": [
                        {"pond_id": "open-house", "name": "Open house leads", "open_leads": 3},
                        {"pond_id": "weekend", "name": "Weekend pond", "open_leads": 0},
                    ],
                    "cannot_claim": None,
                }
            ]
        }
    )

    ponds: list[PondSummary]
    cannot_claim: str | None = Field(
        default=None,
        description="When the caller holds open pond offers: why the router would refuse its claims now (paused, "
        "away, off hours, on a holiday, at a cap, not an active agent), or that the router could not be asked. "
        "Null otherwise.",
    )


class PondLead(LeadPublic):
    model_config = ConfigDict(json_schema_extra={"examples": [_POND_LEAD]})

    pond: str = Field(description="The pond it is in.")
    claim_before: datetime | None = Field(
        description="An agent's: its offer's deadline. Brokers' and admins': when the lead leaves the pond unclaimed "
        "(the latest deadline of the pond's offers)."
    )
    can_claim: bool = Field(
        description="The caller holds an open offer of it (deadline not passed) and the router says it can take a "
        'lead now: claim it with `POST .../leads/{lead_id}/activities` {"action": "accept"}; the first claim wins. '
        "When the router could not be asked, the offer alone decides (`cannot_claim` says so)."
    )
    cannot_claim: str | None = Field(
        default=None,
        description="When the caller holds an open offer of it: why the router would refuse its claim now (paused, "
        "away, off hours, on a holiday, at a cap, not an active agent; `can_claim` is then false), or that the "
        "router could not be asked. Null otherwise.",
    )
    offered_to: list[str] = Field(
        default_factory=list, description="Agents who can claim it (brokers and admins only; empty for an agent)."
    )


class PondLeads(BaseModel):
    """One pond's open leads, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pond_id": "open-house",
                    "name": "Open house leads",
                    "items": [_POND_LEAD],
                    "next_cursor": None,
                }
            ]
        }
    )

    pond_id: str
    name: str
    items: list[PondLead]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


@dataclass(frozen=True, slots=True)
class ClaimCheck:
    """The router's word on whether the caller can take a lead now: `can_take` is false only when it said no;
    `why` is its reason, or that it could not be asked (then the offers alone decide)."""

    can_take: bool
    why: str | None


class RouterCheck:
    """Asks the router whether the caller can take a lead now at most once (one per request: a route or a page
    makes one, and passes it to each use case it calls), and only when a use case needs it."""

    def __init__(self, router: RouterApi, caller: Principal) -> None:
        self._router, self._caller = router, caller
        self._answer: ClaimCheck | None = None

    @property
    def asked(self) -> ClaimCheck | None:
        """Its answer, when a use case asked (None: nobody needed it)."""
        return self._answer

    async def answer(self) -> ClaimCheck:
        if self._answer is None:
            try:
                said = await self._router.can_take(self._caller.account_id, self._caller.sub)
                self._answer = ClaimCheck(said.can_take, said.reason)
            except CrmApiError:  # down, slow or not knowing the account: the page must still render
                self._answer = ClaimCheck(True, ROUTER_NOT_ASKED)
        return self._answer


def pond_scope(caller: Principal, db: Db, account_id: str) -> ScopedLeads:
    """The account's leads a pond list shows the caller: all (brokers, admins), or those offered to it."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    scope: dict[str, Any] = {"account_id": account_id}
    if caller.sees_whole_account:
        return ScopedLeads(db, scope)
    return ScopedLeads(db, scope | offered_to(caller.sub), realtor=caller.sub)


async def declared_ponds(db: Db, account_id: str) -> list[Pond]:
    """The ponds the account's routing rules declare (none when it has no readable rule set)."""
    return list(stored_rules(await AccountSettings(db, account_id).account() or {}).rules.ponds)


def _an_agent_of(pond: Pond, caller: Principal) -> bool:
    """The caller is one of the pond's agents (listed, or the pond is open to the source's agents)."""
    return pond.agents is None or caller.sub in pond.agents


async def list_ponds(account_id: str, caller: Principal, db: Db, router: RouterCheck, *, now: datetime) -> Ponds:
    """The ponds with how many leads are in each. An agent gets the ponds it is an agent of (listed, or open to
    the source's agents) and any it holds an open pond offer of, counting those offers, and the router's word
    on claiming when it holds any; brokers and admins every declared pond, and any that the rules no longer
    declare while leads are still in it."""
    pond_scope(caller, db, account_id)  # 403 outside the caller's account
    declared = await declared_ponds(db, account_id)
    counts = await pond_counts(db, account_id, None if caller.sees_whole_account else caller.sub, now=now)

    def shown(pond: Pond) -> bool:
        return caller.sees_whole_account or _an_agent_of(pond, caller) or pond.id in counts

    names = {pond.id: pond.name for pond in declared}
    ids = [pond.id for pond in declared if shown(pond)] + sorted(set(counts) - set(names))
    cannot = (await router.answer()).why if not caller.sees_whole_account and any(counts.values()) else None
    return Ponds(
        ponds=[PondSummary(pond_id=i, name=names.get(i, i), open_leads=counts.get(i, 0)) for i in ids],
        cannot_claim=cannot,
    )


async def pond_leads(
    account_id: str,
    caller: Principal,
    db: Db,
    pond_id: str,
    router: RouterCheck,
    *,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> PondLeads:
    """One page of the pond's leads the caller sees, oldest first (`cursor`: a previous page's `next_cursor`).
    404 for a pond the rules do not declare and no lead is in, and to an agent for a pond `list_ponds` does not
    show it (not one of its agents, no open offer there): its name is not the agent's to know."""
    leads = pond_scope(caller, db, account_id)
    query = LeadQuery(pond=pond_id, sort=LeadSort.CREATED_ASC)
    after = cursor_after(cursor, query)
    rows = await leads.find_page(query, limit=limit + 1, after=after)
    declared = {pond.id: pond for pond in await declared_ponds(db, account_id)}
    pond = declared.get(pond_id)
    if caller.sees_whole_account:
        known = bool(rows) or after is not None or pond is not None
    else:  # an agent: as `list_ponds` shows it a pond (one of its agents, or holding an open offer there)
        known = (pond is not None and _an_agent_of(pond, caller)) or pond_id in await pond_counts(
            db, account_id, caller.sub, now=now
        )
    if not known:
        raise NotFound("No such pond.")
    page, more = await shown_rows(leads, rows[:limit]), len(rows) > limit  # an agent: no rival named (0076)
    next_cursor = encode_cursor(query.sort.key_of(page[-1]), page[-1].lead_id, sort=query.sort) if more else None
    holders = await agent_names(db, {row.owner_agent_id or "" for row in page})
    check = await router.answer() if any(_open_offer(row, caller.sub, now) for row in page) else None
    items = [pond_lead(row, caller, holders, now=now, check=check) for row in page]
    name = pond.name if pond is not None else pond_id
    return PondLeads(pond_id=pond_id, name=name, items=items, next_cursor=next_cursor)


def _pond_offers(row: LeadRow) -> list[Offer]:
    return [o for o in row.open_offers if o.pond is not None and o.pond == row.pond]


def _open_offer(row: LeadRow, agent_id: str, now: datetime) -> bool:
    """The agent holds an offer of the row's pond lead whose deadline has not passed."""
    return any(o.agent_id == agent_id and o.open_at(now) for o in _pond_offers(row))


def pond_lead(
    row: LeadRow, caller: Principal, names: dict[str, str], *, now: datetime, check: ClaimCheck | None = None
) -> PondLead:
    """The row as a pond lists it: the caller's own offer (an agent), or every agent's (brokers, admins); with
    the router's word (`check`, asked when the caller holds an open offer of it: None otherwise)."""
    offers = _pond_offers(row)
    mine = [o for o in offers if o.agent_id == caller.sub]
    shown = offers if caller.sees_whole_account else mine
    offer_open = _open_offer(row, caller.sub, now)
    return PondLead(
        **lead_public(row, names).model_dump(),
        pond=row.pond or "",
        claim_before=max((o.deadline for o in shown), default=None),
        can_claim=offer_open and (check is None or check.can_take),
        cannot_claim=check.why if offer_open and check is not None else None,
        offered_to=sorted({o.agent_id for o in offers}) if caller.sees_whole_account else [],
    )
