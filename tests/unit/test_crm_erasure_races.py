"""crm-api's projection where a late or replayed event meets a move or an erasure (helper 112's review of session 28;
each failed on the code reviewed, fixed by helper 113): a move records the versions of the late-set fields it sets
(decision 0093, `projection.LATE_FIELDS`); an erasure keeps a lead's parked events (held without the person) for the
row made later; an erasure racing a lead's first event (a moved lead: two partitions) leaves no person on a row or on
the marker of a lead erased before it had a row (decision 0050)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_crm import CONTACT, SOURCE, TRACES, Interleaving
from test_crm_projection_writes import MemoryViews

from leadflow_crm_api.domain.projection import lead_row_of
from leadflow_crm_api.domain.views import MOVE_REASON
from leadflow_crm_api.handlers import project
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import (
    AssignmentReason,
    ContactErased,
    ContactErasedPayload,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    RoutingEvent,
)

pytestmark = [pytest.mark.unit]

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Views(Interleaving, MemoryViews):
    """`MemoryViews` whose erasure scrubs nothing on the timeline (nobody wrote there), and which runs `meanwhile`
    (another consumer's projection) once, when the projection first makes the call named `at` (`Interleaving`)."""

    async def erase_timeline(self, lead_id: str) -> None:
        assert lead_id in self.rows or not self.entries.get(lead_id)


async def _run(views: MemoryViews, events: list[RoutingEvent]) -> None:
    for event in events:
        await project(event, views=views, side_effects=False)


def _held(views: MemoryViews) -> list[str]:
    """The traces of the person anywhere in the views: rows, timeline entries, parked events."""
    stored = json.dumps([views.rows, views.entries, [e.model_dump_json() for e in views.parking.values()]], default=str)
    return [trace for trace in TRACES if trace in stored]


def _erasure(lead: uuid.UUID, office: str) -> ContactErased:
    return ContactErased.create(account_id=office, occurred_at=T0 + timedelta(hours=1), payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=[lead], by_user_id="bea", reason="ticket 7"))  # fmt: skip


def _move(lead: uuid.UUID, at: datetime, version: int) -> LeadTransferred:
    return LeadTransferred.create(account_id="acme", occurred_at=at, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
        previous_owner_agent_id="ana", to_account_id="south", to_account_name="South", agent_id="sol",
        by_user_id="nora", contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


# --- 1. LATE_FIELDS: a late event of the office the lead left, stamped at or after the move ------------------------


def test_a_release_of_the_office_left_stamped_at_the_moves_time_replayed_late_keeps_the_moves_reason() -> None:
    """Acme offers the lead to ana (v1), ana claims it (v2), gives it back (v3: `returned`), and the lead moves to
    south, sol holding it (v4); south offers it to sam (v5). The release and the move are decided back to back by two
    replicas whose clocks are apart (`CLOCK_SKEW_MS`): the release is stamped 2 s after the move. In order the move
    sets `assignment_reason` to `office_transfer` and south's offer leaves it.

    crm-api dead-letters the release and replays it last. Older than the row's state version (south's offer), it was
    superseded whole before session 28, leaving `office_transfer`. Now `late_changes` sets what `field_versions`
    says no newer event set: the move sets the reason without a version (`moved_row`), so the field still carries
    the claim's v2, `left_behind` does not hold the release back (not older than the move's time), and the row ends
    `returned`: the lead, held by sol in south, says ana gave it back."""
    lead = uuid.uuid4()

    def at(version: int, office: str = "acme") -> dict[str, Any]:
        return {"account_id": office, "occurred_at": T0 + version * MINUTE}

    offer = LeadOffered.create(**at(1), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 16 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, referral_fee_percent=25, router_version=1))  # fmt: skip
    claim = LeadClaimed.create(**at(2), payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    move = _move(lead, T0 + 4 * MINUTE, 4)
    release = LeadReleased.create(account_id="acme", occurred_at=move.occurred_at + timedelta(seconds=2),
        payload=LeadReleasedPayload(lead_id=lead, agent_id="ana", broker_agent_id="ana", explanation="given back",
        reason="returned", router_version=3))  # fmt: skip
    to_sam = LeadOffered.create(**at(5, "south"), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="sam", offer_round=1, race_size=1, deadline=T0 + 20 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=5))  # fmt: skip

    in_order, replayed = Views(), Views()
    asyncio.run(_run(in_order, [offer, claim, release, move, to_sam]))
    asyncio.run(_run(replayed, [offer, claim, move, to_sam, release]))
    expected, row = in_order.rows[str(lead)], replayed.rows[str(lead)]
    assert (expected["account_id"], expected["status"], expected["assignment_reason"]) == (
        "south",
        "offered",
        MOVE_REASON,
    )
    assert row["assignment_reason"] == expected["assignment_reason"], (
        f"the release replayed late set assignment_reason {row['assignment_reason']!r} over the move's"
    )


# --- 2. the marker: an erasure on one partition, the lead's row-making event on another --------------------------


