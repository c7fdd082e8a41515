"""Nothing of a batch is left sending when the notifier's `notify_events` returns or raises (helper 178's review of
the per-(recipient, channel) chains, 1b806de; both tests failed before `Notifier._one_lead`, `_ended`).

A lead's later event is now planned while the deliveries of the events before it are still being driven. When
planning that later event fails (a MongoDB blip reading the directory: any error that is not poison),
`notify_events` raises at once, and the earlier events' drives, started with `asyncio.ensure_future`, keep running
in the background: the consumer's edge retries or rewinds the batch (or commits the next one) while a send of
this lead is still under way. Before 1b806de an event's deliveries were awaited before the next event was planned,
so nothing of the batch was left running when `notify_events` raised.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_notifier import DeadLetters, Directory, Log
from prometheus_client import CollectorRegistry
from test_notifier_race_with_a_hanging_sms_provider import race_offer

from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notice, Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.routing import ContactErased, ContactErasedPayload, LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
AGENTS = [
    Recipient(agent_id=f"a-{i}", name=f"Agent {i}", email=f"a{i}@example.com", phone="+13125550100", push_token="")
    for i in range(2)
]


class FlakyDirectory(Directory):
    """A MongoDB blip on reading the second agent."""

    async def get(self, agent_id: str) -> Recipient | None:
        if agent_id == "a-1":
            raise ConnectionError("mongodb blip")
        return await super().get(agent_id)


class SlowEmail:
    """An email relay that takes a while to accept; counts the sends still under way."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.done: list[str] = []

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002
        self.in_flight += 1
        try:
            await asyncio.sleep(0.3)
            self.done.append(message_id)
        finally:
            self.in_flight -= 1


def offer(lead_id: uuid.UUID, agent_id: str) -> LeadOffered:
    return race_offer(lead_id, agent_id, race_size=2)


async def test_a_failed_plan_leaves_no_send_of_the_lead_running_after_notify_events_raises() -> None:
    email = SlowEmail()
    notifier = Notifier(
        directory=FlakyDirectory(*AGENTS),
        deliveries=Log(),
        senders={Channel.EMAIL: email},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1, initial_seconds=0.01, max_seconds=0.01),
    )
    lead = uuid.uuid4()
    notices = [Notice(e, e.model_dump_json().encode()) for e in (offer(lead, "a-0"), offer(lead, "a-1"))]

    with pytest.raises(ConnectionError):
        await notifier.notify_events(notices, concurrency=8)

    running = email.in_flight
    await asyncio.sleep(0.5)  # let the orphan finish so the loop closes cleanly
    assert running == 0, (
        f"notify_events raised while {running} send(s) of the batch were still running (the edge then retries, "
        f"rewinds or commits while it sends); finished later: {email.done}"
    )


class BlipOnce(Directory):
    """A MongoDB blip on the first read of the second agent only (the edge's next attempt reads it)."""

    def __init__(self, *recipients: Recipient) -> None:
        super().__init__(*recipients)
        self.blipped = False

    async def get(self, agent_id: str) -> Recipient | None:
        if agent_id == "a-1" and not self.blipped:
            self.blipped = True
            raise ConnectionError("mongodb blip")
        return await super().get(agent_id)


class Steps:
    """The erasure port and an email relay, writing what happened in order."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def erase(self, lead_ids: list[str], *, now_ms: int) -> int:  # noqa: ARG002
        self.steps.append("erase")
        return 0

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002
        agent = message_id.split(":")[2]
        await asyncio.sleep(0.6 if agent == "a-0" else 0.05)  # the first agent's relay is slow
        self.steps.append(f"sent {agent}")


async def test_no_offer_with_the_contact_goes_out_after_the_batch_s_erasure_is_applied() -> None:
    """The edge runs a failed batch again (`ConsumerEdge.retrying`): the first attempt's orphaned send, busy in the
    delivery log, is skipped by the second, which applies the batch's ContactErased while the orphan still sends the
    offer with the contact's name and email (rules: nothing about its leads is sent after it is applied)."""
    steps = Steps()
    notifier = Notifier(
        directory=BlipOnce(*AGENTS),
        deliveries=Log(),
        senders={Channel.EMAIL: steps},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=1, initial_seconds=0.01, max_seconds=0.01),
        erasure=steps,
    )
    lead = uuid.uuid4()
    erased = ContactErased.create(
        account_id="acme-realty",
        occurred_at=NOW,
        payload=ContactErasedPayload(erasure_id=uuid.uuid4(), lead_ids=[lead], by_user_id="admin", reason="GDPR-1"),
    )
    events = (offer(lead, "a-0"), offer(lead, "a-1"), erased)
    notices = [Notice(e, e.model_dump_json().encode()) for e in events]

    with pytest.raises(ConnectionError):
        await notifier.notify_events(notices, concurrency=8)
    await notifier.notify_events(notices, concurrency=8)  # the edge's next attempt
    await asyncio.sleep(0.8)

    assert "erase" in steps.steps
    after = steps.steps[steps.steps.index("erase") + 1 :]
    assert not after, f"sent after the contact's erasure was applied: {after} (all steps: {steps.steps})"
