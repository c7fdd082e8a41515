"""Decision 0050, session 28: crm-api erasing a lead it has no row for (its only events parked, its first one
dead-lettered). The router may publish after `ContactErased` byte-identical copies of events it published before
(a writer or sweeper that paused across the erasure), and a dead letter may be replayed after it: none of them puts
the person back into crm-api's views (rows, timeline, parked events), whatever order and batches they come in; the
lead's non-personal state is projected as for a lead erased with a row."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_crm import CONTACT, SOURCE
from fakes_crm import TRACES as PERSON_TRACES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_crm_projection_writes import MemoryViews

from leadflow_crm_api.domain.erasure import ERASED_ROW, erasure_entry
from leadflow_crm_api.domain.projection import RowState
from leadflow_crm_api.handlers import project
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    ContactErased,
    ContactErasedPayload,
    ContactMessaged,
    ContactMessagedPayload,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
    LeadSummary,
    LeadTransferred,
    LeadTransferredPayload,
    RoutingEvent,
)

pytestmark = [pytest.mark.unit]

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
LEAD = uuid.uuid4()
MESSAGE = "Quenby wants a loft near the park"
TRACES = (*PERSON_TRACES, "loft near the park")


def _at(version: int) -> dict[str, Any]:
    return {"account_id": "acme", "occurred_at": T0 + timedelta(minutes=version)}


def first_offer() -> LeadOffered:
    return LeadOffered.create(**_at(1), payload=LeadOfferedPayload(
        lead_id=LEAD, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=16),
        explanation="R6", contact=CONTACT, source=SOURCE, message=MESSAGE, router_version=1))  # fmt: skip


def first_assignment() -> LeadAssigned:
    return LeadAssigned.create(**_at(1), payload=LeadAssignedPayload(
        lead_id=LEAD, agent_id="ana", reason=AssignmentReason.ROSTER_POSITION_1, explanation="R5", contact=CONTACT,
        source=SOURCE, message=MESSAGE, router_version=1))  # fmt: skip


def later_events() -> list[LeadEvent]:
    """After the lead's first event (v1): the person writes in again (R1, v2: the inquiry carries the contact), ana
    claims (v3), writes to the person (v4: the echo carries the address and the words), the lead moves to south
    (v5: the move carries the contact)."""
    inquiry = ActivityLogged.create(**_at(2), payload=ActivityLoggedPayload(
        lead_id=LEAD, agent_id=None, action=ActivityAction.INQUIRY,
        summary=LeadSummary(contact=CONTACT, source=SOURCE, message=MESSAGE), router_version=2))  # fmt: skip
    claim = LeadClaimed.create(**_at(3), payload=LeadClaimedPayload(
        lead_id=LEAD, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=3))  # fmt: skip
    wrote = ContactMessaged.create(**_at(4), payload=ContactMessagedPayload(
        lead_id=LEAD, agent_id="ana", channel="email", to=str(CONTACT.email), subject="Hello Quenby",
        body=MESSAGE, router_version=4))  # fmt: skip
    move = LeadTransferred.create(**_at(5), payload=LeadTransferredPayload(
        lead_id=LEAD, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
        previous_owner_agent_id="ana", to_account_id="south", to_account_name="South", agent_id="sol",
        by_user_id="nora", contact=CONTACT, source=SOURCE, router_version=5))  # fmt: skip
    return [inquiry, claim, wrote, move]


def erasure() -> ContactErased:
    return ContactErased.create(account_id="acme", occurred_at=T0 + timedelta(hours=1), payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=[LEAD], by_user_id="bea", reason="ticket 7"))  # fmt: skip


def copy(event: RoutingEvent) -> RoutingEvent:
    """The same event published again: its bytes, its id."""
    return type(event).model_validate_json(event.model_dump_json())


class Views(MemoryViews):
    """The projection's port in memory; nobody wrote on this lead's timeline, so the erasure scrubs nothing there."""

    async def erase_timeline(self, lead_id: str) -> None:
        assert lead_id == str(LEAD)


def held(views: MemoryViews) -> list[str]:
    """The traces of the person anywhere in the views: rows, timeline entries, parked events."""
    stored = json.dumps([views.rows, views.entries, [e.model_dump_json() for e in views.parking.values()]], default=str)
    return [trace for trace in TRACES if trace in stored]


async def _run(views: MemoryViews, events: list[RoutingEvent]) -> None:
    for event in events:
        await project(event, views=views, side_effects=False)


def test_a_copy_of_a_parked_event_after_the_erasure_is_parked_without_the_person() -> None:
    """The review's case (`unit/test_review_s28_keys.py`), each kind of event that carries the person: the inquiry,
    the message, the move are parked (no row), the erasure keeps them, scrubbed in place (parked before session 28,
    they carry the person; helper 113's review: dropped, they were lost), their copies come after it: held once,
    without the person (crm-api never reads what of the person a parked event carries)."""
    views, events, erased = Views(), later_events(), erasure()
    inquiry, claim, wrote, move = events
    asyncio.run(_run(views, [inquiry, claim, wrote, move]))
    assert set(views.parking) == {str(e.event_id) for e in events}
    views.parking = {str(e.event_id): e for e in events}  # as parked before session 28: with the person
    asyncio.run(project(erased, views=views, side_effects=False))
    assert set(views.parking) == {str(e.event_id) for e in events}
    assert held(views) == [], "a parked event kept the person after ContactErased"
    asyncio.run(_run(views, [copy(e) for e in events]))
    assert set(views.parking) == {str(e.event_id) for e in events}, "parked again: no row"
    assert held(views) == [], "a copy after ContactErased parked the person again"
    assert views.entries.keys() == {erasure_entry(erased, str(LEAD))["_id"]}, "the erasure's entry, nothing else"


def test_an_erasure_of_a_lead_without_a_row_leaves_a_marker_that_is_no_row() -> None:
    """What the erasure leaves of a lead without a row: a marker the projection reads as "no row, erased", which no
    event reads as a row (a move finds no row to move, `ViewWriter.row`), and erasing again changes nothing."""
    views, erased = Views(), erasure()
    asyncio.run(project(erased, views=views, side_effects=False))
    marker = views.rows[str(LEAD)]
    assert held(views) == []
    state = RowState.of(marker)
    assert (state.exists, state.erased) == (False, True)
    assert asyncio.run(views.row(str(LEAD))) is None
    assert "account_id" not in marker, "no office: no scope of crm-api's reads can match it"
    asyncio.run(project(copy(erased), views=views, side_effects=False))
    assert views.rows[str(LEAD)] == marker


@settings(database=None, deadline=None, max_examples=200)
@given(data=st.data())
def test_a_first_event_replayed_after_the_erasure_of_a_lead_without_a_row_makes_its_row_without_the_person(
    data: st.DataObject,
) -> None:
    """The lead's first event (an offer, or an assignment) dead-lettered; any of its later events parked before the
    erasure (it keeps them); copies of any of them after it, before and after the first event's replay (a dead
    letter, after the erasure), in any order. The replay makes the row over the erasure's marker: without the
    person, and otherwise as the row of a lead erased with a row that then applied the same events (those parked
    before the erasure too: it keeps them, helper 113's review). Nothing of the person is anywhere in the views."""
    makers: list[RoutingEvent] = [first_offer(), first_assignment()]
    maker = data.draw(st.sampled_from(makers), label="the first event")
    events = later_events()
    before = data.draw(st.lists(st.sampled_from(events), max_size=4), label="parked before the erasure")
    copies = data.draw(st.lists(st.sampled_from(events), max_size=6), label="copies after it")
    split = data.draw(st.integers(0, len(copies)), label="copies before the replay")
    erased = erasure()
    views = Views()
    asyncio.run(_run(views, [*before, erased, *[copy(e) for e in copies[:split]]]))
    assert held(views) == []
    asyncio.run(_run(views, [copy(maker), *[copy(e) for e in copies[split:]]]))
    assert held(views) == [], "the replayed first event, or a parked copy, brought the person back"
    row = views.rows[str(LEAD)]
    assert RowState.of(row).exists
    assert views.parking == {}

    # What a lead that had a row applies of the same: the events parked before the replay (before the erasure and
    # copies after it), in the router's order after it (`handlers._created`), those after it as they came; then the
    # erasure (its `last_event_id` differs).
    parked = [e for e in events if e in before or e in copies[:split]]
    in_order = Views()
    asyncio.run(_run(in_order, [maker, *parked, *copies[split:], erased]))
    expected = in_order.rows[str(LEAD)]
    assert {k: v for k, v in row.items() if k != "last_event_id"} == {
        k: v for k, v in expected.items() if k != "last_event_id"
    }
    assert {k: row[k] for k in ERASED_ROW} == ERASED_ROW
    assert views.entries.keys() == in_order.entries.keys()
