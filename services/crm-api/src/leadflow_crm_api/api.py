"""HTTP schemas of crm-api (LeadPublic, LeadPage, LeadDetail, ActivityCreate) and their mapping from view rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from leadflow_crm_api.domain import lead_row as rows
from leadflow_crm_api.domain.claims import ClaimOutlook
from leadflow_crm_api.domain.text import visible
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.times import KEPT_RANGE, KeptInstant

_LEAD_EXAMPLE: dict[str, Any] = {
    "lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12",
    "name": "Jordan Lee",
    "email": "jordan.lee@example.com",
    "phone": "+12125550143",
    "source": "Zillow",
    "status": "assigned",
    "owner_agent_id": "alex-rivera",
    "assigned_to": "riley-park",
    "assigned_by": "Acme Realty",
    "transferred_at": "2026-11-24T15:04:05Z",
    "created_at": "2026-11-24T14:02:11Z",
    "last_activity_at": "2026-11-24T15:04:05Z",
    "company": "Harbor Lofts LLC",
    "office_address": "1 Main St, Brooklyn, NY 11201",
    "home_address": "22 Oak Ave, Brooklyn, NY 11215",
    "rating": 4,
    "production_value": "$5M+",
    "labels": ["Hot", "Relocating"],
    "owner_name": "Riley Park",
    "assigned_to_name": "Riley Park",
    "crm_status": "contacted",
    "referral_fee_percent": 25.0,
    "last_activity_kind": "call",
    "last_activity_by": "riley-park",
}


class LeadPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_LEAD_EXAMPLE]})

    lead_id: str
    account_id: str | None = Field(default=None, description="The lead's office (a realtor's list spans offices).")
    name: str
    email: str | None
    phone: str | None
    source: str
    status: str = Field(description="offered, assigned, fell_back, unassigned, or held (see `held_until`).")
    held_until: datetime | None = Field(
        default=None, description="Held: offered to nobody until its routing rule's hours open at this time."
    )
    owner_agent_id: str | None = Field(description="Agent who holds the lead.")
    assigned_to: str | None = Field(description='Realtor named by the "Assigned To" label (lead sharing).')
    assigned_by: str | None = Field(default=None, description='Brokerage named by the "Assigned By" label (T1).')
    transferred_at: datetime | None = Field(default=None, description="When the lead was shared with the realtor.")
    created_at: datetime = Field(description="When the lead became this account's (its arrival, after a move).")
    last_activity_at: datetime
    company: str | None = None
    office_address: str | None = None
    home_address: str | None = None
    rating: int | None = None
    production_value: str | None = None
    labels: list[str] = Field(default_factory=list)
    moved_from_account_id: str | None = Field(default=None, description="T2: the office the lead came from.")
    moved_from_account_name: str | None = None
    moved_from_owner: str | None = Field(default=None, description="T2: who held it in that office.")
    moved_at: datetime | None = None
    owner_name: str | None = Field(default=None, description="The holder's name.")
    assigned_to_name: str | None = Field(default=None, description='"Assigned To" by name.')
    crm_status: str = Field(default="new", description="Where the holder is with the contact (PUT .../crm-status).")
    referral_fee_percent: float = Field(default=0.0, description="R11: the brokerage's referral fee on the lead.")
    last_activity_kind: str | None = Field(default=None, description="What happened last: an event or an action.")
    last_activity_by: str | None = Field(default=None, description="Who did it (null: the contact or the system).")
    assigned_users: list[str] = Field(
        default_factory=list, description="Users the lead's owner (its holder) assigned to work it with them."
    )
    erased: bool = Field(
        default=False, description="The contact was erased (decision 0050): no name, email, phone or message."
    )


class LeadPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [_LEAD_EXAMPLE],
                    "next_cursor": "WzE3OTU1MzI2NDUwMDAsICIwYjhlNmMxZS0zZjU1LTVkN2EtOWMxZS0yZjRhNmI4YzBkMTIiXQ",
                }
            ]
        }
    )

    items: list[LeadPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


class OpenOffer(BaseModel):
    agent_id: str
    offer_round: int
    deadline: datetime = Field(description="The offer expires unless claimed before this (R8).")


class TimelineEntry(BaseModel):
    event_id: str
    type: str = Field(examples=["LeadOffered", "OfferExpired", "LeadClaimed", "LeadActivity", "CrmStatusSet"])
    occurred_at: datetime
    agent_id: str | None
    action: str | None
    summary: str
    content: dict[str, Any] | None = Field(
        default=None, description="An action's content: `text`, `call_outcome`, `task` {title, due_at}, `crm_status`."
    )
    answers_activity_id: str | None = Field(
        default=None,
        description="On the router's answer to an agent's ask for a missed offer (a new offer, or the refusal): the "
        "ask's `event_id` (its own `LeadActivity` entry, action `ask_back`). Null on every other entry.",
    )


class LeadDetail(LeadPublic):
    """V3: the contact, its holder, the open offers with deadlines and the whole timeline, oldest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_LEAD_EXAMPLE,
                    "open_offers": [],
                    "timeline": [
                        {
                            "event_id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
                            "type": "LeadClaimed",
                            "occurred_at": "2026-11-24T14:05:40Z",
                            "agent_id": "alex-rivera",
                            "action": "call",
                            "summary": "Claimed by alex-rivera (call)",
                        },
                        {
                            "event_id": "7a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d",
                            "type": "LeadActivity",
                            "occurred_at": "2026-11-24T14:31:02Z",
                            "agent_id": "alex-rivera",
                            "action": "note",
                            "summary": "note by alex-rivera",
                        },
                    ],
                    "campaigns": ["Spring buyers"],
                    "campaign_subscriptions": ["Market report"],
                    "campaign_triggers": ["Price drop alert"],
                    "first_created_at": "2026-11-24T14:02:11Z",
                }
            ]
        }
    )

    open_offers: list[OpenOffer]
    timeline: list[TimelineEntry]
    campaigns: list[str] = Field(default_factory=list)
    campaign_subscriptions: list[str] = Field(default_factory=list)
    campaign_triggers: list[str] = Field(default_factory=list)
    first_created_at: datetime | None = Field(default=None, description="T2: when the lead was first created.")
    message: str = Field(default="", description="What the lead wrote.")
    site_host: str | None = Field(default=None, description="The site or agent site the lead came from (R2).")
    listing_id: str | None = Field(default=None, description="The listing asked about.")
    provider: str | None = Field(default=None, description="The lead-generation provider or partner.")
    utm: dict[str, str] = Field(default_factory=dict)


