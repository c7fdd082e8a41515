"""Composition root of the crm-api process: projection consumer, auth, scoped data access, routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime

from leadflow_crm_api.adapters.leads import (
    LeadViews,
    ScopedLeads,
    agent_names,
    ensure_indexes,
    lost_offer,
    realtor_filter,
)
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.api import (
    ActivityAccepted,
    ActivityCreate,
    LeadDetail,
    LeadPage,
    lead_detail,
    lead_public,
)
from leadflow_crm_api.bodies import BodyGuard, BodyLimits
from leadflow_crm_api.deps import AccountLeads, Caller, Db, Id, Text
from leadflow_crm_api.domain.claims import ClaimOutlook, claim_answer
from leadflow_crm_api.domain.principal import Role
from leadflow_crm_api.domain.views import (
    MAX_CURSOR_LENGTH,
    LeadQuery,
    LeadSort,
    LeadStatus,
    LeadTab,
    activity_entry,
    decode_cursor,
    encode_cursor,
    epoch_ms,
    visible_timeline,
)
from leadflow_crm_api.errors import ClaimNotPossible, Forbidden, NotFound
from leadflow_crm_api.handlers import project
from leadflow_crm_api.problems import PROBLEM_RESPONSES, install_problem_handlers
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.routes import distribution, lead_work, next_up, offer_links, offices, people, sharing
from leadflow_crm_api.routes import settings as account_settings
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, ContactMessage, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import ROUTING_EVENT
from leadflow_shared.kafka import publisher
from leadflow_shared.service import ServiceRuntime


def lead_query(
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


async def _names(db: Db, row: dict[str, Any]) -> dict[str, str]:
    """The lead holder's name by agent id (empty when nobody holds it or the agent has no name)."""
    holder = row.get("owner_agent_id")
    agent = await AccountSettings(db, row["account_id"]).agent(holder) if holder else None
    return {holder: agent["name"]} if holder and agent and agent.get("name") else {}


