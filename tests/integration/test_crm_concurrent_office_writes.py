"""crm-api's projection when two offices' consumers write one lead's row (a moved lead's events are keyed by office),
on nx-27017 (helper 137's review of d9c2299, decision 0093 amended in session 31): a change holds on the row's state
as read, so neither a move nor an early change of the new office landing between its read and its update is undone
(an assignment included: it was an upsert holding on nothing); and in ordinary in-order traffic no update says it may
have missed (an activity op the row as read says will rightly match nothing is not sent), so no event reads its row
again."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import views_database
from fakes_crm import Interleaving
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.leads import CRM_LEADS, LeadViews
from leadflow_crm_api.adapters.view_commands import ViewCommands
from leadflow_crm_api.domain.projection import STATE_OFFICE, STATE_VERSION, RowChanges, RowState
from leadflow_crm_api.domain.views import OWED_VERSION, PARKED_FOR
from leadflow_crm_api.handlers import project
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
CONTACT = Contact(first_name="Mo", last_name="Vers", email="mo@example.com")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    async with views_database(mongo_url) as database:
        yield database


class Counting(LeadViews):
    """`LeadViews` counting its updates, those that said False (by event type), and its state reads."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], tally: Counter[str], **kwargs: Any) -> None:
        super().__init__(db, **kwargs)
        self.tally, self.kind = tally, ""

    async def update(self, changes: RowChanges) -> bool:
        held = await super().update(changes)
        self.tally["updates"] += 1
        if not held:
            self.tally["false"] += 1
            self.tally[f"false {self.kind}"] += 1
        return held

    async def state(self, lead_id: str) -> RowState:
        self.tally["state reads"] += 1
        return await super().state(lead_id)


def _offer(
    lead: uuid.UUID, agent: str, version: int, at: datetime, round_: int = 1, race: int = 1, office: str = "acme"
) -> LeadOffered:
    return LeadOffered.create(account_id=office, occurred_at=at, payload=LeadOfferedPayload(
        lead_id=lead, agent_id=agent, offer_round=round_, race_size=race, deadline=at + 15 * MINUTE, explanation="R6",
        contact=CONTACT, source=SOURCE, router_version=version))  # fmt: skip


def _claim(
    lead: uuid.UUID, agent: str, version: int, at: datetime, round_: int = 1, office: str = "acme"
) -> LeadClaimed:
    payload = LeadClaimedPayload(
        lead_id=lead, agent_id=agent, action=ActivityAction.CALL, offer_round=round_, router_version=version
    )
    return LeadClaimed.create(account_id=office, occurred_at=at, payload=payload)


def _closed(kind: type[OfferExpired] | type[OfferWithdrawn], lead: uuid.UUID, agent: str, version: int, at: datetime,
            reason: WithdrawalReason | None = None) -> LeadEvent:  # fmt: skip
    return kind.create(account_id="acme", occurred_at=at, payload=OfferClosedPayload(
        lead_id=lead, agent_id=agent, offer_round=1, reason=reason, router_version=version))  # fmt: skip


# Typical lives, as the router decides them: the events of one decision share its time and its version.
def claimed(lead: uuid.UUID) -> list[LeadEvent]:
    """Offered to ana (v1), ana claims it (v2)."""
    return [_offer(lead, "ana", 1, T0), _claim(lead, "ana", 2, T0 + MINUTE)]


def raced(lead: uuid.UUID) -> list[LeadEvent]:
    """Offered to ana and ben at once (v1); ana claims it, ben's offer withdrawn (v2)."""
    return [_offer(lead, "ana", 1, T0, race=2), _offer(lead, "ben", 1, T0, race=2), _claim(lead, "ana", 2, T0 + MINUTE),
            _closed(OfferWithdrawn, lead, "ben", 2, T0 + MINUTE)]  # fmt: skip


def expired_then_next_round(lead: uuid.UUID) -> list[LeadEvent]:
    """Offered to ana (v1); the sweeper expires it and offers ben the next round (v2); ben claims it (v3)."""
    at = T0 + 15 * MINUTE
    return [_offer(lead, "ana", 1, T0), _closed(OfferExpired, lead, "ana", 2, at), _offer(lead, "ben", 2, at, 2),
            _claim(lead, "ben", 3, at + MINUTE, 2)]  # fmt: skip


