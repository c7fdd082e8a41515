"""Helper 179's review (session 38): office moves (T2) and shares with realtors (T1) asked at once or replayed, in
crm-api on a real MongoDB-wire server (nx-27017). The router's side is played by projecting the events it would emit
for the commands crm-api published, in the order they were published (one partition: the account's key).

- Two moves of one lead asked at the same time (two crm-api replicas, a double submit with two page keys): each
  request checks `OfficeTransfers.moving` before the other stored its record, so both are accepted and both
  TransferLeads go. The router applies the first and refuses (or ignores) the second, whose record stays `pending`
  for good: once the lead is back in the office, that stale move holds it "being moved" forever (no move, share or
  distribution of it is accepted again).
- A share (T1) whose ShareLead Kafka refused, retried with its key after the brokerage shared the lead with another
  realtor: the retry sends the old ShareLead without writing its row again, so the router makes the first realtor
  the holder while crm-api's row stays "Assigned To" the second: the holder cannot open the lead, the other can.

Helper 194's review (session 39, decision 0108): a share checked before its realtor left the brokerage (another
replica, at once) or retried after it (hours later) still wrote the views and sent its ShareLead: the invitation is
checked again as the writes begin (`_still_invited`); helper 198: one whose writes had begun (a crash between the
rows and its `done`) goes on, or the rows named a realtor the router never made the holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from crm_harness import Published
from test_crm_moves_users_and_key_reuse import (
    NAMES,
    NORTH,
    ORG,
    SOURCE,
    SOUTH,
    T0,
    WEST,
    Db,
    a_north_lead,
    db,
    kafka_down,
)

from leadflow_crm_api.adapters.generations import Write, writing
from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.adapters.offices import PUBLISHED_HOLD, OfficeTransfers
from leadflow_crm_api.adapters.transfers import AccountTransfers
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.sharing import InvitationStatus, invitation_id, lead_row_transfer, transfer_id
from leadflow_crm_api.errors import CrmApiError, Unavailable
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases import offices, sharing
from leadflow_crm_api.use_cases.leads import account_leads
from leadflow_shared.collections import ACCOUNTS, CRM_LEADS, CRM_OFFICE_TRANSFERS
from leadflow_shared.events.commands import ShareLead, TransferLead
from leadflow_shared.events.intake import Contact
from leadflow_shared.events.routing import (
    LeadShared,
    LeadSharedPayload,
    LeadTransferred,
    LeadTransferredPayload,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

__all__ = [
    "db"
]  # North (nora, ana, ben), South (sam), West (wes) on nx-27017, as test_crm_moves_users_and_key_reuse.py

BROKERS = {
    NORTH: Principal("nora", Role.BROKER, NORTH, ORG),
    SOUTH: Principal("sam", Role.BROKER, SOUTH, ORG),
    WEST: Principal("wes", Role.BROKER, WEST, ORG),
}
RIO = Principal("rio", Role.REALTOR, "rio-realty")
RIA = Principal("ria", Role.REALTOR, "ria-realty")


class _NoCallers:
    """crm-api's callers cache: nothing to recheck."""

    async def recheck(self, agent_id: str) -> None:
        del agent_id


NO_CALLERS: Any = _NoCallers()


def _moved(lead: uuid.UUID, source: str, target: str, transfer: str, at: datetime) -> LeadTransferred:
    """The router's LeadTransferred of a move it applied (keyed by the office the lead left)."""
    return LeadTransferred.create(
        account_id=source,
        occurred_at=at,
        payload=LeadTransferredPayload(
            lead_id=lead, transfer_id=uuid.UUID(transfer), from_account_id=source,
            from_account_name=NAMES[source], previous_owner_agent_id=None, to_account_id=target,
            to_account_name=NAMES[target], agent_id=BROKERS[target].sub, by_user_id=BROKERS[source].sub,
            contact=Contact(first_name="Mo", email="mo@x.example"), source=SOURCE,
        ),
    )  # fmt: skip


