"""The notifier's Kafka edge (notifier/entrypoints/kafka.py) on FastStream's in-memory test broker: a
batch subscriber of leads.events.v1 whose events are emailed once each, with poison dead-lettered.
In-memory ports (fakes_notifier.py).

tests/integration/test_kafka_handlers_on_tansu.py runs the same test against the real broker.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes_notifier import DeadLetters, Directory, Log, Provider
from test_consumer_edge import Edge, edge

from leadflow_notifier.domain.messages import Recipient
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.entrypoints import kafka
from leadflow_notifier.handlers import Notifier
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
AGENT = Recipient(agent_id="kafka-ana", name="Ana", email="ana@example.com")


def offered(account: str, agent_id: str = AGENT.agent_id) -> bytes:
    return LeadOffered.create(
        account_id=account,
        occurred_at=NOW,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(), agent_id=agent_id, offer_round=1, race_size=1,
            deadline=datetime(2026, 11, 29, 12, 15, tzinfo=UTC), explanation="R5: round robin",
            contact=Contact(first_name="Jane", email="jane@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    ).model_dump_json().encode()  # fmt: skip


async def test_each_offer_is_emailed_once_and_poison_is_dead_lettered(edge: Edge) -> None:
    account = f"edge-{uuid.uuid4().hex[:8]}"
    email = Provider()
    notifier = Notifier(
        directory=Directory(AGENT),
        deliveries=Log(),
        senders={Channel.EMAIL: email},
        dead_letters=DeadLetters(),
        metrics=NotifierMetrics(edge.runtime.registry),
        pages_url="https://crm.example",
        clock=lambda: NOW,
    )
    kafka.subscribe(edge.runtime, lambda: notifier, group_id=f"notifier-{account}", concurrency=4, batch_size=50)
    edge.collect_dead_letters(topics.LEADS_EVENTS)
    await edge.start()
    key, first = account.encode(), offered(account)
    await edge.publish(topics.LEADS_EVENTS, first, key)
    await edge.publish(topics.LEADS_EVENTS, b'{"type": "LeadOffered", "payload": []}', key)
    await edge.publish(topics.LEADS_EVENTS, offered(account, agent_id="nobody-we-know"), key)
    await edge.publish(topics.LEADS_EVENTS, first, key)  # a redelivery: not emailed again
    await edge.publish(topics.LEADS_EVENTS, offered(account), key)  # same key, same partition: handled last

    await edge.settle(lambda: len(email.accepted) == 2 and len(edge.dead_of(key)) == 2)
    assert sorted(d["dlq-error-type"] for d in edge.dead_of(key)) == ["PoisonMessage", "ValidationError"]
    assert len(set(email.ids)) == 2


async def test_an_offer_no_delivery_record_can_hold_is_dead_lettered_unsent_and_the_next_is_emailed(
    edge: Edge,
) -> None:
    """An offer of round 2**70 (the contract bounds it below only; BSON holds 64 bits): refused before the
    notifier plans a delivery, naming the field (decision 0083); the offer behind it is emailed."""
    account = f"edge-{uuid.uuid4().hex[:8]}"
    email = Provider()
    # An agent of its own: on the real broker, the test beside it reads this one's offers too (and dead-letters them).
    bo = Recipient(agent_id="kafka-bo", name="Bo", email="bo@example.com")
    notifier = Notifier(directory=Directory(bo), deliveries=Log(), senders={Channel.EMAIL: email},
                        dead_letters=DeadLetters(), metrics=NotifierMetrics(edge.runtime.registry),
                        pages_url="https://crm.example", clock=lambda: NOW)  # fmt: skip
    kafka.subscribe(edge.runtime, lambda: notifier, group_id=f"notifier-{account}", concurrency=4, batch_size=50)
    edge.collect_dead_letters(topics.LEADS_EVENTS)
    await edge.start()
    key = account.encode()
    huge = LeadOffered.model_validate_json(offered(account, bo.agent_id))
    huge = huge.model_copy(update={"payload": huge.payload.model_copy(update={"offer_round": 2**70})})
    await edge.publish(topics.LEADS_EVENTS, huge.model_dump_json().encode(), key)
    await edge.publish(topics.LEADS_EVENTS, offered(account, bo.agent_id), key)

    await edge.settle(lambda: len(email.accepted) == 1 and len(edge.dead_of(key)) == 1)
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
        ("NotStrictRecord", "NotStrictRecord: payload.offer_round: an integer beyond the 64-bit range")
    ]