def shared(lead: uuid.UUID) -> list[LeadEvent]:
    """Offered to ana (v1); the broker shares it with rita: ana's offer withdrawn, the share (v2)."""
    at = T0 + 2 * MINUTE
    share = LeadShared.create(account_id="acme", occurred_at=at, payload=LeadSharedPayload(
        lead_id=lead, share_id=uuid.uuid4(), agent_id="rita", realtor_name="Rita", assigned_by="Acme",
        by_user_id="bea", router_version=2))  # fmt: skip
    return [
        _offer(lead, "ana", 1, T0),
        _closed(OfferWithdrawn, lead, "ana", 2, at, WithdrawalReason.LEAD_SHARING),
        share,
    ]


LIVES: dict[str, Callable[[uuid.UUID], list[LeadEvent]]] = {
    "claimed": claimed, "raced": raced, "expired_then_next_round": expired_then_next_round, "shared": shared,
}  # fmt: skip


async def _life(views: Counting, events: list[LeadEvent]) -> None:
    for event in events:
        views.kind = event.type
        await project(event, views=views, side_effects=False)


@pytest.mark.parametrize("life", sorted(LIVES))
async def test_an_in_order_life_reads_no_row_again(db: AsyncDatabase[dict[str, Any]], life: str) -> None:
    """One lead's events in order, alone (its own commands): no move anywhere, so no update should say False and
    cost a read (decision 0093, session 31: "no read more where every op matched (the usual case)"). The second
    event of a decision (same millisecond) finds the row's last activity of that millisecond: its activity op,
    `{last_activity_ms: {$lt: ms}}`, matches nothing; sent in the fields' command, the update said False (helper 137).
    Such an activity op is not sent now (`RowChanges.holding`)."""
    tally: Counter[str] = Counter()
    await _life(Counting(db, tally), LIVES[life](uuid.uuid4()))
    assert tally["false"] == 0, f"{life}: {dict(tally)}"


async def test_one_leads_same_millisecond_event_makes_no_lead_of_its_command_read_again(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """A consumer's batch: 20 leads claimed (no two events of a millisecond) and one raced, projected concurrently
    with shared commands as `entrypoints.kafka.Projection` does. A `bulk_write` says only how many of the command's ops
    matched: the raced lead's withdrawal (its activity op matching nothing) made every update sent with it say False,
    and each of those leads read its row again (before such ops were left unsent)."""
    commands, tally = ViewCommands(db), Counter[str]()
    lives = [claimed(uuid.uuid4()) for _ in range(20)] + [raced(uuid.uuid4())]
    lone: Counter[str] = Counter()
    await asyncio.gather(*(_life(Counting(db, lone), life) for life in lives[:20]))  # the claimed alone: none
    assert lone["false"] == 0, dict(lone)
    lives = [claimed(uuid.uuid4()) for _ in range(20)] + [raced(uuid.uuid4())]
    # In lockstep: each lead's k-th event goes in one command, the raced lead's withdrawal with the claims.
    steps = [[life[i] for life in lives[:20]] + [lives[20][i + 2]] for i in range(2)]
    await _life(Counting(db, tally, commands=commands), lives[20][:2])  # the raced lead's offers
    for step in steps:
        await asyncio.gather(*(_life(Counting(db, tally, commands=commands), [event]) for event in step))
    assert tally["false LeadClaimed"] <= 1, f"claims of other leads read again: {dict(tally)}"


# --- the races of two offices' consumers on one row, on nx-27017 ------------------------------------------------------


class _Meanwhile(Interleaving, LeadViews):
    """`LeadViews` running another consumer's projection once, after the first read of the lead's state."""


def _moved(lead: uuid.UUID) -> LeadTransferred:
    """Nora moves the lead from acme to south, sol holding it there (v4; keyed by acme)."""
    return LeadTransferred.create(account_id="acme", occurred_at=T0 + 4 * MINUTE, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
        previous_owner_agent_id="ana", to_account_id="south", to_account_name="South", agent_id="sol",
        by_user_id="nora", contact=CONTACT, source=SOURCE, router_version=4))  # fmt: skip


