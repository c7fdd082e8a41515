"""crm-api's projection where a late state change meets a move, and where an assignment races an erasure on another
partition's consumer (helper 114's review of session 28's late commits). The assignment whose insert meets a row made
meanwhile now builds its changes from that row (fixed). Two older windows that review found are closed since
(decisions 0093 and 0050, session 29): a move raises the row's state version, so a release of the office left, stamped
after the move within the clock skew and replayed before the new office's first event, is older; and an assignment
that read its row unerased reads it again after its upsert, so an erasure landing in between is not overwritten.
The review of that (helper 117) added three: a late change of the office left keeps its last activity (3); a move
projected after the new office made the row leaves the holder to it (4); a move decided on a row another office's
consumer changed before its update is decided again (5). Helper 125's review of session 30's `state_office` added 14:
a move's update holds on the offers and late-set fields it rewrites, and a row's office is trusted only when written
with its state version."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from fakes_crm import CONTACT, SOURCE
from test_crm_erasure_races import (
    MINUTE,
    T0,
    Views,
    _erasure,
    _held,
    _move,
    _run,
)

from leadflow_crm_api.adapters.leads import _update_ops
from leadflow_crm_api.domain import projection
from leadflow_crm_api.domain.generations import LAST_ACTIVITY
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import overtaken
from leadflow_crm_api.domain.projection import (
    STATE_OFFICE,
    STATE_OFFICE_VERSION,
    STATE_VERSION,
    RowChanges,
    RowState,
    moved_changes,
)
from leadflow_crm_api.domain.views import MOVE_REASON
from leadflow_crm_api.handlers import MOVE_ATTEMPTS, MoveContendedError
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
    RoutingEvent,
)

pytestmark = [pytest.mark.unit]

HOLDER = ("account_id", "status", "owner_agent_id", "assignment_reason")


def _at(version: int, office: str = "acme") -> dict[str, Any]:
    return {"account_id": office, "occurred_at": T0 + version * MINUTE}


def _offer(lead: uuid.UUID, version: int = 1) -> LeadOffered:
    return LeadOffered.create(**_at(version), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + 16 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


def _assignment(lead: uuid.UUID, version: int, office: str = "south") -> LeadAssigned:
    return LeadAssigned.create(**_at(version, office), payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=version))  # fmt: skip


def _to_tom(lead: uuid.UUID, version: int, office: str) -> LeadOffered:
    return LeadOffered.create(**_at(version, office), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="tom", offer_round=1, race_size=1, deadline=T0 + 30 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


def _projected(lead: uuid.UUID, before: list[RoutingEvent], crm: dict[str, Any], after: list[RoutingEvent]) -> Any:
    """The lead's row after `before`, crm-api's own write `crm` on it, then `after`."""
    views = Views()
    asyncio.run(_run(views, before))
    views.rows[str(lead)] |= crm
    asyncio.run(_run(views, after))
    return views.rows[str(lead)]


# --- 1. a move sets no state version: a late release of the office left, stamped after it, unassigns the lead -----


def test_a_release_of_the_office_left_stamped_after_the_move_replayed_right_after_it_keeps_the_holder() -> None:
    """As `test_crm_erasure_races::test_a_release_of_the_office_left_stamped_at_the_moves_time_replayed_late_keeps_
    the_moves_reason`, without south's offer after the move: acme offers the lead to ana (v1), ana claims it (v2),
    gives it back (v3, `returned`, stamped 2 s after the move by a replica whose clock is ahead: within
    `CLOCK_SKEW_MS`), the lead moves to south, sol holding it (v4). In order: south, sol, `office_transfer`.

    crm-api dead-letters the release and replays it right after the move. Stamped after the move it is not
    `left_behind`; when the move set no `state_version` (the row kept the claim's v2) the release (v3) was not `older`
    either, and was applied in full as the first change seen of an office further on (`_early_holder`): the lead, held
    by sol in south for the router, listed unassigned in south, "returned". The move raises the state version to its
    own (v4), so the release is older and leaves the holder."""
    lead = uuid.uuid4()
    offer = _offer(lead)
    claim = LeadClaimed.create(**_at(2), payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    move = _move(lead, T0 + 4 * MINUTE, 4)
    release = LeadReleased.create(account_id="acme", occurred_at=move.occurred_at + timedelta(seconds=2),
        payload=LeadReleasedPayload(lead_id=lead, agent_id="ana", broker_agent_id="ana", explanation="given back",
        reason="returned", router_version=3))  # fmt: skip
    in_order, replayed = Views(), Views()
    asyncio.run(_run(in_order, [offer, claim, release, move]))
    asyncio.run(_run(replayed, [offer, claim, move, release]))
    expected, row = in_order.rows[str(lead)], replayed.rows[str(lead)]
    assert [expected[k] for k in HOLDER] == ["south", "assigned", "sol", MOVE_REASON]
    assert [row.get(k) for k in HOLDER] == [expected[k] for k in HOLDER], (
        "the release of the office left, replayed after the move, unassigned the lead in its new office"
    )


# --- 2. an assignment racing an erasure on another partition's consumer -------------------------------------------


def test_an_erasure_between_an_assignments_state_read_and_its_upsert_of_an_existing_row_is_not_undone() -> None:
    """The race 575eecd closed for a lead without a row, on a lead with one: acme offers the lead (v1, its row), the
    lead moves to south (v2), south assigns it to dan by hand (v3); acme's erasure, decided while the lead was
    still in acme (it names it), is projected by acme's consumer (lagging) while south's consumer applies the
    assignment. The assignment reads the state (a row, not erased: `project` reads it for an assignment), the
    erasure scrubs the row, and the assignment's upsert (`assigned_row` decided for the state read: the person in
    it) `$set`s the name, email and phone back on the erased row; read again after it, the row is scrubbed again."""
    lead = uuid.uuid4()
    offer, erased, to_dan = _offer(lead), _erasure(lead, "acme"), _assignment(lead, 3)
    views = Views()
    asyncio.run(_run(views, [offer]))
    views.at, views.meanwhile = "state", lambda: _run(views, [erased])  # acme's consumer, after the read
    asyncio.run(_run(views, [to_dan]))
    assert views.ran(), "the interleaving did not happen"
    assert views.rows[str(lead)]["owner_agent_id"] == "dan"
    assert _held(views) == [], f"the person is on the row after the erasure: {_held(views)}"


def test_an_assignment_whose_insert_meets_a_row_made_over_the_marker_meanwhile_puts_the_person_on_it() -> None:
    """575eecd's new insert path, its "a row made meanwhile" branch: acme's first offer (v1) and the move to south
    (v2) are dead letters (nothing parked); south assigns the lead to dan by hand (v3). South's consumer reads "no
    row" (and no parked event); meanwhile the person is erased (a marker) and acme's first offer, replayed from the
    dead letters, makes the row over the marker without the person. The assignment's insert fails, the state read
    again is a row (erased, not a marker), and the upsert decided for "no row" (the person in it, not
    `assigned_row` of the state read again) `$set`s the name, email and phone on the erased row. (With events parked
    before the assignment its changes are applied again from the state read then, `_created`, which scrubs the row
    again: the person is there only in between.)"""
    lead = uuid.uuid4()
    offer, to_dan, erased = _offer(lead), _assignment(lead, 3), _erasure(lead, "acme")
    views = Views()
    views.at, views.meanwhile = "parked", lambda: _run(views, [erased, offer])  # other consumers, after the read
    asyncio.run(_run(views, [to_dan]))
    assert views.ran(), "the interleaving did not happen"
    row = views.rows[str(lead)]
    assert (row["erased"], row["owner_agent_id"]) == (True, "dan")
    assert _held(views) == [], f"the person is on the row after the erasure: {_held(views)}"


def _rows(lead: uuid.UUID, *orders: list[RoutingEvent]) -> list[dict[str, Any]]:
    """The lead's row after each order of its events."""
    rows = []
    for events in orders:
        views = Views()
        asyncio.run(_run(views, events))
        rows.append(views.rows[str(lead)])
    return rows


