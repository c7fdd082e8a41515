"""crm-api on a real MongoDB-wire server (nx-27017), from an attacker's seat (helper 122's review, session 30); the web
form's test runs crm-api's whole app in-process on the session's Tansu and nx-27017 (routing_world.py).

- A lead moved to another office (T2) leaves the users the office it left assigned to it (`assigned_users`): they are
  that office's people (decision 0076); one who joins the new office later does not see or work the lead there. An
  assignment the move overtakes between its scope read and its write writes nothing.
- A distribution by hand (T4) whose Idempotency-Key is reused for another agent is another distribution (its commands'
  ids differ, so the router does not drop them as copies); a bulk office move's key reused for another office is
  refused, as a single move's is.
- A retry (the same Idempotency-Key and request) of a lead transfer to a realtor (T1) or of a bulk office move (T2) is
  known from its record before the request is checked again (helper 144's review, session 32): a transfer of every
  lead a filter matches picks no lead again once they are shared or moved, so its retry was refused ("nothing was
  transferred") or answered no transfer, and a half-done one (its commands refused by Kafka) was never finished; a
  finished transfer retried after the realtor was disconnected was refused. The key reused for another request is
  refused.
- A retry checked against the present (helper 158's review, session 32): a move whose command may have gone out is
  never forgotten; a move without a key that Kafka refused holds its lead no more, a keyed one only for
  `UNSENT_HOLD`; a single move refuses a lead another move is moving; a team member's retry after the member moved
  on is refused; a T1 retry refused whole is refused the same later, and a lead whose views it wrote is shared all
  the same; a filter kept as text is rewritten as its digest when read.
- The Settings page's pause form refuses a `remove` or `weekdays` that is no number (`"²"` passes `str.isdigit()`)
  with a 4xx, never a server error.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from crm_harness import Published
from fastapi.exceptions import RequestValidationError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from routing_world import ACCOUNT, config, csrf_of, site_on

from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.adapters.offices import UNSENT_HOLD, OfficeTransfers
from leadflow_crm_api.adapters.transfers import AccountTransfers
from leadflow_crm_api.domain.distribution import DistributionCreate, LeadFilter
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.sharing import InvitationStatus
from leadflow_crm_api.domain.views import LeadTab
from leadflow_crm_api.errors import CrmApiError, Unavailable
from leadflow_crm_api.handlers import project
from leadflow_crm_api.use_cases import distribution, lead_work, offices, sharing
from leadflow_crm_api.use_cases.leads import account_leads, lead_view
from leadflow_shared.collections import ACCOUNTS, AGENTS, CRM_LEADS, CRM_OFFICE_TRANSFERS, CRM_TRANSFERS
from leadflow_shared.events.commands import ShareLead
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadTransferred,
    LeadTransferredPayload,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
NORTH, SOUTH, WEST, ORG = "north", "south", "west", "acme-group"
NORA = Principal("nora", Role.BROKER, NORTH, ORG)
SAM = Principal("sam", Role.BROKER, SOUTH, ORG)
RIO = Principal("rio", Role.REALTOR, "rio-realty")  # a realtor on its own account (decision 0035)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_moves_users_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_many([
        {"_id": NORTH, "name": "North", "organisation_id": ORG, "roster": ["nora", "ana", "ben"]},
        {"_id": SOUTH, "name": "South", "organisation_id": ORG, "roster": ["sam"]},
        {"_id": WEST, "name": "West", "organisation_id": ORG, "roster": ["wes"]},
    ])  # fmt: skip
    people = [("nora", NORTH), ("ana", NORTH), ("ben", NORTH), ("sam", SOUTH), ("wes", WEST)]
    await database[AGENTS].insert_many([
        {"_id": a, "account_id": acc, "name": a.title(), "email": f"{a}@{acc}.example", "active": True}
        for a, acc in people
    ])  # fmt: skip
    yield database
    await client.drop_database(database.name)
    await client.close()


async def a_north_lead(db: Db, agent: str = "ana") -> uuid.UUID:
    """A North lead offered to `agent` (its row made by the projection, as routed)."""
    lead = uuid.uuid4()
    offered = LeadOffered.create(
        account_id=NORTH,
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=lead, agent_id=agent, offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=15),
            explanation="R6", source=SOURCE, contact=Contact(first_name="Mo", email=f"mo-{lead.hex[:6]}@x.example"),
        ),
    )  # fmt: skip
    await project(offered, views=LeadViews(db))
    return lead


async def test_a_lead_moved_to_another_office_keeps_no_user_the_office_it_left_assigned(db: Db) -> None:
    # North's broker assigns Ben (a North agent) to work a lead with its holder (ClientBAY's lead users), then moves
    # the lead to South (T2): South's roster position 1 holds it, a new lead there, without North's users.
    lead = await a_north_lead(db)
    await lead_work.assign_users(
        account_leads(NORA, db, NORTH), NORA, db, str(lead), lead_work.LeadUsers(user_ids=["ben"])
    )
    await project(_moved_to_south(lead, T0 + timedelta(minutes=30)), views=LeadViews(db))
    south_sees = await lead_view(account_leads(SAM, db, SOUTH), SAM, db, str(lead))
    assert south_sees.owner_agent_id == "sam", "the move was projected: South's roster position 1 holds the lead"

    # Ben later moves to South too (T2, a team member): Onboarding there, his South token admitted (decision 0079).
    await OfficeTransfers(db).move_member({"agent_id": "ben", "account_id": NORTH, "to_account_id": SOUTH})
    ben_in_south = Principal("ben", Role.REALTOR, SOUTH, ORG)
    ben_sees = await account_leads(ben_in_south, db, SOUTH).get(str(lead))
    assert (south_sees.assigned_users, ben_sees is not None) == ([], False), (
        "a lead moved North -> South still lists North's user Ben as its assigned user in South "
        f"({south_sees.assigned_users}), and once Ben joins South he reads and works the lead there "
        "though South's holder (sam) never gave it to him"
    )


async def test_users_assigned_while_the_lead_moves_to_another_office_are_not_written_there(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """North's broker assigns Ben while the lead moves to South: the move lands between the write's scope read and
    its update, which then matches no row of North and writes nothing (a 404: the lead is not North's any more)."""
    lead = await a_north_lead(db)
    moved = _moved_to_south(lead, T0 + timedelta(minutes=30))
    real_find_one = AsyncCollection.find_one

    async def move_after_the_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        found = await real_find_one(self, *args, **kwargs)
        if self.name.startswith("crm_leads") and kwargs.get("projection", args[1] if len(args) > 1 else None):
            monkeypatch.setattr(AsyncCollection, "find_one", real_find_one)
            await project(moved, views=LeadViews(db))
        return found

    monkeypatch.setattr(AsyncCollection, "find_one", move_after_the_read)
    leads = account_leads(NORA, db, NORTH)
    with pytest.raises(CrmApiError, match="No such lead"):
        await lead_work.assign_users(leads, NORA, db, str(lead), lead_work.LeadUsers(user_ids=["ben"]))
    south_sees = await lead_view(account_leads(SAM, db, SOUTH), SAM, db, str(lead))
    assert (south_sees.owner_agent_id, south_sees.assigned_users) == ("sam", [])


async def test_a_distributions_key_reused_for_another_agent_is_another_distribution_not_dropped(db: Db) -> None:
    # POST /v1/accounts/north/distributions {agent_id: ana, mode: assign, lead_ids: [L]}, Idempotency-Key: K; then
    # the same key with agent_id ben. Were the second's DistributeLead the first's event id (derived from the account,
    # key and lead only, before session 30), the router would drop it as a redelivery and nothing would go to Ben.
    lead = await a_north_lead(db, agent="nora")
    leads = account_leads(NORA, db, NORTH)
    first, second = Published(), Published()

    def body(agent: str) -> DistributionCreate:
        return DistributionCreate.model_validate({"agent_id": agent, "mode": "assign", "lead_ids": [str(lead)]})

    await distribution.distribute(NORTH, body("ana"), leads, NORA, db, first, "key-1")
    answered = await distribution.distribute(NORTH, body("ben"), leads, NORA, db, second, "key-1")
    ids = {uuid.UUID(_event_id(b)) for _, b in first.records}
    again = {uuid.UUID(_event_id(b)) for _, b in second.records}
    assert (answered.agent_id, len(again), ids & again) == ("ben", 1, set()), (
        "a distribution to ben under a key used for ana must send its own command, not the first's id again"
    )
    retry = Published()
    await distribution.distribute(NORTH, body("ben"), leads, NORA, db, retry, "key-1")
    assert {uuid.UUID(_event_id(b)) for _, b in retry.records} == again, "a retry of the same request: the same ids"


async def test_a_bulk_office_moves_key_reused_for_another_office_is_refused(db: Db) -> None:
    # POST /v1/accounts/north/office-transfers/bulk {lead_ids: [L], to_account_id: south}, Idempotency-Key: K; then
    # the same key with to_account_id west: refused as a single move's reuse is ("Idempotency-Key: already used for
    # a different transfer"), not answered 202 with the first request's transfer to South.
    lead = await a_north_lead(db)
    leads = account_leads(NORA, db, NORTH)

    def body(to: str) -> offices.BulkOfficeTransferCreate:
        return offices.BulkOfficeTransferCreate.model_validate({"lead_ids": [str(lead)], "to_account_id": to})

    await offices.transfer_many_to_office(NORTH, body(SOUTH), leads, NORA, db, Published(), "bulk-key")
    again = Published()
    with pytest.raises(CrmApiError, match="Idempotency-Key: already used for a different transfer"):
        await offices.transfer_many_to_office(NORTH, body(WEST), leads, NORA, db, again, "bulk-key")
    assert again.records == [], "nothing was sent for the refused request"
    retried = await offices.transfer_many_to_office(NORTH, body(SOUTH), leads, NORA, db, Published(), "bulk-key")
    assert [t.to_account_id for t in retried.transfers] == [SOUTH], "the first request's retry is still answered"


async def connected_with_rio(db: Db) -> None:
    """North invited Rio, who accepted (V4)."""
    invitation, _ = await sharing.invite(
        NORTH, sharing.InvitationCreate(realtor_id="rio", email="rio@rio.example", name="Rio"), NORA, db, Published()
    )
    await sharing.answer_invitation(invitation.invitation_id, RIO, db, InvitationStatus.ACCEPTED)


async def kafka_down(account_id: str, body: bytes) -> None:
    del account_id, body
    raise ConnectionError("the broker is unreachable")


MY_LEADS = LeadFilter(tab=LeadTab.MINE)  # the brokerage's leads not transferred to a realtor (V1)


async def test_a_filtered_transfer_whose_commands_failed_is_finished_by_its_retry(db: Db) -> None:
    # The broker transfers every lead of its My Leads tab to Rio. The views are written (the leads show "Assigned
    # To" Rio, and leave My Leads), then Kafka refuses the first ShareLead: 503, "retry with the same
    # Idempotency-Key". The retry, same key and same body, must finish it: the router told of every lead.
    await connected_with_rio(db)
    leads = {str(await a_north_lead(db)) for _ in range(2)}
    body = sharing.TransferCreate(filter=MY_LEADS, realtor_id="rio")
    with pytest.raises(Unavailable):
        await sharing.transfer_leads(NORTH, body, NORA, db, kafka_down, "transfer-1")
    shared = {d["_id"] async for d in db[CRM_LEADS].find({"transferred_to": "rio"})}
    assert shared == leads, "the first attempt shared the leads in the views before Kafka refused"

    publish = Published()
    try:
        done = await sharing.transfer_leads(NORTH, body, NORA, db, publish, "transfer-1")
    except CrmApiError as exc:
        pytest.fail(
            f"the retry with the same Idempotency-Key was refused ({exc.status}: {exc.detail}) while the leads stay "
            "shared with Rio in the views and the router was never told (no ShareLead)"
        )
    told = {str(ShareLead.model_validate_json(b).payload.lead_id) for _, b in publish.records}
    assert (done.transferred, told) == (2, leads)


async def test_a_filtered_transfer_submitted_twice_answers_the_same_transfer(db: Db) -> None:
    # The web form's double submit (or a client's retry after a lost answer) with the same key: the same transfer,
    # applied once, answered again; not a refusal saying "nothing was transferred".
    await connected_with_rio(db)
    leads = {str(await a_north_lead(db)) for _ in range(2)}
    body = sharing.TransferCreate(filter=MY_LEADS, realtor_id="rio")
    key = "web:" + uuid.uuid4().hex
    first = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), key)
    assert first.transferred == len(leads)
    publish = Published()
    try:
        again = await sharing.transfer_leads(NORTH, body, NORA, db, publish, key)
    except CrmApiError as exc:
        pytest.fail(f"the same transfer submitted again was refused ({exc.status}: {exc.detail})")
    assert (again.transfer_id, again.transferred, publish.records) == (first.transfer_id, first.transferred, [])