def _south(lead: uuid.UUID) -> list[LeadEvent]:
    """South offers the lead to tom (v5), tom claims it (v6)."""
    return [_offer(lead, "tom", 5, T0 + 5 * MINUTE, office="south"), _claim(lead, "tom", 6, T0 + 6 * MINUTE,
            office="south")]  # fmt: skip


async def _holder(views: LeadViews, lead: uuid.UUID) -> tuple[str, str | None, str]:
    row = await views.row(str(lead))
    assert row is not None
    return (row.account_id, row.owner_agent_id, row.status)


async def test_south_claiming_early_between_acmes_claims_read_and_its_update_is_not_undone(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Acme offers ana (v1), ana claims (v2), the lead moves to south (v4), south offers tom (v5), tom claims (v6).
    In order: in south, held by tom. Acme's partition lags (a dead letter replayed, a rebalance). Acme's claim reads
    the row; south's consumer projects tom's offer and claim (early, the row still in acme: tom the early holder,
    state v6); acme's claim's update held only on `moved_ms` (none landed), matched, and wrote ana, state v2, over
    tom; the lagging move kept the early holder's fields, now ana's: ana held a lead listed in south (d9c2299's
    consequence, by an early change of the new office instead of a move). It holds on the state version too now."""
    lead, in_order = uuid.uuid4(), uuid.uuid4()
    south = _south(lead)
    views = _Meanwhile(db)
    plain = LeadViews(db)
    for event in [_offer(in_order, "ana", 1, T0), _claim(in_order, "ana", 2, T0 + MINUTE), _moved(in_order),
                  *_south(in_order)]:  # fmt: skip
        await project(event, views=plain, side_effects=False)
    expected = await _holder(plain, in_order)
    assert expected == ("south", "tom", "assigned")
    one_at_a_time = uuid.uuid4()  # acme's claim read after tom's: older than the row's state, it changes no holder
    for event in [_offer(one_at_a_time, "ana", 1, T0), *_south(one_at_a_time),
                  _claim(one_at_a_time, "ana", 2, T0 + MINUTE), _moved(one_at_a_time)]:  # fmt: skip
        await project(event, views=plain, side_effects=False)
    assert await _holder(plain, one_at_a_time) == expected

    await project(_offer(lead, "ana", 1, T0), views=views, side_effects=False)

    async def south_consumer() -> None:
        for event in south:
            await project(event, views=LeadViews(db), side_effects=False)

    views.at, views.meanwhile = "state", south_consumer
    await project(_claim(lead, "ana", 2, T0 + MINUTE), views=views, side_effects=False)
    assert views.ran(), "the interleaving did not happen"
    await project(_moved(lead), views=LeadViews(db), side_effects=False)
    assert await _holder(views, lead) == expected, "acme's claim, decided before tom's, made ana the holder in south"


async def test_a_move_landing_between_an_assignments_read_and_its_upsert_is_not_undone(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """`test_crm_store.py::test_a_move_landing_between_a_claims_read_and_its_update_is_not_undone` with acme's
    assignment by hand (dan, v2) in place of the claim: the move (v4) lands between its read and its upsert (acme's
    partition replayed by another consumer, a rebalance). The upsert held on nothing and `$set` all of an assignment's
    row: the lead was back in acme, held by dan, though the router has it in south with sol (and `moved_ms` said it
    moved). An assignment of a lead with a row is now an update holding on the row's state, as any change's."""
    lead = uuid.uuid4()
    assigned = LeadAssigned.create(account_id="acme", occurred_at=T0 + 2 * MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=2))  # fmt: skip
    views = _Meanwhile(db)
    await project(_offer(lead, "ana", 1, T0), views=views, side_effects=False)

    async def other_consumer() -> None:
        await project(_moved(lead), views=LeadViews(db), side_effects=False)

    views.at, views.meanwhile = "state", other_consumer
    await project(assigned, views=views, side_effects=False)
    assert views.ran(), "the interleaving did not happen"
    assert await _holder(views, lead) == ("south", "sol", "assigned"), "the assignment undid the move under it"


# --- what the held changes must also cover (helper 140's review of 12e6cdc) ---------------------------------------


def _assigned_to_dan(lead: uuid.UUID) -> LeadAssigned:
    """Acme's broker assigns the lead to dan by hand (v2)."""
    return LeadAssigned.create(account_id="acme", occurred_at=T0 + 2 * MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=2))  # fmt: skip


