"""Notifier use cases: who is told what, once per (event, channel, recipient)."""

from __future__ import annotations

import logging
from typing import Protocol

from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog
from leadflow_notifier.domain.messages import EmailContent, lead_assigned_email
from leadflow_shared.events.routing import LeadAssigned, LeadEvent
from leadflow_shared.kafka import PoisonMessage

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, content: EmailContent, *, message_id: str) -> None: ...


async def notify(
    event: LeadEvent, *, agents: AgentDirectory, deliveries: DeliveryLog, mailer: Mailer, crm_base_url: str
) -> None:
    if isinstance(event, LeadAssigned):
        agent = await agents.get(event.payload.agent_id)
        if agent is None:
            raise PoisonMessage(f"unknown agent {event.payload.agent_id!r}")
        key = f"{event.event_id}:email:{agent.agent_id}"
        if not await deliveries.begin(key, channel="email"):
            return  # already delivered: a redelivered event sends nothing twice
        await mailer.send(lead_assigned_email(event, agent, crm_base_url), message_id=key)
        await deliveries.sent(key)
        log.info("lead-assigned email sent", extra={"event_id": str(event.event_id), "channel": "email"})