async def test_a_double_submit_whose_look_up_ran_before_the_first_stored_its_record_is_that_transfer(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The two submits of a double click run at once: the second looks the key up before the first stored its record,
    # then picks its leads after the first shared them (My Leads matches none). It is the first's transfer, answered
    # as such, not "filter: matches no lead".
    await connected_with_rio(db)
    await a_north_lead(db)
    body = sharing.TransferCreate(filter=MY_LEADS, realtor_id="rio")
    first = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "web:double")
    real_get = AccountTransfers.get

    async def before_the_first_stored(self: AccountTransfers, transfer_id: str) -> dict[str, Any] | None:
        del self, transfer_id
        monkeypatch.setattr(AccountTransfers, "get", real_get)  # only the first look-up ran early
        return None

    monkeypatch.setattr(AccountTransfers, "get", before_the_first_stored)
    again = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "web:double")
    assert (again.transfer_id, again.transferred) == (first.transfer_id, 1)


async def test_a_finished_transfer_is_answered_from_its_record_when_retried_after_a_disconnection(db: Db) -> None:
    # Decision 0018: "a finished one is answered from its record". North transfers two leads to Rio (by id); the
    # answer is lost. Meanwhile North disconnects Rio (decision 0035: the leads already transferred stay Rio's).
    # The client's retry with the same key and body is the same, finished transfer: answered as it was, not a 422
    # saying Rio cannot receive leads and "nothing was transferred" while both leads are Rio's.
    await connected_with_rio(db)
    leads = sorted([str(await a_north_lead(db)) for _ in range(2)])
    body = sharing.TransferCreate(lead_ids=leads, realtor_id="rio")
    first = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "transfer-3")
    await sharing.disconnect(NORTH, "rio", NORA, db)
    publish = Published()
    try:
        again = await sharing.transfer_leads(NORTH, body, NORA, db, publish, "transfer-3")
    except CrmApiError as exc:
        pytest.fail(f"the finished transfer's retry was refused ({exc.status}: {exc.detail})")
    assert (again.transfer_id, again.transferred, publish.records) == (first.transfer_id, 2, [])


