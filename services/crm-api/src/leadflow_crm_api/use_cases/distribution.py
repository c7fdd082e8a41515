"""Distributing leads by hand (issue 11.1) and giving one back: crm-api checks, the router decides.
The use cases the JSON routes register (routes/distribution.py) and the web pages call.

Brokers and admins assign or offer one lead, many, or all a filter matches to an active agent
of the account; the agent who holds a lead returns it to the broker. Every change of holder is
the router's (a `DistributeLead` or `ReturnLead` command), so the timeline shows who and why.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from leadflow_crm_api.adapters.offices import OfficeTransfers
from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.deps import AccountLeads, Caller, Commands, Db, Id, IdempotencyKey
from leadflow_crm_api.domain.distribution import (
    DistributionAccepted,
    DistributionCreate,
    LeadReturn,
    LeadReturned,
    Skipped,
    distribution_id,
    lead_refusal,
)
from leadflow_crm_api.errors import ClaimNotPossible, Forbidden, NotFound
from leadflow_crm_api.publishing import publish_or_unavailable
from leadflow_crm_api.selection import invalid, refuse_named, selected_leads
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.commands import DistributeLead, DistributeLeadPayload, ReturnLead, ReturnLeadPayload


async def distribute(
    account_id: Id,
    body: DistributionCreate,
    leads: AccountLeads,
    caller: Caller,
    db: Db,
    publish: Commands,
    idempotency_key: IdempotencyKey = None,
) -> DistributionAccepted:
    """Assign or offer leads to an agent by hand (brokers and admins).

    Named leads that cannot go (unknown, being moved to another office, shared with a realtor)
    refuse the request and nothing is sent; leads a filter matches that cannot go are skipped
    and listed. Send an `Idempotency-Key` to retry safely: the same key sends the same commands.
    """
    if not caller.sees_whole_account:
        raise Forbidden("Only brokers and admins distribute leads.")
    agent = await AccountSettings(db, account_id).agent(body.agent_id)
    if agent is None or not agent.get("active", True):
        invalid("agent_id", "not an active agent of this account")
    wanted, rows = await selected_leads(leads, body.lead_ids, body.filter)
    moving = set(await OfficeTransfers(db).moving(account_id, wanted)) if wanted else set()
    refusals = {i: why for i in wanted if (why := lead_refusal(rows.get(i), moving=i in moving))}
    refuse_named(body.lead_ids, refusals)
    chosen = [lead_id for lead_id in wanted if lead_id not in refusals]
    dist = distribution_id(account_id, idempotency_key, body, caller.sub)
    now = datetime.now(UTC)
    for lead_id in chosen:
        command = DistributeLead.create(
            account_id=account_id,
            occurred_at=now,
            event_id=derived_event_id(dist, lead_id),
            payload=DistributeLeadPayload(
                lead_id=uuid.UUID(lead_id),
                distribution_id=dist,
                agent_id=body.agent_id,
                mode=body.mode,
                claim_window_seconds=body.claim_window_seconds,
                note=body.note,
                by_user_id=caller.sub,
            ),
        )
        detail = "Not every lead was handed over; retry with the same Idempotency-Key."
        await publish_or_unavailable(publish, command, detail=detail)
    return DistributionAccepted(
        distribution_id=dist,
        agent_id=body.agent_id,
        mode=body.mode,
        lead_ids=chosen,
        skipped=[Skipped(lead_id=i, reason=why) for i, why in refusals.items()],
    )


async def return_lead(
    leads: AccountLeads, caller: Caller, publish: Commands, lead_id: Id, body: LeadReturn
) -> LeadReturned:
    """Give a lead you hold back to the broker: the broker pool holds it (the router decides)."""
    row = await leads.get(lead_id)
    if row is None:
        raise NotFound("No such lead.")
    if row.transferred_to == caller.sub:
        raise ClaimNotPossible("The brokerage shared this lead with you (T1); ask the brokerage to take it back.")
    if row.owner_agent_id != caller.sub:
        raise ClaimNotPossible("You do not hold this lead, so there is nothing to give back.")
    command = ReturnLead.create(
        account_id=row.account_id,
        occurred_at=datetime.now(UTC),
        payload=ReturnLeadPayload(lead_id=uuid.UUID(lead_id), agent_id=caller.sub, note=body.note),
    )
    await publish_or_unavailable(publish, command, detail="The lead was not given back; try again.")
    return LeadReturned(event_id=command.event_id)
