"""Router use cases: load the snapshot, decide (pure), persist, publish."""

from __future__ import annotations

import logging
from datetime import datetime

from leadflow_router.adapters.repository import AccountRepository, RoutingRecord, RoutingRecords
from leadflow_router.domain.model import RoutingError, decide
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import LeadAssigned, LeadAssignedPayload
from leadflow_shared.kafka import PoisonMessage, PublishRaw

log = logging.getLogger(__name__)


async def route_lead(
    event: LeadReceived,
    *,
    accounts: AccountRepository,
    records: RoutingRecords,
    publish: PublishRaw,
    now: datetime,
) -> RoutingRecord:
    """Route one received lead exactly once, however often it is delivered."""
    lead_id = str(event.event_id)
    record = await records.get(lead_id)
    if record is None:
        account = await accounts.get(event.account_id)
        if account is None:
            raise PoisonMessage(f"unknown account {event.account_id!r}")
        try:
            assignment = decide(event.payload, account, now)
        except RoutingError as exc:
            raise PoisonMessage(str(exc)) from exc
        assigned = LeadAssigned.create(
            account_id=event.account_id,
            event_id=derived_event_id(event.event_id, "assigned"),
            correlation_id=event.correlation_id,
            occurred_at=now,
            payload=LeadAssignedPayload(
                lead_id=event.event_id,
                agent_id=assignment.agent_id,
                reason=assignment.reason,
                explanation=assignment.explanation,
                contact=event.payload.contact,
                source=event.payload.source,
                message=event.payload.message,
                referral_fee_percent=assignment.referral_fee_percent,
            ),
        )
        record = await records.add(
            RoutingRecord(
                lead_id=lead_id,
                account_id=event.account_id,
                agent_id=assignment.agent_id,
                outbox=(assigned.model_dump_json(),),
                published=False,
            )
        )
        log.info("lead routed", extra={"lead_id": lead_id, "reason": assignment.reason.value})
    if not record.published:
        # A crash between publish and mark_published republishes the same event ids;
        # consumers drop the second copy by event id.
        for raw in record.outbox:
            await publish(record.account_id, raw.encode())
        await records.mark_published(lead_id)
    return record