def create_app(settings: CrmApiSettings) -> FastAPI:
    runtime = ServiceRuntime(settings, service="crm-api")
    runtime.on_startup(ensure_indexes)
    publish_activity = publisher(runtime.broker, topics.LEADS_ACTIVITY)

    async def handle(body: bytes) -> None:
        await project(ROUTING_EVENT.validate_json(body), views=LeadViews(runtime.db))

    runtime.consume(topics.LEADS_EVENTS, group_id=settings.consumer_group, handle=handle)

    app = runtime.app(title="leadflow crm-api", version="0.1.0", responses=PROBLEM_RESPONSES)
    install_problem_handlers(app, realm="leadflow-crm-api")
    app.add_middleware(BodyGuard, limits=BodyLimits(max_bytes=settings.max_body_bytes))
    app.include_router(sharing.router)
    app.include_router(account_settings.router)
    app.include_router(offices.router)
    app.include_router(distribution.router)
    app.include_router(people.router)
    app.include_router(offer_links.router)
    app.include_router(lead_work.router)
    app.include_router(next_up.router)
    app.state.runtime, app.state.verifier = runtime, TokenVerifier(settings)
    app.state.publish_command = publisher(runtime.broker, topics.LEADS_COMMANDS)
    app.state.publish_activity = publish_activity

    async def page(leads: ScopedLeads, db: Db, query: LeadQuery, limit: int, cursor: str | None) -> LeadPage:
        try:
            after = decode_cursor(cursor, sort=query.sort) if cursor else None
        except ValueError as exc:
            reason = "not a cursor from this API for this sort order"
            raise RequestValidationError([{"loc": ("query", "cursor"), "msg": reason, "type": "value_error"}]) from exc
        docs = await leads.find_page(query, limit=limit + 1, after=after)
        rows, more = docs[:limit], len(docs) > limit
        next_cursor = encode_cursor(rows[-1][query.sort.field], rows[-1]["_id"], sort=query.sort) if more else None
        names = await agent_names(db, {d.get("owner_agent_id") or "" for d in rows})
        return LeadPage(items=[lead_public(d, names) for d in rows], next_cursor=next_cursor)

    @app.get("/v1/accounts/{account_id}/leads", tags=["brokerage CRM"])
    async def list_leads(
        leads: AccountLeads, caller: Caller, db: Db, query: Filters, limit: Limit = 50, cursor: Cursor = None
    ) -> LeadPage:
        """V1: the brokerage's leads (brokers and admins); `tab=mine` keeps only leads it still holds."""
        if not caller.sees_whole_account:
            raise Forbidden("The brokerage list is for brokers and admins; realtors use /v1/realtors/me/leads.")
        return await page(leads, db, query, limit, cursor)

    @app.get("/v1/realtors/me/leads", tags=["realtor CRM"])
    async def my_leads(caller: Caller, db: Db, query: Filters, limit: Limit = 50, cursor: Cursor = None) -> LeadPage:
        """V2: the calling realtor's leads: held, offered to it now, or shared with it."""
        if caller.role is not Role.REALTOR:
            raise Forbidden("Only realtors have a realtor CRM.")
        return await page(ScopedLeads(db, realtor_filter(caller)), db, query, limit, cursor)

    @app.get("/v1/accounts/{account_id}/leads/{lead_id}", tags=["brokerage CRM", "realtor CRM"])
    async def get_lead(leads: AccountLeads, caller: Caller, db: Db, lead_id: Id) -> LeadDetail:
        """V3: the contact, its holder, the open offers with deadlines, and the timeline."""
        doc = await leads.get(lead_id)
        if doc is None:
            raise NotFound("No such lead.")
        realtor = None if caller.sees_whole_account else caller.sub
        names = await agent_names(db, {doc.get("owner_agent_id") or ""})
        return lead_detail(doc, visible_timeline(await leads.timeline(doc), realtor_id=realtor), names)

    @app.post(
        "/v1/accounts/{account_id}/leads/{lead_id}/activities",
        tags=["brokerage CRM", "realtor CRM"],
        status_code=status.HTTP_202_ACCEPTED,
    )
    async def act_on_lead(
        leads: AccountLeads, caller: Caller, db: Db, lead_id: Id, body: ActivityCreate
    ) -> ActivityAccepted:
        """Record the caller's action on the timeline and hand it to the router, which decides claims (R8).

        The answer says whether it can claim; an `accept` that cannot is refused (409) and nothing is written."""
        action, now = ActivityAction(body.action.value), datetime.now(UTC)
        doc = await leads.get(lead_id)
        if doc is None:
            # A realtor whose offer ended no longer sees the lead: tell it how the offer ended.
            if (lost := await lost_offer(db, caller.account_id, lead_id, caller.sub)) is None:
                raise NotFound("No such lead.")
            row, entries = lost
            answer = claim_answer(row, entries, caller=caller.sub, claims=True, now=now, names=await _names(db, row))
            raise ClaimNotPossible(f"This lead is no longer yours to work: {answer.detail}")
        answer = claim_answer(doc, [], caller=caller.sub, claims=action.claims, now=now, names={})
        if answer.outlook is ClaimOutlook.NONE:  # say how the caller's offer ended, and who holds the lead
            timeline = await leads.timeline(doc)
            answer = claim_answer(doc, timeline, caller=caller.sub, claims=True, now=now, names=await _names(db, doc))
            if action is ActivityAction.ACCEPT:
                raise ClaimNotPossible(f"Nothing to accept: {answer.detail}")
            if body.message is not None:
                raise ClaimNotPossible(f"Only the lead's holder writes to the contact: {answer.detail}")
        if body.message is not None and not doc.get("email" if action is ActivityAction.EMAIL else "phone"):
            field = "email address" if action is ActivityAction.EMAIL else "phone number"
            raise RequestValidationError(
                [{"loc": ("body", "message"), "msg": f"the contact has no {field}", "type": "value_error"}]
            )
        activity = LeadActivity.create(
            account_id=doc["account_id"],
            occurred_at=now,
            payload=LeadActivityPayload(
                lead_id=uuid.UUID(doc["_id"]), agent_id=caller.sub, action=action,
                message=None if body.message is None else ContactMessage(
                    subject=body.message.subject or "", body=body.message.body
                ),
            ),
        )
        await publish_or_unavailable(
            publish_activity, activity, detail="The action could not be recorded; try again."
        )
        await leads.record(
            activity_entry(
                event_id=str(activity.event_id),
                lead_id=doc["_id"],
                account_id=activity.account_id,
                agent_id=caller.sub,
                action=body.action.value,
                occurred_at=activity.occurred_at,
                content=body.content(),
            )
        )
        if action is not ActivityAction.VIEW:
            await leads.touch(doc["_id"], at=now, kind=action.value, by=caller.sub)
        return ActivityAccepted(event_id=activity.event_id, claim=answer.outlook, detail=answer.detail)

    return app