async def test_a_transfers_key_reused_for_another_selection_is_refused_and_shares_nothing(db: Db) -> None:
    # Decision 0018: "The same key with another selection is a 422". Another filter, or leads named where the first
    # gave a filter, under the key: refused naming the key, nothing written or sent; the first's retry still answered.
    await connected_with_rio(db)
    lead = str(await a_north_lead(db))
    first = await sharing.transfer_leads(
        NORTH, sharing.TransferCreate(filter=MY_LEADS, realtor_id="rio"), NORA, db, Published(), "transfer-4"
    )
    other = str(await a_north_lead(db))
    for body in (
        sharing.TransferCreate(filter=LeadFilter(), realtor_id="rio"),
        sharing.TransferCreate(lead_ids=[lead, other], realtor_id="rio"),
    ):
        publish = Published()
        with pytest.raises(CrmApiError, match="Idempotency-Key: already used for a different transfer"):
            await sharing.transfer_leads(NORTH, body, NORA, db, publish, "transfer-4")
        assert publish.records == [], body
    assert await db[CRM_LEADS].count_documents({"_id": other, "transferred_to": {"$ne": None}}) == 0
    same = sharing.TransferCreate(filter=LeadFilter(tab=LeadTab.MINE, status=None), realtor_id="rio")
    again = await sharing.transfer_leads(NORTH, same, NORA, db, Published(), "transfer-4")
    assert (again.transfer_id, again.transferred) == (first.transfer_id, 1)


async def test_a_retry_of_a_filtered_bulk_move_after_the_moves_answers_the_same_transfers(db: Db) -> None:
    # T2: a retry, "even after the moves finished, answers the same transfers". Once moved, the leads are South's:
    # the filter of North's list matches none of them, and the retry answered no transfer (helper 144).
    leads = sorted([str(await a_north_lead(db)) for _ in range(2)])
    body = offices.BulkOfficeTransferCreate(filter=LeadFilter(), to_account_id=SOUTH)

    async def bulk(publish: Published) -> offices.BulkOfficeTransfer:
        scope = account_leads(NORA, db, NORTH)
        return await offices.transfer_many_to_office(NORTH, body, scope, NORA, db, publish, "bulk-h144")

    first = await bulk(Published())
    assert sorted(t.lead_id or "" for t in first.transfers) == leads
    for transfer in first.transfers:  # the router moved them; crm-api projected the moves
        moved = _moved_to_south(
            uuid.UUID(transfer.lead_id), T0 + timedelta(minutes=30), uuid.UUID(transfer.transfer_id)
        )
        await project(moved, views=LeadViews(db))
    assert await db[CRM_LEADS].count_documents({"account_id": SOUTH}) == 2, "both leads are South's now"

    publish = Published()
    again = await bulk(publish)
    assert sorted(t.transfer_id for t in again.transfers) == sorted(t.transfer_id for t in first.transfers), (
        "the retry with the same Idempotency-Key (and the same body) after the moves finished answered "
        f"{len(again.transfers)} transfer(s), not the {len(first.transfers)} it made"
    )
    assert [t.status for t in again.transfers] == ["done", "done"]
    assert publish.records == [], "nothing sent again"