def _offer_claim_move(lead: uuid.UUID) -> tuple[LeadOffered, LeadClaimed, LeadTransferred]:
    """Acme offers the lead to ana (v1, its first event), ana claims it (v2), the lead moves to south, sol holding it
    (v3)."""
    offer = LeadOffered.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 16 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=1))  # fmt: skip
    claim = LeadClaimed.create(account_id="acme", occurred_at=T0 + 2 * MINUTE, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    return offer, claim, _move(lead, T0 + 5 * MINUTE, 3)


def test_a_first_event_replayed_after_the_erasure_makes_a_row_without_what_was_parked_before_it() -> None:
    """crm-api dead-lettered the lead's first offer; ana's claim and the move to south were parked (no row); a broker
    of south erases the person; the offer is replayed from the dead letters. The erasure dropped the parked events
    (`_erase`: "they go too"), though since session 28 they are held without the person (`without_person`), and no
    copy of them comes again: the row made over the marker is the first offer's alone. The lead, held by sol in
    south for the router, is listed offered to ana in acme (south's brokers never see it), and the claim's and the
    move's timeline entries are gone. A lead erased with a row that applied the same events is in south, held by sol.
    (`unit/test_crm_erasure_without_row.py` expects the loss: its in-order row leaves out what was parked before.)"""
    lead = uuid.uuid4()
    offer, claim, move = _offer_claim_move(lead)
    erased = _erasure(lead, "south")
    with_row, replayed = Views(), Views()
    asyncio.run(_run(with_row, [offer, claim, move, erased]))
    asyncio.run(_run(replayed, [claim, move, erased, offer]))
    expected, row = with_row.rows[str(lead)], replayed.rows[str(lead)]
    holder = ("account_id", "status", "owner_agent_id", "assignment_reason")
    assert [expected[k] for k in holder] == ["south", "assigned", "sol", MOVE_REASON]
    assert _held(replayed) == []
    assert [row.get(k) for k in holder] == [expected[k] for k in holder], "the parked claim and move were lost"
    assert replayed.entries.keys() == with_row.entries.keys(), "the parked events' timeline entries were lost"


def test_an_erasure_between_an_assignments_read_and_its_upsert_leaves_the_person_on_a_marker() -> None:
    """Acme assigns the lead to ana (v1, its first event: the row maker) and moves it to south (v2); a broker of south
    erases the person. `ContactErased` is keyed by south, the assignment and the move by acme: two partitions, two
    consumers. crm-api dead-lettered the assignment (the move is parked: no row) and replays it while south's
    consumer applies the erasure: the assignment reads the state (no row, no marker yet) and the parked events; the
    erasure then finds no row and stores its marker; the assignment's upsert (`$set`, decided for "no row", not
    `made_over_marker`) lands on the marker.

    The stored document keeps `erased_before_row` with the assignment's fields in it: the person's name, email and
    phone, and `account_id` acme, so the lists and the lead's page read it (`ScopedLeads` parses every document of
    the account's scope) while the projection reads it as "no row" (`RowState.of`): every later event of the lead
    is parked instead of applied, and the move the assignment re-parks is dropped by its own `unpark`."""
    lead = uuid.uuid4()
    assignment = LeadAssigned.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="ana", reason=AssignmentReason.ROSTER_POSITION_1, explanation="R5", contact=CONTACT,
        source=SOURCE, router_version=1))  # fmt: skip
    move, erased = _move(lead, T0 + 5 * MINUTE, 2), _erasure(lead, "south")
    views = Views()
    asyncio.run(_run(views, [move]))  # parked: no row
    views.at, views.meanwhile = "parked", lambda: _run(views, [erased])  # south's consumer, between read and upsert
    asyncio.run(_run(views, [assignment]))
    assert views.ran(), "the interleaving did not happen"
    doc = views.rows[str(lead)]
    assert _held(views) == [], f"the person is in the views after the erasure: {_held(views)} in {doc}"
    assert lead_row_of(doc) is not None, "the lead has a row the projection reads as none (a marker)"


def test_an_erasure_whose_state_read_precedes_the_first_offers_insert_leaves_the_person_on_the_row() -> None:
    """The other order of the same two consumers (open before session 28 too, and what the marker was meant to
    close: "nothing brings the person back"): the erasure reads the lead's state (no row), acme's consumer then
    inserts the row of the lead's first offer (replayed from the dead letters) with the person in it, and the
    erasure's marker insert fails on it (`insert_new`: the lead has a row), its result unread. The row keeps the
    name, email and phone after `ContactErased` was applied."""
    lead = uuid.uuid4()
    offer = LeadOffered.create(account_id="acme", occurred_at=T0 + MINUTE, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 16 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=1))  # fmt: skip
    move, erased = _move(lead, T0 + 5 * MINUTE, 2), _erasure(lead, "south")
    views = Views()
    asyncio.run(_run(views, [move]))  # parked: no row
    views.at, views.meanwhile = "state", lambda: _run(views, [offer])  # acme's consumer, after the erasure's read
    asyncio.run(_run(views, [erased]))
    assert views.ran(), "the interleaving did not happen"
    assert _held(views) == [], f"the person is in the views after the erasure: {_held(views)}"
