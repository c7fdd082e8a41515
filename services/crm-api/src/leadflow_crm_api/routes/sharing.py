"""Lead sharing (T1) and the invitations it depends on (V4): the JSON routes over `use_cases.sharing`."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from leadflow_crm_api.deps import Caller, Commands, Db, Id, IdempotencyKey
from leadflow_crm_api.domain.sharing import InvitationStatus
from leadflow_crm_api.use_cases import sharing
from leadflow_crm_api.use_cases.sharing import (
    InvitationCreate,
    InvitationList,
    InvitationPublic,
    RealtorList,
    TransferCreate,
    TransferDone,
)

router = APIRouter(tags=["lead sharing"])


@router.post("/v1/accounts/{account_id}/invitations", status_code=status.HTTP_201_CREATED)
async def invite(
    account_id: Id, body: InvitationCreate, caller: Caller, db: Db, publish: Commands, response: Response
) -> InvitationPublic:
    """Invite a realtor to the brokerage: 201 when invited (again, after a decline or a disconnection),
    200 when already pending. The realtor is emailed the invitation with its link (the notifier)."""
    invitation, invited = await sharing.invite(account_id, body, caller, db, publish)
    if not invited:
        response.status_code = status.HTTP_200_OK
    return invitation


@router.get("/v1/accounts/{account_id}/invitations")
async def list_invitations(account_id: Id, caller: Caller, db: Db) -> InvitationList:
    """Every invitation of the brokerage with its status, oldest first."""
    return await sharing.list_invitations(account_id, caller, db)


@router.delete("/v1/accounts/{account_id}/invitations/{invitation_id}")
async def withdraw_invitation(account_id: Id, invitation_id: Id, caller: Caller, db: Db) -> InvitationPublic:
    """Take back an invitation the realtor has not answered (pending or expired): it can no longer be accepted.
    Withdrawing again answers the same; an accepted invitation is ended by disconnecting the realtor instead."""
    return await sharing.withdraw(account_id, invitation_id, caller, db)


@router.get("/v1/accounts/{account_id}/realtors")
async def my_realtors(account_id: Id, caller: Caller, db: Db) -> RealtorList:
    """ "My Realtors": the realtors who accepted the brokerage's invitation (only they can receive leads)."""
    return await sharing.my_realtors(account_id, caller, db)


@router.get("/v1/realtors/me/invitations", tags=["realtor CRM"])
async def my_invitations(caller: Caller, db: Db) -> InvitationList:
    """The calling realtor's invitations from every brokerage, oldest first (answer the pending ones)."""
    return await sharing.my_invitations(caller, db)


@router.delete("/v1/accounts/{account_id}/realtors/{realtor_id}")
async def disconnect(account_id: Id, realtor_id: Id, caller: Caller, db: Db) -> InvitationPublic:
    """End the brokerage's connection with a realtor: no more leads can be transferred to it. The leads
    already transferred stay with the realtor, as any hand-over does (decision 0035); invite again to
    reconnect."""
    return await sharing.disconnect(account_id, realtor_id, caller, db)


@router.post("/v1/invitations/{invitation_id}/accept")
async def accept(invitation_id: Id, caller: Caller, db: Db) -> InvitationPublic:
    """The invited realtor joins the brokerage: it can receive its leads and its round robin (R6)."""
    return await sharing.answer_invitation(invitation_id, caller, db, InvitationStatus.ACCEPTED)


@router.post("/v1/invitations/{invitation_id}/decline")
async def decline(invitation_id: Id, caller: Caller, db: Db) -> InvitationPublic:
    """The invited realtor turns the invitation down; the brokerage may invite it again later."""
    return await sharing.answer_invitation(invitation_id, caller, db, InvitationStatus.DECLINED)


@router.post("/v1/invitations/{invitation_id}/leave")
async def leave(invitation_id: Id, caller: Caller, db: Db) -> InvitationPublic:
    """The realtor leaves a brokerage it joined: it receives none of its leads any more (R6 included); the leads it
    was given stay its own. The brokerage may invite it again."""
    return await sharing.leave(invitation_id, caller, db)


@router.post("/v1/accounts/{account_id}/lead-transfers")
async def transfer_leads(
    account_id: Id,
    body: TransferCreate,
    caller: Caller,
    db: Db,
    publish: Commands,
    idempotency_key: IdempotencyKey = None,
) -> TransferDone:
    """T1: transfer the selected leads (named, or all a filter matches) to a realtor who accepted the
    brokerage's invitation, all or none."""
    return await sharing.transfer_leads(account_id, body, caller, db, publish, idempotency_key)
