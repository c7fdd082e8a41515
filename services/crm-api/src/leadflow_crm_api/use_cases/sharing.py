"""Lead sharing (T1) and the invitations it depends on (V4), for the JSON API and the web app.

Brokers/admins of an account invite realtors, list them ("My Realtors") and transfer leads
to those who accepted; only the invited realtor (token `sub` == `realtor_id`) answers an
invitation. A transfer is validated whole, then written (adapters/transfers.py), so a
refusal changes nothing. Decision 0018.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.invitations import Invitations
from leadflow_crm_api.adapters.leads import ScopedLeads, scope_filter
from leadflow_crm_api.adapters.offices import OfficeTransfers
from leadflow_crm_api.adapters.transfers import AccountTransfers
from leadflow_crm_api.deps import IdText
from leadflow_crm_api.domain.distribution import LeadFilter, recorded_filter
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.sharing import (
    MAX_TRANSFER_LEADS,
    NOT_FOUND,
    SHARED_SINCE,
    InvitationStatus,
    InviteOutcome,
    answer_refusal,
    effective_status,
    invitation_id,
    invite_outcome,
    leave_refusal,
    realtor_label,
    same_transfer,
    share_command_id,
    transfer_id,
    transfer_record,
    transfer_refusal,
    unique,
    unshareable,
    unshareable_refusal,
    withdraw_refusal,
)
from leadflow_crm_api.domain.text import Email, PersonName
from leadflow_crm_api.errors import Forbidden, InvalidRequest, NotFound, TooManyRequests
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.selection import selected_leads
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.commands import InviteRealtor, InviteRealtorPayload, ShareLead, ShareLeadPayload
from leadflow_shared.kafka import PublishRaw

Db = AsyncDatabase[dict[str, Any]]


class InvitationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"realtor_id": "riley-park", "email": "riley.park@example.com", "name": "Riley Park"}]
        },
    )

    realtor_id: IdText = Field(description="The realtor's user id (its token `sub`), who answers the invitation.")
    email: Email
    name: PersonName | None = Field(default=None, description="The realtor's name, shown with its leads.")


_INVITATION_EXAMPLE: dict[str, Any] = {
    "invitation_id": "1efbe7bb-e815-5df2-b8d4-30a980b469d1",
    "account_id": "acme-realty",
    "realtor_id": "riley-park",
    "email": "riley.park@example.com",
    "name": "Riley Park",
    "status": "accepted",
    "invited_at": "2026-11-20T14:00:00Z",
    "answered_at": "2026-11-21T09:30:00Z",
}


class InvitationPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_INVITATION_EXAMPLE]})

    invitation_id: str
    account_id: str
    realtor_id: str
    email: str
    name: str | None
    status: InvitationStatus
    invited_at: datetime
    answered_at: datetime | None


class InvitationList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_INVITATION_EXAMPLE]}]})

    items: list[InvitationPublic]


class RealtorPublic(BaseModel):
    realtor_id: str
    name: str | None
    email: str
    accepted_at: datetime | None


class RealtorList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "realtor_id": "riley-park",
                            "name": "Riley Park",
                            "email": "riley.park@example.com",
                            "accepted_at": "2026-11-21T09:30:00Z",
                        }
                    ]
                }
            ]
        }
    )

    items: list[RealtorPublic] = Field(description='"My Realtors": realtors who accepted, who can receive leads.')


class TransferCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lead_ids": ["0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12", "5d2f7a9b-8c1e-4b3a-a6d5-e4f3c2b1a098"],
                    "realtor_id": "riley-park",
                }
            ]
        },
    )

    lead_ids: list[IdText] | None = Field(default=None, min_length=1, max_length=MAX_TRANSFER_LEADS)
    filter: LeadFilter | None = Field(
        default=None,
        description=f"Instead of `lead_ids`: every lead the brokerage list's filter matches "
        f"(at most {MAX_TRANSFER_LEADS}).",
    )
    realtor_id: IdText

    @model_validator(mode="after")
    def _one_selection(self) -> TransferCreate:
        if (self.lead_ids is None) == (self.filter is None):
            raise ValueError("give lead_ids or filter, not both")
        return self


class TransferDone(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": "d37797e5-95d2-5818-af0f-5457647aba4a",
                    "realtor_id": "riley-park",
                    "assigned_by": "Acme Realty",
                    "transferred": 2,
                    "transferred_at": "2026-11-24T15:04:05Z",
                }
            ]
        }
    )

    transfer_id: str
    realtor_id: str
    assigned_by: str = Field(description='The "Assigned By" label the realtor sees.')
    transferred: int = Field(description="How many leads the transfer moved (repeats in the selection count once).")
    transferred_at: datetime


def _broker_of(caller: Principal, account_id: str) -> None:
    if account_id != caller.account_id:
        raise Forbidden("The token does not grant access to this account.")
    if not caller.sees_whole_account:
        raise Forbidden("Only brokers and admins of the account manage its realtors and transfers.")


def _status(doc: dict[str, Any]) -> InvitationStatus:
    """The stored invitation's status now: a pending one past its validity is expired (decision 0108)."""
    return effective_status(doc["status"], doc["invited_ms"], epoch_ms(datetime.now(UTC)))


