"""Erasing a contact (decision 0050), the pure parts: the command's contract, the router's scrubbed state,
crm-api's request, row and timeline scrubs, and the notifier applying an erasure in its batch's order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_notifier import Directory, Journal, NoDeadLetters, Outbox
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from leadflow_crm_api.domain.erasure import (
    ERASED_ROW,
    ErasureCreate,
    contact_email,
    contact_phone,
    erased_row,
    erasure_entry,
    erasure_id,
    without_free_text,
)
from leadflow_crm_api.domain.views import activity_entry
from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_router.adapters.codec import decode_state, encode_state
from leadflow_router.domain.erasure import without_contact
from leadflow_router.domain.model import LeadState, LeadStatus, Offer
from leadflow_shared.events.commands import LEAD_COMMAND, EraseContact, EraseContactPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadSummary,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
JANE = Contact(first_name="Jane", last_name="Roe", email="jane.roe@example.com", phone="+14155550123")
SOURCE = LeadSource(channel=LeadChannel.LISTING_INQUIRY, name="Zillow", listing_id="L-9", utm={"campaign": "spring"})


# --- the command ------------------------------------------------------------------------------------


def test_an_erasure_names_someone_normalized() -> None:
    ok = EraseContactPayload(email="jane.roe@example.com", by_user_id="bea", reason="ticket 1")
    command = EraseContact.create(account_id="acme", occurred_at=NOW, payload=ok)
    assert LEAD_COMMAND.validate_json(command.model_dump_json()) == command
    EraseContactPayload(phone="+14155550123", by_user_id="bea", reason="t")
    EraseContactPayload(lead_ids=[uuid.uuid4()], by_user_id="bea", reason="t")
    refused: list[dict[str, Any]] = [
        {},  # nobody
        {"email": "Jane.Roe@example.com"},  # not lower-cased: no contact key would match
        {"email": "not-an-address"},
        {"phone": "(415) 555-0123"},  # not E.164
        {"lead_ids": ["not-a-uuid"]},
        {"lead_ids": [str(uuid.uuid4()) for _ in range(101)]},
        {"email": "jane.roe@example.com", "reason": ""},
    ]
    for fields in refused:
        with pytest.raises(ValidationError):
            EraseContactPayload.model_validate({"by_user_id": "bea", "reason": "t"} | fields)


# --- the router -------------------------------------------------------------------------------------


def test_the_router_state_keeps_routing_and_loses_the_person() -> None:
    offer = Offer("ana", 1, NOW + timedelta(minutes=15))
    state = LeadState(lead_id=str(uuid.uuid4()), account_id="acme", summary=LeadSummary(
        contact=JANE, source=SOURCE, message="Call me at 415 555 0123, Jane"), status=LeadStatus.OFFERED,
        offers=(offer,), round=1, next_deadline=offer.deadline, version=3)  # fmt: skip

    erased = without_contact(state)

    assert erased.erased
    assert erased.summary.contact == Contact(first_name="")
    assert erased.summary.message == ""
    assert erased.summary.source == SOURCE  # where it came from, for routing and reports
    assert (erased.status, erased.offers, erased.next_deadline, erased.version) == (
        state.status, state.offers, state.next_deadline, state.version)  # fmt: skip
    assert without_contact(erased) == erased
    stored = encode_state(erased)
    assert stored["erased"] is True
    assert decode_state(stored) == erased
    assert "erased" not in encode_state(state), "records of other leads keep their shape"
    assert not decode_state(encode_state(state)).erased
    assert "Jane" not in repr(stored)
    assert "555" not in repr(stored)


# --- crm-api ----------------------------------------------------------------------------------------


def test_the_request_is_normalized_as_intake_stores_contacts() -> None:
    assert contact_email("  Jane.Roe@EXAMPLE.com ") == "jane.roe@example.com"
    assert contact_phone("+1 (415) 555-0123") == "+14155550123"
    for bad in ("415 555 0123", "+1 555", "call me"):
        with pytest.raises(ValueError, match="phone"):
            contact_phone(bad)
    with pytest.raises(ValueError, match="not a valid email address"):
        contact_email("jane@@example.com")
    body = ErasureCreate.model_validate({"email": "Jane.Roe@Example.COM", "phone": "+1 415 555 0123",
                                         "reason": "Privacy request 12"})  # fmt: skip
    assert (body.email, body.phone, body.lead_ids) == ("jane.roe@example.com", "+14155550123", [])
    for refused in ({"reason": "t"}, {"email": "a@b.example", "reason": "\u202eevil"}, {"email": "a@b.example"},
                    {"email": "a@b.example", "reason": "t", "extra": 1}):  # fmt: skip
        with pytest.raises(ValidationError):
            ErasureCreate.model_validate(refused)
    assert erasure_id("acme", "key-1", body, "ana") == erasure_id("acme", "key-1", body, "ana")  # a retry
    other = ErasureCreate.model_validate({"email": "someone.else@example.com", "reason": "Privacy request 12"})
    # A key is no handle on another erasure: another account, body or caller with it is another request.
    assert erasure_id("acme", "key-1", body, "ana") != erasure_id("other", "key-1", body, "ana")
    assert erasure_id("acme", "key-1", body, "ana") != erasure_id("acme", "key-1", other, "ana")
    assert erasure_id("acme", "key-1", body, "ana") != erasure_id("acme", "key-1", body, "bo")
    assert erasure_id("acme", None, body, "ana") != erasure_id("acme", None, body, "ana")


def erased_event(*lead_ids: uuid.UUID) -> ContactErased:
    return ContactErased.create(account_id="acme", occurred_at=NOW, payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=list(lead_ids), by_user_id="bea", reason="ticket 7"))  # fmt: skip


def test_a_row_loses_the_person_and_its_profile_but_not_its_work() -> None:
    event = erased_event(uuid.uuid4())
    changes = erased_row(event)
    assert {k: changes[k] for k in ("name", "email", "phone", "message", "company", "home_address")} == {
        "name": "", "email": None, "phone": None, "message": "", "company": None, "home_address": None}  # fmt: skip
    assert changes["search_name"] == changes["search_email"] == changes["search_phone"] == ""
    assert changes["erased"] is True
    assert changes["last_event_id"] == str(event.event_id)
    kept = {"status", "owner_agent_id", "source", "created_ms", "labels", "crm_status", "assigned_users", "rating"}
    assert not kept & ERASED_ROW.keys()


def test_free_text_leaves_the_timeline_and_the_entries_stay() -> None:
    def entry(action: str, content: dict[str, Any] | None, kind: str = "LeadActivity") -> dict[str, Any]:
        return activity_entry(event_id=str(uuid.uuid4()), lead_id="l-1", account_id="acme", agent_id="ana",
                              action=action, occurred_at=NOW, content=content, kind=kind)  # fmt: skip

    note = entry("note", {"text": "Jane Roe wants a loft"})
    assert "Jane" in note["summary"]
    assert without_free_text(note) == {"summary": "note by ana", "content": None, "erased": True}
    email = entry("email", {"message": {"subject": "Hi Jane", "body": "The loft on 5th"}})
    assert without_free_text(email) == {"summary": "email by ana", "content": None, "erased": True}
    call = entry("call", {"call_outcome": "left_voicemail", "text": "Jane's husband answered"})
    assert without_free_text(call) == {
        "summary": "call by ana (left voicemail)",
        "content": {"call_outcome": "left_voicemail"},
        "erased": True,
    }
    task = entry("task", {"task": {"title": "Send Jane comps", "due_at": NOW}})
    assert without_free_text(task) == {"summary": "task by ana", "content": None, "erased": True}
    assert without_free_text(entry("crm_status", {"crm_status": "lost"}, kind="CrmStatusSet")) is None
    assert without_free_text(entry("view", None)) is None
    assert without_free_text({**note, **(without_free_text(note) or {})}) is None, "applying it again changes nothing"


def test_each_erased_lead_gets_one_timeline_entry_saying_who_asked() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    event = erased_event(first, second)
    entries = [erasure_entry(event, str(first)), erasure_entry(event, str(second))]
    assert entries[0]["_id"] != entries[1]["_id"]
    assert erasure_entry(event, str(first)) == entries[0], "a redelivery inserts nothing new"
    assert entries[0]["summary"] == "Contact details erased at the request of bea (ticket 7)"
    assert (entries[0]["type"], entries[0]["agent_id"], entries[0]["lead_id"]) == ("ContactErased", "bea", str(first))


# --- the notifier -----------------------------------------------------------------------------------

AGENT = Recipient(agent_id="ana", name="Ana", email="ana@example.com")


def offered(lead: uuid.UUID, round_: int) -> LeadOffered:
    return LeadOffered.create(account_id="acme", occurred_at=NOW, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=round_, race_size=1, deadline=NOW + timedelta(minutes=15),
        explanation="R6", contact=JANE, source=SOURCE))  # fmt: skip


@pytest.mark.asyncio
async def test_the_notifier_erases_after_the_events_before_it_and_before_those_after_it() -> None:
    journal = Journal()
    notifier = Notifier(directory=Directory(AGENT), deliveries=journal, senders={Channel.EMAIL: Outbox()},
                        dead_letters=NoDeadLetters(), metrics=NotifierMetrics(CollectorRegistry()),
                        pages_url="https://crm", clock=lambda: NOW, erasure=journal)  # fmt: skip
    lead, other = uuid.uuid4(), uuid.uuid4()
    batch = [offered(lead, 1), offered(other, 1), erased_event(lead), offered(lead, 2), offered(other, 2)]

    rejections = await notifier.notify_batch([e.model_dump_json().encode() for e in batch], concurrency=8)

    assert rejections == []
    erase = journal.steps.index(f"erase {lead}")
    assert sorted(journal.steps[:erase]) == sorted([f"begin LeadOffered {lead}", f"begin LeadOffered {other}"])
    assert sorted(journal.steps[erase + 1 :]) == sorted([f"begin LeadOffered {lead}", f"begin LeadOffered {other}"])
    without = Notifier(
        directory=Directory(AGENT),
        deliveries=journal,
        senders={},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
    )
    await without.notify(erased_event(lead), b"{}")  # a notifier without the port keeps everything, quietly
