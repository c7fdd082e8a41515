"""Erasing a contact (decision 0050): a broker or admin asks, the router resolves and scrubs, every
service erases its copy when the router's ContactErased arrives. The use case the JSON route registers
(routes/erasures.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Header

from leadflow_crm_api.deps import Caller, Commands, Id
from leadflow_crm_api.domain.erasure import ErasureAccepted, ErasureCreate, erasure_id
from leadflow_crm_api.errors import Forbidden
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_shared.events.commands import EraseContact, EraseContactPayload

ErasureKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Repeat the request with the same key to retry it: it is one erasure, with one id.",
    ),
]


async def request_erasure(
    account_id: Id, body: ErasureCreate, caller: Caller, publish: Commands, idempotency_key: ErasureKey = None
) -> ErasureAccepted:
    """Forget a contact of the account (its brokers and admins): every lead with the email or phone, and the
    leads named by id, keep their ids, status, holder and history without the person (name, email, phone,
    message, company, addresses, and what people wrote on the timeline). A later inquiry from the same
    address is a new lead. Leads of other accounts are never touched; an address no lead has erases nothing.

    The history of leads.events.v1 keeps the events as they were (decision 0050)."""
    if account_id != caller.account_id or not caller.sees_whole_account:
        raise Forbidden("Only the account's brokers and admins ask for an erasure.")
    command = EraseContact.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        event_id=erasure_id(account_id, idempotency_key, body, caller.sub),
        payload=EraseContactPayload(
            email=body.email, phone=body.phone, lead_ids=body.lead_ids, by_user_id=caller.sub, reason=body.reason
        ),
    )
    await publish_or_unavailable(publish, command, detail="The erasure was not requested; try again.")
    return ErasureAccepted(
        erasure_id=command.event_id,
        account_id=account_id,
        detail="Requested: the contact's details are erased from every service within seconds.",
    )