def _invitation(doc: dict[str, Any]) -> InvitationPublic:
    return InvitationPublic(
        invitation_id=doc["_id"],
        account_id=doc["account_id"],
        realtor_id=doc["realtor_id"],
        email=doc["email"],
        name=doc.get("name"),
        status=_status(doc),
        invited_at=doc["invited_at"],
        answered_at=doc.get("answered_at"),
    )


async def invite(
    account_id: str, body: InvitationCreate, caller: Principal, db: Db, publish: PublishRaw
) -> tuple[InvitationPublic, bool]:
    """Invite a realtor to the brokerage; True when invited (again, after a decline or a disconnection),
    False when already pending. The realtor is emailed the invitation with its link (the notifier)."""
    _broker_of(caller, account_id)  # first: another brokerage learns nothing, its daily count included
    await _within_daily_invitations(account_id, invitation_id(account_id, body.realtor_id), db)
    stored, invited = await _invite(account_id, body, caller, db)
    if stored.get("notified_ms") != stored["invited_ms"]:  # also a retry after the email failed to go
        await _count_email(stored, db)
        await _email_invitation(publish, stored, await AccountTransfers(db, account_id).account_name() or account_id)
        await Invitations(db).mark_notified(stored["_id"], stored["invited_ms"])
    return _invitation(stored), invited


INVITATIONS_PER_DAY = 50  # invitation emails one brokerage may have sent in 24 hours


_TOO_MANY = f"Invitations: at most {INVITATIONS_PER_DAY} a day per brokerage; none was sent. Try again tomorrow."


async def _within_daily_invitations(account_id: str, invitation: str, db: Db) -> None:
    """Each invitation is an email leadflow sends in the brokerage's name to an address it typed: unbounded, one
    broker token (or a stolen one) made leadflow a relay to any address (helper 189's review). 429, before anything
    is stored, once the other invitations' emails of the day reach the bound (this one's own: `_count_email`)."""
    since = epoch_ms(datetime.now(UTC) - timedelta(days=1))
    if await Invitations(db).sent_since(account_id, since, but=invitation) >= INVITATIONS_PER_DAY:
        raise TooManyRequests(_TOO_MANY)


async def _count_email(stored: dict[str, Any], db: Db) -> None:
    """Count this (re)invitation's email before it goes, then the day's: past the bound (invitations asked at once,
    each past the first check before any was counted: helper 198's review), it is taken back and refused. Counted
    already (its email refused by Kafka, then invited again), it goes: the count had room for it."""
    invitations = Invitations(db)
    if not await invitations.count_email(stored):
        return
    since = epoch_ms(datetime.now(UTC) - timedelta(days=1))
    if await invitations.sent_since(stored["account_id"], since) > INVITATIONS_PER_DAY:
        await invitations.uncount_email(stored)
        raise TooManyRequests(_TOO_MANY)


async def _email_invitation(publish: PublishRaw, stored: dict[str, Any], brokerage: str) -> None:
    command = InviteRealtor.create(
        account_id=stored["account_id"],
        # One email per (re)invitation: a retry publishes the same command.
        event_id=uuid.uuid5(uuid.UUID(stored["_id"]), str(stored["invited_ms"])),
        occurred_at=datetime.now(UTC),
        payload=InviteRealtorPayload(
            invitation_id=stored["_id"],
            realtor_id=stored["realtor_id"],
            email=stored["email"],
            name=stored.get("name"),
            brokerage_name=brokerage,
            by_user_id=stored["invited_by"],
        ),
    )
    await publish_or_unavailable(publish, command, detail="The invitation is saved but was not emailed; invite again.")


