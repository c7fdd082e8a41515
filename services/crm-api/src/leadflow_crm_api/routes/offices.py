"""Office-to-office transfers (T2), lead profiles, labels and offices: the JSON routes over
`use_cases.offices` (decision 0020)."""

from __future__ import annotations

from fastapi import APIRouter, status

from leadflow_crm_api.deps import AccountLeads, Caller, Commands, Db, Id, IdempotencyKey
from leadflow_crm_api.use_cases import offices
from leadflow_crm_api.use_cases.offices import (
    BulkOfficeTransfer,
    BulkOfficeTransferCreate,
    LabelList,
    LeadProfile,
    OfficeList,
    OfficeTransferCreate,
    OfficeTransferPublic,
)

router = APIRouter()


@router.put("/v1/accounts/{account_id}/leads/{lead_id}/profile", tags=["brokerage CRM", "realtor CRM"])
async def put_profile(leads: AccountLeads, db: Db, lead_id: Id, body: LeadProfile) -> LeadProfile:
    """Replace the lead's profile (anyone who can see the lead); its labels are created in the account."""
    return await offices.put_profile(leads, db, lead_id, body)


@router.get("/v1/accounts/{account_id}/labels", tags=["brokerage CRM"])
async def list_labels(account_id: Id, caller: Caller, db: Db) -> LabelList:
    """Every label of the account, including those an office transfer created (brokers and admins)."""
    return await offices.list_labels(account_id, caller, db)


@router.get("/v1/accounts/{account_id}/offices", tags=["office transfers"])
async def list_offices(account_id: Id, caller: Caller, db: Db) -> OfficeList:
    """The offices of the account's organisation: the targets of an office transfer."""
    return await offices.list_offices(account_id, caller, db)


@router.post(
    "/v1/accounts/{account_id}/office-transfers", tags=["office transfers"], status_code=status.HTTP_202_ACCEPTED
)
async def transfer_to_office(
    account_id: Id,
    body: OfficeTransferCreate,
    leads: AccountLeads,
    caller: Caller,
    db: Db,
    publish: Commands,
    idempotency_key: IdempotencyKey = None,
) -> OfficeTransferPublic:
    """T2: move a lead (a new lead there) or a team member (Onboarding there) to another office."""
    return await offices.transfer_to_office(account_id, body, leads, caller, db, publish, idempotency_key)


@router.post(
    "/v1/accounts/{account_id}/office-transfers/bulk", tags=["office transfers"], status_code=status.HTTP_202_ACCEPTED
)
async def transfer_many_to_office(
    account_id: Id,
    body: BulkOfficeTransferCreate,
    leads: AccountLeads,
    caller: Caller,
    db: Db,
    publish: Commands,
    idempotency_key: IdempotencyKey = None,
) -> BulkOfficeTransfer:
    """T2 for many leads: the selected ones, or all a filter matches, each its own transfer.

    Named leads that cannot move (unknown, already being moved) refuse the request and nothing is
    sent; such leads a filter matches are skipped and listed. The same `Idempotency-Key` resends
    the same transfers."""
    return await offices.transfer_many_to_office(account_id, body, leads, caller, db, publish, idempotency_key)


@router.get("/v1/accounts/{account_id}/office-transfers/{transfer_id}", tags=["office transfers"])
async def get_office_transfer(account_id: Id, transfer_id: Id, caller: Caller, db: Db) -> OfficeTransferPublic:
    """Whether the transfer is done: the lead is in the target's views, or the team member's staff were told."""
    return await offices.get_office_transfer(account_id, transfer_id, caller, db)