async def test_a_filtered_bulk_move_whose_commands_failed_is_finished_by_its_retry(db: Db) -> None:
    # Kafka refuses the first TransferLead (503). The retry with the key sends every lead's command (the router
    # drops copies), though the filter matches other leads by then: a lead North got since is not added.
    leads = sorted([str(await a_north_lead(db)) for _ in range(2)])
    body = offices.BulkOfficeTransferCreate(filter=LeadFilter(), to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_many_to_office(NORTH, body, account_leads(NORA, db, NORTH), NORA, db, kafka_down, "b2")
    await a_north_lead(db)  # a new lead North's filter matches now
    publish = Published()
    done = await offices.transfer_many_to_office(NORTH, body, account_leads(NORA, db, NORTH), NORA, db, publish, "b2")
    sent = sorted(str(json.loads(b)["payload"]["lead_id"]) for _, b in publish.records)
    assert (sorted(t.lead_id or "" for t in done.transfers), sent) == (leads, leads)


async def test_a_single_moves_key_reused_for_a_bulk_move_is_refused_either_way(db: Db) -> None:
    # One Idempotency-Key, one request: a single move's key reused for a bulk move (and the other way round) is
    # refused naming the key, nothing sent; the bulk move's record is no transfer one can read.
    lead, other = await a_north_lead(db), await a_north_lead(db)
    leads = account_leads(NORA, db, NORTH)
    no_members = cast(Any, None)  # a lead's move rechecks no team member
    single = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)

    def bulk_of(lead: uuid.UUID) -> offices.BulkOfficeTransferCreate:
        return offices.BulkOfficeTransferCreate.model_validate({"lead_ids": [str(lead)], "to_account_id": SOUTH})

    await offices.transfer_to_office(NORTH, single, leads, NORA, db, Published(), no_members, "one")
    made = await offices.transfer_many_to_office(NORTH, bulk_of(other), leads, NORA, db, Published(), "many")
    refused = Published()
    with pytest.raises(CrmApiError, match="Idempotency-Key: already used for a different transfer"):
        await offices.transfer_many_to_office(NORTH, bulk_of(await a_north_lead(db)), leads, NORA, db, refused, "one")
    with pytest.raises(CrmApiError, match="Idempotency-Key: already used for a different transfer"):
        await offices.transfer_to_office(NORTH, single, leads, NORA, db, refused, no_members, "many")
    assert refused.records == []
    with pytest.raises(CrmApiError, match="No such office transfer"):
        await offices.get_office_transfer(NORTH, made.bulk_id, NORA, db)


def _moved_to_south(lead: uuid.UUID, at: datetime, transfer: uuid.UUID | None = None) -> LeadTransferred:
    return LeadTransferred.create(
        account_id=NORTH,
        occurred_at=at,
        payload=LeadTransferredPayload(
            lead_id=lead, transfer_id=transfer or uuid.uuid4(), from_account_id=NORTH, from_account_name="North",
            previous_owner_agent_id=None, to_account_id=SOUTH, to_account_name="South", agent_id="sam",
            by_user_id="nora", contact=Contact(first_name="Mo", email="mo@x.example"), source=SOURCE,
        ),
    )  # fmt: skip


def _event_id(body: bytes) -> str:
    return str(json.loads(body)["event_id"])


NAMES = {NORTH: "North", SOUTH: "South", WEST: "West"}
FIRST_AGENT = {NORTH: "nora", SOUTH: "sam", WEST: "wes"}


def _moved(lead: str, source: str, target: str, transfer: str, at: datetime) -> LeadTransferred:
    """The router's LeadTransferred of a move it applied (keyed by the office the lead left)."""
    return LeadTransferred.create(
        account_id=source,
        occurred_at=at,
        payload=LeadTransferredPayload(
            lead_id=uuid.UUID(lead), transfer_id=uuid.UUID(transfer), from_account_id=source,
            from_account_name=NAMES[source], previous_owner_agent_id=None, to_account_id=target,
            to_account_name=NAMES[target], agent_id=FIRST_AGENT[target], by_user_id="nora",
            contact=Contact(first_name="Mo", email="mo@x.example"), source=SOURCE,
        ),
    )  # fmt: skip


def _bulk(lead_ids: list[str], to: str) -> offices.BulkOfficeTransferCreate:
    return offices.BulkOfficeTransferCreate.model_validate({"lead_ids": lead_ids, "to_account_id": to})


def _moves_sent(publish: Published) -> list[str]:
    return sorted(str(json.loads(body)["payload"]["lead_id"]) for _, body in publish.records)


async def test_a_half_done_bulk_moves_retry_sends_no_move_of_a_lead_another_move_took_to_another_office(
    db: Db,
) -> None:
    # 1. North bulk-moves A and B to South (key "h153-bulk"); Kafka refuses A's TransferLead: 503. The bulk record lists
    #    A and B; A's transfer is stored (unpublished), B has none, so B is "moving" for nobody.
    # 2. North bulk-moves B to West (another key): B passes the "already being moved" check, the router moves it.
    # 3. The client retries step 1 with its key (as the 503 told it to).
    a, b = str(await a_north_lead(db)), str(await a_north_lead(db))
    north = account_leads(NORA, db, NORTH)
    with pytest.raises(Unavailable):
        await offices.transfer_many_to_office(NORTH, _bulk([a, b], SOUTH), north, NORA, db, kafka_down, "h153-bulk")
    assert await OfficeTransfers(db).moving(NORTH, [b]) == {}, "nothing marks B as being moved"
    to_west = await offices.transfer_many_to_office(NORTH, _bulk([b], WEST), north, NORA, db, Published(), "h153-west")
    [west_move] = to_west.transfers
    await project(_moved(b, NORTH, WEST, west_move.transfer_id, T0 + timedelta(minutes=5)), views=LeadViews(db))

    retry = Published()
    answered = await offices.transfer_many_to_office(NORTH, _bulk([a, b], SOUTH), north, NORA, db, retry, "h153-bulk")
    pending_b = [t.transfer_id for t in answered.transfers if t.lead_id == b and t.status == "pending"]

    # The consequence: West gives B back to North later; North can never bulk-move it again, as the retry's transfer
    # of B (a lead of West when sent: refused by the router, no LeadTransferred) stays pending in North for good.
    await project(_moved(b, WEST, NORTH, str(uuid.uuid4()), T0 + timedelta(minutes=10)), views=LeadViews(db))
    try:
        await offices.transfer_many_to_office(NORTH, _bulk([b], WEST), north, NORA, db, Published(), "h153-later")
        later = "accepted"
    except CrmApiError as exc:
        later = f"refused {exc.status}: {exc.detail}"
    except RequestValidationError as exc:  # refuse_named's 422
        later = f"refused 422: {exc.errors()}"
    assert (_moves_sent(retry), pending_b, later) == ([a], [], "accepted"), (
        "the retry of a half-done bulk move sent a TransferLead for B (North -> South) though another move had taken "
        f"B to West meanwhile (sent: {_moves_sent(retry)}, B's transfer answered pending: {pending_b}); once B came "
        f"back to North, North's next bulk move of B was {later}"
    )


