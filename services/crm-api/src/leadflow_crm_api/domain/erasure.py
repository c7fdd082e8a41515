"""Erasing a contact (decision 0050): the request, and what an erasure leaves of a lead's row and
timeline. Pure, no I/O.

The request names the contact as intake stored it (the router's contact index is keyed that way):
the email normalized and lower-cased, the phone in E.164 (given in international form, since the
account's default region is intake's business). The ops tool normalizes with the same functions.

A row keeps its ids, status, holder, offers, source, dates, labels, CRM status and users; the
person goes: name, email, phone, what it wrote, and the profile fields about it (company,
addresses). On the timeline, what people wrote goes from entries crm-api recorded: a message to
the contact, a note's or call's words, a task's title. Those are notes about (or to) the erased
person, and free text cannot be checked for the name in it; the entry stays, saying who did
what and when. Routing's own entries (agents, rules, explanations) carry no contact and stay.

A lead erased before crm-api had a row of it (its only events parked, its first dead-lettered) keeps a marker in
the rows' collection (`ERASED_BEFORE_ROW`: no office, so no reader's scope matches it; the projection reads it as
"no row, erased"): the lead's first event replayed after the erasure makes its row without the person over it. The
events the projection parks are held without the person (`without_person`): it never reads that of them, and a copy
of one published after `ContactErased` must not bring the person back (decision 0050, session 28).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from leadflow_crm_api.domain.people import Phone
from leadflow_crm_api.domain.text import Email, email_address, visible
from leadflow_crm_api.domain.views import activity_summary
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.commands import MAX_ERASED_LEAD_IDS
from leadflow_shared.events.intake import Contact
from leadflow_shared.events.routing import (
    ActivityLogged,
    ContactErased,
    ContactMessaged,
    LeadAssigned,
    LeadEvent,
    LeadHeld,
    LeadOffered,
    LeadTransferred,
)

_ERASURES = uuid.UUID("5d0f6a52-8c3e-4b71-a7d9-2e4b8f1c6a03")  # namespace of erasure ids from Idempotency-Keys
ENTRY_TYPE = "ContactErased"  # the timeline entry each erased lead gets (projected: a rebuild makes it again)
# Row fields about the person, and what they become.
ERASED_ROW: dict[str, Any] = {
    "name": "", "email": None, "phone": None, "search_name": "", "search_email": "", "search_phone": "",
    "message": "", "company": None, "office_address": None, "home_address": None, "erased": True,
}  # fmt: skip
# The marker of a lead erased before it had a row (decision 0050, session 28): `erased_marker`, `RowState.of`.
ERASED_BEFORE_ROW = "erased_before_row"
FREE_TEXT = ("text", "message", "task")  # an action's content written by people (api.ActivityCreate)
_PHONE: TypeAdapter[str] = TypeAdapter(Phone)


def contact_email(raw: str) -> str:
    """The address as intake stores it: normalized (email-validator) and lower-cased; ValueError otherwise."""
    return email_address(raw).lower()


def contact_phone(raw: str) -> str:
    """E.164 from a number in international form; ValueError otherwise."""
    try:
        return _PHONE.validate_python(raw)
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from exc


def erasure_id(account_id: str, idempotency_key: str | None, request: ErasureCreate, by_user_id: str) -> uuid.UUID:
    """From the client's Idempotency-Key and everything the request asks (a retry is the same erasure),
    else new. The same key with another body or caller is another erasure, never a silent no-op."""
    if idempotency_key is None:
        return uuid.uuid4()
    asked = json.dumps([account_id, idempotency_key, by_user_id, request.model_dump(mode="json")], sort_keys=True)
    return uuid.uuid5(_ERASURES, asked)


class ErasureCreate(BaseModel):
    """Whom to forget: the contact's email and/or phone, and/or leads by id; and why (a ticket)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"email": "jordan.lee@example.com", "phone": "+12125550143", "reason": "Privacy request #4711"},
                {"lead_ids": ["0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"], "reason": "Ticket OPS-982"},
            ]
        },
    )

    email: Annotated[Email, AfterValidator(str.lower)] | None = Field(
        default=None, description="Every lead of the account with this address (lower-cased, as intake stores it)."
    )
    phone: Phone | None = Field(default=None, description="Every lead with this number, in international form.")
    lead_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=MAX_ERASED_LEAD_IDS, description="Leads of the account, by id."
    )
    reason: Annotated[str, AfterValidator(visible(200))] = Field(
        min_length=1, max_length=800, description="A ticket or reference for the request. No personal data."
    )

    @model_validator(mode="after")
    def _someone(self) -> ErasureCreate:
        if self.email is None and self.phone is None and not self.lead_ids:
            raise ValueError("name the contact: email, phone or lead_ids")
        return self


