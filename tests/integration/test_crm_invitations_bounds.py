"""Helper 189's review (session 38): lead sharing to realtors (T1) and its invitations (V4) from the realtor's seat
and from a hostile brokerage, in crm-api's use cases on a real MongoDB-wire server (nx-27017).

- A realtor's accept and the brokerage's disconnect landing together: the accept writes the invitation, the
  disconnect ends it and clears the agent's `invitation_accepted`, then the accept's own flag write lands last and
  sets it again. The invitation says disconnected, the router (R6) reads the flag and keeps offering the brokerage's
  new leads, with their contacts, to the realtor the brokerage disconnected. Nothing repairs it on its own: the
  realtor's retried accept is refused (the invitation is disconnected), and My Realtors no longer lists the realtor, so
  the broker has no reason (nor a button) to disconnect it again, the one request that would write the flag back.
  The same root cause, the other way round: a decline's late flag write after a re-invitation was accepted leaves an
  accepted agent out of R6. The flag was written from the request's own answer; it is now written from what the
  invitation says once written, and written again if it changed meanwhile (`Invitations.mark_agent`).
- A brokerage made leadflow email any address as often as it liked: every new `realtor_id` a new invitation and a
  new email (a spam relay under leadflow's sending reputation). Now at most `INVITATIONS_PER_DAY` a day, then 429.
Each test failed before.

Session 39 (decision 0108): an invitation not answered within `INVITATION_VALID` expires, the brokerage can withdraw
one not answered, and a realtor can leave a brokerage it joined; each ends the router's R6 flag, and the brokerage may
invite again. Helper 194: a withdrawal and a new invitation in a loop sent any number of emails (the bound counted
invitations, not the emails each re-invitation sends). Helper 198: invitations asked at once each read the count
before any was counted; the last of the day whose email Kafka refused was counted and then refused; another
brokerage's broker was told the count (429 before 403). An email is now counted before it goes, the count read after
(`_count_email`), and the caller checked first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import Published
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.invitations import Invitations
from leadflow_crm_api.adapters.leads import ensure_indexes
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.sharing import INVITATION_VALID, InvitationStatus, invitation_id
from leadflow_crm_api.errors import CrmApiError
from leadflow_crm_api.use_cases import sharing
from leadflow_shared.collections import ACCOUNTS, AGENTS, CRM_INVITATIONS
from leadflow_shared.events.commands import InviteRealtor

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
NORTH = "north"
NORA = Principal("nora", Role.BROKER, NORTH)
ANA = Principal("ana", Role.REALTOR, NORTH)  # North's own agent: R6 offers it leads only once it accepted
ANA_INVITATION = invitation_id(NORTH, "ana")


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = client[f"crm_review190_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(database)
    await database[ACCOUNTS].insert_one({"_id": NORTH, "name": "North Realty", "roster": ["nora", "ana"]})
    await database[AGENTS].insert_many([
        {"_id": a, "account_id": NORTH, "name": a.title(), "email": f"{a}@north.example", "active": True,
         "invitation_accepted": False}
        for a in ("nora", "ana")
    ])  # fmt: skip
    yield database
    await client.drop_database(database.name)
    await client.close()


async def _flag(db: Db, agent_id: str) -> bool:
    doc = await db[AGENTS].find_one({"_id": agent_id})
    assert doc is not None
    return bool(doc["invitation_accepted"])  # nx-27017 keeps a $set bool as 1/0 (decision 0018)


async def test_a_realtor_disconnected_while_its_accept_finishes_is_not_left_eligible_for_the_brokerage_s_leads(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sharing.invite(NORTH, sharing.InvitationCreate(realtor_id="ana", email="ana@north.example"), NORA, db,
                         Published())  # fmt: skip
    original = Invitations._set_flag
    raced: list[str] = []

    async def disconnect_lands_before_the_accepts_flag(
        self: Invitations, account_id: str, realtor_id: str, accepted: bool
    ) -> None:
        # The accept wrote the invitation and read it accepted; before its flag write lands, the broker (another
        # request, another replica) disconnects the realtor: it ends the invitation and clears the flag.
        if accepted and not raced:
            raced.append("disconnect")
            ended = await sharing.disconnect(NORTH, "ana", NORA, db)
            assert ended.status is InvitationStatus.DISCONNECTED
        await original(self, account_id, realtor_id, accepted)

    monkeypatch.setattr(Invitations, "_set_flag", disconnect_lands_before_the_accepts_flag)
    await sharing.answer_invitation(invitation_id(NORTH, "ana"), ANA, db, InvitationStatus.ACCEPTED)
    monkeypatch.undo()

    stored = await Invitations(db).get(invitation_id(NORTH, "ana"))
    assert stored is not None
    assert stored["status"] == InvitationStatus.DISCONNECTED.value, "the brokerage disconnected the realtor"
    assert not await _flag(db, "ana"), (
        "the invitation says disconnected, yet the agent's invitation_accepted (what the router's R6 reads) says "
        "accepted: the router keeps offering North's new leads, contacts included, to a realtor North disconnected; "
        "My Realtors no longer lists it and its retried accept is refused, so nothing repairs the flag"
    )


async def test_a_brokerage_cannot_make_leadflow_email_one_address_without_bound(db: Db) -> None:
    # A broker (or a stolen broker token) invites made-up realtor ids, all at one address that is nobody's realtor:
    # each is a new invitation, and each sends a new "North Realty invites you" email through leadflow's relay.
    publish = Published()
    victim = "someone.else@victim.example"
    tries = 100
    refused = []
    for i in range(tries):
        body = sharing.InvitationCreate(realtor_id=f"made-up-{i}", email=victim, name="Dear Friend")
        try:
            await sharing.invite(NORTH, body, NORA, db, publish)
        except CrmApiError as exc:
            refused.append(exc.status)
    emailed = [
        cmd for _, raw in publish.records if (cmd := InviteRealtor.model_validate_json(raw)).payload.email == victim
    ]
    assert len(emailed) == sharing.INVITATIONS_PER_DAY < tries, (
        f"{len(emailed)} invitation emails to one address within seconds, from one brokerage"
    )
    assert refused == [429] * (tries - sharing.INVITATIONS_PER_DAY), "the rest refused as too many, nothing sent"


async def _invite_ana(db: Db, publish: Published | None = None) -> None:
    body = sharing.InvitationCreate(realtor_id="ana", email="ana@north.example")
    await sharing.invite(NORTH, body, NORA, db, publish or Published())


async def _refused(work: Any, status: int = 422) -> str:
    with pytest.raises(CrmApiError) as refused:
        await work
    assert refused.value.status == status, refused.value.detail
    return str(refused.value.detail)


async def test_an_invitation_not_answered_in_time_expires_and_a_new_one_can_be_sent(db: Db) -> None:
    publish = Published()
    await _invite_ana(db, publish)
    older = INVITATION_VALID + timedelta(minutes=1)  # invited just over the validity ago
    await db[CRM_INVITATIONS].update_one(
        {"_id": ANA_INVITATION}, {"$inc": {"invited_ms": -older // timedelta(milliseconds=1)}}
    )

    [listed] = (await sharing.list_invitations(NORTH, NORA, db)).items
    assert listed.status is InvitationStatus.EXPIRED
    assert [i.status for i in (await sharing.my_invitations(ANA, db)).items] == [InvitationStatus.EXPIRED]
    why = await _refused(sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED))
    assert "expired" in why
    assert not await _flag(db, "ana")
    refused = sharing.transfer_leads(NORTH, sharing.TransferCreate(realtor_id="ana", lead_ids=["l1"]), NORA, db,
                                     Published(), None)  # fmt: skip
    assert "expired" in await _refused(refused)

    again, invited = await sharing.invite(NORTH, sharing.InvitationCreate(realtor_id="ana", email="ana@north.example"),
                                          NORA, db, publish)  # fmt: skip
    assert (invited, again.status) == (True, InvitationStatus.PENDING)
    assert len(publish.records) == 2, "the new invitation is emailed again"
    accepted = await sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED)
    assert accepted.status is InvitationStatus.ACCEPTED
    assert await _flag(db, "ana")


async def test_a_withdrawn_invitation_cannot_be_accepted_and_only_its_brokerage_withdraws_it(db: Db) -> None:
    await _invite_ana(db)
    elsewhere = Principal("sam", Role.BROKER, "south")
    assert await _refused(sharing.withdraw(NORTH, ANA_INVITATION, elsewhere, db), 403)
    assert await _refused(sharing.withdraw("south", ANA_INVITATION, elsewhere, db), 404)
    assert await _refused(sharing.withdraw(NORTH, ANA_INVITATION, ANA, db), 403)

    taken = await sharing.withdraw(NORTH, ANA_INVITATION, NORA, db)
    assert taken.status is InvitationStatus.WITHDRAWN
    again = await sharing.withdraw(NORTH, ANA_INVITATION, NORA, db)  # a retry answers the same
    assert (again.status, again.answered_at) == (InvitationStatus.WITHDRAWN, taken.answered_at)
    assert "withdrew" in await _refused(sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED))
    assert not await _flag(db, "ana")

    await _invite_ana(db)
    await sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED)
    assert "disconnect" in await _refused(sharing.withdraw(NORTH, ANA_INVITATION, NORA, db))
    assert await _flag(db, "ana"), "a refused withdrawal leaves the accepted realtor as it was"


async def test_an_accept_overtaken_by_the_withdrawal_is_refused_and_leaves_the_realtor_out(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _invite_ana(db)
    original = Invitations.answer

    async def withdrawn_first(self: Invitations, *args: Any) -> bool:
        await sharing.withdraw(NORTH, ANA_INVITATION, NORA, db)  # another replica, between the accept's read and write
        return await original(self, *args)

    monkeypatch.setattr(Invitations, "answer", withdrawn_first)
    assert "withdrew" in await _refused(sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED))
    monkeypatch.undo()
    assert [i.status for i in (await sharing.my_invitations(ANA, db)).items] == [InvitationStatus.WITHDRAWN]
    assert not await _flag(db, "ana")


async def test_a_realtor_leaves_the_brokerage_gets_no_more_of_its_leads_and_can_be_invited_again(db: Db) -> None:
    await _invite_ana(db)
    assert "accepted" in await _refused(sharing.leave(ANA_INVITATION, ANA, db)), "a pending invitation is declined"
    await sharing.answer_invitation(ANA_INVITATION, ANA, db, InvitationStatus.ACCEPTED)
    assert await _flag(db, "ana")
    assert await _refused(sharing.leave(ANA_INVITATION, Principal("bo", Role.REALTOR, NORTH), db), 404)
    assert await _refused(sharing.leave(ANA_INVITATION, NORA, db), 403)

    left = await sharing.leave(ANA_INVITATION, ANA, db)
    assert left.status is InvitationStatus.LEFT
    assert (await sharing.leave(ANA_INVITATION, ANA, db)).answered_at == left.answered_at, "a retry answers the same"
    assert not await _flag(db, "ana"), "R6: the router offers it none of North's leads any more"
    assert (await sharing.my_realtors(NORTH, NORA, db)).items == []
    refused = sharing.transfer_leads(NORTH, sharing.TransferCreate(realtor_id="ana", lead_ids=["l1"]), NORA, db,
                                     Published(), None)  # fmt: skip
    assert "left" in await _refused(refused)

    again, invited = await sharing.invite(NORTH, sharing.InvitationCreate(realtor_id="ana", email="ana@north.example"),
                                          NORA, db, Published())  # fmt: skip
    assert (invited, again.status) == (True, InvitationStatus.PENDING)


async def test_withdrawing_and_inviting_again_does_not_escape_the_daily_bound_of_invitation_emails(db: Db) -> None:
    publish = Published()
    tries = 2 * sharing.INVITATIONS_PER_DAY
    refused: list[int] = []
    key = invitation_id(NORTH, "made-up")
    for i in range(tries):
        body = sharing.InvitationCreate(realtor_id="made-up", email=f"victim-{i}@victim.example", name="Dear Friend")
        try:
            await sharing.invite(NORTH, body, NORA, db, publish)
        except CrmApiError as exc:
            refused.append(exc.status)
            continue
        await sharing.withdraw(NORTH, key, NORA, db)  # the brokerage alone ends it: no realtor needed
    emails = {cmd.event_id: cmd.payload.email for _, raw in publish.records
              if (cmd := InviteRealtor.model_validate_json(raw))}  # fmt: skip
    assert len(emails) == sharing.INVITATIONS_PER_DAY, f"{len(emails)} invitation emails within seconds"
    assert refused == [429] * (tries - sharing.INVITATIONS_PER_DAY)


SAM = Principal("sam", Role.BROKER, "south")  # another brokerage's broker


def _emails(publish: Published) -> set[str]:
    return {str(InviteRealtor.model_validate_json(raw).event_id) for _, raw in publish.records}


async def _invite_one(db: Db, publish: object, i: int, caller: Principal = NORA) -> str:
    body = sharing.InvitationCreate(realtor_id=f"made-up-{i}", email=f"victim-{i}@victim.example", name="Friend")
    try:
        await sharing.invite(NORTH, body, caller, db, publish)  # type: ignore[arg-type]
    except CrmApiError as exc:
        return f"refused {exc.status}"
    return "sent"


async def test_invitations_asked_at_once_do_not_pass_the_daily_bound_together(db: Db) -> None:
    publish = Published()
    tries = 3 * sharing.INVITATIONS_PER_DAY
    answers = await asyncio.gather(*(_invite_one(db, publish, i) for i in range(tries)))
    assert len(_emails(publish)) <= sharing.INVITATIONS_PER_DAY, (
        f"{len(_emails(publish))} invitation emails in one burst of {tries} parallel requests (bound "
        f"{sharing.INVITATIONS_PER_DAY} a day); answers: {sorted(set(answers))}"
    )


async def test_the_last_invitation_of_the_day_whose_email_kafka_refused_can_be_sent_by_inviting_again(db: Db) -> None:
    publish = Published()
    for i in range(sharing.INVITATIONS_PER_DAY - 1):
        assert await _invite_one(db, publish, i) == "sent"

    async def kafka_down(account_id: str, body: bytes) -> None:
        del account_id, body
        raise ConnectionError("the broker is unreachable")

    last = sharing.INVITATIONS_PER_DAY - 1
    assert await _invite_one(db, kafka_down, last) == "refused 503"  # "saved but was not emailed; invite again"
    again = await _invite_one(db, publish, last)
    assert (again, len(_emails(publish))) == ("sent", sharing.INVITATIONS_PER_DAY), (
        f'inviting again as told: {again} ("none was sent. Try again tomorrow."): the bound counted an email that '
        f"never went, {len(_emails(publish))} of {sharing.INVITATIONS_PER_DAY} sent"
    )


async def test_another_brokerages_broker_is_refused_403_not_told_the_brokerages_daily_count(db: Db) -> None:
    publish = Published()
    for i in range(sharing.INVITATIONS_PER_DAY):
        assert await _invite_one(db, publish, i) == "sent"
    answered = await _invite_one(db, Published(), 999, caller=SAM)
    assert answered == "refused 403", (
        f"South's broker inviting into North: {answered} (North's daily invitation count is read before the "
        "caller is checked: 429 tells another tenant North sent its 50 invitation emails today)"
    )
