"""A routing record and its `router_leads` document (router/adapters/codec.py): the document keeps the
shape records were always stored in, and a record survives the round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow_router.adapters.codec import decode_record, encode_record, encode_state, readable_decisions
from leadflow_router.domain.model import LeadState, LeadStatus, Offer
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_info import RoutingDecision

pytestmark = pytest.mark.unit

DEADLINE = datetime(2026, 11, 29, 12, 15, tzinfo=UTC)
SUMMARY = LeadSummary(
    contact=Contact(first_name="Jane", email="jane@example.com"),
    source=LeadSource(channel=LeadChannel.PARTNER, name="P"),
)
STATE = LeadState(
    lead_id="lead-1", account_id="acme", summary=SUMMARY, status=LeadStatus.OFFERED,
    offers=(Offer("ana", 1, DEADLINE),), round=1, next_deadline=DEADLINE, version=3,
)  # fmt: skip


def test_a_lead_record_is_stored_as_it_always_was_and_reads_back_the_same() -> None:
    record = RoutingRecord(
        "lead-1", "acme", 3, STATE, "corr-1", inputs=("in-1", "in-2"),
        outbox=Outbox(
            events=('{"e": 1}', '{"e": 2}'), keys=("acme", "other"),
            effects=Effects(rotation=("acme:P", 7), contacts=("acme:email:jane@example.com",),
                            forget_contacts=("old:email:jane@example.com",)),
            since_ms=1_000, trace="00-abc-def-01",
        ),
    )  # fmt: skip
    doc = encode_record(record)
    expected: dict[str, Any] = {
        **encode_state(STATE),
        "outbox": ['{"e": 1}', '{"e": 2}'],
        "outbox_keys": ["acme", "other"],
        "effects": {"rotation": {"key": "acme:P", "position": 7}, "contacts": ["acme:email:jane@example.com"],
                    "forget_contacts": ["old:email:jane@example.com"]},
        "outbox_since_ms": 1_000,
        "outbox_trace": "00-abc-def-01",
        "correlation_id": "corr-1",
        "inputs": ["in-1", "in-2"],
    }  # fmt: skip
    assert doc == expected
    assert decode_record(doc) == record
    assert record.next_deadline_ms == doc["next_deadline_ms"]


def test_a_merged_repeat_has_no_state_and_no_deadline() -> None:
    record = RoutingRecord(
        "lead-2", "acme", 1, None, "corr-2",
        outbox=Outbox(effects=Effects(contacts=("acme:phone:+14155550123",), contacts_lead="lead-1"), since_ms=5),
    )  # fmt: skip
    doc = encode_record(record)
    assert doc == {
        "_id": "lead-2", "kind": "merged", "account_id": "acme", "version": 1, "next_deadline_ms": None,
        "outbox": [], "effects": {"contacts": ["acme:phone:+14155550123"], "contacts_lead": "lead-1"},
        "outbox_since_ms": 5, "correlation_id": "corr-2", "inputs": [],
    }  # fmt: skip
    assert decode_record(doc) == record
    assert not record.is_lead
    assert record.next_deadline_ms is None


def test_a_later_change_carries_the_unflushed_outbox_and_its_effects() -> None:
    earlier = Effects(rotation=("acme:P", 3), contacts=("k1",))
    later = Effects(rotation=("acme:P", 4))
    assert earlier.then(later) == Effects(rotation=("acme:P", 4), contacts=("k1",))
    assert not Outbox()
    assert Outbox(effects=later)
    assert Outbox(events=("e",))
    remembered = RoutingRecord("l", "a", 2, None, "c", inputs=tuple(str(n) for n in range(20))).remembering("x", 20)
    assert remembered.inputs == (*(str(n) for n in range(1, 20)), "x")


def test_a_routing_decision_is_stored_as_one_json_string_and_old_documents_still_read() -> None:
    """Decision 0096: the database stores each decision as one string (not its every list and field: a big office's
    rotation named hundreds of agents); records stored before keep documents, read alike. A string or document
    that is not a decision is left out, the record still read."""
    decision = RoutingDecision(
        at=DEADLINE, step="R6", chosen=["ana"], waiting=[f"agent-{n}" for n in range(200)], explanation="R6: ana."
    )
    old = decision.model_dump(mode="json", exclude_defaults=True)
    record = RoutingRecord("lead-1", "acme", 3, STATE, "corr-1").deciding(decision)

    doc = encode_record(record)
    [stored] = doc["routing"]
    assert isinstance(stored, str), "one string, not a document of 200 list items"
    assert readable_decisions(decode_record(doc).decisions) == (decision,)

    mixed = encode_record(record) | {"routing": [old, "not json", {"step": 5}, stored]}
    assert readable_decisions(decode_record(mixed).decisions) == (decision, decision)
