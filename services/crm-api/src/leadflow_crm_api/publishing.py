"""Handing a message to Kafka from a request: a failure becomes a 503 the client can retry."""

from __future__ import annotations

import logging

from leadflow_crm_api.errors import Unavailable
from leadflow_shared.envelope import Envelope
from leadflow_shared.kafka import PublishRaw

log = logging.getLogger(__name__)


async def publish_or_unavailable(publish: PublishRaw, message: Envelope, *, detail: str) -> None:
    """Publish `message` keyed by its account; any Kafka failure is "not taken" (Unavailable with `detail`)."""
    try:
        await publish(message.account_id, message.model_dump_json().encode())
    except Exception as exc:  # the edge: whatever Kafka failed with, the client may retry
        log.warning("%s not published: %s", message.type, type(exc).__name__, extra={"event_id": str(message.event_id)})
        raise Unavailable(detail) from exc