async def _invite(account_id: str, body: InvitationCreate, caller: Principal, db: Db) -> tuple[dict[str, Any], bool]:
    invitations, now = Invitations(db), datetime.now(UTC)
    invitation = invitation_id(account_id, body.realtor_id)
    fields: dict[str, Any] = {
        "email": str(body.email),
        "invited_by": caller.sub,
        "invited_at": now,
        "invited_ms": epoch_ms(now),
    }
    if body.name is not None:  # invited again without a name: the realtor keeps the one it had
        fields["name"] = body.name
    new = {
        "_id": invitation,
        "account_id": account_id,
        "realtor_id": body.realtor_id,
        "status": InvitationStatus.PENDING.value,
        "created_ms": epoch_ms(now),
        "answered_at": None,
        "answered_ms": None,
        "name": body.name,
        **fields,
    }
    for _ in range(3):  # each miss means a concurrent invite or answer changed it: decide again
        stored = await invitations.get(invitation)
        outcome = invite_outcome(None if stored is None else _status(stored))
        if outcome is InviteOutcome.REFUSE:
            raise InvalidRequest("realtor_id: has already accepted this brokerage's invitation.")
        if outcome is InviteOutcome.UNCHANGED and stored is not None:
            return stored, False
        done = await invitations.create(new) if stored is None else await invitations.reopen(stored, fields)
        if done and (stored := await invitations.get(invitation)) is not None:
            return stored, True
    raise InvalidRequest("realtor_id: the invitation is changing concurrently; try again.")


async def list_invitations(account_id: str, caller: Principal, db: Db) -> InvitationList:
    """Every invitation of the brokerage with its status, oldest first."""
    _broker_of(caller, account_id)
    return InvitationList(items=[_invitation(d) for d in await Invitations(db).of_account(account_id)])


async def my_realtors(account_id: str, caller: Principal, db: Db) -> RealtorList:
    """ "My Realtors": the realtors who accepted the brokerage's invitation (only they can receive leads)."""
    _broker_of(caller, account_id)
    accepted = await Invitations(db).of_account(account_id, status=InvitationStatus.ACCEPTED)
    return RealtorList(
        items=[
            RealtorPublic(
                realtor_id=d["realtor_id"], name=d.get("name"), email=d["email"], accepted_at=d.get("answered_at")
            )
            for d in accepted
        ]
    )


async def answer_invitation(
    invitation_id: str, caller: Principal, db: Db, answer: InvitationStatus
) -> InvitationPublic:
    if caller.role is not Role.REALTOR:
        raise Forbidden("Only the invited realtor answers an invitation.")
    invitations = Invitations(db)
    stored = await invitations.get(invitation_id)
    # Another caller learns nothing about the invitation, not even that it exists.
    if stored is None or stored["realtor_id"] != caller.sub:
        raise NotFound("No such invitation.")
    if (refusal := answer_refusal(_status(stored), answer)) is not None:
        raise InvalidRequest(refusal + ".")
    if not await invitations.answer(invitation_id, caller.sub, answer, datetime.now(UTC)):
        # Not pending any more: a retry of the same answer is fine, a racing other answer, a withdrawal or the
        # expiry won.
        stored = await invitations.get(invitation_id)
        if stored is None or stored["status"] != answer.value:
            now = InvitationStatus.PENDING if stored is None else _status(stored)
            why = answer_refusal(now, answer) or "the invitation was answered otherwise meanwhile"
            raise InvalidRequest(why + ".")
    return await _flagged(invitations, invitation_id, stored["account_id"], caller.sub)


async def _flagged(invitations: Invitations, key: str, account_id: str, realtor_id: str) -> InvitationPublic:
    """After the invitation's own write, the router's R6 flag (so a crash in between is repaired by retrying the
    same request); the invitation as it is then."""
    await invitations.mark_agent(account_id, realtor_id)
    stored = await invitations.get(key)
    assert stored is not None  # noqa: S101 (invitations are never deleted)
    return _invitation(stored)


