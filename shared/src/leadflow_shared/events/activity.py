"""Contracts of leads.activity.v1: what agents do on leads, published by crm-api for the router."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field

from leadflow_shared.envelope import Contract, Envelope

TOPIC = "leads.activity.v1"


class ActivityAction(StrEnum):
    """An agent's action on a lead. All but `view` claim an offered lead (R8)."""

    ACCEPT = "accept"
    EMAIL = "email"
    NOTE = "note"
    CALL = "call"
    SMS = "sms"
    TASK = "task"
    DRIP_PLAN = "drip_plan"
    BULK_EMAIL = "bulk_email"
    HOT_SHEET = "hot_sheet"
    VIEW = "view"
    INQUIRY = "inquiry"  # the contact came back with a new inquiry (R1); never from an agent
    DECLINE = "decline"  # the agent passes on its open offer: the lead goes on as after an expiry (R9)
    ASK_BACK = "ask_back"  # the agent missed its offer and asks for it again (issue 15); claims nothing

    @property
    def claims(self) -> bool:
        return self not in {
            ActivityAction.VIEW,
            ActivityAction.INQUIRY,
            ActivityAction.DECLINE,
            ActivityAction.ASK_BACK,
        }


_CLAIMS_NOTHING = frozenset(
    {ActivityAction.VIEW, ActivityAction.INQUIRY, ActivityAction.DECLINE, ActivityAction.ASK_BACK}
)


class ContactMessage(Contract):
    """What an agent writes to the contact through leadflow (an `email` or `sms` action)."""

    subject: str = Field(default="", max_length=200, description="Email only.")
    body: str = Field(min_length=1, max_length=5000)


class LeadActivityPayload(Contract):
    lead_id: uuid.UUID
    agent_id: str = Field(min_length=1, max_length=64)
    action: ActivityAction
    message: ContactMessage | None = Field(
        default=None,
        description="For `email` and `sms`: sent to the contact once the action leaves the agent holding the lead.",
    )
    offer_round: int | None = Field(
        default=None,
        ge=1,
        description="The round of the agent's open offer the action was made on (crm-api sets it whenever the "
        "agent acts on an open offer). The router lets it claim, or decline, only that round's offer: an "
        "action on an offer that since ended claims nothing, even when the agent holds a later offer of the "
        "lead. Absent: the agent's open offer, whichever round (events written before the field).",
    )


class LeadActivity(Envelope):
    """An agent acted on a lead."""

    type: Literal["LeadActivity"] = "LeadActivity"
    payload: LeadActivityPayload
