"""crm-api's read side: a stored row or timeline entry read as `LeadRow`/`TimelineEntry`, whatever it holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from crm_rows import assigned_row
from hypothesis import given
from hypothesis import strategies as st

from leadflow_crm_api.api import lead_detail, lead_public
from leadflow_crm_api.domain.lead_row import LeadRow, Offer, OfferLink, TimelineEntry
from leadflow_crm_api.domain.views import (
    LeadSort,
    activity_entry,
    lead_row_from_offered,
    offer_links_after,
    open_offers_after,
    timeline_entry,
)
from leadflow_shared.clock import EPOCH, epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 14, 2, 11, 123000, tzinfo=UTC)
CONTACT = Contact(first_name="Jordan", last_name="Lee", email="jordan.lee@example.com", phone="+12125550143")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def offered() -> LeadOffered:
    return LeadOffered.create(
        account_id="acme",
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(), agent_id="ana", offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=15),
            explanation="R6", contact=CONTACT, source=SOURCE,
        ),
    )  # fmt: skip


def offered_doc() -> dict[str, Any]:
    """An offered lead's row as the projection leaves it: one open offer, one accept link."""
    event = offered()
    offers, links = open_offers_after([], event), offer_links_after([], event)
    assert offers is not None
    assert links is not None
    return {"_id": str(event.payload.lead_id), **lead_row_from_offered(event), "open_offers": offers,
            "offered_to": ["ana"], "offer_links": links, "offer_link_ids": [x["link_id"] for x in links]}  # fmt: skip


def test_a_projected_row_reads_back_as_written() -> None:
    doc = assigned_row("acme", "ana", CONTACT, minutes_ago=5)
    row = LeadRow.from_doc(doc)
    assert (row.lead_id, row.account_id, row.name, row.email, row.phone) == (
        doc["_id"], "acme", "Jordan Lee", "jordan.lee@example.com", "+12125550143",
    )  # fmt: skip
    assert (row.source, row.channel, row.status, row.owner_agent_id, row.crm_status) == (
        "Website", "brokerage_site", "assigned", "ana", "new",
    )  # fmt: skip
    assert (row.created_at, row.created_ms) == (doc["created_at"], doc["created_ms"])
    assert (row.last_activity_at, row.last_activity_ms) == (doc["last_activity_at"], doc["last_activity_ms"])
    assert (row.last_activity_kind, row.last_activity_by, row.erased) == ("LeadAssigned", "ana", False)
    assert (row.open_offers, row.offered_to, row.labels, row.transferred_to) == ((), (), (), None)


def test_an_offered_row_has_its_open_offer_and_accept_link() -> None:
    doc = offered_doc()
    row = LeadRow.from_doc(doc)
    deadline = T0 + timedelta(minutes=15)
    link_id = doc["offer_link_ids"][0]
    assert row.open_offers == (Offer("ana", 1, deadline, epoch_ms(deadline), link_id=link_id),)
    assert row.offer_links == (OfferLink(link_id, "ana", 1),)
    assert row.offer_link(link_id) == OfferLink(link_id, "ana", 1)
    assert row.offer_link("another") is None
    assert (row.status, row.owner_agent_id, row.offered_to) == ("offered", None, ("ana",))


def test_nx27017_text_datetimes_and_numeric_flags_read_as_aware_datetimes_and_bools() -> None:
    """A datetime `$set` on an existing row comes back as naive UTC text, a `$set` true as 1 (decision 0045)."""
    doc = assigned_row("acme", "ana", CONTACT, minutes_ago=5)
    doc |= {"last_activity_at": "2026-11-24 14:02:11.123000", "transferred_at": "2026-11-24 14:02:11", "erased": 1}
    row = LeadRow.from_doc(doc)
    assert row.last_activity_at == T0
    assert row.last_activity_at.tzinfo is not None
    assert row.transferred_at == T0.replace(microsecond=0)
    assert row.erased is True


def test_missing_times_fall_back_on_their_milliseconds_then_on_creation_then_on_1970() -> None:
    assert LeadRow.from_doc({"_id": "a", "created_ms": epoch_ms(T0)}).created_at == T0
    row = LeadRow.from_doc({"_id": "a", "created_at": T0})
    assert (row.created_ms, row.last_activity_at, row.last_activity_ms) == (epoch_ms(T0), T0, epoch_ms(T0))
    bare = LeadRow.from_doc({"_id": "a"})
    assert (bare.created_at, bare.created_ms, bare.last_activity_at) == (EPOCH, 0, EPOCH)


