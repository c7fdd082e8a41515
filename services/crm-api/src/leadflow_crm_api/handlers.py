"""crm-api projection: fold leads.events.v1 into the read views, idempotently.

Each event is loaded, decided, committed: what the projection needs of the lead's row is read through its port
(`ViewWriter`), `domain.projection` decides the write as a typed value, the port stores it. A lead's first offer
or hold stores the row with the event's changes in it (unless the lead has a row): nothing is read back.

The timeline entry (_id = event id) is written last and marks the event as applied, so a
redelivered event is skipped; one that crashed half-way is applied again, which the row
changes tolerate (they are sets keyed by the event's own fields). An event the timeline does not
record is recognised otherwise (decision 0093): a share by its id on the row, written with its
changes; the echo of an agent's action or message changes only the last activity, when newer.
A move projected after what the lead's new office did since leaves the holder to that; a move older than the
row's last one, and an event of an office the lead has left (or older than what an office further on did), change
nothing but the timeline. An event that finds no row of its lead and makes none (its first event dead-lettered) is
parked, nothing else of it written, and applied in order when the row is created (decision 0093, amended).

A rebuild (decision 0045) applies the same function to every event of the log with
`side_effects=False`: only the views are written, never the office transfers or labels.

A ContactErased (decision 0050) scrubs its leads' rows and what people wrote on their timelines;
a rebuild replays it after the events that carried the contact, so it erases the rebuilt rows too. Of a lead without
a row it leaves a marker (`erasure.erased_marker`, read as "no row, erased"): the lead's first event replayed after
it, or a copy the router published again, makes the row over it without the person, and a parked event is held
without the person (`erasure.without_person`), so nothing brings the person back (session 28). Its parked events
stay (those parked before session 28 scrubbed in place), so the row made later applies them (helper 113's review).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar

from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.offices import Labels, OfficeTransfers
from leadflow_crm_api.domain.erasure import ERASED_ROW, erased_marker, erased_row, erasure_entry, without_person
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import label_doc, move_applies
from leadflow_crm_api.domain.projection import (
    NewRow,
    RowChanges,
    RowState,
    RowUpsert,
    assigned_changes,
    assigned_row,
    first_row,
    late_changes,
    made_over_marker,
    moved_changes,
    row_changes,
)
from leadflow_crm_api.domain.views import records_in_timeline, timeline_entry
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.routing import (
    ContactErased,
    LeadAssigned,
    LeadEvent,
    LeadTransferred,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
)


class ViewWriter(Protocol):
    """What the projection reads and writes (`domain.projection`): `adapters.leads.LeadViews`, or a rebuild's
    buffer (`adapters.buffered_views.BufferedViews`)."""

    db: AsyncDatabase[dict[str, Any]]

    async def state(self, lead_id: str) -> RowState: ...
    async def row(self, lead_id: str) -> LeadRow | None: ...  # None: no row (or only an erasure's marker)
    async def insert_new(self, row: NewRow) -> bool: ...
    # False: the update may not have held what `changes.expect` names (read the row again); True: applied as told.
    async def update(self, changes: RowChanges) -> bool: ...
    async def recorded(self, event_id: str) -> bool: ...
    async def record(self, entry: dict[str, Any]) -> None: ...
    async def erase_timeline(self, lead_id: str) -> None: ...
    async def park(self, event: LeadEvent) -> None: ...
    async def parked(self, lead_id: str) -> list[LeadEvent]: ...
    async def unpark(self, event_ids: list[str]) -> None: ...
    async def scrub_parked(self, events: list[LeadEvent]) -> None: ...  # each parked event replaced, if still held


Outcome = Literal["applied", "created", "parked"]
_OTHER_EVENTS = (TeamMemberTransferred, RealtorInvited, ContactErased)  # about no lead, or (erasure) several
# A move decided again when its row changed under it (`_moved`), and any other change when a move landed under it
# (`_changed`): each time another office's consumer wrote in between.
MOVE_ATTEMPTS = 5


class MoveContendedError(RuntimeError):
    """A lead's row kept changing between an event's read and its update (another office's consumer writing): the
    consumers' edge tries the event again."""


async def project(event: RoutingEvent, *, views: ViewWriter, side_effects: bool = True) -> None:
    if isinstance(event, _OTHER_EVENTS):
        await _other(event, views, side_effects=side_effects)
        return
    first = first_row(event)  # a first offer's or hold's row, the event's changes in it
    lead_id = str(event.payload.lead_id)
    state: RowState | None = None
    if first is not None:
        # Read before the insert (one command for the batch's leads), so a row that owes parked events says so.
        parked = in_version_order(await views.parked(lead_id))
        stored = _stored(first, event, parked)
        made = await views.insert_new(stored)
        if not made:
            # A row-making event whose row is there: the state first (read anyway when the event is not recorded),
            # as the row may owe parked events though the event's entry is written.
            state = await views.state(lead_id)
            if made := state.marker:  # erased before it had a row: made over the marker, without the person
                await views.update(made_over_marker(lead_id, stored.fields))
        if made:
            # The lead had no row, so the event has no timeline entry yet (an entry is written after its row).
            await _created(event, parked, views, side_effects=side_effects)
            return
    elif isinstance(event, LeadAssigned):  # as a row-making event whose row is there
        state = await views.state(lead_id)
    in_timeline = records_in_timeline(event)
    if in_timeline and (state is None or not state.owes_parked(event)) and await views.recorded(str(event.event_id)):
        return
    outcome = await _applied(event, views, side_effects=side_effects, state=state)
    if outcome == "parked":
        # No row (its first event dead-lettered): applied, and recorded, once it has one; held without the person,
        # which crm-api never reads of it (a copy published after the lead's erasure holds nothing of it either).
        await views.park(without_person(event))
    elif outcome == "applied" and in_timeline:
        await views.record(timeline_entry(event))


async def _applied(
    event: LeadEvent, views: ViewWriter, *, side_effects: bool, state: RowState | None = None
) -> Outcome:
    """Apply a lead event that is not a first offer or hold creating its row (`state`: its row's, if read):
    "parked" when the lead has no row and the event does not make one (decision 0093, amended: not applied),
    "created" when it made the row (an assignment) or had made it and is redelivered owing the parked events: then
    all is written, its entry too."""
    lead_id = str(event.payload.lead_id)
    if isinstance(event, LeadTransferred):
        return "applied" if await _moved(event, views, side_effects=side_effects) else "parked"
    state = state or await views.state(lead_id)
    if state.owes_parked(event):  # it created the row; a crash stopped it before it was done with the parked events
        parked = in_version_order(await views.parked(lead_id))
        await _created(event, parked, views, side_effects=side_effects, resumed=state)
        return "created"
    if state.exists:
        await _changed(event, state, views)
        return "applied"
    if not isinstance(event, LeadAssigned):
        return "parked"
    parked = in_version_order(await views.parked(lead_id))  # read before the insert, as a first offer's
    upsert = _stored(assigned_row(event, state), event, parked)
    row = {**upsert.fields, **upsert.on_insert}  # the row the upsert makes where there is none
    # Inserted as a first offer's row, not upserted: an erasure may have stored its marker since the state was read
    # (another partition's consumer), and an upsert would set the person on it (helper 113's review).
    if state.marker or not await views.insert_new(NewRow(lead_id, row)):
        if (now := await views.state(lead_id)).marker:  # erased before it had a row: made over the marker, no person
            await views.update(made_over_marker(lead_id, row))
        else:
            # A row made meanwhile (another consumer): the assignment as any change of it, held on the row as read now
            # and decided again when a move or a newer change landed since (a late change when that row, or the one
            # read again, is newer: helper 140's review). Its upsert held on nothing: the lead back in the office it
            # left, or dan over the new office's holder (helper 148). Without its version when parked events came
            # before it, as its row would have been stored (`_stored`): `_created` applies them, then it again.
            await _changed(event, now, views, unversioned=_any_before(parked, event))
    await _created(event, parked, views, side_effects=side_effects)
    return "created"


async def _changed(event: LeadEvent, state: RowState, views: ViewWriter, *, unversioned: bool = False) -> None:
    """Apply a lead event to its row (`state`), unless the row applied what came after it already (`unversioned`: an
    assignment's changes without its versions, `_applied`).

    The update holds on the row's state as read (`_held_update`): a move, or an early change of the office the
    lead moved to, that another office's consumer lands between the read and the update is not undone; the event is
    decided again on the row as it is then, as a redelivery would be (helper 134's and 137's reviews). An assignment
    that read its row unerased reads it once more after it (`_scrubbed_after`)."""
    lead_id = str(event.payload.lead_id)

    async def decide(row: RowState) -> RowChanges | None:
        return _changes(event, row, unversioned=unversioned)

    last, changes = await _held_update(lead_id, state, views, decide)
    if isinstance(event, LeadAssigned) and changes is not None and not last.superseded(event):  # it set the person
        await _scrubbed_after(lead_id, state, views)


async def _held_update(
    lead_id: str, state: RowState, views: ViewWriter, decide: Callable[[RowState], Awaitable[RowChanges | None]]
) -> tuple[RowState, RowChanges | None]:
    """The update `decide` makes of the row read in `state`, holding on that state (`RowChanges.holding`): when another
    office's consumer changed the row (a move, a change of the office the lead moved to) between the read and the
    update, it is decided again on the row as it is then, at most `MOVE_ATTEMPTS` times (then `MoveContendedError`:
    the consumers' edge tries the event again). An update the port cannot say held (another lead's sent in the same
    command missed) is asked of the row: in the same state, it held. Returns the state it was last decided on and what
    that decided (None: nothing to write)."""
    for _ in range(MOVE_ATTEMPTS):
        changes = await decide(state)
        if changes is None or await views.update(changes.holding(state)):
            return state, changes
        now = await views.state(lead_id)
        if now.held() == state.held():
            return state, changes
        state = now
    raise MoveContendedError(f"lead {lead_id}: its row kept changing between its read and its update")


def _changes(event: LeadEvent, state: RowState, *, unversioned: bool = False) -> RowChanges | None:
    """A lead event's changes of its row (`state`), None when it changes nothing there (`unversioned`: `_changed`)."""
    if state.superseded(event):
        # Of an office the lead left, older than what an office further on did, or than the row's version of what it
        # changes (its state, or only its last activity): its timeline entry only, an older offer's accept link, and
        # what no newer change set of what it sets (`late_changes`: a release's reason replayed after the next offer).
        return late_changes(event, state)
    if isinstance(event, LeadAssigned):  # the row an assignment leaves, set over the row there is
        return assigned_changes(event, state, unversioned=unversioned)
    if state.applied_already(event):  # a share the row applied before (the timeline does not record it)
        return None
    # Any other lead event: its row's changes, with the open offers and accept links it leaves.
    return row_changes(event, state)


async def _scrubbed_after(lead_id: str, read: RowState, views: ViewWriter) -> None:
    """After an assignment's write decided for the state `read`: an erasure projected in between (another partition's
    consumer: the lead moved since the erasure named it) scrubbed the row the write then `$set` the person back on,
    so a row read unerased is read again after it and scrubbed again if it was erased meanwhile (decision 0050).
    Either the erasure's scrub comes after the write or this read sees it."""
    if not read.erased and (await views.state(lead_id)).erased:
        await views.update(RowChanges.of(lead_id, dict(ERASED_ROW)))


async def _created(
    event: LeadEvent,
    parked: list[LeadEvent],
    views: ViewWriter,
    *,
    side_effects: bool,
    resumed: RowState | None = None,
) -> None:
    """`event` created its lead's row: the lead's events that came before the row (`parked`, decision 0093
    amended, in version order) are applied, each with its timeline entry, then forgotten; `event`'s entry last.

    Parked events came after the lead's first event (dead-lettered, replayed now: `event`), or before `event`, a
    later one that creates a row (an offer after a release, an assignment by hand) while the first is still a dead
    letter. The first is older than all of them; a later one is not: its row was stored without its version
    (`_stored`), and it is applied again after those older than it and before those newer (`_around`: a parked
    expiry of its own offer comes after it). Each of them, and `event` again, is applied as any event is: one older
    than the row's version changes nothing but its timeline entry (`RowState.superseded`), so a resumed `event`
    (dead-lettered again after its insert, replayed after newer events changed the row) undoes nothing.

    With parked events the row was stored marked (`PARKED_FOR`, `event`'s id): each step can be cut short by a
    crash and taken again by `event`'s redelivery (`resumed`: the row's state it read), which finds the mark
    (`RowState.owes_parked`) and comes back here without applying its own changes again: a parked event applied
    already is skipped by its timeline entry (a share by its id on the row, an echo by its time); once they are
    forgotten, `event`'s entry is written and the mark removed, last (a redelivered first offer or hold reads its
    row's state before its entry). A redelivery that finds none parked before it (the TTL took them)
    still gives the row the version it was stored without (`_finished`)."""
    lead_id = str(event.payload.lead_id)
    owed: int | None = None
    again = _any_before(parked, event)  # stored without its version (`_stored`): applied again after them
    before, after = _around(parked, event)
    for earlier in before:
        await project(earlier, views=views, side_effects=side_effects)
    if again:  # the row has them now: its changes again, as a later event's (its entry below)
        await _changed(event, await views.state(lead_id), views)
    for later in after:
        await project(later, views=views, side_effects=side_effects)
    if parked:
        await views.unpark([str(p.event_id) for p in parked])
    if not again and resumed is not None:
        owed = await _finished(event, resumed, views)
    await views.record(timeline_entry(event))
    if resumed is not None and owed is not None:  # the owed version, set over the row as read (`_unmarked`)
        await _unmarked(event, resumed, views)
    elif parked or resumed is not None:  # resumed with none left: a crash after they were forgotten, or the TTL
        # Only the mark goes, which only a row-making event's insert writes (no change of the row does): nothing
        # another office's consumer wrote meanwhile is undone, so it holds on nothing.
        await views.update(RowChanges.unmarked(lead_id))


async def _finished(event: LeadEvent, state: RowState, views: ViewWriter) -> int | None:
    """A resumed row-making event with no parked event before it left (the TTL took them): the row, stored without
    its version, must not stay so (an older dead letter would apply). With no version since, the row
    holds `event`'s changes: its version is owed, set with the mark's removal (returned); with an older one (parked
    events applied before the crash), `event`'s changes again, which set it; with its own or newer, nothing."""
    owed = state.version_owed()
    if owed is None or state.router_version is None:
        return owed
    await _changed(event, state, views)
    return None


async def _unmarked(event: LeadEvent, resumed: RowState, views: ViewWriter) -> None:
    """The mark's removal of a resumed row-making event's row that holds only its changes (`_finished`: its version
    owed), with that version: held on the row as `resumed` read it, and decided again (`_finished`) on the row as it
    is when that changed. Another office's consumer may land a move or an early change (its state version, its
    office) between the redelivery's read and this update, which set the owed, older, version and its office over
    them: a dead letter of that office replayed then was no longer older than the row (helper 148)."""
    lead_id = str(event.payload.lead_id)

    async def decide(row: RowState) -> RowChanges:
        return RowChanges.unmarked(lead_id, await _finished(event, row, views), event.account_id)

    await _held_update(lead_id, resumed, views, decide)


def _around(parked: list[LeadEvent], event: LeadEvent) -> tuple[list[LeadEvent], list[LeadEvent]]:
    """The parked events applied before `event` (which made the row) and after it: by version when it and all of
    them carry one; else all before it, in the order they came (as before helper 100)."""
    if event.payload.router_version is None or any(p.payload.router_version is None for p in parked):
        return parked, []
    return [p for p in parked if _came_before(p, event)], [p for p in parked if not _came_before(p, event)]


def in_version_order(events: list[LeadEvent]) -> list[LeadEvent]:
    """Parked events in the order the router decided them: by `router_version` when each carries one (one
    change's events in the order they came), else in the order they came (decision 0093 amended)."""
    versions = [e.payload.router_version for e in events]
    if any(v is None for v in versions):
        return events
    return sorted(events, key=lambda e: e.payload.router_version or 0)


_Row = TypeVar("_Row", NewRow, RowUpsert)


def _stored(row: _Row, event: LeadEvent, parked: list[LeadEvent]) -> _Row:
    """The row a row-making event stores: marked while it owes the lead's parked events (`PARKED_FOR`), and without
    its router version when some came before it (they are applied first, then it again: `_created`), so the row's
    version is only ever set by what is applied, and never lowered."""
    if not parked:
        return row
    return row.owing(str(event.event_id), unversioned=_any_before(parked, event))


def _any_before(parked: list[LeadEvent], event: LeadEvent) -> bool:
    """Whether any parked event came before `event`, which made the row (so `event` is applied again after them)."""
    return any(_came_before(p, event) for p in parked)


def _came_before(parked: LeadEvent, event: LeadEvent) -> bool:
    """Whether a parked event came before `event`, which made the row: by the router's version when both carry
    one, else by time (an event of the same millisecond counts as before)."""
    mine, theirs = event.payload.router_version, parked.payload.router_version
    if mine is not None and theirs is not None:
        return theirs <= mine
    return epoch_ms(parked.occurred_at) <= epoch_ms(event.occurred_at)


async def _other(
    event: TeamMemberTransferred | RealtorInvited | ContactErased, views: ViewWriter, *, side_effects: bool
) -> None:
    """The events that are not one lead's: a team member's transfer, an invitation, an erasure."""
    if isinstance(event, TeamMemberTransferred):
        # crm-api moved the member's settings itself; the router's event says the target was told.
        if side_effects:
            await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
    elif isinstance(event, ContactErased):
        await _erase(event, views)
    # RealtorInvited: the notifier's business (the invitation email); crm-api wrote the invitation itself


async def _erase(event: ContactErased, views: ViewWriter) -> None:
    """Decision 0050: each lead's row without the person, its timeline without what people wrote, and
    an entry saying who asked. Applying it again changes nothing. Every lead it names is scrubbed, in whatever office
    its row is now: the router names only leads of the erasing office as they were then, and a lead that moved on
    since was scrubbed before its move when read in order (decision 0050)."""
    for lead in event.payload.lead_ids:
        lead_id = str(lead)
        await views.erase_timeline(lead_id)
        # No row (yet): a marker, so the event that makes its row later (a dead letter replayed, a copy the router
        # published again) makes it without the person (session 28). Stored once; no reader lists it. Not stored when
        # a row was made since the state was read (a first event on another partition's consumer): that row is
        # erased (helper 113's review: it kept the person).
        state = await views.state(lead_id)
        if not state.exists and not state.marker and not await views.insert_new(NewRow(lead_id, erased_marker())):
            state = await views.state(lead_id)  # a row made since (or another erasure's marker)
        if state.exists:
            await views.update(RowChanges.of(lead_id, erased_row(event)))
        await views.record(erasure_entry(event, lead_id))
        # Events held for a row that never came, or that a row created before a crash still owes, stay: the row made
        # later (or finished by its maker's redelivery) applies them in order. They are held without the person;
        # those parked before that (session 28) are scrubbed in place (helper 113's review: dropped, they were lost).
        held = await views.parked(lead_id)
        if scrubbed := [s for e in held if (s := without_person(e)) != e]:
            await views.scrub_parked(scrubbed)


async def _moved(event: LeadTransferred, views: ViewWriter, *, side_effects: bool) -> bool:
    """T2: the row moves to the target office, its labels are created there, the transfer is done. False when the
    lead has no row (the move is parked, and done again once it has one)."""
    lead_id, target = str(event.payload.lead_id), event.payload.to_account_id
    row = first = await views.row(lead_id)
    if row is not None and side_effects:
        labels = [label_doc(target, name, at=event.occurred_at) for name in row.labels]
        await Labels(views.db).ensure(labels)
    # An older move read late changes nothing but its timeline entry. The update holds only over the row as read:
    # when another office's event (another partition's consumer) or move changed it meanwhile, the move is decided
    # again on the row as it is then; once it landed, it no longer applies (its `moved_ms`).
    # Whether it still applies is asked of the row read after the last attempt too (one landing last is done).
    attempts = 0
    while row is not None and move_applies(row, event):
        if attempts == MOVE_ATTEMPTS:
            raise MoveContendedError(f"lead {lead_id}: its row kept changing under the move")  # retried by the edge
        attempts += 1
        await views.update(moved_changes(row, event))
        row = await views.row(lead_id)
    if side_effects:
        await OfficeTransfers(views.db).mark_done(str(event.payload.transfer_id))
    return first is not None
