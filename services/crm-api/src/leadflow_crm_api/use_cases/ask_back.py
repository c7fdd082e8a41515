"""Asking a missed offer back (issue 15, item 5): the use case the JSON route registers (routes/leads.py) and
the web app's "Ask for it back" button calls.

An agent whose offer of a lead ended unclaimed (it expired, was declined or withdrawn) no longer sees the
lead. crm-api checks that the caller was offered the lead, has no open offer of it nor holds it, and is not
waiting for the router's answer to a previous ask (a second ask then would race the first: one refused "its
offer is still open" beside its offer), and hands an `ask_back` activity to the router, which alone decides: a
new offer (the agent sees the lead again) or a refusal with its reason (someone holds the lead, the agent is at
a cap...), logged on the lead's timeline (`ActivityLogged.claim_refused`) and shown on the agent's "no longer
yours" page.
What became of the ask (`domain.ask_back`: the router's answer names the ask, decision 0067) is read once, by
`ask_back_facts`, for that page and for the JSON route `GET .../ask-back` (`ask_back_status`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import LeadViews, ask_back_entries, lost_offer
from leadflow_crm_api.domain.ask_back import AskBackOutcome, AskBackStatus, ask_back_outcome
from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.views import activity_entry
from leadflow_crm_api.errors import ClaimNotPossible, NotFound
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.use_cases.leads import account_leads, offer_ended
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.kafka import PublishRaw
from leadflow_shared.mongo import Document

Db = AsyncDatabase[Document]
ASKED = "Asked; the router decides: a new offer if the lead can be yours again, else the reason on the lead's timeline."
ALREADY_ASKED = "Already asked; waiting for the router's answer."
# The router answers an ask within seconds, naming it. An ask no answer names this long got none and never will
# (dead-lettered, say): it no longer blocks a new one. An answered ask never waits for this (decision 0067).
UNANSWERED_AFTER = timedelta(minutes=2)


class AskedBack(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"event_id": "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f", "detail": ASKED}]}
    )

    event_id: uuid.UUID = Field(description="Id of the LeadActivity (action ask_back) published to leads.activity.v1.")
    detail: str


async def ask_back(account_id: str, caller: Principal, db: Db, lead_id: str, publish_activity: PublishRaw) -> AskedBack:
    """Ask the router to offer the caller again a lead whose offer to it ended unclaimed. 404 when the caller
    was never offered the lead; 409 while its offer is open or it holds the lead, and while its latest ask waits
    for the router's answer (for `UNANSWERED_AFTER` at most: an ask the router never answers)."""
    account_leads(caller, db, account_id)  # another account's broker or admin: 403, as for reading its leads
    facts = await ask_back_facts(db, account_id, lead_id, caller.sub) if account_id == caller.account_id else None
    if facts is None:  # never offered it (or no such lead: a realtor is not told which)
        raise NotFound("You were not offered this lead." if caller.sees_whole_account else "No such lead.")
    row, now = facts.row, datetime.now(UTC)
    if (why := _nothing_to_ask_back(row, facts.offers, caller.sub, now)) is not None:
        raise ClaimNotPossible(f"Nothing to ask back: {why}.")
    pending = facts.outcome is not None and facts.outcome.status is AskBackStatus.PENDING
    if pending and facts.outcome is not None and now - facts.outcome.asked_at < UNANSWERED_AFTER:
        raise ClaimNotPossible(ALREADY_ASKED)
    activity = LeadActivity.create(
        account_id=row.account_id,
        occurred_at=now,
        # The n-th ask's id is derived from the lead, the agent and n: two asks sent at once (a double click,
        # both checked before either was recorded) are one, which the router takes once and the timeline keeps once.
        event_id=derived_event_id(uuid.UUID(row.lead_id), f"ask-back:{caller.sub}:{facts.asks + 1}"),
        payload=LeadActivityPayload(
            lead_id=uuid.UUID(row.lead_id), agent_id=caller.sub, action=ActivityAction.ASK_BACK
        ),
    )
    await publish_or_unavailable(publish_activity, activity, detail="The request could not be sent; try again.")
    await LeadViews(db).record(activity_entry(
        event_id=str(activity.event_id), lead_id=row.lead_id, account_id=row.account_id, agent_id=caller.sub,
        action=ActivityAction.ASK_BACK.value, occurred_at=now,
    ))  # fmt: skip
    return AskedBack(event_id=activity.event_id, detail=ASKED)


def _nothing_to_ask_back(row: LeadRow, offers: list[TimelineEntry], agent_id: str, now: datetime) -> str | None:
    """Why the agent has nothing to ask back (it holds the lead, held it once, or its offer is open), or None.
    Only a missed offer is asked back: the router refuses a former holder too (decision 0090)."""
    if row.owner_agent_id == agent_id:
        return "you hold this lead"
    if any(e.type == "LeadClaimed" for e in offers):
        return "you claimed this lead before; only a missed offer can be asked back"
    mine = [o.deadline for o in row.open_offers if o.agent_id == agent_id]
    if not mine:
        return None
    if max(mine) > now:
        return f"your offer is open until {max(mine):%Y-%m-%d %H:%M} UTC; claim it instead"
    return "your offer ended and is being closed; try again in a moment"  # the router's sweeper is due