async def _both_past_their_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests (two crm-api replicas) each store its move's record only once the other has made its checks: the
    moment a real race between them meets. Waits at most 2 s (a request refused before storing never comes)."""
    barrier = asyncio.Barrier(2)
    begin = OfficeTransfers.begin

    async def begin_together(self: OfficeTransfers, record: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError, asyncio.BrokenBarrierError):
            await asyncio.wait_for(barrier.wait(), timeout=2)
        return await begin(self, record)

    monkeypatch.setattr(OfficeTransfers, "begin", begin_together)


async def _answer(call: Awaitable[Any]) -> str:
    try:
        done = await call
    except CrmApiError as exc:
        return f"refused {exc.status}"
    return f"accepted ({getattr(done, 'status', 'done')})"


def _moves(publish: Published) -> list[tuple[str, str]]:
    """(transfer id, target office) of each TransferLead published, in order."""
    sent = [TransferLead.model_validate_json(body) for _, body in publish.records]
    return [(str(c.event_id), c.payload.to_account_id) for c in sent]


async def _race_two_moves(db: Db, lead: uuid.UUID, publish: Published) -> list[str]:
    north = account_leads(BROKERS[NORTH], db, NORTH)

    def move(to: str, key: str) -> Awaitable[Any]:
        body = offices.OfficeTransferCreate(lead_id=lead, to_account_id=to)
        return offices.transfer_to_office(NORTH, body, north, BROKERS[NORTH], db, publish, NO_CALLERS, key)

    return list(await asyncio.gather(_answer(move(SOUTH, f"r180-s-{lead}")), _answer(move(WEST, f"r180-w-{lead}"))))


async def test_two_moves_of_one_lead_asked_at_once_are_not_both_sent(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two brokers of North (or one double submit through two replicas) move L at the same time, to South and to West.
    # Each request asks `moving` before the other stored its record, so neither sees the other: both are accepted and
    # both TransferLeads go. Expected: one is refused 422 "already being moved" (as a move asked a moment later is,
    # helper 158's #7), so the router gets one move of L.
    await _both_past_their_checks(monkeypatch)
    lead = await a_north_lead(db)
    publish = Published()
    answers = await _race_two_moves(db, lead, publish)
    assert len(publish.records) == 1, (
        f"two moves of one lead asked at once were answered {answers} and {len(publish.records)} TransferLeads went "
        f"({_moves(publish)}): the router applies the first and dead-letters the second (the lead is no longer "
        "North's), whose move stays 'pending' in crm-api for good"
    )


async def test_a_move_the_router_never_answers_holds_its_lead_an_hour_at_most(db: Db) -> None:
    # A move the router refused (no event ever marks it done) held its lead "being moved" for good: no move, share or
    # hand distribution of it was accepted again, and the lead came back (A -> B -> A) to an office that could no longer
    # work it. Now a published move holds its lead `PUBLISHED_HOLD` (an hour) at most (decision 0107).
    await _connected(db, "rio", RIO)
    lead = await a_north_lead(db)
    north = account_leads(BROKERS[NORTH], db, NORTH)
    move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    sent = await offices.transfer_to_office(NORTH, move, north, BROKERS[NORTH], db, Published(), NO_CALLERS, "r180-x")
    assert sent.status == "pending"
    share = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    held = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, Published(), "r180-s1"))
    assert held.startswith("refused 422"), "a published move holds its lead while the router may still apply it"

    an_hour_ago = datetime.now(UTC) - PUBLISHED_HOLD - timedelta(seconds=5)
    record = await db[CRM_OFFICE_TRANSFERS].find_one({"_id": sent.transfer_id})
    assert record is not None
    # Replaced whole: nx-27017's `$set` keeps no datetime (decision 0004).
    stale = {"at": an_hour_ago, "published_ms": int(an_hour_ago.timestamp() * 1000)}
    await db[CRM_OFFICE_TRANSFERS].replace_one({"_id": sent.transfer_id}, record | stale)
    shared = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, Published(), "r180-s2"))
    on = offices.OfficeTransferCreate(lead_id=lead, to_account_id=WEST)
    moved = await _answer(
        offices.transfer_to_office(NORTH, on, north, BROKERS[NORTH], db, Published(), NO_CALLERS, "r180-on")
    )
    assert (shared, moved) == ("accepted (done)", "accepted (pending)"), (
        f"a move the router never answered still holds its lead after an hour: share {shared}, move {moved}"
    )


async def test_a_lead_is_not_moved_to_an_office_with_no_agents(db: Db) -> None:
    # The router refuses it (no broker pool there to hold the lead), so no event would ever end the move; it is refused
    # here, naming the field, nothing sent (decision 0107).
    empty = f"empty-{uuid.uuid4().hex[:6]}"
    await db[ACCOUNTS].insert_one({"_id": empty, "name": "Empty", "organisation_id": ORG, "roster": []})
    lead = await a_north_lead(db)
    north = account_leads(BROKERS[NORTH], db, NORTH)
    publish = Published()
    move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=empty)
    with pytest.raises(CrmApiError, match="to_account_id: an office with no agents"):
        await offices.transfer_to_office(NORTH, move, north, BROKERS[NORTH], db, publish, NO_CALLERS, "r180-e")
    assert publish.records == []


async def _connected(db: Db, realtor: str, principal: Principal) -> None:
    invitation, _ = await sharing.invite(
        NORTH,
        sharing.InvitationCreate(realtor_id=realtor, email=f"{realtor}@{realtor}.example", name=realtor.title()),
        BROKERS[NORTH],
        db,
        Published(),
    )
    await sharing.answer_invitation(invitation.invitation_id, principal, db, InvitationStatus.ACCEPTED)


def _shared_event(command: ShareLead, at: datetime) -> LeadShared:
    """The router's LeadShared for a ShareLead it applied."""
    p = command.payload
    return LeadShared.create(
        account_id=command.account_id,
        occurred_at=at,
        payload=LeadSharedPayload(
            lead_id=p.lead_id, share_id=p.share_id, agent_id=p.realtor_id, realtor_name=p.realtor_name,
            assigned_by=p.assigned_by, by_user_id=p.by_user_id,
        ),
    )  # fmt: skip