async def withdraw(account_id: str, invitation: str, caller: Principal, db: Db) -> InvitationPublic:
    """The brokerage takes back an invitation not answered yet (a wrong address, a realtor it no longer wants): it
    can no longer be accepted; invite again to send a new one (decision 0108)."""
    _broker_of(caller, account_id)
    invitations = Invitations(db)
    stored = await invitations.get(invitation)
    if stored is None or stored["account_id"] != account_id:
        raise NotFound("No such invitation.")
    if (refusal := withdraw_refusal(_status(stored))) is not None:
        raise InvalidRequest(refusal + ".")
    if not await invitations.withdraw(invitation, datetime.now(UTC)):
        stored = await invitations.get(invitation)
        assert stored is not None  # noqa: S101 (invitations are never deleted)
        if (refusal := withdraw_refusal(_status(stored))) is not None:  # the realtor answered meanwhile
            raise InvalidRequest(refusal + ".")
    return await _flagged(invitations, invitation, account_id, stored["realtor_id"])


async def leave(invitation: str, caller: Principal, db: Db) -> InvitationPublic:
    """The realtor leaves a brokerage it joined: no more of its leads, R6 included. The leads it was given stay its
    own, as after a disconnection (decision 0035); the brokerage may invite it again (decision 0108)."""
    if caller.role is not Role.REALTOR:
        raise Forbidden("Only the realtor who joined leaves a brokerage.")
    invitations = Invitations(db)
    stored = await invitations.get(invitation)
    if stored is None or stored["realtor_id"] != caller.sub:
        raise NotFound("No such invitation.")
    if (refusal := leave_refusal(_status(stored))) is not None:
        raise InvalidRequest(refusal + ".")
    if not await invitations.leave(invitation, caller.sub, datetime.now(UTC)):
        stored = await invitations.get(invitation)
        assert stored is not None  # noqa: S101 (invitations are never deleted)
        if (refusal := leave_refusal(_status(stored))) is not None:  # disconnected meanwhile
            raise InvalidRequest(refusal + ".")
    return await _flagged(invitations, invitation, stored["account_id"], caller.sub)


async def my_invitations(caller: Principal, db: Db) -> InvitationList:
    """The calling realtor's invitations from every brokerage, oldest first (answer the pending ones)."""
    if caller.role is not Role.REALTOR:
        raise Forbidden("Only realtors receive invitations.")
    return InvitationList(items=[_invitation(d) for d in await Invitations(db).of_realtor(caller.sub)])


async def disconnect(account_id: str, realtor_id: str, caller: Principal, db: Db) -> InvitationPublic:
    """End the brokerage's connection with a realtor: no more leads can be transferred to it. The leads
    already transferred stay with the realtor, as any hand-over does (decision 0035); invite again to
    reconnect."""
    _broker_of(caller, account_id)
    invitations = Invitations(db)
    invitation = invitation_id(account_id, realtor_id)
    if not await invitations.disconnect(invitation, datetime.now(UTC)):
        stored = await invitations.get(invitation)
        if stored is None or stored["status"] != InvitationStatus.DISCONNECTED.value:
            raise NotFound("No such realtor in My Realtors.")
    return await _flagged(invitations, invitation, account_id, realtor_id)