async def test_a_transfer_stopped_before_its_writes_and_retried_after_a_lead_left_writes_no_share_there(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1. North transfers lead L to Rio (T1, by id, key "h153-t1"); crm-api stores the record and stops before its
    #    writes (a crash, a timeout: the client gets no answer).
    # 2. North moves L to South (T2); the router applies it.
    # 3. The client retries step 1.
    await connected_with_rio(db)
    lead = str(await a_north_lead(db))
    body = sharing.TransferCreate(lead_ids=[lead], realtor_id="rio")
    real_apply = AccountTransfers.apply

    async def crash(self: AccountTransfers, transfer: dict[str, Any]) -> None:
        del self, transfer
        monkeypatch.setattr(AccountTransfers, "apply", real_apply)
        raise ConnectionError("crm-api stopped after storing the record")

    monkeypatch.setattr(AccountTransfers, "apply", crash)
    with pytest.raises(ConnectionError):
        await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h153-t1")
    await project(_moved(lead, NORTH, SOUTH, str(uuid.uuid4()), T0 + timedelta(minutes=5)), views=LeadViews(db))

    publish = Published()
    # A refusal (the lead is not North's any more) is a fine answer; what the retry wrote and sent is judged below.
    with contextlib.suppress(CrmApiError):
        await sharing.transfer_leads(NORTH, body, NORA, db, publish, "h153-t1")
    shared = [str(ShareLead.model_validate_json(b).payload.lead_id) for _, b in publish.records]
    south_sees = await lead_view(account_leads(SAM, db, SOUTH), SAM, db, lead)
    false_history = [e.summary for e in south_sees.timeline if e.type == "LeadShared"]
    assert (shared, false_history) == ([], []), (
        "a T1 retry after the lead moved to South sent a ShareLead for South's lead from North "
        f"({shared}) and wrote into its timeline, which South reads, {false_history}: the lead was never shared"
    )


async def _erase(db: Db, lead: str, account: str) -> None:
    erased = ContactErased.create(
        account_id=account,
        occurred_at=T0 + timedelta(minutes=20),
        payload=ContactErasedPayload(
            erasure_id=uuid.uuid4(), lead_ids=[uuid.UUID(lead)], by_user_id="nora", reason="ticket 153"
        ),
    )
    await project(erased, views=LeadViews(db))


async def _email_of(db: Db, lead: str) -> str:
    view = await lead_view(account_leads(NORA, db, NORTH), NORA, db, lead)
    assert view.email, "the lead has its contact's email before the erasure"
    return view.email


async def _records_naming(db: Db, collection: str, text: str) -> list[str]:
    return [str(doc["_id"]) async for doc in db[collection].find() if text in json.dumps(doc, default=str)]


async def test_a_transfer_by_a_filter_searching_a_contacts_email_keeps_no_email_once_the_contact_is_erased(
    db: Db,
) -> None:
    # North's broker types the contact's email in the list's search and transfers what it finds to Rio (T1 by filter);
    # the contact then asks to be forgotten (decision 0050: every service erases its copy).
    await connected_with_rio(db)
    lead = str(await a_north_lead(db))
    email = await _email_of(db, lead)
    body = sharing.TransferCreate(filter=LeadFilter(q=email), realtor_id="rio")
    done = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h153-q")
    assert done.transferred == 1
    await _erase(db, lead, NORTH)
    assert await _records_naming(db, CRM_TRANSFERS, email) == [], (
        f"the erased contact's email {email} is kept in crm_transfers (the record's `filter`)"
    )


async def test_a_bulk_move_by_a_filter_searching_a_contacts_email_keeps_no_email_once_the_contact_is_erased(
    db: Db,
) -> None:
    lead = str(await a_north_lead(db))
    email = await _email_of(db, lead)
    body = offices.BulkOfficeTransferCreate(filter=LeadFilter(q=email), to_account_id=SOUTH)
    done = await offices.transfer_many_to_office(
        NORTH, body, account_leads(NORA, db, NORTH), NORA, db, Published(), "h153-bulk-q"
    )
    assert [t.lead_id for t in done.transfers] == [lead]
    await _erase(db, lead, NORTH)
    assert await _records_naming(db, CRM_OFFICE_TRANSFERS, email) == [], (
        f"the erased contact's email {email} is kept in crm_office_transfers (the bulk record's `filter`)"
    )


async def test_a_half_done_bulk_moves_retry_sends_no_lead_to_an_office_that_left_the_organisation(db: Db) -> None:
    # North bulk-moves A and B to South; Kafka refuses the first TransferLead (503). South then leaves the acme-group
    # organisation (its `organisation_id` changes: an office sold). The client's retry is not checked again: it sends
    # both leads (their contacts) to an office of another organisation; the router checks no organisation.
    a, b = str(await a_north_lead(db)), str(await a_north_lead(db))
    north = account_leads(NORA, db, NORTH)
    with pytest.raises(Unavailable):
        await offices.transfer_many_to_office(NORTH, _bulk([a, b], SOUTH), north, NORA, db, kafka_down, "h153-org")
    await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": "another-group"}})
    retry = Published()
    with contextlib.suppress(CrmApiError):  # a refusal is the right answer here
        await offices.transfer_many_to_office(NORTH, _bulk([a, b], SOUTH), north, NORA, db, retry, "h153-org")
    assert _moves_sent(retry) == [], (
        f"the retry sent {len(retry.records)} TransferLead(s) from North to South after South left North's "
        "organisation: leads moved to another organisation"
    )


async def test_a_single_moves_retry_sends_no_lead_to_an_office_that_left_the_organisation(db: Db) -> None:
    # North moves L to South; Kafka refuses the TransferLead (503). South leaves the organisation; the client retries.
    # Refused naming `to_account_id`, nothing sent; the unsent move no longer holds L as being moved.
    lead = await a_north_lead(db)
    leads, no_members = account_leads(NORA, db, NORTH), cast(Any, None)
    single = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, single, leads, NORA, db, kafka_down, no_members, "h155-one")
    await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": "another-group"}})
    retry = Published()
    with pytest.raises(CrmApiError, match="to_account_id: not an office of this account's organisation"):
        await offices.transfer_to_office(NORTH, single, leads, NORA, db, retry, no_members, "h155-one")
    assert retry.records == []
    assert await OfficeTransfers(db).moving(NORTH, [str(lead)]) == {}, "the unsent move holds the lead no more"
    to_west = offices.OfficeTransferCreate(lead_id=lead, to_account_id=WEST)
    moved = await offices.transfer_to_office(NORTH, to_west, leads, NORA, db, Published(), no_members, "h155-west")
    assert moved.status == "pending"