# --- 3. a late change of the office left, stamped after the move, keeps its last activity -------------------------


def _late_of_the_office_left(lead: uuid.UUID, kind: str) -> LeadEvent:
    """Acme's last change before the move (v3), stamped 2 s after it by a replica whose clock is ahead: zed's refused
    claim (activity only) or ana's release (`returned`)."""
    at = T0 + 4 * MINUTE + timedelta(seconds=2)
    if kind == "refusal":
        return ActivityLogged.create(account_id="acme", occurred_at=at, payload=ActivityLoggedPayload(
            lead_id=lead, agent_id=None, action=ActivityAction.CALL, by_agent_id="zed",
            claim_refused="the offer ended", router_version=3))  # fmt: skip
    return LeadReleased.create(account_id="acme", occurred_at=at, payload=LeadReleasedPayload(
        lead_id=lead, agent_id="ana", broker_agent_id="ana", explanation="given back", reason="returned",
        router_version=3))  # fmt: skip


@pytest.mark.parametrize("kind", ["refusal", "release"])
def test_a_change_of_the_office_left_stamped_after_the_move_replayed_after_it_keeps_its_last_activity(
    kind: str,
) -> None:
    """Acme offers the lead to ana (v1), ana claims it (v2); zed's claim is refused or ana gives the lead back (v3,
    stamped 2 s after the move: within `CLOCK_SKEW_MS`); the lead moves to south, sol holding it (v4, minute 4). In
    order the v3 change sets the last activity and the move, stamped before it, leaves it (set only when newer).

    crm-api dead-letters the v3 change and replays it right after the move. The move now raises the row's versions
    to v4, so the change is `older` and superseded: `late_changes` set its late fields and offers but not its last
    activity, and the row said "LeadTransferred by nora" where in order it says the v3 change's kind, author and time
    (for the refusal, before 343ee30 it was applied as it came and matched). A late change not of an office left
    behind sets its last activity when newer, as in order."""
    lead = uuid.uuid4()
    offer = _offer(lead)
    claim = LeadClaimed.create(**_at(2), payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    move = _move(lead, T0 + 4 * MINUTE, 4)
    late = _late_of_the_office_left(lead, kind)
    expected, row = _rows(lead, [offer, claim, late, move], [offer, claim, move, late])
    assert (expected["last_activity_kind"], expected["last_activity_ms"]) == (late.type, epoch_ms(late.occurred_at))
    assert [expected[k] for k in HOLDER] == ["south", "assigned", "sol", "office_transfer"]
    assert [row.get(k) for k in HOLDER] == [expected[k] for k in HOLDER]
    assert {k: row.get(k) for k in LAST_ACTIVITY} == {k: expected.get(k) for k in LAST_ACTIVITY}, (
        f"the {kind} replayed after the move left the move's last activity"
    )


# --- 4. a move projected after the new office made the lead's row ---------------------------------------------------


def test_a_move_projected_after_the_new_office_made_the_leads_row_leaves_the_holder_to_it() -> None:
    """Acme offers the lead to ana (v1); the lead moves to south, sol holding it (v4, minute 4); south offers it to tom
    (v5, minute 5). Acme's partition lags: south's offer is projected first and makes the row (in south: no early
    holder mark, the row is in the offer's office), then acme's offer (older than the row: late) and the move. The move
    applies (the row has no move yet) and set sol as the holder, no open offer: the lead, offered to tom for the
    router, listed as sol's. The row's state version (v5, south's offer) is newer than the move's, and the row is in
    the office the move names: what came after the move set the holder."""
    lead = uuid.uuid4()
    offer = _offer(lead)
    move = _move(lead, T0 + 4 * MINUTE, 4)
    to_tom = _to_tom(lead, 5, "south")
    expected, row = _rows(lead, [offer, move, to_tom], [to_tom, offer, move])
    fields = (*HOLDER, "offered_to")
    assert [expected[k] for k in fields] == ["south", "offered", None, "office_transfer", ["tom"]]
    assert [row.get(k) for k in fields] == [expected[k] for k in fields], (
        "the move projected after the new office made the row took the holder from it"
    )


# --- 5. a move's read of the row and its update, with the new office's consumer in between -----------------------


def test_the_new_offices_changes_between_a_moves_read_and_its_update_are_kept() -> None:
    """Acme offers the lead to ana (v1); the lead moves to south, sol holding it (v4); south's zed is refused a claim
    (v5) and sol gives the lead back (v6). Acme's consumer reads the row for the move (`handlers._moved`); south's
    consumer projects v5 and v6 (the row still in acme: an early holder mark, state version 6); the move's update,
    decided on the row it read (no mark, versions v1), sets sol as the holder over south's release (as before
    343ee30) and now also sets the row's state and router versions back to v4 (343ee30's "never lowers" holds only
    for the row read): a dead letter of south's v5 replayed later is no longer older."""
    lead = uuid.uuid4()
    offer, move = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4)
    refused = ActivityLogged.create(**_at(5, "south"), payload=ActivityLoggedPayload(
        lead_id=lead, agent_id=None, action=ActivityAction.CALL, by_agent_id="zed", claim_refused="the offer ended",
        router_version=5))  # fmt: skip
    release = LeadReleased.create(**_at(6, "south"), payload=LeadReleasedPayload(
        lead_id=lead, agent_id="sol", broker_agent_id="sol", explanation="given back", reason="returned",
        router_version=6))  # fmt: skip
    (expected,) = _rows(lead, [offer, move, refused, release])
    views = Views()
    asyncio.run(_run(views, [offer]))
    views.at, views.meanwhile = "row", lambda: _run(views, [refused, release])  # south's consumer, after the read
    asyncio.run(_run(views, [move]))
    assert views.ran(), "the interleaving did not happen"
    row = views.rows[str(lead)]
    assert (row["state_version"], row["router_version"]) == (6, 6), "the move lowered the row's versions"
    assert [row.get(k) for k in HOLDER] == [expected[k] for k in HOLDER]


