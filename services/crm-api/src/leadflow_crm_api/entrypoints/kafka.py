"""crm-api's Kafka edge: leads.events.v1 folded into the views (the projection, handlers.project).

Consumed in batches with one offset commit each. A batch's leads are projected concurrently, each
lead's events in the topic's order (they build on each other), and their reads and writes go to
MongoDB coalesced (adapters/view_commands.py): a few commands per batch instead of five or six per
event. A ContactErased is applied alone, after what came before it and before what comes after.
Every write goes through the views' generation gate and is logged for a running rebuild with its
place on the topic (decision 0045).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.generations import Write, replayed_already, writing
from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.adapters.view_commands import ViewCommands
from leadflow_crm_api.handlers import project
from leadflow_crm_api.metrics import CrmMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections, Incoming
from leadflow_shared.dead_letters import POISON_ERRORS
from leadflow_shared.events.routing import ContactErased, RoutingEvent
from leadflow_shared.mongo import Document
from leadflow_shared.service import ServiceRuntime

CONCURRENT_LEADS = 32

Parsed = tuple[int, RoutingEvent, Incoming]


def segments(parsed: list[Parsed]) -> list[dict[str, list[Parsed]]]:
    """The batch as runs of events grouped by lead (in order within each lead); an erasure alone."""
    runs: list[dict[str, list[Parsed]]] = [{}]
    for item in parsed:
        event = item[1]
        if isinstance(event, ContactErased):
            runs += [{str(event.event_id): [item]}, {}]
            continue
        lead = getattr(event.payload, "lead_id", None)
        runs[-1].setdefault(str(lead or event.event_id), []).append(item)
    return [run for run in runs if run]


@dataclass
class Projection:
    database: Callable[[], AsyncDatabase[Document]]  # the runtime's, once the lifespan opened it
    metrics: CrmMetrics
    _commands: ViewCommands | None = None  # made on first use: the MongoDB client opens in the lifespan

    async def on_routing_events(self, events: Batch[RoutingEvent]) -> BatchRejections:
        """Folds what the router decided into the CRM views (V1-V5): leads, offers, timelines."""
        rejections: BatchRejections = []
        limit = asyncio.Semaphore(CONCURRENT_LEADS)
        db = self.database()
        if self._commands is None:
            self._commands = ViewCommands(db)
        commands, projected = self._commands, self.metrics.projected

        async def one_lead(events: list[Parsed]) -> None:
            async with limit:
                for index, event, message in events:
                    write = Write(event=message.body, partition=message.partition, offset=message.offset)
                    try:
                        async with writing(db, write) as names:  # the generation gate (decision 0045)
                            if not await replayed_already(db, write):
                                await project(event, views=LeadViews(db, names, commands=commands))
                    except POISON_ERRORS as exc:  # dead-lettered; anything else: the edge retries the
                        rejections.append((index, exc))  # batch (the projection is idempotent), then one by one
                        continue
                    projected.labels(type(event).__name__).inc()

        for run in segments([(index, item.event, item.message) for index, item in enumerate(events)]):
            try:  # a run's leads together; on a failure the others are cancelled, the first error raised as is
                async with asyncio.TaskGroup() as group:
                    for lead_events in run.values():
                        group.create_task(one_lead(lead_events))
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None
        return rejections


def subscribe(
    runtime: ServiceRuntime,
    metrics: CrmMetrics,
    *,
    group_id: str,
    database: Callable[[], AsyncDatabase[Document]] | None = None,
) -> None:
    """The projection's subscriber, on the runtime's MongoDB unless given another `database`."""
    projection = Projection(database or (lambda: runtime.db), metrics)
    # The views are not on a new lead's way to its first notice: longer idle fetches (decision 0070).
    runtime.subscribe(topics.LEADS_EVENTS, projection.on_routing_events, group_id=group_id, on_lead_path=False)
