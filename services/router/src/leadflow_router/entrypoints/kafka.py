"""The router's Kafka edge: new leads from leads.intake.v1 (in batches), agents' activity from
leads.activity.v1 and crm-api's commands from leads.commands.v1, each to its RouterService use case.

Invalid messages are rejected to their dead-letter topic by the runtime's guard (I4).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from leadflow_router.handlers import RouterService
from leadflow_shared import topics, tracing
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.commands import LEAD_COMMAND
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import BatchRejections, Incoming
from leadflow_shared.service import ServiceRuntime


def subscribe(
    runtime: ServiceRuntime, service: Callable[[], RouterService], *, group_id: str, intake_batch: int
) -> None:
    # With headers: each lead's events go out in the trace of the record that brought it (tracing).
    async def on_lead_received(message: Incoming) -> None:
        event = LeadReceived.model_validate_json(message.body)
        await service().on_lead_received(event, trace=tracing.traceparent(message.headers))

    async def on_leads_received(messages: list[Incoming]) -> BatchRejections:
        events: list[LeadReceived] = []
        traces: list[str | None] = []
        positions: list[int] = []
        rejections: BatchRejections = []
        for index, message in enumerate(messages):
            try:
                events.append(LeadReceived.model_validate_json(message.body))
                traces.append(tracing.traceparent(message.headers))
                positions.append(index)
            except ValidationError as exc:
                rejections.append((index, exc))
        routed = await service().on_leads_received(events, traces=traces)
        return rejections + [(positions[index], exc) for index, exc in routed]

    async def on_activity(body: bytes) -> None:
        await service().on_activity(LeadActivity.model_validate_json(body))

    runtime.consume_batches_with_headers(
        topics.LEADS_INTAKE,
        group_id=group_id,
        handle_batch=on_leads_received,
        handle_one=on_lead_received,
        max_records=intake_batch,
    )

    async def on_command(body: bytes) -> None:
        await service().on_command(LEAD_COMMAND.validate_json(body))

    runtime.consume(topics.LEADS_ACTIVITY, group_id=group_id, handle=on_activity)
    runtime.consume(topics.LEADS_COMMANDS, group_id=group_id, handle=on_command)