# --- a move's compare-and-set (helper 118's review of 2717b17) --------------------------------------------------


def _refusal(lead: uuid.UUID, version: int) -> ActivityLogged:
    """South's zed refused a claim (activity only: it raises the row's router version, not its state)."""
    return ActivityLogged.create(account_id="south", occurred_at=T0 + version * MINUTE, payload=ActivityLoggedPayload(
        lead_id=lead, agent_id=None, action=ActivityAction.CALL, by_agent_id="zed", claim_refused="the offer ended",
        router_version=version))  # fmt: skip


class Contended(Views):
    """`Views` where south's consumer projects one refused claim after each of the move's first `times` reads."""

    def __init__(self, lead: uuid.UUID, times: int) -> None:
        super().__init__()
        self._lead, self._left, self._next = lead, times, 5

    async def row(self, lead_id: str) -> LeadRow | None:
        read = await super().row(lead_id)
        if self._left > 0:
            self._left -= 1
            self._next += 1
            await _run(self, [_refusal(self._lead, self._next - 1)])
        return read


# --- 6. the activity op of `_update_ops` carried `expect`, which its fields op had just changed ------------------


def test_a_moves_activity_op_does_not_filter_on_what_its_fields_op_sets() -> None:
    """`_update_ops` sends the fields op, then the activity op, in order. Both carried `expect` (the row's versions and
    `moved_ms` as read); the fields op sets `moved_ms` (and raises the versions), so the activity op, run on the row it
    left, never matched: on MongoDB a move never set its last activity, while the in-memory views (`applied_to`) did
    (`integration/test_review_crm_move_cas_store.py`)."""
    lead = uuid.uuid4()
    views = Views()
    asyncio.run(_run(views, [_offer(lead)]))
    row = asyncio.run(views.row(str(lead)))
    assert row is not None
    fields_op, activity_op = _update_ops(moved_changes(row, _move(lead, T0 + 4 * MINUTE, 4)))
    update = fields_op._doc  # pymongo keeps the op's parts private
    assert isinstance(update, Mapping)
    set_first = update["$set"]
    stale = {k for k in activity_op._filter if k != "_id" and k in set_first}
    assert not stale, f"the activity op filters on {sorted(stale)} as read, which the fields op before it changed"


# --- 7. the loop's end: a move that lands on its last attempt ------------------------------------------------------


def test_a_move_that_lands_on_its_last_attempt_is_done_not_retried() -> None:
    """South's consumer changes the row after each of the move's first four reads (refused claims v5..v8): four
    updates match nothing, the fifth (`MOVE_ATTEMPTS`) lands. The `for ... else` raised MoveContendedError all the same
    (the range was used up, though the re-read row no longer takes the move): the event's timeline entry not written,
    the batch retried by the consumers' edge for a move that is in the row."""
    lead = uuid.uuid4()
    move = _move(lead, T0 + 4 * MINUTE, 4)
    views = Contended(lead, MOVE_ATTEMPTS - 1)
    asyncio.run(_run(views, [_offer(lead)]))
    asyncio.run(_run(views, [move]))  # raised MoveContendedError
    row = views.rows[str(lead)]
    assert [row[k] for k in HOLDER] == ["south", "assigned", "sol", "office_transfer"]
    assert str(move.event_id) in views.entries, "the move landed but its timeline entry was not written"


