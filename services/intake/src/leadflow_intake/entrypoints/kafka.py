"""Intake's Kafka edge: partners' leads from leads.inbound.v1 onto leads.intake.v1.

What does not decode to a `LeadSubmitted` (or is over the size limit) never reaches the handler:
the consumers' edge sends it to leads.inbound.v1.dlq with the original bytes and the reason, like
a lead the handler refuses, and the consumer goes on with the next message (I4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from leadflow_intake.domain.errors import IdempotencyConflict, IntakeError
from leadflow_intake.handlers import Intake, accept_partner_lead
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import TooLarge
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.service import ServiceRuntime

log = logging.getLogger(__name__)


def subscribe(
    runtime: ServiceRuntime, *, intake: Callable[[], Intake], metrics: IntakeMetrics, group_id: str, max_bytes: int
) -> None:
    async def on_lead_submitted(lead: LeadSubmitted) -> None:
        """A partner's lead (the partner contract, docs/partner-contract/): normalized like every other
        lead and handed to the router on leads.intake.v1, once per event_id."""
        metrics.receiving("partner")  # per delivery attempt: a retried message counts again
        try:
            result = await accept_partner_lead(lead, intake=intake())
        except IntakeError as exc:
            metrics.outcome("partner", rejected=exc.reason)
            why = "event_id: already used for a different lead" if isinstance(exc, IdempotencyConflict) else str(exc)
            raise PoisonMessage(why) from exc
        metrics.outcome("partner", duplicate=result.duplicate)
        log.info("partner lead accepted", extra={"event_id": str(result.event_id), "account_id": lead.account_id})

    def on_invalid(why: Exception) -> None:
        metrics.receiving("partner")
        metrics.outcome("partner", rejected="too_large" if isinstance(why, TooLarge) else "invalid")

    runtime.subscribe(
        topics.LEADS_INBOUND,
        on_lead_submitted,
        group_id=group_id,
        max_bytes=max_bytes,
        on_invalid=on_invalid,
        unknown_fields="forbid",  # the partner contract: a field it does not name is refused, with the reason
    )