def test_odd_values_take_their_defaults_and_unreadable_list_items_are_left_out() -> None:
    row = LeadRow.from_doc({
        "_id": "a", "name": None, "email": 5, "status": ["x"], "crm_status": "", "referral_fee_percent": "25",
        "rating": True, "labels": ["Hot", 3, None, "Relocating"], "utm": {"utm_source": "x", "n": 1},
        "open_offers": [{"agent_id": "ana"}, "junk", {"agent_id": "ben", "offer_round": 2, "deadline_ms": 1000}],
        "offer_links": [{"link_id": 7, "agent_id": "ana"}], "created_at": "yesterday", "moved_at": 10**30,
    })  # fmt: skip
    assert (row.name, row.email, row.status, row.crm_status, row.referral_fee_percent) == ("", None, "", "new", 0.0)
    assert (row.rating, row.labels, dict(row.utm)) == (None, ("Hot", "Relocating"), {"utm_source": "x"})
    assert row.open_offers == (Offer("ben", 2, EPOCH + timedelta(seconds=1), 1000),), "a readable offer only"
    assert (row.offer_links, row.created_at, row.moved_at) == ((), EPOCH, None)


def test_a_document_without_an_id_is_no_row() -> None:
    with pytest.raises(KeyError):
        LeadRow.from_doc({"name": "Jordan Lee"})
    with pytest.raises(KeyError):
        TimelineEntry.from_doc({"type": "LeadOffered"})


def test_the_sort_key_is_the_orders_field() -> None:
    row = LeadRow.from_doc({"_id": "a", "created_ms": 5, "last_activity_ms": 9})
    assert [LeadSort(s).key_of(row) for s in ("created_desc", "created_asc")] == [5, 5]
    assert [LeadSort(s).key_of(row) for s in ("last_activity_desc", "last_activity_asc")] == [9, 9]


def test_timeline_entries_read_back_as_written() -> None:
    event = offered()
    projected = TimelineEntry.from_doc(timeline_entry(event))
    assert (projected.entry_id, projected.lead_id, projected.account_id) == (
        str(event.event_id), str(event.payload.lead_id), "acme",
    )  # fmt: skip
    assert (projected.type, projected.agent_id, projected.action) == ("LeadOffered", "ana", None)
    assert projected.content is None
    assert (projected.occurred_at, projected.occurred_ms) == (T0, epoch_ms(T0))
    assert projected.summary.startswith("Offered to ana (round 1)")
    note = TimelineEntry.from_doc(activity_entry(
        event_id="e1", lead_id="l1", account_id="acme", agent_id="ana", action="note", occurred_at=T0,
        content={"text": "Pre-approved"},
    ))  # fmt: skip
    assert (note.type, note.action, note.content, note.summary) == (
        "LeadActivity", "note", {"text": "Pre-approved"}, "note by ana: Pre-approved",
    )  # fmt: skip


def test_an_odd_timeline_entry_takes_defaults() -> None:
    entry = TimelineEntry.from_doc({"_id": 7, "type": None, "content": ["x"], "occurred_at": "2026-11-24 14:02:11.123"})
    assert (entry.entry_id, entry.type, entry.content, entry.summary, entry.agent_id) == ("7", "", None, "", None)
    assert (entry.occurred_at, entry.occurred_ms, entry.erased) == (T0, epoch_ms(T0), False)


# -- any document: no exception, and the API's answer validates -------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.datetimes(timezones=st.none() | st.just(UTC)),
    st.just("2026-11-24 14:02:11.123000"),
)
_odd = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), _scalars, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["agent_id", "offer_round", "deadline", "deadline_ms", "link_id"]),
                             _scalars, max_size=5), max_size=3),
)  # fmt: skip
_ROW = {**assigned_row("acme", "ana", CONTACT, minutes_ago=5), **offered_doc(), "labels": ["Hot"], "rating": 4}
_ENTRY = activity_entry(event_id="e1", lead_id="l1", account_id="acme", agent_id="ana", action="call",
                        occurred_at=T0, content={"call_outcome": "connected"})  # fmt: skip


def _mangled(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with some fields dropped and others replaced by a value of any type; `_id` stays."""
    fields = sorted(k for k in base if k != "_id")
    return st.tuples(
        st.sets(st.sampled_from(fields)), st.dictionaries(st.sampled_from(fields), _odd, max_size=len(fields))
    ).map(lambda d: {k: v for k, v in base.items() if k not in d[0]} | d[1])


@given(_mangled(_ROW), _mangled(_ENTRY))
def test_any_stored_document_reads_and_answers_a_valid_lead(doc: dict[str, Any], entry: dict[str, Any]) -> None:
    row = LeadRow.from_doc(doc)
    timeline = [TimelineEntry.from_doc(entry)]
    assert row.lead_id == _ROW["_id"]
    assert timeline[0].entry_id == "e1"
    assert all(o.deadline.tzinfo is not None for o in row.open_offers), "deadlines compare with now"
    assert row.created_at.tzinfo is not None
    assert row.last_activity_at.tzinfo is not None
    assert lead_public(row).lead_id == row.lead_id
    assert lead_detail(row, timeline).timeline[0].event_id == "e1"
