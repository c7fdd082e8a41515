"""The notifier's Kafka edge: leads.events.v1 in batches to `Notifier.notify_batch`.

Batches: deliveries of different leads overlap instead of queueing one by one (P2), each lead's
events in order. With headers: a replayed dead letter (decision 0044) says so in its
`leadflow-replay*` headers.
"""

from __future__ import annotations

from collections.abc import Callable

from leadflow_notifier.domain.replay import replay_of
from leadflow_notifier.handlers import Notifier
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT
from leadflow_shared.kafka import BatchRejections, Incoming
from leadflow_shared.service import ServiceRuntime


def subscribe(
    runtime: ServiceRuntime, notifier: Callable[[], Notifier], *, group_id: str, concurrency: int, batch_size: int
) -> None:
    async def handle_one(message: Incoming) -> None:
        event = ROUTING_EVENT.validate_json(message.body)
        await notifier().notify(event, message.body, replay=replay_of(message.headers))

    async def handle_batch(messages: list[Incoming]) -> BatchRejections:
        replays = {i: r for i, m in enumerate(messages) if (r := replay_of(m.headers)) is not None}
        bodies = [m.body for m in messages]
        return await notifier().notify_batch(bodies, concurrency=concurrency, replays=replays)

    runtime.consume_batches_with_headers(
        topics.LEADS_EVENTS, group_id=group_id, handle_batch=handle_batch, handle_one=handle_one,
        max_records=batch_size,
    )  # fmt: skip
