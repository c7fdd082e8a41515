"""Ponds (issue 15, item 5), for the JSON routes (routes/leads.py) and the web app's Ponds page (web/ponds.py).

A routing rule (or a fallback step) puts a lead in a pond: every eligible agent of the pond is offered it at
once (`LeadOffered.pond`) and the first to claim it has it. The projection keeps the pond on the lead's row
(`pond`, while one of those offers is open), so a pond's leads are a query. An agent sees the pond leads it
can claim (it holds an open offer of them); brokers and admins see all of the account's. Claiming is the
ordinary claim (`use_cases.leads.act_on_lead`, action `accept`): the router decides, first claim wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import ScopedLeads, agent_names, offered_to, pond_counts
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.api import LeadPublic, lead_public
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.rules_and_availability import stored_rules
from leadflow_crm_api.domain.views import LeadQuery, LeadSort, encode_cursor
from leadflow_crm_api.errors import Forbidden, NotFound
from leadflow_crm_api.use_cases.leads import cursor_after
from leadflow_shared.mongo import Document
from leadflow_shared.routing_rules import Pond

Db = AsyncDatabase[Document]

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
    "offered_to": [],
}


class PondSummary(BaseModel):
    pond_id: str = Field(description="The pond's id in the routing rules.")
    name: str = Field(description="Its name (its id, when the rules no longer declare it but leads are still in it).")
    open_leads: int = Field(
        description="Leads in the pond now: for an agent, those it can claim; for brokers and admins, all."
    )


class Ponds(BaseModel):
    """The account's ponds: for an agent, those it can claim from; for brokers and admins, every one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ponds": [
                        {"pond_id": "open-house", "name": "Open house leads", "open_leads": 3},
                        {"pond_id": "weekend", "name": "Weekend pond", "open_leads": 0},
                    ]
                }
            ]
        }
    )

    ponds: list[PondSummary]


class PondLead(LeadPublic):
    model_config = ConfigDict(json_schema_extra={"examples": [_POND_LEAD]})

    pond: str = Field(description="The pond it is in.")
    claim_before: datetime | None = Field(
        description="An agent's: its offer's deadline. Brokers' and admins': when the lead leaves the pond unclaimed "
        "(the latest deadline of the pond's offers)."
    )
    can_claim: bool = Field(
        description="The caller holds an open offer of it: claim it with `POST .../leads/{lead_id}/activities` "
        '{"action": "accept"}; the first claim wins.'
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


def pond_scope(caller: Principal, db: Db, account_id: str) -> ScopedLeads:
    """The account's leads a pond list shows the caller: all (brokers, admins), or those offered to it."""
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    scope: dict[str, Any] = {"account_id": account_id}
    return ScopedLeads(db, scope if caller.sees_whole_account else scope | offered_to(caller.sub))


async def declared_ponds(db: Db, account_id: str) -> list[Pond]:
    """The ponds the account's routing rules declare (none when it has no readable rule set)."""
    return list(stored_rules(await AccountSettings(db, account_id).account() or {}).rules.ponds)


async def list_ponds(account_id: str, caller: Principal, db: Db) -> Ponds:
    """The ponds with how many leads are in each. An agent gets the ponds it is an agent of (listed, or open to
    the source's agents) and any it holds a pond offer of; brokers and admins every declared pond, and any that
    the rules no longer declare while leads are still in it."""
    pond_scope(caller, db, account_id)  # 403 outside the caller's account
    declared = await declared_ponds(db, account_id)
    counts = await pond_counts(db, account_id, None if caller.sees_whole_account else caller.sub)

    def shown(pond: Pond) -> bool:
        return caller.sees_whole_account or pond.agents is None or caller.sub in pond.agents or pond.id in counts

    names = {pond.id: pond.name for pond in declared}
    ids = [pond.id for pond in declared if shown(pond)] + sorted(set(counts) - set(names))
    return Ponds(ponds=[PondSummary(pond_id=i, name=names.get(i, i), open_leads=counts.get(i, 0)) for i in ids])


async def pond_leads(
    account_id: str, caller: Principal, db: Db, pond_id: str, *, limit: int, cursor: str | None, now: datetime
) -> PondLeads:
    """One page of the pond's leads the caller sees, oldest first (`cursor`: a previous page's `next_cursor`).
    404 for a pond the rules do not declare and no lead is in."""
    leads = pond_scope(caller, db, account_id)
    query = LeadQuery(pond=pond_id, sort=LeadSort.CREATED_ASC)
    after = cursor_after(cursor, query)
    rows = await leads.find_page(query, limit=limit + 1, after=after)
    names = {pond.id: pond.name for pond in await declared_ponds(db, account_id)}
    if not rows and after is None and pond_id not in names:
        raise NotFound("No such pond.")
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(query.sort.key_of(page[-1]), page[-1].lead_id, sort=query.sort) if more else None
    holders = await agent_names(db, {row.owner_agent_id or "" for row in page})
    items = [pond_lead(row, caller, holders, now=now) for row in page]
    return PondLeads(pond_id=pond_id, name=names.get(pond_id, pond_id), items=items, next_cursor=next_cursor)


def pond_lead(row: LeadRow, caller: Principal, names: dict[str, str], *, now: datetime) -> PondLead:
    """The row as a pond lists it: the caller's own offer (an agent), or every agent's (brokers, admins)."""
    offers = [o for o in row.open_offers if o.pond is not None and o.pond == row.pond]
    mine = [o for o in offers if o.agent_id == caller.sub]
    shown = offers if caller.sees_whole_account else mine
    return PondLead(
        **lead_public(row, names).model_dump(),
        pond=row.pond or "",
        claim_before=max((o.deadline for o in shown), default=None),
        can_claim=any(o.deadline > now for o in mine),
        offered_to=sorted({o.agent_id for o in offers}) if caller.sees_whole_account else [],
    )
