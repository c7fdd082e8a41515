"""Leads distributed by hand (issue 11.1): what a broker or admin asks for, and which leads can go.

A distribution names one agent, a mode (assign, or offer with a claim window) and either the
leads (up to MAX_LEADS ids) or a filter of the brokerage list. crm-api checks it and sends one
`DistributeLead` per lead; the router decides. Named leads that cannot go refuse the whole
request (nothing is sent); leads a filter matches that cannot go are skipped and reported.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.views import LeadQuery, LeadStatus, LeadTab
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.commands import DistributionMode

MAX_LEADS = 1000  # per request, named or matched by a filter
_DISTRIBUTIONS = uuid.UUID("9b0c8f3e-2a55-4f0e-9d61-6c1f0d7e3a21")  # namespace of distribution ids

LeadId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Short = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class LeadFilter(BaseModel):
    """The brokerage list's filters (V1), to distribute every lead they match."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "unassigned"}]})

    tab: LeadTab = Field(default=LeadTab.ALL, description="`mine`: only leads not transferred to a realtor (V1).")
    status: LeadStatus | None = None
    owner: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="Agent holding the lead."
    )
    source: Short | None = None
    label: Annotated[str, StringConstraints(min_length=1, max_length=60)] | None = None
    created_from: AwareDatetime | None = Field(default=None, description="Inclusive.")
    created_to: AwareDatetime | None = Field(default=None, description="Exclusive.")
    q: Short | None = Field(default=None, description="Name, email or phone.")

    def query(self) -> LeadQuery:
        return LeadQuery(
            tab=self.tab,
            status=self.status,
            owner_agent_id=self.owner,
            source=self.source,
            label=self.label,
            created_from_ms=None if self.created_from is None else epoch_ms(self.created_from),
            created_to_ms=None if self.created_to is None else epoch_ms(self.created_to),
            search=self.q.strip() or None if self.q else None,
        )

    def as_stored(self) -> str:
        """The filter as a transfer's record keeps it, to know the request again on a retry (T1, T2): canonical
        JSON of the fields not at their default, keys sorted (so `{}` and `{"tab": "all"}` are one filter)."""
        return json.dumps(self.model_dump(mode="json", exclude_defaults=True), sort_keys=True)

    def digest(self, record_id: str) -> str:
        """What a transfer's or bulk move's record keeps of its filter (T1, T2): a digest of the canonical filter
        (`as_stored`) salted with the record's id, by which a retry is known again (equal filters, equal digests),
        and which keeps no contact's email or name a search (`q`) typed: no erasure reaches those records (decision
        0050; helper 153's review). The salt keeps one filter's records apart (as a distribution's id hashes its
        request with the key)."""
        return hashlib.sha256(f"{record_id}\n{self.as_stored()}".encode()).hexdigest()


def recorded_filter(lead_filter: LeadFilter | None, record_id: str, stored: object) -> str | None:
    """The request's filter as the record under `record_id` would keep it: its digest, or its canonical text when
    the record keeps that (stored so before digests, session 32), so either is known again."""
    if lead_filter is None:
        return None
    return lead_filter.as_stored() if stored == lead_filter.as_stored() else lead_filter.digest(record_id)


class DistributionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"agent_id": "blair-chen", "mode": "assign", "lead_ids": ["0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"]},
                {
                    "agent_id": "blair-chen",
                    "mode": "offer",
                    "claim_window_seconds": 900,
                    "filter": {"status": "unassigned"},
                    "note": "Spring open house leads",
                },
            ]
        },
    )

    agent_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    mode: DistributionMode = Field(
        description="`assign`: the agent holds each lead at once. `offer`: the agent is offered each lead and "
        "claims it by acting within the claim window (R8); unclaimed, it goes on as after any expiry (R9)."
    )
    claim_window_seconds: int | None = Field(
        default=None, ge=10, le=7 * 86_400, description="For `offer`; default: each lead source's claim window."
    )
    note: Annotated[str, StringConstraints(max_length=500)] = Field(default="", description="Why; on the timeline.")
    lead_ids: list[LeadId] | None = Field(default=None, min_length=1, max_length=MAX_LEADS)
    filter: LeadFilter | None = Field(default=None, description=f"Every lead it matches, at most {MAX_LEADS}.")

    @model_validator(mode="after")
    def _one_selection(self) -> DistributionCreate:
        if (self.lead_ids is None) == (self.filter is None):
            raise ValueError("give either lead_ids or filter")
        if self.claim_window_seconds is not None and self.mode is not DistributionMode.OFFER:
            raise ValueError("claim_window_seconds is for mode offer")
        return self


class Skipped(BaseModel):
    lead_id: str
    reason: str


class DistributionAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "distribution_id": "5d1f9c2e-7b3a-4e8d-a6c0-2f9e1b4d7a3c",
                    "agent_id": "blair-chen",
                    "mode": "offer",
                    "lead_ids": ["0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"],
                    "skipped": [
                        {"lead_id": "7c2d4e6f-8a9b-4c1d-9e2f-3a4b5c6d7e8f", "reason": "shared with a realtor (T1)"}
                    ],
                }
            ]
        }
    )

    distribution_id: uuid.UUID
    agent_id: str
    mode: DistributionMode
    lead_ids: list[str] = Field(description="Leads handed to the router; each lead's timeline shows the outcome.")
    skipped: list[Skipped] = Field(default_factory=list, description="Leads the filter matched that cannot go.")


class LeadReturn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "Not in my area"}]})

    note: Annotated[str, StringConstraints(max_length=500)] = ""


class LeadReturned(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"event_id": "3c9d8e7f-1a2b-4c3d-9e8f-5a6b7c8d9e0f"}]})

    event_id: uuid.UUID = Field(description="The ReturnLead command; the lead's timeline shows who holds it next.")


def distribution_id(
    account_id: str, idempotency_key: str | None, request: DistributionCreate, by_user_id: str
) -> uuid.UUID:
    """From the client's Idempotency-Key and everything the request asks (a retry sends the same commands),
    else new. The same key with another body or caller is another distribution: its commands' ids differ, so
    the router does not drop them as copies of the first's (helper 122; as `erasure_id`)."""
    if idempotency_key is None:
        return uuid.uuid4()
    asked = json.dumps([account_id, idempotency_key, by_user_id, request.model_dump(mode="json")], sort_keys=True)
    return uuid.uuid5(_DISTRIBUTIONS, asked)


def lead_refusal(row: LeadRow | None, *, moving: bool) -> str | None:
    """Why this lead cannot be distributed by hand now, or None."""
    if row is None:
        return "no such lead"
    if moving:
        return "being moved to another office"
    if row.transferred_to:
        return "shared with a realtor (T1)"
    return None