async def test_a_shares_retry_sent_after_the_lead_was_shared_with_another_realtor_leaves_one_holder(db: Db) -> None:
    # 1. North shares L with Rio (key "k-rio"): the views say "Assigned To" Rio, then Kafka refuses the ShareLead: 503
    #    "retry with the same Idempotency-Key".
    # 2. North shares L with Ria instead (key "k-ria"): the views say Ria, and its ShareLead goes.
    # 3. The first client retries, as told: the record is `done` (views written), not published: it writes nothing
    #    and sends Rio's ShareLead. The router applies Ria's, then Rio's: Rio holds L (and is emailed it).
    # Expected: crm-api's row and the router agree on who holds L (the retry refused, or its row written again).
    # Actual: the row stays "Assigned To" Ria while its holder is Rio: Rio, told it holds L, cannot open it (404),
    # and Ria, who does not hold it, keeps it in her list.
    await _connected(db, "rio", RIO)
    await _connected(db, "ria", RIA)
    lead = await a_north_lead(db)
    to_rio = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    to_ria = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="ria")
    with pytest.raises(Unavailable):
        await sharing.transfer_leads(NORTH, to_rio, BROKERS[NORTH], db, kafka_down, f"k-rio-{lead}")
    publish = Published()
    await sharing.transfer_leads(NORTH, to_ria, BROKERS[NORTH], db, publish, f"k-ria-{lead}")
    retry = await _answer(sharing.transfer_leads(NORTH, to_rio, BROKERS[NORTH], db, publish, f"k-rio-{lead}"))

    commands = [ShareLead.model_validate_json(body) for _, body in publish.records]
    views = LeadViews(db)
    for i, command in enumerate(commands):  # the router applies them in the order they were published
        await project(_shared_event(command, T0 + timedelta(minutes=10 + i)), views=views)
    holder = commands[-1].payload.realtor_id
    row = await db[CRM_LEADS].find_one({"_id": str(lead)})
    assert row is not None
    sees = {realtor.sub: await account_leads(realtor, db, NORTH).get(str(lead)) is not None for realtor in (RIO, RIA)}
    assert (row.get("owner_agent_id"), row.get("transferred_to"), sees) == (
        holder,
        holder,
        {"rio": holder == "rio", "ria": holder == "ria"},
    ), (
        f"the retry of the share with Rio was {retry}; the router's holder is now {holder!r} (row owner "
        f"{row.get('owner_agent_id')!r}) but the row is 'Assigned To' {row.get('transferred_to')!r}: who can open L "
        f"{sees}"
    )