def _moved_from_dan(lead: uuid.UUID) -> LeadTransferred:
    """The lead moves from acme to south, sol holding it there (v4; keyed by acme)."""
    return LeadTransferred.create(account_id="acme", occurred_at=T0 + 4 * MINUTE, payload=LeadTransferredPayload(
        lead_id=lead, transfer_id=uuid.uuid4(), from_account_id="acme", from_account_name="Acme",
        previous_owner_agent_id="dan", to_account_id="south", to_account_name="South", agent_id="sol",
        by_user_id="nora", contact=CONTACT, source=SOURCE, router_version=4))  # fmt: skip


async def _outcome(db: AsyncDatabase[dict[str, Any]], lead: uuid.UUID) -> dict[str, Any]:
    row = await LeadViews(db).row(str(lead))
    assert row is not None
    return {"office": row.account_id, "holder": row.owner_agent_id, "status": row.status,
            "offered": sorted(o.agent_id for o in row.open_offers)}  # fmt: skip


async def _in_turn(db: AsyncDatabase[dict[str, Any]], events: list[LeadEvent]) -> None:
    for event in events:
        await project(event, views=LeadViews(db), side_effects=False)


async def test_an_assignment_whose_row_another_consumer_made_after_its_read_does_not_undo_that_office(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """Acme offers ana (v1: dead-lettered, so the lead has no row), assigns dan by hand (v2), moves the lead to south
    (v4, sol); south offers tom (v5, on south's partition). South's consumer is ahead: tom's offer makes the row
    (a first offer) between the assignment's read (no row) and its insert. The insert meets that row, and
    `_applied` then upserted the assignment over it, holding on nothing and not asking whether the row's state (v5)
    is newer: acme's lead again, dan holding it, tom's offer gone, state version 2. Projected one at a time in the
    same order of arrival (south's offer before the assignment), the assignment is older than the row and changes
    no holder. Now a row made meanwhile with a newer state takes the assignment as any late change (`_changed`)."""
    lead, one_at_a_time, before_move = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    south = _offer(lead, "tom", 5, T0 + 5 * MINUTE, office="south")
    await _in_turn(db, [_offer(before_move, "tom", 5, T0 + 5 * MINUTE, office="south"), _assigned_to_dan(before_move)])
    assigned_late = await _outcome(db, before_move)
    assert assigned_late == {"office": "south", "holder": None, "status": "offered", "offered": ["tom"]}
    south_first = _offer(one_at_a_time, "tom", 5, T0 + 5 * MINUTE, office="south")
    await _in_turn(db, [south_first, _assigned_to_dan(one_at_a_time), _moved_from_dan(one_at_a_time)])
    expected = await _outcome(db, one_at_a_time)
    assert expected["office"] == "south", expected
    assert "tom" in expected["offered"], expected

    views = _Meanwhile(db)

    async def south_consumer() -> None:
        await project(south, views=LeadViews(db), side_effects=False)

    views.at, views.meanwhile = "state", south_consumer
    await project(_assigned_to_dan(lead), views=views, side_effects=False)
    assert views.ran(), "the interleaving did not happen"
    assert await _outcome(db, lead) == assigned_late, "the assignment's upsert undid south's offer made under it"
    await project(_moved_from_dan(lead), views=LeadViews(db), side_effects=False)
    assert await _outcome(db, lead) == expected, "and the move then kept acme's holder"


async def test_a_change_on_a_row_whose_state_version_is_stored_as_a_double_is_not_dropped_silently(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    """A row whose `state_version` is a double (a hand fix or migration in mongosh, which writes numbers as
    doubles): `RowState` reads it as unknown (None, `projection._ms`), and the held update filtered on
    `state_version: null`, which the stored 1.0 never matches; the state read again was the same (None), so
    `_changed` took the miss for "held" and returned: ana's claim recorded on the timeline, the row never changed,
    nor any later change of the lead. The hold is now on the values as stored (`RowState.stored`)."""
    lead = uuid.uuid4()
    await _in_turn(db, [_offer(lead, "ana", 1, T0)])
    await db[CRM_LEADS].update_one({"_id": str(lead)}, {"$set": {"state_version": 1.0}})
    assert isinstance((await db[CRM_LEADS].find_one({"_id": str(lead)}) or {}).get("state_version"), float)
    claim = _claim(lead, "ana", 2, T0 + MINUTE)
    await _in_turn(db, [claim])
    assert await LeadViews(db).recorded(str(claim.event_id)), "the claim was not taken as applied"
    assert (await _outcome(db, lead))["holder"] == "ana", "the claim was recorded but never written"


# --- the two writes that still held on nothing (helper 148) -------------------------------------------------------


@pytest.mark.parametrize("landing", ["move", "south's claim"])
async def test_what_lands_between_an_assignments_second_read_and_its_write_over_a_row_made_meanwhile_stays(
    db: AsyncDatabase[dict[str, Any]], landing: str
) -> None:
    """Acme offers ana (v1: dead-lettered, so the lead has no row), assigns dan by hand (v2), moves the lead to south
    (v4, sol); south offers tom (v5) and tom claims it (v6). In order: south, tom holding it. The assignment reads "no
    row" and the parked events; the dead letter replayed (another consumer) makes the row (acme, v1: not newer than the
    assignment), so its insert fails and it reads the row again; then another consumer lands the move, or south's
    offer and claim (early: the row still in acme), before its write. That write was `views.upsert`, holding on
    nothing: all of dan's row `$set` over it: the lead back in acme held by dan (the move undone), or dan written over
    tom with state v2 (and the move, later, kept the early holder's fields: dan's, in south). It is now an update
    holding on the row's state as read (`_changed`), decided again on the row as it is then."""
    lead, in_order = uuid.uuid4(), uuid.uuid4()
    south: list[LeadEvent] = [_offer(lead, "tom", 5, T0 + 5 * MINUTE, office="south"),
                              _claim(lead, "tom", 6, T0 + 6 * MINUTE, office="south")]  # fmt: skip
    moved: list[LeadEvent] = [_moved_from_dan(lead)]
    landed, rest = (moved, south) if landing == "move" else (south, moved)
    await _in_turn(db, [_offer(in_order, "ana", 1, T0), _assigned_to_dan(in_order), _moved_from_dan(in_order),
                        _offer(in_order, "tom", 5, T0 + 5 * MINUTE, office="south"),
                        _claim(in_order, "tom", 6, T0 + 6 * MINUTE, office="south")])  # fmt: skip
    expected = await _outcome(db, in_order)
    assert expected == {"office": "south", "holder": "tom", "status": "assigned", "offered": []}

    views = _Meanwhile(db)

    async def other_consumer() -> None:
        await _in_turn(db, landed)

    async def replayed_dead_letter() -> None:  # makes the row before the insert; the next state read is the second
        await _in_turn(db, [_offer(lead, "ana", 1, T0)])
        views.at, views.meanwhile = "state", other_consumer

    views.at, views.meanwhile = "parked", replayed_dead_letter
    await project(_assigned_to_dan(lead), views=views, side_effects=False)
    assert views.ran(), "the interleaving did not happen"
    after_race = await _outcome(db, lead)
    assert after_race["office"] == ("south" if landing == "move" else "acme"), after_race
    assert after_race["holder"] == ("sol" if landing == "move" else "tom"), f"the assignment undid the {landing}"
    await _in_turn(db, rest)
    assert await _outcome(db, lead) == expected


class _CrashingAt(LeadViews):
    """`LeadViews` failing once when asked whether `crash_at` (an event id) is recorded: the process died there."""

    crash_at: str | None = None

    async def recorded(self, event_id: str) -> bool:
        if event_id == self.crash_at:
            self.crash_at = None
            raise ConnectionError(f"crashed before looking up {event_id}")
        return await super().recorded(event_id)


def _expired(lead: uuid.UUID) -> OfferExpired:
    """Ana's offer expires (v2, acme)."""
    return OfferExpired.create(account_id="acme", occurred_at=T0 + MINUTE, payload=OfferClosedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, router_version=2))  # fmt: skip


def _assigned_to_dan_v3(lead: uuid.UUID) -> LeadAssigned:
    """Acme's broker assigns the lead to dan by hand (v3), after ana's offer expired."""
    return LeadAssigned.create(account_id="acme", occurred_at=T0 + 3 * MINUTE, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="dan", reason=AssignmentReason.MANUAL, explanation="by hand", contact=CONTACT,
        source=SOURCE, router_version=3))  # fmt: skip


