"""The lead lists (V1, V2), a lead's page (V3) and acting on a lead (R8), for the API and the web app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.exceptions import RequestValidationError
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import ScopedLeads, agent_names, lost_offer, realtor_filter, scope_filter
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.api import ActivityAccepted, ActivityCreate, LeadDetail, LeadPage, lead_detail, lead_public
from leadflow_crm_api.domain.claims import ClaimAnswer, ClaimOutlook, claim_answer
from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import (
    LeadQuery,
    activity_entry,
    decode_cursor,
    encode_cursor,
    may_name_a_rival,
    rivals,
    shown_to_realtor,
    visible_timeline,
)
from leadflow_crm_api.errors import ClaimNotPossible, Forbidden, NotFound
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_shared.events.activity import ActivityAction, ContactMessage, LeadActivity, LeadActivityPayload
from leadflow_shared.kafka import PublishRaw
from leadflow_shared.mongo import Document

Db = AsyncDatabase[Document]


def account_leads(caller: Principal, db: Db, account_id: str) -> ScopedLeads:
    """The account's leads as the caller may see them. Another account is refused outright, except
    for a realtor, who sees there only the leads that account shared with it (T1, `scope_filter`)."""
    if account_id != caller.account_id and caller.role is not Role.REALTOR:
        raise Forbidden("The token does not grant access to this account.")
    return ScopedLeads(db, scope_filter(caller, account_id), realtor=None if caller.sees_whole_account else caller.sub)


def brokerage_leads(caller: Principal, db: Db, account_id: str) -> ScopedLeads:
    """V1: the brokerage list is for its brokers and admins."""
    leads = account_leads(caller, db, account_id)
    if not caller.sees_whole_account:
        raise Forbidden("The brokerage list is for brokers and admins; realtors use /v1/realtors/me/leads.")
    return leads


def realtor_leads(caller: Principal, db: Db) -> ScopedLeads:
    """V2: the realtor's leads, on every account: held, offered to it now, or shared with it."""
    if caller.role is not Role.REALTOR:
        raise Forbidden("Only realtors have a realtor CRM.")
    return ScopedLeads(db, realtor_filter(caller), realtor=caller.sub)


async def lead_page(leads: ScopedLeads, db: Db, query: LeadQuery, limit: int, cursor: str | None) -> LeadPage:
    """One page of a list, in `query.sort` order, after `cursor` (a previous page's `next_cursor`)."""
    docs = await leads.find_page(query, limit=limit + 1, after=cursor_after(cursor, query))
    rows, more = await shown_rows(leads, docs[:limit]), len(docs) > limit
    next_cursor = encode_cursor(query.sort.key_of(rows[-1]), rows[-1].lead_id, sort=query.sort) if more else None
    names = await agent_names(db, {d.owner_agent_id or "" for d in rows})
    return LeadPage(items=[lead_public(d, names) for d in rows], next_cursor=next_cursor)


def cursor_after(cursor: str | None, query: LeadQuery) -> tuple[int, str] | None:
    """Where a page starts: after `cursor` (a previous page's `next_cursor`, of the same sort); 422 otherwise."""
    try:
        return decode_cursor(cursor, sort=query.sort) if cursor else None
    except ValueError as exc:
        reason = "not a cursor from this API for this sort order"
        raise RequestValidationError([{"loc": ("query", "cursor"), "msg": reason, "type": "value_error"}]) from exc


async def shown_rows(leads: ScopedLeads, rows: list[LeadRow]) -> list[LeadRow]:
    """The rows as the scope's reader sees them: a realtor's name no agent who only races with it for the lead
    (a last activity of such an agent's shows without its actor, decision 0076); brokers and admins see them as
    stored."""
    realtor = leads.realtor
    if realtor is None:
        return rows
    asked = [row.lead_id for row in rows if may_name_a_rival(row, realtor)]
    entries = await leads.race_entries(asked)
    return [
        shown_to_realtor(row, realtor, rivals(row, entries.get(row.lead_id, []), realtor_id=realtor)) for row in rows
    ]


async def lead_view(leads: ScopedLeads, caller: Principal, db: Db, lead_id: str) -> LeadDetail:
    """V3: the contact, its holder, the open offers with deadlines, and the timeline the caller may see: a realtor
    sees its own open offer only and nothing that names another agent who only races for the lead (no offer,
    view, decline or lost claim of theirs, nor their name as the last activity's actor): who else races for the
    lead is not the realtor's to know (decision 0076)."""
    doc = await leads.get(lead_id)
    if doc is None:
        raise NotFound("No such lead.")
    timeline = await leads.timeline(doc)
    names = await agent_names(db, {doc.owner_agent_id or ""})
    if caller.sees_whole_account:
        return lead_detail(doc, timeline, names)
    hidden = rivals(doc, timeline, realtor_id=caller.sub)
    shown = visible_timeline(timeline, realtor_id=caller.sub, hidden=hidden)
    return lead_detail(shown_to_realtor(doc, caller.sub, hidden), shown, names)


async def _names(db: Db, row: LeadRow) -> dict[str, str]:
    """The lead holder's name by agent id (empty when nobody holds it or the agent has no name)."""
    holder = row.owner_agent_id
    agent = await AccountSettings(db, row.account_id).agent(holder) if holder else None
    return {holder: agent["name"]} if holder and agent and agent.get("name") else {}