class ErasureAccepted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"erasure_id": "3f2a9c1e-7b4d-4e8a-9c0b-5d6e7f8a9b0c", "account_id": "acme-realty",
                 "detail": "Requested: the contact's details are erased from every service within seconds."}
            ]
        }
    )  # fmt: skip

    erasure_id: uuid.UUID = Field(description="The request's id; the same for a retry with the same Idempotency-Key.")
    account_id: str
    detail: str


def erased_row(event: ContactErased) -> dict[str, Any]:
    """What the erasure `$set`s on a lead's row (its last event changes, so live pages show it)."""
    return {**ERASED_ROW, "last_event_id": str(event.event_id)}


def erased_marker() -> dict[str, Any]:
    """What the erasure stores of a lead without a row: that it was erased, nothing else (no office, no person)."""
    return {"erased": True, ERASED_BEFORE_ROW: True}


_NOBODY = Contact(first_name="")
_ERASED_TEXT = "(erased)"


def without_person(event: LeadEvent) -> LeadEvent:
    """`event` without what it carries of the person (contact, inquiry, message, address), as a parked event is held:
    the projection applies nothing of that from an event that makes no row (only a row-making event's contact goes
    into a row, and such an event is never parked)."""
    if isinstance(event, ActivityLogged):
        return event.model_copy(update={"payload": event.payload.model_copy(update={"summary": None})})
    if isinstance(event, ContactMessaged):
        scrubbed = {"to": _ERASED_TEXT, "subject": "", "body": _ERASED_TEXT}
        return event.model_copy(update={"payload": event.payload.model_copy(update=scrubbed)})
    if isinstance(event, LeadTransferred):
        return event.model_copy(update={"payload": event.payload.model_copy(update={"contact": _NOBODY})})
    if isinstance(event, LeadOffered | LeadHeld | LeadAssigned):
        update = {"contact": _NOBODY, "message": ""}
        return event.model_copy(update={"payload": event.payload.model_copy(update=update)})
    return event


def without_free_text(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The `$set` of a timeline entry without what people wrote in it, or None when it holds none.

    The summary is made again from what is left (it quotes the text); `content` keeps the rest
    (a call's outcome, a CRM status, users), or is None when nothing is left.
    """
    content: dict[str, Any] = entry.get("content") or {}
    if not any(key in content for key in FREE_TEXT):
        return None
    kept = {k: v for k, v in content.items() if k not in FREE_TEXT}
    summary = activity_summary(str(entry.get("action") or ""), str(entry.get("agent_id") or ""), kept)
    return {"summary": summary, "content": kept or None, "erased": True}


def erasure_entry(event: ContactErased, lead_id: str) -> dict[str, Any]:
    """The lead's timeline entry for the erasure: who asked, and the ticket (its id derives from the event)."""
    p = event.payload
    return {
        "_id": str(uuid.uuid5(event.event_id, lead_id)),
        "lead_id": lead_id,
        "account_id": event.account_id,
        "type": ENTRY_TYPE,
        "occurred_at": event.occurred_at,
        "occurred_ms": epoch_ms(event.occurred_at),
        "agent_id": p.by_user_id,
        "action": None,
        "summary": f"Contact details erased at the request of {p.by_user_id} ({p.reason})",
    }
