"""crm-api's Kafka edge: leads.events.v1 folded into the views (the projection, handlers.project).

Consumed in batches, in the topic's order (one lead's events build on each other), with one offset
commit per batch. Every write goes through the views' generation gate and is logged for a running
rebuild with its place on the topic (decision 0045).
"""

from __future__ import annotations

from leadflow_crm_api.adapters.generations import Write, replayed_already, writing
from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.handlers import project
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT
from leadflow_shared.kafka import POISON_ERRORS, BatchRejections, Incoming
from leadflow_shared.service import ServiceRuntime


def subscribe(runtime: ServiceRuntime, *, group_id: str) -> None:
    async def handle(message: Incoming) -> None:
        event = ROUTING_EVENT.validate_json(message.body)
        write = Write(event=message.body, partition=message.partition, offset=message.offset)
        async with writing(runtime.db, write) as names:  # decision 0045
            if not await replayed_already(runtime.db, write):
                await project(event, views=LeadViews(runtime.db, names))

    async def handle_batch(messages: list[Incoming]) -> BatchRejections:
        # In the topic's order: one lead's events build on each other. One commit per batch.
        rejections: BatchRejections = []
        for index, message in enumerate(messages):
            try:
                await handle(message)
            except Exception as exc:
                if not isinstance(exc, POISON_ERRORS):
                    raise  # the guard retries the batch, then goes one by one
                rejections.append((index, exc))  # dead-lettered
        return rejections

    runtime.consume_batches_with_headers(
        topics.LEADS_EVENTS, group_id=group_id, handle_batch=handle_batch, handle_one=handle
    )
