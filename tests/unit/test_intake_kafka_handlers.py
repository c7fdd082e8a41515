"""Intake's Kafka edge (intake/entrypoints/kafka.py) on FastStream's in-memory test broker: a partner's
lead in, a LeadReceived out through the declared publisher; what cannot be accepted dead-lettered with
its reason and counted. In-memory ports (fakes_intake.py).

tests/integration/test_kafka_handlers_on_tansu.py runs the same test against the real broker.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from fakes_intake import FakeAccounts, FakeStore
from test_consumer_edge import Edge, edge

from leadflow_intake import contract
from leadflow_intake.entrypoints import kafka
from leadflow_intake.handlers import Intake
from leadflow_intake.metrics import IntakeMetrics
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

MAX_BYTES = 4096


def submitted(account: str, message: str = "Is it still available?", **changes: object) -> bytes:
    payload = {**contract.EXAMPLE["payload"], "message": message}
    lead = {**contract.EXAMPLE, "event_id": str(uuid.uuid4()), "account_id": account, "payload": payload, **changes}
    return json.dumps(lead).encode()


@dataclasses.dataclass
class PartnerIntake:
    """Intake consuming the partner topic for a new account, and (key, event) of each lead it published for it."""

    account: str
    store: FakeStore
    metrics: IntakeMetrics
    published: list[tuple[bytes | None, LeadReceived]]

    @property
    def received(self) -> list[LeadReceived]:
        return [event for _, event in self.published]


async def partner_intake(edge: Edge) -> PartnerIntake:
    """Started: intake's partner consumer over in-memory ports, a watcher of what it publishes, dead letters kept."""
    account, store = f"edge-{uuid.uuid4().hex[:8]}", FakeStore()
    metrics = IntakeMetrics(edge.runtime.registry)
    publish = edge.runtime.publisher(topics.LEADS_INTAKE, LeadReceived, description="leads in")
    intake = Intake(accounts=FakeAccounts({account: "US"}, {account: {"blair-chen"}}), store=store, publish=publish)
    kafka.subscribe(edge.runtime, intake=lambda: intake, metrics=metrics, group_id=f"intake-{account}",
                    max_bytes=MAX_BYTES)  # fmt: skip
    found = PartnerIntake(account, store, metrics, [])

    async def on_leads(leads: Batch[LeadReceived]) -> BatchRejections:
        found.published.extend((lead.message.key, lead.event) for lead in leads if lead.event.account_id == account)
        return []

    edge.runtime.subscribe(topics.LEADS_INTAKE, on_leads, group_id=f"watcher-{account}")
    edge.collect_dead_letters(topics.LEADS_INBOUND)
    await edge.start()
    return found


async def test_a_partner_lead_becomes_one_lead_received_and_what_cannot_be_accepted_is_dead_lettered(
    edge: Edge,
) -> None:
    intake = await partner_intake(edge)
    account = intake.account
    key = account.encode()
    good = submitted(account, message="the first lead")
    await edge.publish(topics.LEADS_INBOUND, good, key)
    await edge.publish(topics.LEADS_INBOUND, good, key)  # a partner's resend: one lead
    await edge.publish(topics.LEADS_INBOUND, submitted(account, message="x" * MAX_BYTES), key)
    await edge.publish(topics.LEADS_INBOUND, submitted(account, account_id=7), key)
    await edge.publish(topics.LEADS_INBOUND, submitted(f"{account}-unknown"), key)
    last = submitted(account, message="the last lead")  # same key, same partition: handled after all the others
    await edge.publish(topics.LEADS_INBOUND, last, key)

    await edge.settle(lambda: len(intake.received) == 2 and len(edge.dead_of(key)) == 3)
    assert [lead.payload.message for lead in intake.received] == ["the first lead", "the last lead"]
    assert sorted(d["dlq-error-type"] for d in edge.dead_of(key)) == ["PoisonMessage", "TooLarge", "ValidationError"]
    assert {d["dlq-service"] for d in edge.dead_of(key)} == {"edge-test"}

    def count(name: str, **labels: str) -> float:
        return edge.runtime.registry.get_sample_value(name, {"source": "partner", **labels}) or 0.0

    assert count("intake_leads_received_total") == 6
    assert count("intake_leads_rejected_total", reason="too_large") == 1
    assert count("intake_leads_rejected_total", reason="invalid") == 1
    assert count("intake_leads_duplicate_total") == 1
    assert count("intake_leads_rejected_total", reason="unknown_account") == 1


async def test_a_partner_lead_no_store_can_hold_is_dead_lettered_naming_the_field_and_claims_nothing(
    edge: Edge,
) -> None:
    """A NUL in a campaign field's name: intake used to claim and publish the lead, and the router then failed to
    store it at every retry and dead-lettered it (BSON ends a key at NUL): a lead lost after it was accepted.
    Refused at the edge now, naming the field (decision 0083); the partition goes on to the next lead."""
    intake = await partner_intake(edge)
    account, store = intake.account, intake.store
    key = account.encode()
    refused = json.loads(submitted(account, message="refused"))
    refused["payload"]["source"]["utm"] = {"utm_source": "x", "utm\u0000medium": "y"}
    await edge.publish(topics.LEADS_INBOUND, json.dumps(refused).encode(), key)
    await edge.publish(topics.LEADS_INBOUND, submitted(account, message="the next lead"), key)

    await edge.settle(lambda: len(intake.received) == 1 and len(edge.dead_of(key)) == 1)
    assert [lead.payload.message for lead in intake.received] == ["the next lead"]
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
        ("NotStrictRecord", "NotStrictRecord: payload.source.utm: a member name holds a NUL character (\\u0000), "
         "which no stored document can hold")
    ]  # fmt: skip
    assert len(store.claims) == 1, "the refused lead claimed its event id"
    rejected = {"source": "partner", "reason": "invalid"}
    assert edge.runtime.registry.get_sample_value("intake_leads_rejected_total", rejected) == 1


async def test_a_partner_lead_replayed_under_other_keys_is_one_lead_keyed_by_its_account(edge: Edge) -> None:
    """A partner replays a lead under another record key (another partition, maybe another consumer), even under
    another account's name: the event id is the idempotency key, the account the one the event names. One lead,
    published once, keyed by its account; the same event id with another lead is dead-lettered (I1)."""
    intake = await partner_intake(edge)
    account, received = intake.account, intake.published
    lead = submitted(account, message="once")
    for key in (account.encode(), b"another-account", b"\xff\x00", account.encode()):
        await edge.publish(topics.LEADS_INBOUND, lead, key)
    # Partitions are consumed in no set order: the other lead under its event id goes once the lead was taken.
    await edge.settle(lambda: any(event.payload.message == "once" for _, event in received))
    changed = json.loads(lead)
    changed["payload"]["message"] = "another lead under the same event id"
    await edge.publish(topics.LEADS_INBOUND, json.dumps(changed).encode(), b"re-keyed")
    await edge.publish(topics.LEADS_INBOUND, submitted(account, message="the next lead"), b"re-keyed")

    def messages() -> set[str]:
        return {event.payload.message for _, event in received}

    await edge.settle(lambda: messages() == {"once", "the next lead"} and len(edge.dead_of(b"re-keyed")) == 1)
    # Copies of one event id may reach the topic when two partitions race (I1: consumers drop them); one lead each.
    assert {(key, event.payload.message) for key, event in received} == {
        (account.encode(), "once"),
        (account.encode(), "the next lead"),
    }
    assert len({event.event_id for _, event in received}) == 2
    assert edge.dead_of(b"re-keyed")[0]["dlq-reason"] == "PoisonMessage: event_id: already used for a different lead"
