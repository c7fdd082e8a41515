"""The router's Kafka edge: new leads from leads.intake.v1 and agents' activity from leads.activity.v1 (in
batches), and crm-api's commands from leads.commands.v1, each to its RouterService use case.

Each handler's first parameter is its topic's contract; what does not decode to it is dead-lettered
by the consumers' edge before a handler runs (leadflow_shared.consumers, I4).
"""

from __future__ import annotations

from collections.abc import Callable

from leadflow_router.handlers import ACTIVITY_BATCH, RouterService
from leadflow_shared import topics, tracing
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.commands import LeadCommand
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.service import ServiceRuntime


def subscribe(
    runtime: ServiceRuntime, service: Callable[[], RouterService], *, group_id: str, intake_batch: int
) -> None:
    async def on_leads_received(leads: Batch[LeadReceived]) -> BatchRejections:
        """New leads from intake: each one routed and offered (R1-R7). The events of a lead go out
        in the trace of the record that brought it (W3C traceparent header, when tracing is on)."""
        traces = [tracing.traceparent(lead.message.headers) for lead in leads]
        return await service().on_leads_received([lead.event for lead in leads], traces=traces)

    async def on_activities(activities: Batch[LeadActivity]) -> BatchRejections:
        """Agents' actions on leads, recorded by crm-api: claims (R8) and qualifying actions."""
        # A batch's leads together, each lead's actions in order: one at a time, claims waited behind each other's
        # round trips and lost to the sweeper in a burst (decision 0109).
        traces = [tracing.traceparent(activity.message.headers) for activity in activities]
        return await service().on_activities([activity.event for activity in activities], traces=traces)

    async def on_command(command: LeadCommand) -> None:
        """crm-api's commands: transfers, sharing, distribution by hand, departures, erasure."""
        await service().on_command(command)

    runtime.subscribe(topics.LEADS_INTAKE, on_leads_received, group_id=group_id, max_records=intake_batch)
    # Claims and commands are not on a new lead's way to its first notice: longer idle fetches (decision 0070).
    runtime.subscribe(
        topics.LEADS_ACTIVITY, on_activities, group_id=group_id, on_lead_path=False, max_records=ACTIVITY_BATCH
    )
    runtime.subscribe(topics.LEADS_COMMANDS, on_command, group_id=group_id, on_lead_path=False)