def test_a_move_whose_row_changes_under_every_attempt_is_left_to_the_edge() -> None:
    """Against that fix: one more change than attempts, and the move, not in the row, is still handed back."""
    lead = uuid.uuid4()
    views = Contended(lead, MOVE_ATTEMPTS)
    asyncio.run(_run(views, [_offer(lead)]))
    with pytest.raises(MoveContendedError):
        asyncio.run(_run(views, [_move(lead, T0 + 4 * MINUTE, 4)]))
    assert views.rows[str(lead)]["account_id"] == "acme"


class MovedUnderEveryRead(Views):
    """`Views` where a move (another office's consumer) lands after each read of the lead's state: the row's
    `moved_ms` is another one every time."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def state(self, lead_id: str) -> RowState:
        read = await super().state(lead_id)
        if read.exists:
            self.reads += 1
            self.rows[lead_id]["moved_ms"] = epoch_ms(T0) + self.reads
        return read


def test_a_change_whose_row_a_move_lands_on_under_every_attempt_is_left_to_the_edge() -> None:
    """A change that is not a move holds on the row's last move as read (`RowChanges.holding`), and is decided again
    when one landed in between, at most `MOVE_ATTEMPTS` times: then the consumers' edge retries the event, which has
    changed nothing and has no timeline entry."""
    lead = uuid.uuid4()
    views = MovedUnderEveryRead()
    asyncio.run(_run(views, [_offer(lead)]))
    before = dict(views.rows[str(lead)])
    claim = LeadClaimed.create(**_at(2), payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    with pytest.raises(MoveContendedError):
        asyncio.run(_run(views, [claim]))
    assert views.reads == MOVE_ATTEMPTS + 1, "each miss read the row again, and no more than the bound"
    row = views.rows[str(lead)]
    assert [row[k] for k in HOLDER] == [before[k] for k in HOLDER], "the claim was written over a move"
    assert str(claim.event_id) not in views.entries


# --- 8. A -> B -> A: a move of the office left read late, after that office's change on the lead's return ---------


def _back(lead: uuid.UUID, at: datetime, version: int) -> LeadTransferred:
    """South moves the lead back to acme, max holding it there."""
    return LeadTransferred.create(account_id="south", occurred_at=at, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="south", from_account_name="South",
        previous_owner_agent_id="sol", to_account_id="acme", to_account_name="Acme", agent_id="max",
        by_user_id="sue", contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


def test_a_move_replayed_after_the_change_its_office_made_once_the_lead_came_back_leaves_that_holder() -> None:
    """Acme offers the lead to ana (v1); it moves to south, sol holding it (v4, acme's partition); south moves it back
    to acme, max holding it (v6, south's partition); acme offers it to tom (v7). crm-api dead-letters the v4 move and
    replays it after acme's v7; south's partition lags, so the v6 move comes last. The v4 move reads a row in acme
    (its source, not its target: `_left_to_target` leaves nothing) whose state version is v7's, takes the holder to
    sol in south; the v6 move then finds the row in south and sets max over tom's offer: in order the lead is offered
    to tom in acme."""
    lead = uuid.uuid4()
    to_tom = _to_tom(lead, 7, "acme")
    offer, there, back = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    in_order, replayed = Views(), Views()
    asyncio.run(_run(in_order, [offer, there, back, to_tom]))
    asyncio.run(_run(replayed, [offer, to_tom, there, back]))
    expected, row = in_order.rows[str(lead)], replayed.rows[str(lead)]
    assert [expected[k] for k in (*HOLDER, "offered_to")] == ["acme", "offered", None, "office_transfer", ["tom"]]
    assert [row.get(k) for k in (*HOLDER, "offered_to")] == [expected[k] for k in (*HOLDER, "offered_to")]


def test_a_move_projected_after_the_new_office_made_the_row_and_shared_the_lead_leaves_the_share() -> None:
    """As section 4, and south's broker then shares the lead with rita: crm-api's own request writes the share on the
    row (T1: `transferred_to`, `assigned_by`, ...), the router's `LeadShared` (v6) follows. In order the move (v4)
    came first and the share is on the row. Acme's partition lagging, the move read last left south's holder but
    cleared the share, as a move clears the office left's: on a row the target office made and changed since,
    nothing is the office left's."""
    lead = uuid.uuid4()
    offer = _offer(lead)
    move = _move(lead, T0 + 4 * MINUTE, 4)
    to_tom = _to_tom(lead, 5, "south")
    shared = LeadShared.create(**_at(6, "south"), payload=LeadSharedPayload(
        lead_id=lead, share_id=uuid.uuid4(), agent_id="rita", realtor_name="Rita", assigned_by="South",
        previous_owner_agent_id="tom", by_user_id="sue", router_version=6))  # fmt: skip
    share = {"transferred_to": "rita", "transferred_ms": epoch_ms(T0 + 6 * MINUTE), "assigned_by": "South",
             "transfer_id": str(shared.payload.share_id)}  # fmt: skip

    expected = _projected(lead, [offer, move, to_tom], share, [shared])
    row = _projected(lead, [to_tom], share, [shared, offer, move])
    fields = (*HOLDER, *share)
    assert {k: expected.get(k) for k in share} == share
    assert {k: row.get(k) for k in fields} == {k: expected.get(k) for k in fields}, (
        "the move read after the new office shared the lead cleared the share"
    )


# --- helper 119's review of e368458 and 68b6de4 --------------------------------------------------------------------


def _acme_share(lead: uuid.UUID) -> tuple[LeadShared, dict[str, Any]]:
    """Acme's broker shares the lead with rita (crm-api's write, then the router's LeadShared, v2), before any move."""
    shared = LeadShared.create(**_at(2), payload=LeadSharedPayload(
        lead_id=lead, share_id=uuid.uuid4(), agent_id="rita", realtor_name="Rita", assigned_by="Acme",
        previous_owner_agent_id="ana", by_user_id="bea", router_version=2))  # fmt: skip
    share = {"transferred_to": "rita", "transferred_at": T0 + 2 * MINUTE, "transferred_ms": epoch_ms(T0 + 2 * MINUTE),
             "assigned_by": "Acme", "transfer_id": str(shared.payload.share_id)}  # fmt: skip
    return shared, share


# --- 11. acme's share from before the lead left, kept by the move back read after acme's change on its return ------


def test_a_share_of_the_office_left_from_before_the_lead_moved_does_not_survive_its_return() -> None:
    """Acme offers the lead to ana (v1) and shares it with rita (v2); it moves to south (v4, acme's partition) and
    back to acme (v6, south's partition); acme offers it to tom (v7). In order the first move cleared rita's share
    (the office left's sharing, T1) and nothing shared it since. crm-api dead-letters the v4 move and replays it after
    acme's v7 (`overtaken`: it changes nothing); the v6 move is read last, finds the row in its target changed since
    (`_left_to_target`) and leaves the sharing fields as acme's own: rita's share from before the lead left, which
    the v4 move never cleared, is back on the lead (listed as shared with rita, out of "My Leads")."""
    lead = uuid.uuid4()
    shared, share = _acme_share(lead)
    offer, there, back = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    to_tom = _to_tom(lead, 7, "acme")
    expected = _projected(lead, [offer], share, [shared, there, back, to_tom])
    row = _projected(lead, [offer], share, [shared, to_tom, there, back])
    assert [expected[k] for k in (*HOLDER, "transferred_to")] == ["acme", "offered", None, "office_transfer", None]
    assert {k: row.get(k) for k in share} == {k: expected.get(k) for k in share}, (
        "acme's share from before the lead left is back on the row"
    )


def test_a_share_of_the_office_left_from_before_the_move_back_read_first_is_cleared() -> None:
    """As 1, the v6 move back read right after acme's v7 and the v4 move last (an older move: nothing). The move back
    alone left rita's share (older than the move: not made in acme since the lead came back)."""
    lead = uuid.uuid4()
    shared, share = _acme_share(lead)
    offer, there, back = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    to_tom = _to_tom(lead, 7, "acme")
    expected = _projected(lead, [offer], share, [shared, there, back, to_tom])
    row = _projected(lead, [offer], share, [shared, to_tom, back, there])
    assert {k: row.get(k) for k in share} == {k: expected.get(k) for k in share}


@pytest.mark.parametrize("late", ["the first move", "the move back"])
def test_campaigns_of_the_office_left_from_before_the_lead_moved_do_not_survive_its_return(late: str) -> None:
    """As the share above, with acme's campaigns set before the move: whichever move is read last, they are cleared
    as in order (campaigns carry no time of their write, so a move clears them even on a row its target changed
    since: decision 0093)."""
    lead = uuid.uuid4()
    campaigns = {"campaigns": ["Spring buyers"], "campaign_subscriptions": ["Market report"]}
    offer, there, back = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    to_tom = _to_tom(lead, 7, "acme")
    expected = _projected(lead, [offer], campaigns, [there, back, to_tom])
    row = _projected(
        lead, [offer], campaigns, [to_tom, there, back] if late == "the move back" else [to_tom, back, there]
    )
    assert expected["campaigns"] == []
    assert {k: row.get(k) for k in campaigns} == {k: expected.get(k) for k in campaigns}


# --- 12. a state change of the target applied before the move is not the lead's return --------------------------------


def test_an_expiry_of_the_new_office_applied_before_the_move_does_not_keep_the_lead_in_the_office_left() -> None:
    """Acme offers the lead to ana (v1); it moves to south, sol holding it (v4); south offers it to tom (v5) and tom's
    offer expires (v6). crm-api dead-letters the move and south's offer; south's expiry is read on the row still in
    acme: no holder change, so no early-holder mark, and the row's state version is v6. The move, replayed, takes the
    row to south, sol holding it; south's offer, replayed after it, is older than v6 and changes nothing: the lead is
    listed as sol's, where in order it is offered (helper 119's review; older than session 29, whose `came_back`
    made it worse and was taken out)."""
    lead = uuid.uuid4()
    offer, move, to_tom = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _to_tom(lead, 5, "south")
    expired = OfferExpired.create(**_at(6, "south"), payload=OfferClosedPayload(
        lead_id=lead, agent_id="tom", offer_round=1, router_version=6))  # fmt: skip
    in_order, replayed = Views(), Views()
    asyncio.run(_run(in_order, [offer, move, to_tom, expired]))
    asyncio.run(_run(replayed, [offer, expired, move, to_tom]))
    expected, row = in_order.rows[str(lead)], replayed.rows[str(lead)]
    assert expected["account_id"] == "south"
    assert [row.get(k) for k in HOLDER] == [expected[k] for k in HOLDER], "the move was taken for the lead's return"


# --- 13. session 30: the office of the row's state version ------------------------------------------------------------


def test_a_move_back_read_after_the_offices_next_offer_ends_the_offers_from_before_the_lead_left() -> None:
    """As 8, the v6 move back read right after acme's v7 offer to tom and the v4 move last (older: nothing). The move
    back finds the row in its target changed since and left its holder fields whole (`_left_to_target`): ana's acme
    offer (v1), which in order the v4 move ended, stayed open beside tom's (found in session 30's fix of 8, older than
    it). The offers opened before the move go (`offices._offers_since`)."""
    lead = uuid.uuid4()
    to_tom = _to_tom(lead, 7, "acme")
    offer, there, back = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    expected, row = _rows(lead, [offer, there, back, to_tom], [offer, to_tom, back, there])
    fields = (*HOLDER, "offered_to", "pond")
    assert [expected[k] for k in fields] == ["acme", "offered", None, "office_transfer", ["tom"], None]
    assert [row.get(k) for k in fields] == [expected[k] for k in fields], "ana's offer from before the move is open"
    assert [o["agent_id"] for o in row["open_offers"]] == ["tom"]


def test_the_rows_state_version_and_its_office_are_written_together() -> None:
    """Every write of `state_version` writes `state_office` (the office the lead was in once that change was made: a
    lead event's, a move's target), and a row stored without its version is stored without both; a row without the
    office (written before session 30) does not take a move for the lead's return (`overtaken`: as before)."""
    lead = uuid.uuid4()
    views = Views()
    asyncio.run(_run(views, [_offer(lead), _to_tom(lead, 7, "acme")]))
    stored = views.rows[str(lead)]
    assert (stored[STATE_VERSION], stored[STATE_OFFICE], stored[STATE_OFFICE_VERSION]) == (7, "acme", 7)
    assert RowChanges.unmarked(str(lead), 7, "acme").fields == {
        "router_version": 7,
        STATE_VERSION: 7,
        STATE_OFFICE: "acme",
        STATE_OFFICE_VERSION: 7,
    }
    there = _move(lead, T0 + 4 * MINUTE, 4)
    assert overtaken(LeadRow.from_doc(stored), there)
    assert not overtaken(LeadRow.from_doc({k: v for k, v in stored.items() if k != STATE_OFFICE}), there)
    # The office is known only with the state version it was written with (helper 125's review): one written without
    # its version (session 30 before that review) or beside a state version written since without it is unknown.
    assert not overtaken(LeadRow.from_doc({k: v for k, v in stored.items() if k != STATE_OFFICE_VERSION}), there)
    assert not overtaken(LeadRow.from_doc({**stored, STATE_VERSION: 8}), there)
    moved = moved_changes(LeadRow.from_doc({**stored, STATE_VERSION: 3}), there).fields
    assert (moved[STATE_VERSION], moved[STATE_OFFICE], moved[STATE_OFFICE_VERSION]) == (4, "south", 4)


def test_an_offer_of_the_new_office_replayed_after_its_early_expiry_and_the_move_stays_ended() -> None:
    """As 12, bob offered in a second round (v7) and dead-lettered too: expiry (v6), the move (v4), then tom's offer
    (v5) and bob's (v7) replayed. Before session 30 the move kept the expiry's state version: tom's offer, older,
    changed nothing, and bob's applied (as in order, by luck of v7). The move now sets its own (v4), which 12 needs,
    and tom's offer was opened again: the lead listed offered to bob and tom, tom's past its deadline. The early expiry
    now leaves its offer on the row (`projection.ENDED_EARLY`), and tom's offer, older, is not opened (session 31)."""
    lead = uuid.uuid4()
    offer, move, to_tom = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _to_tom(lead, 5, "south")
    expired = OfferExpired.create(**_at(6, "south"), payload=OfferClosedPayload(
        lead_id=lead, agent_id="tom", offer_round=1, router_version=6))  # fmt: skip
    to_bob = LeadOffered.create(**_at(7, "south"), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="bob", offer_round=2, race_size=1, deadline=T0 + 30 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=7))  # fmt: skip
    expected, row = _rows(lead, [offer, move, to_tom, expired, to_bob], [offer, expired, move, to_tom, to_bob])
    assert [row.get(k) for k in (*HOLDER, "offered_to")] == [expected[k] for k in (*HOLDER, "offered_to")]


def test_a_move_between_two_other_offices_read_after_the_lead_came_back_changes_nothing() -> None:
    """acme -> south (v3), south -> west (v5), west -> acme (v7, max holding it), acme offers it to tom (v8). Acme's
    partition is read first up to tom's offer (the v3 move dead-lettered), then south's and west's. The v5 move finds
    the row in acme, neither its source nor its target, with acme's newer change (v8): it took the row to west, wes
    holding it, and the v7 move back, finding the row in its source, set max over tom's offer. The row's office made
    the newer change (`overtaken`): the v5 move changes nothing, the v7 move finds the row in its target changed since
    and leaves tom's offer (found by session 30's exhaustive interleavings; a rule only for the office the move leaves,
    A -> B -> A, missed it)."""
    lead = uuid.uuid4()

    def hop(source: str, target: str, agent: str, version: int) -> LeadTransferred:
        at = T0 + version * MINUTE
        return LeadTransferred.create(account_id=source, occurred_at=at, payload=LeadTransferredPayload(
            lead_id=lead, transfer_id=uuid.uuid4(), from_account_id=source, from_account_name=source.title(),
            previous_owner_agent_id="x", to_account_id=target, to_account_name=target.title(), agent_id=agent,
            by_user_id="sue", contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip

    offer, to_tom = _offer(lead), _to_tom(lead, 8, "acme")
    there, on, back = hop("acme", "south", "sol", 3), hop("south", "west", "wes", 5), hop("west", "acme", "max", 7)
    expected, row = _rows(lead, [offer, there, on, back, to_tom], [offer, to_tom, on, back, there])
    fields = (*HOLDER, "offered_to")
    assert [expected[k] for k in fields] == ["acme", "offered", None, "office_transfer", ["tom"]]
    assert [row.get(k) for k in fields] == [expected[k] for k in fields], "a move read late took the lead from acme"
    assert (row["moved_from_account_id"], row["moved_ms"]) == ("west", expected["moved_ms"])


# --- 14. helper 125's review of b09a0b0: what a move rewrites, and a state version an older crm-api wrote -----------


OFFERS = (*HOLDER, "offered_to")


def _offered(row: Mapping[str, Any]) -> list[Any]:
    return [row.get(k) for k in OFFERS]


def _acme_after_the_return(lead: uuid.UUID) -> tuple[OfferExpired, LeadOffered]:
    """Back in acme: tom's offer (v7, `_to_tom`) expires (v8) and bob is offered the next round (v9)."""
    expired = OfferExpired.create(**_at(8), payload=OfferClosedPayload(
        lead_id=lead, agent_id="tom", offer_round=1, router_version=8))  # fmt: skip
    to_bob = LeadOffered.create(**_at(9), payload=LeadOfferedPayload(
        lead_id=lead, agent_id="bob", offer_round=2, race_size=1, deadline=T0 + 40 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=9))  # fmt: skip
    return expired, to_bob


def _return_with_a_late_change(lead: uuid.UUID, late: str) -> tuple[list[RoutingEvent], list[RoutingEvent], LeadEvent]:
    """The lead's events in order, those of acme's partition read before the move back (v6) is, and the late change
    (dead-lettered, replayed) of 14's races: `expiry` (tom's offer, v8) or `release` (max's, v8); the first move (v4,
    dead-lettered too) is read last."""
    there, back = _move(lead, T0 + 4 * MINUTE, 4), _back(lead, T0 + 6 * MINUTE, 6)
    expired, to_bob = _acme_after_the_return(lead)
    if late == "expiry":
        offer, to_tom = _offer(lead), _to_tom(lead, 7, "acme")
        return [offer, there, back, to_tom, expired, to_bob], [offer, to_tom, to_bob], expired
    assigned = LeadAssigned.create(**_at(1), payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=1))  # fmt: skip
    released = LeadReleased.create(**_at(8), payload=LeadReleasedPayload(
        lead_id=lead, agent_id="max", broker_agent_id="bea", explanation="given back", reason="returned",
        router_version=8))  # fmt: skip
    return [assigned, there, back, released, to_bob], [assigned, to_bob], released


def _late_between_the_moves_read_and_its_update(lead: uuid.UUID, late: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row in order, and after the race: acme's partition read first, the late change applied by acme's consumer
    between the move back's read and its update (south's consumer), the first move last. One at a time, the late
    change before or after the move back, the row is as in order."""
    in_order, read_first, late_change = _return_with_a_late_change(lead, late)
    there, back = in_order[1], in_order[2]
    expected, late_first, move_first = _rows(
        lead, in_order, [*read_first, late_change, back, there], [*read_first, back, late_change, there]
    )
    assert _offered(late_first) == _offered(move_first) == _offered(expected), "one at a time, either order is right"
    views = Views()
    asyncio.run(_run(views, read_first))
    views.at, views.meanwhile = "row", lambda: _run(views, [late_change])  # acme's consumer, after the move's read
    asyncio.run(_run(views, [back]))
    assert views.ran(), "the interleaving did not happen"
    asyncio.run(_run(views, [there]))
    return expected, views.rows[str(lead)]


def test_an_offer_that_ends_late_between_a_moves_read_and_its_update_stays_ended() -> None:
    """Acme offers the lead to ana (v1); it moves to south (v4, acme's partition) and back to acme, max holding it
    (v6, south's partition); acme offers it to tom (v7), tom's offer expires (v8), bob is offered (v9). In order: in
    acme, offered to bob alone.

    crm-api dead-letters the v4 move and tom's expiry; acme's partition is read up to bob's offer (ana, tom and bob
    open, state v9). South's consumer reads the row for the v6 move back: in its target, changed since, so it keeps the
    holder and drops the offers opened before it (`_offers_since`: ana's), writing [tom, bob]. Between that read and its
    update the expiry is replayed on acme's consumer: older than v9 (`late_changes`), it takes tom's offer off, no
    version changes. The update held only on the versions, office and `moved_ms`, and wrote tom's expired offer back
    (helper 125). It holds on the offers it rewrites as stored too: it is decided again on the row as it is."""
    expected, row = _late_between_the_moves_read_and_its_update(uuid.uuid4(), "expiry")
    assert _offered(expected) == ["acme", "offered", None, "office_transfer", ["bob"]]
    assert _offered(row) == _offered(expected), "the move back wrote tom's expired offer over the late expiry"
    assert [o["agent_id"] for o in row["open_offers"]] == ["bob"]


def test_a_reason_set_late_between_a_moves_read_and_its_update_stays() -> None:
    """Acme assigns the lead to dan (v1); it moves to south (v4) and back to acme, max holding it (v6); max gives it
    back (v8, `returned`) and acme offers it to bob (v9). In order: offered to bob, the reason `returned` (an offer
    leaves it).

    crm-api dead-letters the v4 move and the release; acme's partition is read up to bob's offer (the reason dan's,
    of v1). The v6 move back reads the row: in its target, changed since, the reason set before the move (v1), so it
    sets its own (`office_transfer`, v6) and no offers (bob's is after it). Between its read and its update the release
    is replayed on acme's consumer: older than v9, it still sets its reason with its version (`late_changes`, v8 over
    v1), no version of the row's changes. The move's update then set its reason over it, which one at a time, in
    either order, it does not (helper 125's review, found beside the offers): it holds on the late-set fields'
    versions when it sets them."""
    expected, row = _late_between_the_moves_read_and_its_update(uuid.uuid4(), "release")
    assert _offered(expected) == ["acme", "offered", None, "returned", ["bob"]]
    assert _offered(row) == _offered(expected), "the move back set its reason over the late release's"


def _versioned_before_session_30(event: LeadEvent, row: RowState) -> dict[str, Any]:
    """`projection.versioned` as a crm-api of before session 30 has it: the row's versions, no office."""
    return {k: v for k, v in _VERSIONED(event, row).items() if k in ("router_version", STATE_VERSION)}


_VERSIONED = projection.versioned


def test_a_late_move_applies_on_a_row_whose_state_version_an_older_crm_api_wrote_without_its_office(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acme offers the lead to ana (v1, projected by a crm-api of session 30: state v1, office acme); it moves to south,
    sol holding it (v4, acme's partition, lagging); south's broker offers it to tom (v5). In order: in south, offered
    to tom.

    During a rolling update (or after a rollback) south's partition is on a pod of the version before: it projects
    tom's offer on the row still in acme (an early change of the office further on) and writes `state_version` 5
    without the office, which stays acme's. The lagging move, on a new pod, read acme as the office of v5: the lead's
    return (`overtaken`), so it changed nothing and the lead stayed listed in acme (helper 125). The office is known
    only while written with the row's state version (`STATE_OFFICE_VERSION`): here it is not, so the move decides as
    before session 30. Pods all of one version get it right either way."""
    lead = uuid.uuid4()
    offer, move, to_tom = _offer(lead), _move(lead, T0 + 4 * MINUTE, 4), _to_tom(lead, 5, "south")
    expected, one_version = _rows(lead, [offer, move, to_tom], [offer, to_tom, move])
    assert _offered(expected) == ["south", "offered", None, "office_transfer", ["tom"]]
    assert _offered(one_version) == _offered(expected)

    views = Views()
    asyncio.run(_run(views, [offer]))  # a pod of this version
    with monkeypatch.context() as old_pod:
        old_pod.setattr(projection, "versioned", _versioned_before_session_30)
        asyncio.run(_run(views, [to_tom]))  # south's partition on a pod of the version before
    stored = views.rows[str(lead)]
    assert (stored["account_id"], stored[STATE_VERSION], stored[STATE_OFFICE]) == ("acme", 5, "acme")
    asyncio.run(_run(views, [move]))  # acme's lagging move, on a pod of this version
    row = views.rows[str(lead)]
    assert _offered(row) == _offered(expected), "the move was taken as overtaken by an office of an older state"


def test_a_move_landing_between_a_late_expirys_read_and_its_update_is_not_undone() -> None:
    """The events of `test_an_offer_that_ends_late_between_a_moves_read_and_its_update_stays_ended`: acme offers the
    lead to ana (v1); it moves to south (v4) and back to acme, max holding it (v6); acme offers it to tom (v7), tom's
    offer expires (v8), bob is offered (v9). In order: in acme, offered to bob alone.

    crm-api dead-letters the v4 move and tom's expiry; acme's partition is read up to bob's offer (ana, tom and bob
    open, state v9). Acme's consumer replays the expiry: it reads the row (older than v9: `late_changes`, keeping
    [ana, bob]); before its update, south's consumer projects the move back (v6), which ends ana's offer from before
    the lead left (`_offers_since`) and lands ([tom, bob]). The expiry's update then writes [ana, bob] over it: ana's
    offer, ended by the move, is open again (one at a time, in either order, it is not). The v4 move comes last.
    Fixed (session 31): the expiry's update holds on the row's last move as read, and is decided again after it."""
    lead = uuid.uuid4()
    in_order, read_first, late_change = _return_with_a_late_change(lead, "expiry")
    there, back = in_order[1], in_order[2]
    (expected,) = _rows(lead, in_order)
    assert _offered(expected) == ["acme", "offered", None, "office_transfer", ["bob"]]
    views = Views()
    asyncio.run(_run(views, read_first))
    views.at, views.meanwhile = "state", lambda: _run(views, [back])  # south's consumer, after the expiry's read
    asyncio.run(_run(views, [late_change]))
    assert views.ran(), "the interleaving did not happen"
    asyncio.run(_run(views, [there]))
    row = views.rows[str(lead)]
    assert row["moved_from_account_id"] == "south", "the move back landed"
    assert [o["agent_id"] for o in row["open_offers"]] == ["bob"], "the late expiry reopened ana's offer the move ended"
    assert _offered(row) == _offered(expected)


def test_a_move_landing_between_an_in_order_offers_read_and_its_update_is_not_undone() -> None:
    """The same window with no late change: acme offers the lead to ana (v1); it moves to south (v4) and back to acme
    (v6); acme offers it to tom (v7), then to bob (v9, both open). In order: offered to tom and bob. Acme's partition is
    read up to tom's offer (the moves' partitions lagging); acme's consumer reads the row for bob's offer ([ana, tom]),
    the move back lands before its update ([tom]: ana's offer ended), and bob's offer wrote [ana, tom, bob] before
    session 31 (now decided again on the row the move left)."""
    lead = uuid.uuid4()
    in_order, _, _ = _return_with_a_late_change(lead, "expiry")
    offer, there, back, to_tom, _expired, to_bob = in_order
    (expected,) = _rows(lead, [offer, there, back, to_tom, to_bob])
    assert [o["agent_id"] for o in expected["open_offers"]] == ["tom", "bob"]
    views = Views()
    asyncio.run(_run(views, [offer, to_tom]))
    views.at, views.meanwhile = "state", lambda: _run(views, [back])  # south's consumer, after bob's offer's read
    asyncio.run(_run(views, [to_bob]))
    assert views.ran(), "the interleaving did not happen"
    asyncio.run(_run(views, [there]))
    row = views.rows[str(lead)]
    assert row["moved_from_account_id"] == "south", "the move back landed"
    assert [o["agent_id"] for o in row["open_offers"]] == ["tom", "bob"], "ana reopened"
