"""Contracts of leads.events.v1: every routing decision the router makes (rule R12)."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Literal

from pydantic import Field, TypeAdapter

from leadflow_shared.envelope import Contract, Envelope
from leadflow_shared.events.intake import Contact, LeadSource

TOPIC = "leads.events.v1"


class AssignmentReason(StrEnum):
    """Why the lead went to this agent; shown to users who ask 'why this agent?'."""

    ROSTER_POSITION_1 = "roster_position_1"


class LeadAssignedPayload(Contract):
    lead_id: uuid.UUID
    agent_id: str = Field(max_length=64)
    reason: AssignmentReason
    explanation: str = Field(max_length=500, description="Human-readable reason for the choice.")
    contact: Contact
    source: LeadSource
    message: str = Field(default="", max_length=5000)
    referral_fee_percent: float = Field(default=0, ge=0, le=100)


class LeadAssigned(Envelope):
    """A lead now belongs to an agent."""

    type: Literal["LeadAssigned"] = "LeadAssigned"
    payload: LeadAssignedPayload


# Every message type on leads.events.v1; consumers parse with LEAD_EVENT. It becomes
# a union discriminated on `type` as the router's decisions grow (rule R12).
LeadEvent = LeadAssigned
LEAD_EVENT: TypeAdapter[LeadEvent] = TypeAdapter(LeadEvent)