async def test_a_share_overtaken_by_a_move_of_its_lead_writes_no_share_into_the_new_offices_timeline(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1. A broker of North shares L with Rio (T1): its checks pass (L is North's, no move pending).
    # 2. Meanwhile another broker of North moves L to South (T2): accepted, the router moves L, the views follow.
    # 3. The share goes on with the record it checked: it answers "transferred: 1", inserts the "Transferred to Rio by
    #    North" entry in L's timeline (read by lead id: South's now) and sends a ShareLead the router dead-letters (L is
    #    not North's). Expected, as its retry does since helper 153: L, no longer North's, is dropped (here: refused
    #    422 naming lead_ids), nothing written into South's lead nor sent.
    await _connected(db, "rio", RIO)
    lead = await a_north_lead(db)
    begin = AccountTransfers.begin

    async def moved_meanwhile(self: AccountTransfers, record: dict[str, Any]) -> dict[str, Any]:
        north = account_leads(BROKERS[NORTH], db, NORTH)
        move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
        made = await offices.transfer_to_office(
            NORTH, move, north, BROKERS[NORTH], db, Published(), NO_CALLERS, "r180-m"
        )
        await project(_moved(lead, NORTH, SOUTH, made.transfer_id, T0 + timedelta(minutes=10)), views=LeadViews(db))
        return await begin(self, record)

    monkeypatch.setattr(AccountTransfers, "begin", moved_meanwhile)
    publish = Published()
    share = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    answer = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, publish, "r180-overtaken"))
    south = account_leads(BROKERS[SOUTH], db, SOUTH)
    row = await south.get(str(lead))
    assert row is not None, "L is South's"
    entries = [e.summary for e in await south.timeline(row) if "Rio" in (e.summary or "")]
    assert (entries, len(publish.records)) == ([], 0), (
        f"a share of L checked before L moved to South was {answer}: South's lead shows {entries} and "
        f"{len(publish.records)} ShareLead went for a lead that is not North's (the router dead-letters it)"
    )


async def test_a_move_published_by_a_late_retry_holds_its_lead_until_the_router_applies_it(db: Db) -> None:
    # Helper 183's review of decision 0107: the hour was counted from the record's `at` (when the move was first
    # asked), not from when its command went. Nora moves L to South with a key; Kafka refuses it (503); her client
    # retries more than an hour later: accepted, sent. A moment later a second move of L, to West, is asked: it was
    # accepted and both TransferLeads went; refused now (`published_ms`).
    lead = await a_north_lead(db)
    north = account_leads(BROKERS[NORTH], db, NORTH)
    to_south = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    key = f"r184-s-{lead}"
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, to_south, north, BROKERS[NORTH], db, kafka_down, NO_CALLERS, key)
    [record] = [d async for d in db[CRM_OFFICE_TRANSFERS].find({"lead_id": str(lead)})]
    long_ago = datetime.now(UTC) - PUBLISHED_HOLD - timedelta(minutes=5)
    # Replaced whole: nx-27017's `$set` keeps no datetime (decision 0004).
    await db[CRM_OFFICE_TRANSFERS].replace_one({"_id": record["_id"]}, record | {"at": long_ago})

    publish = Published()
    retried = await offices.transfer_to_office(NORTH, to_south, north, BROKERS[NORTH], db, publish, NO_CALLERS, key)
    assert retried.status == "pending", "control: the retry was accepted"
    assert len(publish.records) == 1, "control: the retry sent the move"

    to_west = offices.OfficeTransferCreate(lead_id=lead, to_account_id=WEST)
    try:
        second = await offices.transfer_to_office(
            NORTH, to_west, north, BROKERS[NORTH], db, publish, NO_CALLERS, f"r184-w-{lead}"
        )
        answer = f"accepted ({second.status})"
    except CrmApiError as exc:
        answer = f"refused {exc.status}"
    sent = [TransferLead.model_validate_json(body).payload.to_account_id for _, body in publish.records]
    assert sent == [SOUTH], (
        f"a move of L published a moment ago (retried {PUBLISHED_HOLD} after it was first asked) held nothing: a "
        f"second move of L was {answer} and TransferLeads went to {sent}"
    )


@pytest.mark.parametrize("asked_ago", [timedelta(minutes=30), PUBLISHED_HOLD + timedelta(minutes=5)])
async def test_a_move_published_now_is_moving_whenever_it_was_first_asked(db: Db, asked_ago: timedelta) -> None:
    # The same move published now (by its retry), first asked 30 minutes ago (past UNSENT_HOLD, within the hour) and
    # 65 minutes ago: both were published a moment ago, and hold their lead.
    lead = await a_north_lead(db)
    north = account_leads(BROKERS[NORTH], db, NORTH)
    to_south = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    key = f"r184-c-{asked_ago.seconds}-{lead}"
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, to_south, north, BROKERS[NORTH], db, kafka_down, NO_CALLERS, key)
    [record] = [d async for d in db[CRM_OFFICE_TRANSFERS].find({"lead_id": str(lead)})]
    await db[CRM_OFFICE_TRANSFERS].replace_one({"_id": record["_id"]}, record | {"at": datetime.now(UTC) - asked_ago})
    await offices.transfer_to_office(NORTH, to_south, north, BROKERS[NORTH], db, Published(), NO_CALLERS, key)
    moving = await OfficeTransfers(db).moving(NORTH, [str(lead)])
    assert moving == {str(lead): record["_id"]}, (
        f"a move published a moment ago, first asked {asked_ago} ago, holds its lead no more: moving={moving}"
    )