async def test_a_half_done_transfers_retry_shares_the_leads_still_the_brokerages_and_answers_so_again(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # North transfers K and L to Rio; crm-api stops after storing the record. L moves to South. The retry shares K
    # only (its writes and ShareLead), says so, and a next retry answers the same, even once L is back in North.
    await connected_with_rio(db)
    kept, gone = str(await a_north_lead(db)), str(await a_north_lead(db))
    body = sharing.TransferCreate(lead_ids=[kept, gone], realtor_id="rio")
    real_apply = AccountTransfers.apply

    async def crash(self: AccountTransfers, transfer: dict[str, Any]) -> None:
        del self, transfer
        monkeypatch.setattr(AccountTransfers, "apply", real_apply)
        raise ConnectionError("crm-api stopped after storing the record")

    monkeypatch.setattr(AccountTransfers, "apply", crash)
    with pytest.raises(ConnectionError):
        await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h155-t1")
    await project(_moved(gone, NORTH, SOUTH, str(uuid.uuid4()), T0 + timedelta(minutes=5)), views=LeadViews(db))
    publish = Published()
    done = await sharing.transfer_leads(NORTH, body, NORA, db, publish, "h155-t1")
    shared = [str(ShareLead.model_validate_json(b).payload.lead_id) for _, b in publish.records]
    assert (done.transferred, shared) == (1, [kept])
    await project(_moved(gone, SOUTH, NORTH, str(uuid.uuid4()), T0 + timedelta(minutes=10)), views=LeadViews(db))
    again = Published()
    assert (await sharing.transfer_leads(NORTH, body, NORA, db, again, "h155-t1")).transferred == 1
    assert again.records == []
    north = account_leads(NORA, db, NORTH)
    assert (await lead_view(north, NORA, db, kept)).assigned_to == "rio"
    assert [e for e in (await lead_view(north, NORA, db, gone)).timeline if e.type == "LeadShared"] == []


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def web(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[httpx.AsyncClient]:
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        await site.sign_in(f"{ACCOUNT}|oak-boss|broker")
        app: Any = site.web._transport.app  # type: ignore[attr-defined]  # the ASGI app the client calls
        # A server error answered, not raised into the test (as a browser gets it).
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://crm", follow_redirects=False, cookies=site.web.cookies
        ) as client:
            yield client


@pytest.mark.parametrize(
    "fields",
    [
        {"remove": "²"},  # "²".isdigit() is True; int("²") raises
        {"remove": "9" * 5000},  # digits, beyond what int() reads from text (4,300)
        {"start": "20:00", "end": "21:00", "weekdays": "²"},
    ],
    ids=["remove-superscript", "remove-5000-digits", "weekday-superscript"],
)
async def test_the_pause_form_refuses_a_position_or_weekday_that_is_no_number_with_a_4xx(
    web: httpx.AsyncClient, fields: dict[str, str]
) -> None:
    # POST /app/accounts/oak/settings/pause with the session's CSRF token and `remove=²` (or `weekdays=²` with a
    # window): S3, every form fuzzed: a refusal is a 4xx naming the field, never a server error.
    pause = f"/app/accounts/{ACCOUNT}/settings/pause"
    page = await web.get(f"/app/accounts/{ACCOUNT}/settings")
    assert page.status_code == 200, page.text[:300]
    # A window to remove (`remove` is read against each window the schedule has).
    added = await web.post(pause, data={"csrf": csrf_of(page), "start": "20:00", "end": "21:00", "weekdays": "0"})
    assert added.status_code == 303, added.text[:300]
    answer = await web.post(pause, data={"csrf": csrf_of(page), **fields})
    assert answer.status_code < 500, f"{sorted(fields)} -> {answer.status_code}: {answer.text[:200]}"


# --- helper 158's review of eba9270 (session 32), fixed by helper 159 -------------------------------------------


class _NoCallers:
    """crm-api's callers cache (a moved member's tokens are refused from its next request on): nothing to recheck."""

    async def recheck(self, agent_id: str) -> None:
        del agent_id


def _shared(publish: Published) -> list[str]:
    return sorted(str(ShareLead.model_validate_json(b).payload.lead_id) for _, b in publish.records)


async def test_a_lead_being_moved_whose_views_a_transfer_wrote_is_still_shared_by_its_retry(db: Db) -> None:
    # 1. North transfers K and L to Rio (T1, key "h158-t1"): the views are written (both rows "Assigned To" Rio, a
    #    "Transferred to Rio" entry each, the record `done`), then Kafka refuses the ShareLeads: 503.
    # 2. North moves L to South (T2, key "h158-l"); Kafka refuses it too: the move is pending, unpublished.
    # 3. The T1 retry drops L ("being moved") and shares K only: L's row was written by step 1 and stays so.
    # 4. South leaves the organisation; the move's retry is refused 422 and its record deleted: L stays North's.
    # Helper 158's review (#1): L was dropped at step 3, left Rio's in North's views while the router was never told.
    # Now a lead still the account's whose row the transfer wrote is shared all the same (decision 0018, session 32).
    await connected_with_rio(db)
    kept, dropped = str(await a_north_lead(db)), str(await a_north_lead(db))
    body = sharing.TransferCreate(lead_ids=[kept, dropped], realtor_id="rio")
    with pytest.raises(Unavailable):
        await sharing.transfer_leads(NORTH, body, NORA, db, kafka_down, "h158-t1")
    north = account_leads(NORA, db, NORTH)
    move = offices.OfficeTransferCreate(lead_id=uuid.UUID(dropped), to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, move, north, NORA, db, kafka_down, _NoCallers(), "h158-l")  # type: ignore[arg-type]

    retry = Published()
    await sharing.transfer_leads(NORTH, body, NORA, db, retry, "h158-t1")
    await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": "another-group"}})
    try:
        with pytest.raises(CrmApiError, match="to_account_id"):
            await offices.transfer_to_office(NORTH, move, north, NORA, db, Published(), _NoCallers(), "h158-l")  # type: ignore[arg-type]
        again = Published()
        await sharing.transfer_leads(NORTH, body, NORA, db, again, "h158-t1")
    finally:
        await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": ORG}})
    row = await db[CRM_LEADS].find_one({"_id": dropped})
    assert row is not None
    assert row["account_id"] == NORTH, "L stayed North's"
    told = dropped in _shared(retry) + _shared(again)
    assert (row.get("transferred_to"), told) != ("rio", False), (
        "L was dropped from the transfer after its views were written: North's row says L is Rio's "
        f"(transferred_to={row.get('transferred_to')!r}) while no ShareLead for L was ever sent (the router's holder "
        "is not Rio), and no retry sends one: the record keeps L dropped"
    )


async def test_a_team_members_retry_after_the_member_moved_on_is_refused_and_writes_nothing(db: Db) -> None:
    # 1. North moves Ben to South (T2, key "h158-ben"): his settings move (Onboarding in South), then Kafka refuses
    #    the TransferTeamMember: 503, "retry with the same Idempotency-Key".
    # 2. South's broker moves Ben on to West (its own move, which goes).
    # 3. North's client retries step 1. Ben is West's: the retry's `move_member` writes no agent record, but puts Ben
    #    back on South's roster and sends TransferTeamMember (Ben -> South): the notifier tells South's staff that Ben
    #    joined, and the move is answered (then `done`) though Ben is West's. A lead's move is checked so (the lead
    #    must still be the office's); a member's was not (helper 158's review #2). Now refused, nothing written.
    await db[AGENTS].insert_one({"_id": "bea", "account_id": NORTH, "name": "Bea", "active": True})
    await db[ACCOUNTS].update_one({"_id": NORTH}, {"$addToSet": {"roster": "bea"}})
    north = account_leads(NORA, db, NORTH)
    bea = offices.OfficeTransferCreate(agent_id="bea", to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, bea, north, NORA, db, kafka_down, _NoCallers(), "h158-bea")  # type: ignore[arg-type]
    south = account_leads(SAM, db, SOUTH)
    onward = offices.OfficeTransferCreate(agent_id="bea", to_account_id=WEST)
    await offices.transfer_to_office(SOUTH, onward, south, SAM, db, Published(), _NoCallers(), "h158-bea-west")  # type: ignore[arg-type]
    assert (await db[AGENTS].find_one({"_id": "bea"}) or {}).get("account_id") == WEST

    retry = Published()
    answer: str
    try:
        moved = await offices.transfer_to_office(NORTH, bea, north, NORA, db, retry, _NoCallers(), "h158-bea")  # type: ignore[arg-type]
        answer = f"answered {moved.status}"
    except CrmApiError as exc:
        answer = f"refused {exc.status}"
    south_roster = (await db[ACCOUNTS].find_one({"_id": SOUTH}) or {}).get("roster", [])
    assert (len(retry.records), "bea" in south_roster) == (0, False), (
        f"the retry of North's move of Bea to South ({answer}) after South moved Bea on to West sent "
        f"{len(retry.records)} TransferTeamMember (South's staff told Bea joined) and South's roster names West's "
        f"agent Bea again: {south_roster}"
    )


async def test_a_filter_kept_as_text_before_digests_is_rewritten_as_its_digest_when_read(
    db: Db,
) -> None:
    # Records stored between helper 144's change and eba9270 keep their filter as text (`LeadFilter.as_stored`), and
    # eba9270 still knows them by it (`recorded_filter`). Nothing rewrites them and no erasure reaches crm_transfers or
    # crm_office_transfers: a search for the contact's email typed in such a filter outlived the erasure (0050).
    # Now a record known by its text is rewritten as its digest (helper 158's review #3).
    await connected_with_rio(db)
    lead = str(await a_north_lead(db))
    email = await _email_of(db, lead)
    as_before = LeadFilter(q=email)
    done = await sharing.transfer_leads(
        NORTH, sharing.TransferCreate(filter=as_before, realtor_id="rio"), NORA, db, Published(), "h158-old-q"
    )
    await db[CRM_TRANSFERS].update_one({"_id": done.transfer_id}, {"$set": {"filter": as_before.as_stored()}})
    again = await sharing.transfer_leads(
        NORTH, sharing.TransferCreate(filter=as_before, realtor_id="rio"), NORA, db, Published(), "h158-old-q"
    )
    assert again.transfer_id == done.transfer_id, "the old record is known again by its text"
    await _erase(db, lead, NORTH)
    assert await _records_naming(db, CRM_TRANSFERS, email) == [], (
        f"the erased contact's email {email} is kept in crm_transfers: a record stored before digests keeps its "
        "filter's text, and nothing scrubs it"
    )


async def test_a_move_without_a_key_refused_by_kafka_holds_its_lead_no_more(db: Db) -> None:
    # North's broker moves L to South without an Idempotency-Key (or from the web form, whose key is the page's: the
    # next page is another key); Kafka refuses the TransferLead: 503. Nothing was sent and no retry of that move can
    # be made: its record stays `pending` for good (0020), L North's in every view and in the router. Since eba9270 a
    # pending move makes L "being moved": North could never transfer L to a realtor (T1), nor move it in bulk.
    # Now a move without a key that Kafka refused is forgotten (helper 158's review #4; decision 0020, session 32).
    await connected_with_rio(db)
    lead = await a_north_lead(db)
    north = account_leads(NORA, db, NORTH)
    move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, move, north, NORA, db, kafka_down, _NoCallers(), None)  # type: ignore[arg-type]
    body = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    try:
        done = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h158-after-503")
        answer = f"transferred {done.transferred}"
    except CrmApiError as exc:
        answer = f"refused {exc.status}: {exc.detail}"
    assert answer == "transferred 1", (
        f"a transfer of L to Rio was {answer}, though the only move of L never reached the router and can never be "
        "retried: L is North's, and stays 'being moved' for good"
    )