async def transfer_leads(
    account_id: str, body: TransferCreate, caller: Principal, db: Db, publish: PublishRaw, idempotency_key: str | None
) -> TransferDone:
    """T1: transfer the selected leads (named, or all a filter matches) to a realtor who accepted the
    brokerage's invitation, all or none.

    A retry (the same Idempotency-Key and request) is known from its record before the request is checked
    again: it answers a finished transfer as it was answered, whatever the leads or the invitation are now (a
    filter's leads are shared by then). What it would still write or send (a transfer its first attempt left half
    applied) is checked against the present: a lead no longer the account's, or being moved to another office, is
    dropped from it (none left: 422 naming `lead_ids`, nothing written or sent; helper 153's review). The key's
    record of another request is refused (422). Decision 0018."""
    _broker_of(caller, account_id)
    transfers = AccountTransfers(db, account_id)
    record_id = transfer_id(account_id, idempotency_key)
    named = None if body.lead_ids is None else unique(body.lead_ids)
    stored = None if idempotency_key is None else await transfers.get(record_id)
    checked_now = False
    if stored is None:
        try:
            record = await _checked_record(record_id, account_id, body, caller, db, transfers)
        except InvalidRequest:
            # A first attempt under this key at the same time (a double submit) may have shared the leads since
            # this one looked the key up, so none is left to pick: it is that transfer, not a refusal.
            stored = None if idempotency_key is None else await transfers.get(record_id)
            if stored is None:
                raise
        else:
            stored = await transfers.begin(record)
            checked_now = stored is record
    await _known_again(stored, body, named, transfers)
    if not checked_now and not (stored["done"] and stored.get("published")):
        stored = await _still_shareable(stored, transfers, db)
    if not stored["done"]:
        if not await transfers.written(stored["_id"], stored["lead_ids"]):  # begun: it goes on (helper 198)
            await _still_invited(stored, db, transfers)
        await transfers.apply(stored)
    if not stored.get("published"):
        stored = await _as_written(stored, transfers)
        # After the views: the router makes the realtor the lead's holder (its actions are the
        # holder's from then on) and withdraws open offers. A failure here is retried with the key.
        await _share_with_router(publish, stored)
        await transfers.mark_published(stored["_id"])
    return TransferDone(
        transfer_id=stored["_id"],
        realtor_id=stored["realtor_id"],
        assigned_by=stored["assigned_by"],
        transferred=len(stored["lead_ids"]),
        transferred_at=stored["at"],
    )


async def _known_again(
    stored: dict[str, Any], body: TransferCreate, named: list[str] | None, transfers: AccountTransfers
) -> None:
    """The record is this request's (else the key reused: 422); a filter it kept as text (before digests) is
    rewritten as its digest (helper 158's review #3); a retry refused whole is refused the same (#5)."""
    lead_filter = recorded_filter(body.filter, stored["_id"], stored.get("filter"))
    if not same_transfer(stored, realtor_id=body.realtor_id, lead_ids=named, lead_filter=lead_filter):
        raise InvalidRequest("Idempotency-Key: already used for a different transfer; nothing was transferred.")
    if body.filter is not None and stored.get("filter") == (text := body.filter.as_stored()):
        await transfers.set_filter(stored["_id"], text, body.filter.digest(stored["_id"]))
    if refusal := stored.get("refusal"):
        raise InvalidRequest(refusal)


async def _unshareable(db: Db, account_id: str, lead_ids: list[str], transfers: AccountTransfers) -> dict[str, str]:
    moving = await OfficeTransfers(db).moving(account_id, lead_ids)
    return unshareable(lead_ids, await transfers.present(lead_ids), set(moving))


async def _still_shareable(stored: dict[str, Any], transfers: AccountTransfers, db: Db) -> dict[str, Any]:
    """A retry's record once what it would still write or send is checked against the present (helper 153): its
    leads that left the account since its first attempt (another office's now: a timeline entry there would say the
    brokerage shared it, and the router dead-letters a ShareLead of another office's lead) or are being moved to
    another office are dropped, the record keeping those it still shares, so the next retry answers the same. When
    none is left: 422 naming `lead_ids`, nothing written or sent."""
    refusals = await _unshareable(db, stored["account_id"], stored["lead_ids"], transfers)
    # A lead still the account's whose views this transfer wrote already (only being moved) is shared all the same:
    # dropped, it would stay "Assigned To" the realtor in the views while the router was never told (helper 158's
    # review #1). The router applies the ShareLead and the move in their order (one partition); either way a move
    # applied drops the sharing.
    for lead_id in await transfers.written(stored["_id"], list(refusals)):
        refusals.pop(lead_id, None)
    return await _dropped(stored, refusals, transfers)


async def _still_invited(stored: dict[str, Any], db: Db, transfers: AccountTransfers) -> None:
    """The realtor has the brokerage's invitation accepted as its writes begin: one who left, was disconnected since
    the transfer's checks (another replica, at once) or before its retry (hours later) gets nothing, the refusal
    recorded for the next retry (helper 194's review). Its writes begun, the transfer came first: it goes on, and
    the leads stay the realtor's as any shared before the leaving (decision 0108)."""
    invitation = await Invitations(db).get(invitation_id(stored["account_id"], stored["realtor_id"]))
    refusal = transfer_refusal(None if invitation is None else _status(invitation))
    if refusal is None:
        return
    why = f"{refusal}; nothing was transferred."
    dropped = [*stored.get("dropped", []), *({"lead_id": i, "reason": refusal} for i in stored["lead_ids"])]
    await transfers.drop(stored["_id"], [], dropped, refusal=why)
    raise InvalidRequest(why)