def _shared_with(publish: Published) -> list[str]:
    return [ShareLead.model_validate_json(raw).payload.realtor_id for _, raw in publish.records]


async def test_a_share_retried_after_the_realtor_left_is_refused_and_sends_nothing(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _connected(db, "rio", RIO)
    lead = await a_north_lead(db)
    share = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    original = AccountTransfers.apply

    async def fails(self: AccountTransfers, transfer: dict[str, Any]) -> None:
        del self, transfer
        raise RuntimeError("MongoDB stepped down")  # the first attempt stops after its record, before its writes

    monkeypatch.setattr(AccountTransfers, "apply", fails)
    with pytest.raises(RuntimeError):
        await sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, Published(), "r194-retry")
    monkeypatch.setattr(AccountTransfers, "apply", original)

    await sharing.leave(invitation_id(NORTH, "rio"), RIO, db)  # Rio leaves North
    publish = Published()
    retried = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, publish, "r194-retry"))
    assert (retried, _shared_with(publish)) == ("refused 422", []), (
        f"the retry, after Rio left North: {retried}, ShareLead to {_shared_with(publish)} (the router makes Rio the "
        "holder of North's lead, its contact included)"
    )


async def test_a_share_checked_before_the_realtor_left_and_written_after_sends_nothing(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _connected(db, "rio", RIO)
    lead = await a_north_lead(db)
    share = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    begin = AccountTransfers.begin

    async def left_meanwhile(self: AccountTransfers, record: dict[str, Any]) -> dict[str, Any]:
        await sharing.leave(
            invitation_id(NORTH, "rio"), RIO, db
        )  # another replica, between the share's check and its writes
        return await begin(self, record)

    monkeypatch.setattr(AccountTransfers, "begin", left_meanwhile)
    publish = Published()
    answered = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, publish, "r194-race"))
    assert _shared_with(publish) == [], (
        f"answered {answered}; ShareLead to {_shared_with(publish)} after Rio left North"
    )


async def test_a_share_half_written_then_retried_after_the_realtor_left_is_not_left_half_done(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _connected(db, "rio", RIO)
    lead = str(await a_north_lead(db))
    share = sharing.TransferCreate(lead_ids=[lead], realtor_id="rio")

    async def rows_then_crash(self: AccountTransfers, transfer: dict[str, Any]) -> None:
        # `apply`'s first write (the lead rows), then the crash before its timeline entries and `done` flag.
        async with writing(self._db, Write(lead_ids=tuple(transfer["lead_ids"]))) as names:
            await self._db[names.leads].update_many(
                {"account_id": NORTH, "_id": {"$in": transfer["lead_ids"]}}, {"$set": lead_row_transfer(transfer)}
            )
        raise RuntimeError("MongoDB stepped down")

    monkeypatch.setattr(AccountTransfers, "apply", rows_then_crash)
    with pytest.raises(RuntimeError):
        await sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, Published(), "r198-half")
    monkeypatch.undo()

    await sharing.leave(invitation_id(NORTH, "rio"), RIO, db)  # Rio leaves North before the retry
    publish = Published()
    retried = await _answer(sharing.transfer_leads(NORTH, share, BROKERS[NORTH], db, publish, "r198-half"))
    record = await AccountTransfers(db, NORTH).get(transfer_id(NORTH, "r198-half"))
    assert record is not None
    rows_say_rio = bool(await AccountTransfers(db, NORTH).written(record["_id"], [lead]))
    router_told = _shared_with(publish) == ["rio"]
    assert rows_say_rio == router_told, (
        f"the retry: {retried}, record refusal {record.get('refusal')!r}; the lead rows say 'Assigned To' Rio "
        f"({rows_say_rio}: Rio, who left, reads North's lead and its contact; it left My Leads) while the router "
        f"was told {_shared_with(publish)}"
    )