@dataclass(frozen=True, slots=True)
class AskBackFacts:
    """The agent's ended offer of a lead (`lost_offer`: the row, its offer entries), how many times it asked
    for it back, and what became of its latest ask (None: it never asked)."""

    row: LeadRow
    offers: list[TimelineEntry]
    outcome: AskBackOutcome | None
    asks: int = 0


async def ask_back_facts(db: Db, account_id: str, lead_id: str, agent_id: str) -> AskBackFacts | None:
    """The one reading of an ask's outcome, for the JSON route and the lost offer's page; None when the agent
    was never offered the lead (or there is no such lead in the account)."""
    lost = await lost_offer(db, account_id, lead_id, agent_id)
    if lost is None:
        return None
    row, offers = lost
    asks = await ask_back_entries(db, lead_id, agent_id)
    outcome = ask_back_outcome(row, offers, asks, agent_id, now=datetime.now(UTC))
    return AskBackFacts(row, offers, outcome, sum(1 for e in asks if e.type == "LeadActivity"))


ASK_ID = "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f"


class AskBackAnswer(BaseModel):
    """What became of the caller's latest ask for a missed offer of the lead."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "pending", "event_id": ASK_ID, "asked_at": "2026-11-24T14:20:05Z"},
                {"status": "offered", "event_id": ASK_ID, "asked_at": "2026-11-24T14:20:05Z",
                 "answered_at": "2026-11-24T14:20:06Z", "offered_until": "2026-11-24T14:35:06Z"},
                {"status": "refused", "event_id": ASK_ID, "asked_at": "2026-11-24T14:20:05Z",
                 "answered_at": "2026-11-24T14:20:06Z", "reason": "the lead is held by alex-rivera"},
            ]
        }
    )  # fmt: skip

    status: AskBackStatus = Field(
        description="`pending`: the router has not answered yet; `offered`: you were offered the lead again (claim "
        "it while `offered_until` is set); `refused`: the router said why not (`reason`), and you may ask again."
    )
    event_id: uuid.UUID | None = Field(
        default=None, description="Your latest ask's id (the `event_id` its POST answered); the status is its own."
    )
    asked_at: datetime = Field(description="Your latest ask.")
    answered_at: datetime | None = Field(default=None, description="When the router answered it.")
    reason: str | None = Field(default=None, description="Why it was refused: someone holds it, you are paused...")
    offered_until: datetime | None = Field(default=None, description="Your open offer's deadline, while it is open.")


async def ask_back_status(account_id: str, caller: Principal, db: Db, lead_id: str) -> AskBackAnswer:
    """What became of the caller's latest ask for the lead back. 404 when it was never offered the lead, or
    never asked for it back."""
    account_leads(caller, db, account_id)  # another account's broker or admin: 403, as for asking
    facts = await ask_back_facts(db, account_id, lead_id, caller.sub) if account_id == caller.account_id else None
    if facts is None:
        raise NotFound("You were not offered this lead." if caller.sees_whole_account else "No such lead.")
    if (outcome := facts.outcome) is None:
        raise NotFound("You have not asked for this lead back.")
    return AskBackAnswer(
        status=outcome.status, event_id=_uuid(outcome.ask_id), asked_at=outcome.asked_at,
        answered_at=outcome.answered_at, reason=outcome.reason, offered_until=outcome.offered_until,
    )  # fmt: skip


def _uuid(text: str | None) -> uuid.UUID | None:
    """An ask's id as a UUID (None when a hand-written timeline entry's `_id` is not one)."""
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class LostOffer:
    """What an agent whose offer of a lead ended is told instead of the lead (the web app's page)."""

    how: str  # how the offer ended and who holds the lead
    refused: str | None  # the router's refusal of its latest ask, when no offer came since
    pending: str | None = None  # its latest ask, while the router has not answered it


async def lost_offer_notice(caller: Principal, db: Db, lead_id: str) -> LostOffer | None:
    """How the caller's offer of the lead ended, and what became of its latest ask for it back (`ask_back_facts`,
    as the JSON route reads it); None: never offered it."""
    facts = await ask_back_facts(db, caller.account_id, lead_id, caller.sub)
    if facts is None or (how := await offer_ended(caller, db, facts.row, facts.offers)) is None:
        return None
    outcome = facts.outcome
    if outcome is None or outcome.status is AskBackStatus.OFFERED:
        return LostOffer(how, None)
    if outcome.status is AskBackStatus.PENDING:
        return LostOffer(how, None, f"You asked for it back at {outcome.asked_at:%Y-%m-%d %H:%M} UTC; no answer yet.")
    return LostOffer(how, _refusal(outcome, facts.offers))


def _refusal(refused: AskBackOutcome, offers: list[TimelineEntry]) -> str | None:
    """The refusal's words, unless an offer came after it (that offer then ended too: `how` says how)."""
    at = refused.answered_at
    if at is None or any(e.type == "LeadOffered" and e.occurred_at > at for e in offers):
        return None
    return f"Asking it back was refused at {refused.answered_at:%Y-%m-%d %H:%M} UTC: {refused.reason}."
