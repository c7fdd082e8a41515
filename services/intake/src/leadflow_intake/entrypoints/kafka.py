"""Intake's Kafka edge: partners' leads from leads.inbound.v1 onto leads.intake.v1.

The runtime's dead-letter guard sends what cannot be accepted to leads.inbound.v1.dlq with
the original bytes and the reason, and the consumer goes on with the next message (I4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from leadflow_intake.domain.errors import IdempotencyConflict, IntakeError
from leadflow_intake.handlers import Intake, accept_partner_lead
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared import topics
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.kafka import PoisonMessage
from leadflow_shared.service import ServiceRuntime

log = logging.getLogger(__name__)


def subscribe(
    runtime: ServiceRuntime, *, intake: Callable[[], Intake], metrics: IntakeMetrics, group_id: str, max_bytes: int
) -> None:
    async def on_inbound(body: bytes) -> None:
        metrics.received.labels("partner").inc()  # per delivery attempt: a retried message counts again
        if len(body) > max_bytes:
            metrics.outcome("partner", rejected="too_large")
            raise PoisonMessage(f"message is larger than {max_bytes} bytes")
        try:
            event = LeadSubmitted.model_validate_json(body)
            result = await accept_partner_lead(event, intake=intake())
        except ValidationError:
            metrics.outcome("partner", rejected="invalid")
            raise
        except IntakeError as exc:
            metrics.outcome("partner", rejected=exc.reason)
            why = "event_id: already used for a different lead" if isinstance(exc, IdempotencyConflict) else str(exc)
            raise PoisonMessage(why) from exc
        metrics.outcome("partner", duplicate=result.duplicate)
        log.info("partner lead accepted", extra={"event_id": str(result.event_id), "account_id": event.account_id})

    runtime.consume(topics.LEADS_INBOUND, group_id=group_id, handle=on_inbound)
