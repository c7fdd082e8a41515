"""Intake's Kafka edge: partners' leads from leads.inbound.v1 onto leads.intake.v1.

What does not decode to a `LeadSubmitted` (or is over the size limit), and what its partner did not
sign or may not send for its account (decision 0098), never reaches the handler: the consumers' edge
sends it to leads.inbound.v1.dlq with the original bytes and the reason, like a lead the handler
refuses, and the consumer goes on with the next message (I4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from leadflow_intake.domain import partner_signature
from leadflow_intake.domain.errors import IdempotencyConflict, IntakeError
from leadflow_intake.domain.partner_signature import PartnerKeys, PartnerRefused
from leadflow_intake.handlers import Intake, accept_partner_lead
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import Record, TooLarge
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.service import ServiceRuntime

log = logging.getLogger(__name__)


def signed_by_its_partner(
    partners: Mapping[str, PartnerKeys], *, accept_unsigned: bool, metrics: IntakeMetrics
) -> Callable[[LeadSubmitted, Record], None]:
    """The check a partner's record passes before its lead is taken: signed by the partner its payload names,
    for an account that partner serves (PartnerRefused otherwise). `accept_unsigned`: a record with no
    signature at all is taken for any account (INTAKE_PARTNERS__UNSIGNED=accept, decision 0098), counted and
    logged with the partner it names, so the operator sees who does not sign yet before turning it off."""

    def admit(lead: LeadSubmitted, record: Record) -> None:
        signatures = [value for name, value in record.headers if name.lower() == partner_signature.HEADER]
        if not signatures and accept_unsigned:
            metrics.unsigned.inc()
            log.warning("unsigned partner lead accepted", extra={"partner": lead.payload.source.partner})
            return
        partner_signature.check(
            partners.get(lead.payload.source.partner),
            account_id=lead.account_id,
            # A header without a value (None) reads as empty: refused as missing, whatever reached this far.
            signature=(signatures[-1] or b"").decode("ascii", "replace") if signatures else None,
            topic=record.topic,
            key=record.key,
            value=record.value or b"",
        )

    return admit


def subscribe(
    runtime: ServiceRuntime,
    *,
    intake: Callable[[], Intake],
    metrics: IntakeMetrics,
    group_id: str,
    max_bytes: int,
    admit: Callable[[LeadSubmitted, Record], None],
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
        reason = (
            "too_large"
            if isinstance(why, TooLarge)
            else "unauthorized"
            if isinstance(why, PartnerRefused)
            else "invalid"
        )
        metrics.outcome("partner", rejected=reason)

    runtime.subscribe(
        topics.LEADS_INBOUND,
        on_lead_submitted,
        group_id=group_id,
        max_bytes=max_bytes,
        on_invalid=on_invalid,
        unknown_fields="forbid",  # the partner contract: a field it does not name is refused, with the reason
        admit=admit,
    )