async def how_the_offer_ended(caller: Principal, db: Db, lead_id: str) -> str | None:
    """For an agent who was offered a lead it no longer sees: how the offer ended and who holds the lead."""
    if (lost := await lost_offer(db, caller.account_id, lead_id, caller.sub)) is None:
        return None
    return await offer_ended(caller, db, *lost)


async def offer_ended(caller: Principal, db: Db, row: LeadRow, entries: list[TimelineEntry]) -> str | None:
    """How the caller's offer of the lead `row` ended (`entries`: its offer entries, `lost_offer`'s)."""
    answer = claim_answer(
        row, entries, caller=caller.sub, claims=True, now=datetime.now(UTC), names=await _names(db, row)
    )
    return answer.detail


async def act_on_lead(
    leads: ScopedLeads, caller: Principal, db: Db, lead_id: str, body: ActivityCreate, publish_activity: PublishRaw
) -> ActivityAccepted:
    """Record the caller's action on the timeline and hand it to the router, which decides claims (R8).

    The answer says whether it can claim; an `accept` that cannot is refused (409) and nothing is written."""
    action, now = ActivityAction(body.action.value), datetime.now(UTC)
    doc = await _lead_to_act_on(leads, caller, db, lead_id)
    answer = await _claim_answer(leads, caller, db, doc, action, body, now=now)
    _check_the_contact_is_reachable(doc, action, body)
    activity = _activity(doc, caller, action, body, now=now, offer_round=answer.offer_round)
    entry = activity_entry(  # built before the publish: what can fail fails before anything is published
        event_id=str(activity.event_id),
        lead_id=doc.lead_id,
        account_id=activity.account_id,
        agent_id=caller.sub,
        action=body.action.value,
        occurred_at=activity.occurred_at,
        content=body.content(),
    )
    await publish_or_unavailable(publish_activity, activity, detail="The action could not be recorded; try again.")
    await leads.record(entry)
    if action is not ActivityAction.VIEW:
        await leads.touch(doc.lead_id, at=now, kind=action.value, by=caller.sub)
    if action is ActivityAction.DECLINE:  # a decline claims nothing: the lead goes on (the router decides to whom)
        return ActivityAccepted(
            event_id=activity.event_id,
            claim=ClaimOutlook.NOT_A_CLAIM,
            detail="You declined the offer; the lead goes on to the next agent.",
        )
    return ActivityAccepted(event_id=activity.event_id, claim=answer.outlook, detail=answer.detail)


async def _lead_to_act_on(leads: ScopedLeads, caller: Principal, db: Db, lead_id: str) -> LeadRow:
    """The lead's row; a realtor whose offer ended no longer sees the lead: it is told how the offer ended."""
    doc = await leads.get(lead_id)
    if doc is None:
        if (how := await how_the_offer_ended(caller, db, lead_id)) is None:
            raise NotFound("No such lead.")
        raise ClaimNotPossible(f"This lead is no longer yours to work: {how}")
    return doc


async def _claim_answer(
    leads: ScopedLeads,
    caller: Principal,
    db: Db,
    doc: LeadRow,
    action: ActivityAction,
    body: ActivityCreate,
    *,
    now: datetime,
) -> ClaimAnswer:
    """Whether the action claims the lead; an accept, a decline or a message to the contact that has
    nothing to act on is refused (409), saying how the caller's offer ended and who holds the lead."""
    declining = action is ActivityAction.DECLINE
    answer = claim_answer(doc, [], caller=caller.sub, claims=action.claims or declining, now=now, names={})
    if declining and answer.outlook is ClaimOutlook.HOLDER:
        raise ClaimNotPossible("Nothing to decline: you hold this lead; return it to the broker instead.")
    if answer.outlook is not ClaimOutlook.NONE:
        return answer
    timeline = await leads.timeline(doc)
    answer = claim_answer(doc, timeline, caller=caller.sub, claims=True, now=now, names=await _names(db, doc))
    if action is ActivityAction.ACCEPT:
        raise ClaimNotPossible(f"Nothing to accept: {answer.detail}")
    if declining:
        raise ClaimNotPossible(f"Nothing to decline: {answer.detail}")
    if body.message is not None:
        raise ClaimNotPossible(f"Only the lead's holder writes to the contact: {answer.detail}")
    return answer


def _check_the_contact_is_reachable(doc: LeadRow, action: ActivityAction, body: ActivityCreate) -> None:
    """A message to the contact needs its email address (an email) or its phone number (a text)."""
    if body.message is not None and not (doc.email if action is ActivityAction.EMAIL else doc.phone):
        field = "email address" if action is ActivityAction.EMAIL else "phone number"
        raise RequestValidationError(
            [{"loc": ("body", "message"), "msg": f"the contact has no {field}", "type": "value_error"}]
        )


def _activity(
    doc: LeadRow,
    caller: Principal,
    action: ActivityAction,
    body: ActivityCreate,
    *,
    now: datetime,
    offer_round: int | None,
) -> LeadActivity:
    """The action as published; `offer_round`: the round of the open offer it is made on, if any (the router
    claims or declines only that one, decision 0087)."""
    return LeadActivity.create(
        account_id=doc.account_id,
        occurred_at=now,
        payload=LeadActivityPayload(
            lead_id=uuid.UUID(doc.lead_id), agent_id=caller.sub, action=action,
            message=None if body.message is None else ContactMessage(
                subject=body.message.subject or "", body=body.message.body
            ),
            offer_round=offer_round,
        ),
    )  # fmt: skip
