"""An agent's text to a contact is dead-lettered, not dropped without a trace, when the SMS channel is off (helper
174's review; failed before).

`POST .../leads/{lead}/activities` with `{"action": "sms", "message": {"body": ...}}` claims the lead and the router
emits `ContactMessaged` (channel `sms`, the contact's phone) for the notifier to send (rules V5). SMS is off by default
(`NOTIFIER_SMS__ENABLED=false`), and `Notifier._other` then returns no delivery for it (`if channel not in
self.senders: return []`, notifier/handlers.py:607-608): no delivery record, no dead letter, no failure counted, no
log line. The agent was answered as for any action and its text to the contact is gone; nobody can find or replay it.
A delivery whose channel is switched off after it began is dead-lettered as `disabled` (`Courier.drive`): a message
asked for on a channel that is off now is too, replayable once the channel is on.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes_notifier import DeadLetters, Directory, Log, Outbox
from prometheus_client import CollectorRegistry

from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.routing import ContactMessaged, ContactMessagedPayload

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2024, 1, 10, 12, tzinfo=UTC)
ANA = Recipient(agent_id="ana", name="Ana", email="ana@example.com", phone="+13125550100")


async def test_a_text_to_the_contact_on_a_channel_that_is_off_is_dead_lettered_not_dropped() -> None:
    log, dead, registry = Log(), DeadLetters(), CollectorRegistry()
    notifier = Notifier(
        directory=Directory(ANA),
        deliveries=log,
        senders={Channel.EMAIL: Outbox()},  # the default deployment: SMS (and push) off
        dead_letters=dead,
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: NOW,
        retry=RetryPolicy(attempts=2, initial_seconds=0.001, max_seconds=0.002),
    )
    text = ContactMessaged.create(
        account_id="north",
        occurred_at=NOW,
        payload=ContactMessagedPayload(
            lead_id=uuid.uuid4(), agent_id="ana", channel="sms", to="+13125550199", body="Hi Jane, call me back?"
        ),
    )

    await notifier.notify(text, text.model_dump_json().encode())

    failed = registry.get_sample_value("notifier_notifications_failed_total", {"channel": "sms", "reason": "disabled"})
    assert dead.letters == [("sms", f"contact:{text.payload.lead_id}", "disabled")], (
        f"the agent's text to the contact left no trace: records {log.status}, dead letters {dead.letters}"
    )
    assert failed == 1
