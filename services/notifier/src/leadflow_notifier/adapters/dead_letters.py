"""One channel's failed delivery to `<topic>.dlq`: the original event, headers naming the channel."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from leadflow_notifier.domain.errors import DeliveryError
from leadflow_shared.topics import dlq


class KafkaDeadLetters:
    def __init__(self, broker: KafkaBroker, source_topic: str) -> None:
        self._broker = broker
        self._source = source_topic

    async def publish(self, raw: bytes, *, account_id: str, channel: str, agent_id: str, error: DeliveryError) -> None:
        await self._broker.publish(
            raw,
            dlq(self._source),
            key=account_id.encode(),
            headers={
                "dlq-reason": str(error)[:2000],  # adapters put codes in it, never content or addresses
                "dlq-error-type": type(error).__name__,
                "dlq-source-topic": self._source,
                "dlq-service": "notifier",
                "dlq-channel": channel,
                "dlq-recipient": agent_id,
            },
        )