async def test_a_transfer_refused_whole_on_a_retry_is_refused_the_same_once_its_lead_is_back(db: Db) -> None:
    # 1. North transfers L to Rio (key "h158-all"); crm-api stops after storing the record (no answer).
    # 2. L moves to South; the client retries: 422 "lead_ids: 1 not found in this account, nothing was transferred".
    # 3. L comes back to North; the same retry again shares L with Rio (views and ShareLead), answered 200.
    # 0018 (helper 153): "a dropped lead is not shared by a later retry even once it is back in the account"; a retry
    # whose every lead was dropped recorded none dropped, so its answer changed (helper 158's review #5). Now the
    # refusal is recorded and answered again.
    await connected_with_rio(db)
    lead = str(await a_north_lead(db))
    body = sharing.TransferCreate(lead_ids=[lead], realtor_id="rio")
    real_apply = AccountTransfers.apply

    async def crash(self: AccountTransfers, transfer: dict[str, Any]) -> None:
        del self, transfer
        raise ConnectionError("crm-api stopped after storing the record")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AccountTransfers, "apply", crash)
        with pytest.raises(ConnectionError):
            await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h158-all")
    assert AccountTransfers.apply is real_apply
    await project(_moved(lead, NORTH, SOUTH, str(uuid.uuid4()), T0 + timedelta(minutes=5)), views=LeadViews(db))
    with pytest.raises(CrmApiError, match="lead_ids: 1 not found"):
        await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h158-all")
    await project(_moved(lead, SOUTH, NORTH, str(uuid.uuid4()), T0 + timedelta(minutes=10)), views=LeadViews(db))
    later = Published()
    with contextlib.suppress(CrmApiError):
        await sharing.transfer_leads(NORTH, body, NORA, db, later, "h158-all")
    row = await db[CRM_LEADS].find_one({"_id": lead})
    assert (_shared(later), (row or {}).get("transferred_to")) == ([], None), (
        "a retry answered 422 'nothing was transferred' (its lead had left) shared the lead with Rio when retried "
        f"again once the lead was back (ShareLead for {_shared(later)}, row transferred_to "
        f"{(row or {}).get('transferred_to')!r})"
    )


