"""The leads themselves: the brokerage's and the realtor's lists (V1, V2), one lead (V3), and acting on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import AwareDatetime

from leadflow_crm_api.api import ActivityAccepted, ActivityCreate, LeadDetail, LeadPage
from leadflow_crm_api.deps import AccountLeads, Caller, Db, Id, Router, Text
from leadflow_crm_api.domain.views import MAX_CURSOR_LENGTH, LeadQuery, LeadSort, LeadStatus, LeadTab
from leadflow_crm_api.use_cases import leads as leads_uc
from leadflow_crm_api.use_cases import ponds as ponds_uc
from leadflow_crm_api.use_cases.ask_back import AskBackAnswer, AskedBack, ask_back_status
from leadflow_crm_api.use_cases.ask_back import ask_back as ask_back_uc
from leadflow_crm_api.use_cases.ponds import PondLeads, Ponds, RouterCheck
from leadflow_shared.clock import epoch_ms
from leadflow_shared.kafka import PublishRaw

router = APIRouter()


async def lead_query(
    tab: LeadTab = LeadTab.ALL,
    status_: Annotated[LeadStatus | None, Query(alias="status")] = None,
    owner: Annotated[str | None, Query(max_length=64, description="Agent holding the lead.")] = None,
    assigned_to: Annotated[str | None, Query(max_length=64, description='"Assigned To" realtor.')] = None,
    source: Text = None,
    label: Annotated[str | None, Query(min_length=1, max_length=60, description="A label; any case.")] = None,
    created_from: Annotated[AwareDatetime | None, Query(description="Inclusive, ISO 8601 with offset.")] = None,
    created_to: Annotated[AwareDatetime | None, Query(description="Exclusive, ISO 8601 with offset.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="Name, email or phone.")] = None,
    sort: LeadSort = LeadSort.CREATED_DESC,
) -> LeadQuery:
    return LeadQuery(
        tab=tab,
        status=status_,
        owner_agent_id=owner,
        assigned_to=assigned_to,
        source=source,
        label=label,
        created_from_ms=None if created_from is None else epoch_ms(created_from),
        created_to_ms=None if created_to is None else epoch_ms(created_to),
        search=q.strip() or None if q else None,
        sort=sort,
    )


Filters = Annotated[LeadQuery, Depends(lead_query)]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        pattern=r"^[A-Za-z0-9_-]*$",  # base64url without padding
        description="`next_cursor` of the previous page, with the same `sort`.",
    ),
]


async def _activities(request: Request) -> PublishRaw:
    """Publishes to leads.activity.v1 (the router decides claims from it), keyed by account."""
    publish: PublishRaw = request.app.state.publish_activity
    return publish


Activities = Annotated[PublishRaw, Depends(_activities)]


@router.get("/v1/accounts/{account_id}/leads", tags=["brokerage CRM"])
async def list_leads(
    account_id: Id, caller: Caller, db: Db, query: Filters, limit: Limit = 50, cursor: Cursor = None
) -> LeadPage:
    """V1: the brokerage's leads (brokers and admins); `tab=mine` keeps only leads it still holds."""
    return await leads_uc.lead_page(leads_uc.brokerage_leads(caller, db, account_id), db, query, limit, cursor)


@router.get("/v1/realtors/me/leads", tags=["realtor CRM"])
async def my_leads(caller: Caller, db: Db, query: Filters, limit: Limit = 50, cursor: Cursor = None) -> LeadPage:
    """V2: the calling realtor's leads: held, offered to it now, or shared with it."""
    return await leads_uc.lead_page(leads_uc.realtor_leads(caller, db), db, query, limit, cursor)


@router.get("/v1/accounts/{account_id}/leads/{lead_id}", tags=["brokerage CRM", "realtor CRM"])
async def get_lead(leads: AccountLeads, caller: Caller, db: Db, lead_id: Id) -> LeadDetail:
    """V3: the contact, its holder, the open offers with deadlines, and the timeline."""
    return await leads_uc.lead_view(leads, caller, db, lead_id)


