"""ClientBAY's "who is next" (issue 11.9): for a lead source, or every source of a lead group, the
agents its next general lead goes to. The router owns rotation and eligibility, so crm-api asks it
(its internal endpoint) and adds names; brokers and admins only. The use case the JSON route registers
(routes/next_up.py) and the dashboard page calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import BaseModel, ConfigDict, Field

from leadflow_crm_api.adapters.leads import agent_names
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import Caller, Db, Id
from leadflow_crm_api.errors import Forbidden, InvalidRequest, NotFound


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
    found = [await _ask_router(request, account_id, name) for name in names]
    people = await agent_names(db, {a for f in found for a in f["next"]})
    return NextUpList(items=[
        NextUp(**{**f, "next": [NextAgent(agent_id=a, name=people.get(a)) for a in f["next"]]}) for f in found
    ])  # fmt: skip


async def _ask_router(request: Request, account_id: str, source: str) -> dict[str, Any]:
    router = RouterApi(request.app.state.runtime.settings.router_url)
    path = f"/internal/v1/accounts/{account_id}/next-up"
    return await router.get(path, params={"source": source}, missing="No such account for routing.")
