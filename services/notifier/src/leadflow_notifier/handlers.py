"""Notifier use cases: who is told what, once per (event, channel, recipient)."""

from __future__ import annotations

import logging
from typing import Protocol

from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog
from leadflow_notifier.domain.messages import EmailContent, email_for, recipient_of
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.routing import LeadEvent

log = logging.getLogger(__name__)


class Mailer(Protocol):
    async def send(self, content: EmailContent, *, message_id: str) -> None: ...


async def notify(
    event: LeadEvent, *, agents: AgentDirectory, deliveries: DeliveryLog, mailer: Mailer, crm_base_url: str
) -> None:
    """Email whoever the event concerns (N1), at most once per (event, channel, recipient) (N3)."""
    agent_id = recipient_of(event)
    if agent_id is None:
        return
    agent = await agents.get(agent_id)
    if agent is None:
        raise PoisonMessage(f"unknown agent {agent_id!r}")
    content = email_for(event, agent, crm_base_url)
    if content is None:
        return
    key = f"{event.event_id}:email:{agent.agent_id}"
    if not await deliveries.begin(key, channel="email"):
        return  # already delivered: a redelivered event sends nothing twice
    await mailer.send(content, message_id=key)
    await deliveries.sent(key)
    log.info("%s email sent", event.type, extra={"event_id": str(event.event_id), "channel": "email"})