async def _as_written(stored: dict[str, Any], transfers: AccountTransfers) -> dict[str, Any]:
    """The transfer with the leads whose rows name it as its ShareLead goes: one moved to another office since its
    checks (the move applied before its writes: `apply` wrote nothing there), or shared again or given back since (a
    retry's: the row names that one now) is dropped, so the router's holder is the one the views show (helper 179's
    review). None left: 422 naming `lead_ids`, nothing sent."""
    lead_ids = stored["lead_ids"]
    written = await transfers.written(stored["_id"], lead_ids)
    if len(written) == len(lead_ids):
        return stored
    present = await transfers.present(lead_ids)
    refusals = {i: NOT_FOUND if i not in present else SHARED_SINCE for i in lead_ids if i not in written}
    return await _dropped(stored, refusals, transfers)


async def _dropped(stored: dict[str, Any], refusals: dict[str, str], transfers: AccountTransfers) -> dict[str, Any]:
    """The transfer without the refused leads, which its record keeps as dropped with the reason; none left: the
    refusal, recorded (a later retry is refused the same, helper 158's review #5), raised."""
    if not refusals:
        return stored
    kept = [i for i in stored["lead_ids"] if i not in refusals]
    dropped = [*stored.get("dropped", []), *({"lead_id": i, "reason": why} for i, why in refusals.items())]
    if not kept:
        # Refused whole: recorded, so a later retry (the leads back) is refused the same (helper 158's review #5).
        refusal = unshareable_refusal(refusals)
        await transfers.drop(stored["_id"], kept, dropped, refusal=refusal)
        raise InvalidRequest(refusal)
    await transfers.drop(stored["_id"], kept, dropped)
    return stored | {"lead_ids": kept, "dropped": dropped}


async def _checked_record(
    record_id: str, account_id: str, body: TransferCreate, caller: Principal, db: Db, transfers: AccountTransfers
) -> dict[str, Any]:
    """Every check of a new transfer before anything is written (422 naming the field); the record its writes
    take their values from, with the leads its filter picks now."""
    if body.lead_ids is not None:
        lead_ids = unique(body.lead_ids)
    else:
        scoped = ScopedLeads(db, scope_filter(caller, account_id))
        lead_ids, _ = await selected_leads(scoped, None, body.filter, limit=MAX_TRANSFER_LEADS)
        if not lead_ids:
            raise InvalidRequest("filter: matches no lead; nothing was transferred.")
    invitation = await Invitations(db).get(invitation_id(account_id, body.realtor_id))
    refusal = transfer_refusal(None if invitation is None else _status(invitation))
    if invitation is None or refusal is not None:
        raise InvalidRequest(f"{refusal}; nothing was transferred.")
    if refusals := await _unshareable(db, account_id, lead_ids, transfers):
        raise InvalidRequest(unshareable_refusal(refusals))
    return transfer_record(
        transfer_id=record_id,
        account_id=account_id,
        realtor_id=body.realtor_id,
        realtor_name=realtor_label(invitation.get("name"), body.realtor_id),
        lead_ids=lead_ids,
        assigned_by=await transfers.account_name() or account_id,
        by=caller.sub,
        at=datetime.now(UTC),
        lead_filter=None if body.filter is None else body.filter.digest(record_id),
    )


async def _share_with_router(publish: PublishRaw, transfer: dict[str, Any]) -> None:
    """One ShareLead per lead, ids derived from the transfer: publishing them again is the same commands."""
    for lead_id in transfer["lead_ids"]:
        command = ShareLead.create(
            account_id=transfer["account_id"],
            event_id=share_command_id(transfer, lead_id),
            correlation_id=uuid.UUID(transfer["_id"]),
            occurred_at=transfer["at"],
            payload=ShareLeadPayload(
                lead_id=uuid.UUID(lead_id),
                share_id=uuid.UUID(transfer["_id"]),
                realtor_id=transfer["realtor_id"],
                realtor_name=transfer["realtor_name"],
                assigned_by=transfer["assigned_by"],
                by_user_id=transfer["by"],
            ),
        )
        await publish_or_unavailable(
            publish,
            command,
            detail="The leads were transferred, but the router was not told; retry with the same Idempotency-Key.",
        )