class AgentAction(StrEnum):
    """What an agent can do on a lead through the API: the claiming actions of R8, and `view`."""

    ACCEPT = ActivityAction.ACCEPT.value
    EMAIL = ActivityAction.EMAIL.value
    NOTE = ActivityAction.NOTE.value
    CALL = ActivityAction.CALL.value
    SMS = ActivityAction.SMS.value
    TASK = ActivityAction.TASK.value
    DRIP_PLAN = ActivityAction.DRIP_PLAN.value
    BULK_EMAIL = ActivityAction.BULK_EMAIL.value
    HOT_SHEET = ActivityAction.HOT_SHEET.value
    VIEW = ActivityAction.VIEW.value
    DECLINE = ActivityAction.DECLINE.value


class CallOutcome(StrEnum):
    CONNECTED = "connected"
    LEFT_VOICEMAIL = "left_voicemail"
    NO_ANSWER = "no_answer"
    WRONG_NUMBER = "wrong_number"


class TaskDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, AfterValidator(visible(200))] = Field(min_length=1, max_length=800)
    # Kept, summed up and shown in UTC: one at the calendar's edge with an offset has no UTC value (helper 130).
    due_at: KeptInstant = Field(description=f"When the task is due, ISO 8601 with offset; {KEPT_RANGE}.")


# A text's body: Twilio takes 1,600 characters (UTF-16 units) with the agent's signature ("\n- <name>") on it.
TEXT_MAX = 1_400


def _utf16(text: str) -> int:
    """The length the SMS provider counts: UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class MessageToContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: Annotated[str, AfterValidator(visible(200))] | None = Field(default=None, max_length=800)
    body: Annotated[str, AfterValidator(visible(5000))] = Field(min_length=1, max_length=20_000)


class ActivityCreate(BaseModel):
    """An action on a lead and what it was: a note's text, a call's outcome, a task's title and due date."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "call", "call_outcome": "left_voicemail", "text": "Asked for a callback after 5pm."},
                {"action": "note", "text": "Pre-approved; wants a 3-bedroom near the park."},
                {"action": "task", "task": {"title": "Send comps", "due_at": "2026-11-25T17:00:00-05:00"}},
                {"action": "view"},
            ]
        },
    )

    action: AgentAction = Field(
        description="Every action but `view` and `decline` claims a lead offered to the caller (R8); `decline` "
        "passes on the caller's open offer, and the lead goes on to the next agent (R9)."
    )
    text: Annotated[str, AfterValidator(visible(5000))] | None = Field(
        default=None, max_length=20_000, description="A note's text, or words about the action."
    )
    call_outcome: CallOutcome | None = Field(default=None, description="Only with `call`.")
    task: TaskDetails | None = Field(default=None, description="Only with `task`.")
    message: MessageToContact | None = Field(
        default=None,
        description="Only with `email` or `sms`: leadflow sends it to the contact once the action leaves you "
        "holding the lead (it claims an offer like any action).",
    )

    @model_validator(mode="after")
    def _content_fits_the_action(self) -> ActivityCreate:
        if self.call_outcome is not None and self.action is not AgentAction.CALL:
            raise ValueError("call_outcome goes with action call")
        if self.task is not None and self.action is not AgentAction.TASK:
            raise ValueError("task goes with action task")
        if self.message is not None and self.action not in {AgentAction.EMAIL, AgentAction.SMS}:
            raise ValueError("message goes with action email or sms")
        if self.message is not None and self.action is AgentAction.SMS and self.message.subject:
            raise ValueError("a text has no subject")
        if self.message is not None and self.action is AgentAction.SMS and _utf16(self.message.body) > TEXT_MAX:
            # Accepted, it would be refused by the provider and never sent (a dead letter, the agent told nothing).
            raise ValueError(f"message.body: a text is at most {TEXT_MAX} characters")
        if self.action is AgentAction.VIEW and self.text:
            raise ValueError("a view carries no text")
        return self

    def content(self) -> dict[str, Any] | None:
        """What the timeline keeps of it (None for a bare action)."""
        found: dict[str, Any] = {}
        if self.text:
            found["text"] = self.text
        if self.call_outcome is not None:
            found["call_outcome"] = self.call_outcome.value
        if self.task is not None:
            found["task"] = {"title": self.task.title, "due_at": self.task.due_at}
        if self.message is not None:
            found["message"] = self.message.model_dump()
        return found or None


class ActivityAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f",
                    "claim": "none",
                    "detail": "Your offer expired at 2026-11-24 14:17 UTC; the lead is held by Alex Rivera.",
                }
            ]
        }
    )

    event_id: uuid.UUID = Field(description="Id of the LeadActivity published to leads.activity.v1.")
    claim: ClaimOutlook = Field(
        description="`requested`: you hold an open offer, so this claims the lead unless another agent was faster "
        "(the lead's timeline shows the outcome); `holder`: you hold the lead; `none`: it claims nothing "
        "(`detail` says why) and is logged as activity; `not_a_claim`: a view."
    )
    detail: str | None = Field(default=None, description="Your offer's deadline, or why the action claims nothing.")


def lead_public(row: rows.LeadRow, names: dict[str, str] | None = None) -> LeadPublic:
    return LeadPublic(**_public_fields(row, names or {}))


def lead_detail(
    row: rows.LeadRow, timeline: list[rows.TimelineEntry], names: dict[str, str] | None = None
) -> LeadDetail:
    return LeadDetail(
        **_public_fields(row, names or {}),
        message=row.message,
        site_host=row.site_host,
        listing_id=row.listing_id,
        provider=row.provider,
        utm=dict(row.utm),
        campaigns=list(row.campaigns),
        campaign_subscriptions=list(row.campaign_subscriptions),
        campaign_triggers=list(row.campaign_triggers),
        first_created_at=row.first_created_at,
        open_offers=[
            OpenOffer(agent_id=o.agent_id, offer_round=o.offer_round, deadline=o.deadline)
            for o in sorted(row.open_offers, key=lambda o: (o.deadline_ms, o.agent_id))
        ],
        timeline=[
            TimelineEntry(
                event_id=e.entry_id,
                type=e.type,
                occurred_at=e.occurred_at,
                agent_id=e.agent_id,
                action=e.action,
                summary=e.summary,
                content=None if e.content is None else dict(e.content),
                answers_activity_id=e.answers,
            )
            for e in timeline
        ],
    )


def _public_fields(row: rows.LeadRow, names: dict[str, str]) -> dict[str, Any]:
    """LeadPublic's fields (LeadDetail adds its own): the row's, and the holder's and realtor's names."""
    owner, assigned_to = row.owner_agent_id, row.transferred_to
    assigned_name = row.transferred_to_name or (names.get(assigned_to) if assigned_to else None)
    owner_name = (names.get(owner) if owner else None) or (assigned_name if owner and owner == assigned_to else None)
    return {
        "owner_name": owner_name,
        "assigned_to_name": assigned_name,
        "crm_status": row.crm_status,
        "referral_fee_percent": row.referral_fee_percent,
        "last_activity_kind": row.last_activity_kind,
        "last_activity_by": row.last_activity_by,
        "assigned_users": list(row.assigned_users),
        "erased": row.erased,
        "lead_id": row.lead_id,
        "account_id": row.account_id or None,
        "name": row.name,
        "email": row.email,
        "phone": row.phone,
        "source": row.source,
        "status": row.status,
        "held_until": row.held_until if row.status == "held" else None,
        "owner_agent_id": row.owner_agent_id,
        "assigned_to": row.transferred_to,
        "assigned_by": row.assigned_by,
        "transferred_at": row.transferred_at,
        "created_at": row.created_at,
        "last_activity_at": row.last_activity_at,
        "company": row.company,
        "office_address": row.office_address,
        "home_address": row.home_address,
        "rating": row.rating,
        "production_value": row.production_value,
        "labels": list(row.labels),
        "moved_from_account_id": row.moved_from_account_id,
        "moved_from_account_name": row.moved_from_account_name,
        "moved_from_owner": row.moved_from_owner,
        "moved_at": row.moved_at,
    }