async def test_a_single_moves_retry_refused_now_keeps_the_record_of_a_command_that_went_out(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1. North moves L to South (key "h158-out"): the TransferLead goes out, then crm-api stops before marking it
    #    published (a crash; the client gets no answer).
    # 2. South leaves the organisation; the client retries: 422 "to_account_id ... nothing was transferred", and
    #    `release` deletes the move's record (it reads as never published).
    # 3. The router applies the command it got in step 1: L is South's; the projection's `mark_done` finds no record.
    # The client was told nothing was transferred; GET .../office-transfers/{id} was a 404 while L moved (helper
    # 158's review #6). Now a move being sent is never forgotten: the retry answers it pending, sends nothing.
    lead = await a_north_lead(db)
    north = account_leads(NORA, db, NORTH)
    move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    sent = Published()
    real_mark = OfficeTransfers.mark_published

    async def crash(self: OfficeTransfers, transfer_id: str) -> None:
        del self, transfer_id
        monkeypatch.setattr(OfficeTransfers, "mark_published", real_mark)
        raise ConnectionError("crm-api stopped after publishing")

    monkeypatch.setattr(OfficeTransfers, "mark_published", crash)
    with pytest.raises(ConnectionError):
        await offices.transfer_to_office(NORTH, move, north, NORA, db, sent, _NoCallers(), "h158-out")  # type: ignore[arg-type]
    [(_, command)] = sent.records
    transfer_id = str(json.loads(command)["event_id"])
    await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": "another-group"}})
    try:
        with contextlib.suppress(CrmApiError):
            await offices.transfer_to_office(NORTH, move, north, NORA, db, Published(), _NoCallers(), "h158-out")  # type: ignore[arg-type]
    finally:
        await db[ACCOUNTS].update_one({"_id": SOUTH}, {"$set": {"organisation_id": ORG}})
    await project(_moved(str(lead), NORTH, SOUTH, transfer_id, T0 + timedelta(minutes=5)), views=LeadViews(db))
    record = await db[CRM_OFFICE_TRANSFERS].find_one({"_id": transfer_id})
    now_in = (await db[CRM_LEADS].find_one({"_id": str(lead)}) or {}).get("account_id")
    assert (record or {}).get("status") == "done", (
        "the retry deleted the record of a move whose TransferLead had gone out (published, the mark lost): the "
        f"router applied it and L is {now_in}'s, but the move is unknown (record: {record})"
    )


async def test_a_single_move_of_a_lead_another_move_is_moving_is_refused_as_a_bulk_move_is(
    db: Db,
) -> None:
    # 1. North moves L to West (key "h158-w"); Kafka refuses the TransferLead: 503, "retry with the same key". L is
    #    "being moved" (`moving`): T1 and a bulk move refuse it from now on.
    # 2. North moves L to South (key "h158-s"): a single move's first attempt never asks `moving`, so it is accepted
    #    (202) and its TransferLead goes.
    # 3. The client retries step 1, as told: `_still_movable` finds L moved by another transfer, refuses 422 and
    #    deletes the first move. The first request is refused by the move that should have been refused (as its own
    #    retry would be, and as a bulk move of L is: "already being moved to another office"). Helper 158's review
    #    #7: now step 2 is refused.
    lead = await a_north_lead(db)
    north = account_leads(NORA, db, NORTH)
    to_west = offices.OfficeTransferCreate(lead_id=lead, to_account_id=WEST)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, to_west, north, NORA, db, kafka_down, _NoCallers(), "h158-w")  # type: ignore[arg-type]
    to_south = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    second = Published()
    try:
        moved = await offices.transfer_to_office(NORTH, to_south, north, NORA, db, second, _NoCallers(), "h158-s")  # type: ignore[arg-type]
        answer = f"accepted ({moved.status})"
    except CrmApiError as exc:
        answer = f"refused {exc.status}"
    assert (answer, second.records) == ("refused 422", []), (
        f"a single move of L to South while L's move to West is pending was {answer} and sent "
        f"{len(second.records)} TransferLead: two moves of one lead at once (the router refuses one, which stays "
        "pending for good), and the first move's retry is then refused as 'already being moved'"
    )


async def test_a_keyed_move_refused_by_kafka_holds_its_lead_only_for_a_bounded_time(db: Db) -> None:
    # North moves L to South with a key (the web form's page key, say); Kafka refuses it: 503. Its client may retry
    # it, so L is being moved; past `UNSENT_HOLD` the unpublished move holds L no more: a transfer to Rio goes (helper
    # 158's review #4; decision 0020, session 32). Its late retry is checked against the present (L Rio's: it moves).
    await connected_with_rio(db)
    lead = await a_north_lead(db)
    north = account_leads(NORA, db, NORTH)
    move = offices.OfficeTransferCreate(lead_id=lead, to_account_id=SOUTH)
    with pytest.raises(Unavailable):
        await offices.transfer_to_office(NORTH, move, north, NORA, db, kafka_down, _NoCallers(), "h159-hold")  # type: ignore[arg-type]
    body = sharing.TransferCreate(lead_ids=[str(lead)], realtor_id="rio")
    with pytest.raises(CrmApiError, match="being moved"):
        await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h159-hold-t1")
    [record] = [d async for d in db[CRM_OFFICE_TRANSFERS].find({"lead_id": str(lead)})]
    aged = record["at"] - UNSENT_HOLD - timedelta(seconds=1)
    await db[CRM_OFFICE_TRANSFERS].update_one({"_id": record["_id"]}, {"$set": {"at": aged}})
    done = await sharing.transfer_leads(NORTH, body, NORA, db, Published(), "h159-hold-t1b")
    assert done.transferred == 1