@pytest.mark.parametrize("race", [False, True])
async def test_a_resumed_row_makers_owed_version_does_not_lower_what_another_office_wrote_meanwhile(
    db: AsyncDatabase[dict[str, Any]], race: bool
) -> None:
    """Acme offers ana (v1, a dead letter), ana's offer expires (v2: no row, parked), acme assigns dan (v3), the lead
    moves to south (v4, sol); south offers tom (v5), tom claims it (v6). In order: south, tom holding it.

    The assignment makes the row, without its version (the parked expiry came before it: `_stored`), marked as owing
    v3, and dies before applying the expiry; the parked expiry is gone by the redelivery (the TTL, `PARKED_KEEP`), so
    the row holds only dan's assignment and its redelivery sets the owed version with the mark's removal (`_finished`,
    `RowChanges.unmarked`). South's consumer lands tom's claim (early: the row still in acme; state v6) between the
    redelivery's read (no version: v3 owed) and that update, which held on nothing and set the row's versions back to
    v3 (and its state's office to acme) under tom's claim. Tom's offer (v5, a south dead letter) replayed then is no
    longer older than the row's state: applied in full, it took the lead from tom (offered, no holder), and the move
    left that to south. Projected one at a time (`race` False: the claim lands before the redelivery reads the row)
    the row keeps v6 and the late offer changes no holder. The unmark now holds on the state it was decided for and is
    decided again (`_finished`) on the row as it is when that changed."""
    lead, in_order = uuid.uuid4(), uuid.uuid4()
    await _in_turn(db, [_offer(in_order, "ana", 1, T0), _expired(in_order), _assigned_to_dan_v3(in_order),
                        _moved_from_dan(in_order), _offer(in_order, "tom", 5, T0 + 5 * MINUTE, office="south"),
                        _claim(in_order, "tom", 6, T0 + 6 * MINUTE, office="south")])  # fmt: skip
    expected = await _outcome(db, in_order)
    assert expected == {"office": "south", "holder": "tom", "status": "assigned", "offered": []}

    expired, assigned = _expired(lead), _assigned_to_dan_v3(lead)
    tom_offered = _offer(lead, "tom", 5, T0 + 5 * MINUTE, office="south")
    tom_claims = _claim(lead, "tom", 6, T0 + 6 * MINUTE, office="south")
    await _in_turn(db, [expired])
    crashing = _CrashingAt(db)
    crashing.crash_at = str(expired.event_id)  # `_created`'s first parked event's entry lookup, after the insert
    with pytest.raises(ConnectionError):
        await project(assigned, views=crashing, side_effects=False)
    stored = await db[CRM_LEADS].find_one({"_id": str(lead)})
    assert stored is not None
    assert (stored.get(PARKED_FOR), stored.get(OWED_VERSION), stored.get(STATE_VERSION)) == (
        str(assigned.event_id), 3, None)  # fmt: skip
    await LeadViews(db).unpark([str(expired.event_id)])  # the TTL took it (as `forget_parked` does)

    views = _Meanwhile(db)

    async def south_consumer() -> None:
        await _in_turn(db, [tom_claims])

    if race:
        views.at, views.meanwhile = "state", south_consumer  # after the redelivery's read of the row
    else:
        await south_consumer()
    await project(assigned, views=views, side_effects=False)  # the redelivery
    assert views.ran(), "the interleaving did not happen"
    stored = await db[CRM_LEADS].find_one({"_id": str(lead)})
    assert stored is not None
    assert PARKED_FOR not in stored
    assert (stored.get(STATE_VERSION), stored.get(STATE_OFFICE)) == (6, "south"), (
        "the owed version (v3, acme) was set over tom's claim (v6, south) landed under it"
    )
    await _in_turn(db, [tom_offered, _moved_from_dan(lead)])  # south's dead letter replayed, then acme's move
    assert await _outcome(db, lead) == expected, "the late offer (v5) took the lead from tom"