@router.post(
    "/v1/accounts/{account_id}/leads/{lead_id}/activities",
    tags=["brokerage CRM", "realtor CRM"],
    status_code=status.HTTP_202_ACCEPTED,
)
async def act_on_lead(
    leads: AccountLeads, caller: Caller, db: Db, lead_id: Id, body: ActivityCreate, activities: Activities
) -> ActivityAccepted:
    """Record the caller's action on the timeline and hand it to the router, which decides claims (R8).

    The answer says whether it can claim; an `accept` that cannot is refused (409) and nothing is written."""
    return await leads_uc.act_on_lead(leads, caller, db, lead_id, body, activities)


@router.post(
    "/v1/accounts/{account_id}/leads/{lead_id}/ask-back",
    tags=["brokerage CRM", "realtor CRM"],
    status_code=status.HTTP_202_ACCEPTED,
)
async def ask_back(account_id: Id, caller: Caller, db: Db, lead_id: Id, activities: Activities) -> AskedBack:
    """Ask again for a lead whose offer to you ended unclaimed (expired, declined or withdrawn): an `ask_back`
    activity for the router, which offers you the lead again (joining the race if others still have theirs)
    or logs why not on the lead's timeline (someone holds it, you are paused or at a cap...).

    404 when you were never offered the lead; 409 while your offer is open or you hold the lead, and while your
    previous ask waits for the router's answer ("Already asked; waiting for the router's answer.")."""
    return await ask_back_uc(account_id, caller, db, lead_id, activities)


@router.get("/v1/accounts/{account_id}/leads/{lead_id}/ask-back", tags=["brokerage CRM", "realtor CRM"])
async def ask_back_outcome(account_id: Id, caller: Caller, db: Db, lead_id: Id) -> AskBackAnswer:
    """What became of your latest ask for the lead back (`POST .../ask-back`): `pending` until the router answers,
    then `offered` (you can claim it until `offered_until`) or `refused` with the router's `reason`; `event_id`
    is that ask's (the POST's), whose own answer this is.

    404 when you were never offered the lead, or never asked for it back; 403 for another account's broker."""
    return await ask_back_status(account_id, caller, db, lead_id)


# Ponds (issue 15): leads a routing rule put in a pond, which its agents browse and claim from.


@router.get("/v1/accounts/{account_id}/ponds", tags=["brokerage CRM", "realtor CRM"])
async def list_ponds(account_id: Id, caller: Caller, db: Db, router: Router) -> Ponds:
    """The account's ponds and how many leads wait in each: for an agent, the ponds it is an agent of and the
    leads it holds an open offer of there, and, when it holds any, `cannot_claim`: why the router would refuse
    its claims now (paused, away, off hours, on a holiday, at a cap), asked of the router; for brokers and admins,
    every pond and all its leads. 403 for another account."""
    return await ponds_uc.list_ponds(account_id, caller, db, RouterCheck(router, caller), now=datetime.now(UTC))


@router.get("/v1/accounts/{account_id}/ponds/{pond_id}/leads", tags=["brokerage CRM", "realtor CRM"])
async def pond_leads(
    account_id: Id, caller: Caller, db: Db, pond_id: Id, router: Router, limit: Limit = 50, cursor: Cursor = None
) -> PondLeads:
    """The pond's leads, oldest first: for an agent, those it holds an offer of, each with `can_claim` (its offer
    is open and the router says it can take a lead now: asked once per request) and `cannot_claim` (the router's
    reason it would refuse the claim: paused, away, off hours, on a holiday, at a cap; or that the router could not
    be asked, the offer then deciding `can_claim`); for brokers and admins, all, with the agents who can claim
    each. Claim one as any offer: `POST .../leads/{lead_id}/activities` with `{"action": "accept"}` (the first
    claim wins).

    404 for a pond the routing rules do not declare and no lead is in, and to an agent for a pond it is not an
    agent of and holds no open offer in ("No such pond.", as `GET .../ponds` does not list it); 403 for another
    account."""
    return await ponds_uc.pond_leads(
        account_id, caller, db, pond_id, RouterCheck(router, caller), limit=limit, cursor=cursor, now=datetime.now(UTC)
    )
