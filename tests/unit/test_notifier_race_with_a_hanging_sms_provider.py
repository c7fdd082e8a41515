"""An SMS provider that hangs holds up none of a race's other offers (helper 174's review; failed before).

A race offers one lead to several agents at once: the router publishes their `LeadOffered` events together, and the
first to claim wins. The notifier drives one lead's events in order (`Notifier.notify_events`, `one_lead`: each
event's deliveries are gathered, retries included, before the next event is planned). Decision 0012 runs an event's
channels concurrently so that "an SMS outage delays neither the email nor the push", but an SMS provider that hangs
(each call cut at `NOTIFIER_SMS__TIMEOUT_SECONDS`, 5 s, then retried: 4 attempts and their pauses, about 23 s)
holds the *next* event's email and push as long: the second agent of a race is told about 23 s after the first,
the third about 46 s after, a head start the race's rules do not give. (A provider that refuses at once costs
nothing of the kind.)

Now a lead's deliveries wait only for the one before them to the same recipient on the same channel
(`Courier.drive`'s `after`): the offers of one race reach their agents' email and push together, whatever one
SMS provider does.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_notifier import DeadLetters, Directory, Log
from prometheus_client import CollectorRegistry

from leadflow_notifier.domain.errors import TransientDeliveryError
from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
TIMEOUT = 0.3  # the SMS adapter's call timeout, scaled down from 5 s
AGENTS = [
    Recipient(
        agent_id=f"a-{i}", name=f"Agent {i}", email=f"a{i}@example.com", phone="+13125550100", push_token=f"tok-{i}"
    )
    for i in range(3)
]


class HangingSms:
    """What `TwilioSms` does against a provider that never answers: the call is cut at its timeout, transient."""

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002
        await asyncio.sleep(TIMEOUT)
        raise TransientDeliveryError("timeout")


class Clocked:
    """Accepts at once, noting when each recipient's message went out."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.at: dict[str, float] = {}

    async def send(self, content: Any, *, message_id: str) -> None:  # noqa: ARG002
        await asyncio.sleep(0)
        agent = message_id.split(":")[2]
        self.at.setdefault(agent, asyncio.get_running_loop().time() - self.started)


def race_offer(lead_id: uuid.UUID, agent_id: str, race_size: int = 3) -> LeadOffered:
    return LeadOffered.create(
        account_id="acme-realty",
        occurred_at=NOW,
        payload=LeadOfferedPayload(
            lead_id=lead_id,
            agent_id=agent_id,
            offer_round=1,
            race_size=race_size,
            deadline=datetime(2024, 1, 10, 12, 5, tzinfo=UTC),
            explanation="race",
            contact=Contact.model_validate({"first_name": "Jane", "email": "jane@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


async def test_a_hanging_sms_provider_does_not_hold_up_the_other_agents_of_a_race() -> None:
    started = asyncio.get_running_loop().time()
    email, push = Clocked(started), Clocked(started)
    notifier = Notifier(
        directory=Directory(*AGENTS),
        deliveries=Log(),
        senders={Channel.EMAIL: email, Channel.SMS: HangingSms(), Channel.PUSH: push},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOW,
        # The production policy (4 attempts, from 0.2 s doubling, capped at 5 s), scaled like the timeout.
        retry=RetryPolicy(attempts=4, initial_seconds=0.2 * TIMEOUT / 5, max_seconds=5.0 * TIMEOUT / 5),
    )
    lead = uuid.uuid4()
    bodies = [race_offer(lead, a.agent_id).model_dump_json().encode() for a in AGENTS]

    await notifier.notify_batch(bodies, concurrency=32)

    first, last = push.at["a-0"], push.at["a-2"]
    assert last - first < TIMEOUT, (
        f"the race's last agent was pushed {last - first:.2f} s after its first ({TIMEOUT} s is one SMS call's "
        f"timeout): email {email.at}, push {push.at}"
    )
