"""The notifier's Kafka edge: leads.events.v1 in batches to `Notifier.notify_events`.

Batches: deliveries of different leads overlap instead of queueing one by one (P2), each lead's
events in order. A replayed dead letter (decision 0044) says so in its `leadflow-replay*` headers.
"""

from __future__ import annotations

from collections.abc import Callable

from leadflow_notifier.domain.replay import replay_of
from leadflow_notifier.handlers import Notice, Notifier
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.routing import RoutingEvent
from leadflow_shared.service import ServiceRuntime


def subscribe(
    runtime: ServiceRuntime, notifier: Callable[[], Notifier], *, group_id: str, concurrency: int, batch_size: int
) -> None:
    async def on_routing_events(events: Batch[RoutingEvent]) -> BatchRejections:
        """Tells agents, brokers, realtors and contacts what the router decided, by email, SMS and push
        (N1-N5), each delivery once (I2)."""
        notices = [Notice(e.event, e.message.body, replay_of(e.message.headers)) for e in events]
        return await notifier().notify_events(notices, concurrency=concurrency)

    runtime.subscribe(topics.LEADS_EVENTS, on_routing_events, group_id=group_id, max_records=batch_size)
