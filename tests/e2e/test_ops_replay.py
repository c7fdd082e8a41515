"""A failed email, replayed by an operator, is delivered exactly once (decision 0044).

On the whole system: the mail server refuses an agent's address for good (554), so the offer
email is dead-lettered by the notifier on leads.events.v1.dlq and its delivery record is `failed`.
The cause is fixed, `leadflow-ops dlq replay` puts the dead letter back on leads.events.v1, and
the notifier attempts that delivery again: one email arrives. A second replay publishes nothing,
and even a copy of the replayed record (a ledger lost) sends nothing more.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, ops_json, publish_envelopes, records_to_end, records_until
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OPS = str(Path(sys.executable).parent / "leadflow-ops")
DLQ = topics.dlq(topics.LEADS_EVENTS)
NOTIFIER_GROUP = f"leadflow-notifier.{topics.LEADS_EVENTS}"  # NotifierSettings.consumer_group, per topic


@dataclass(frozen=True)
class Agent:
    account_id: str
    agent_id: str

    @property
    def address(self) -> str:
        return f"{self.agent_id}@ops-replay.example"


async def ops(stack: Stack, *args: str) -> tuple[int, Any]:
    """`leadflow-ops ... --json` against the stack: exit status and the JSON it printed."""
    return await ops_json(stack.bootstrap, stack.mongo_url, *args)


@pytest_asyncio.fixture
async def agent(stack: Stack, tmp_path: Path) -> Agent:
    """One agent on round robin, seeded with `leadflow-ops seed`; long claim windows (no expiry mid-test)."""
    run = uuid.uuid4().hex[:6]
    found = Agent(f"acct-ops-{run}", f"acct-ops-{run}-ana")
    config = {"accounts": [{
        "account_id": found.account_id, "name": "Ops Replay Realty", "round_robin": True,
        "agents": [{"agent_id": found.agent_id, "name": "Ana", "email": found.address}],
        "roster": [found.agent_id], "default_source": {"claim_window_seconds": 900},
    }]}  # fmt: skip
    path = tmp_path / "ops-replay.json"
    path.write_text(json.dumps(config))
    code, seeded = await ops(stack, "seed", str(path))
    assert (code, seeded["accounts"]) == (0, 1)
    return found


@pytest_asyncio.fixture
async def deliveries(stack: Stack) -> AsyncIterator[AsyncCollection[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        yield client["leadflow"]["notifier_deliveries"]
    finally:
        await client.close()


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    values = [v for n, v in record.headers if n == name]
    return values[-1].decode() if values else None


async def committed(stack: Stack, partition: int) -> int:
    """The notifier's committed offset on a partition of leads.events.v1 (-1: none yet). The reader
    only fetches the group's offsets: it subscribes to nothing, so it never joins the group."""
    reader = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=NOTIFIER_GROUP, enable_auto_commit=False)
    await reader.start()
    try:
        offset = await reader.committed(TopicPartition(topics.LEADS_EVENTS, partition))
    finally:
        await reader.stop()
    return -1 if offset is None else int(offset)


async def test_a_replayed_email_dead_letter_is_delivered_once(
    stack: Stack, agent: Agent, deliveries: AsyncCollection[dict[str, Any]]
) -> None:
    assert stack.mail is not None
    stack.mail.refuse_to[agent.address] = "554 5.7.1 mailbox unavailable"
    lead = LeadReceived.create(
        account_id=agent.account_id, occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(contact=Contact(first_name="Ops", last_name="Replay", email="ops@example.com"),
                                    source=LeadSource(channel=LeadChannel.PARTNER, name="Partner")),
    )  # fmt: skip
    await publish_envelopes(stack.bootstrap, topics.LEADS_INTAKE, [lead])

    def ours(record: ConsumerRecord[bytes, bytes]) -> bool:
        return header(record, "dlq-recipient") == agent.agent_id

    dead = next(r for r in await records_until(stack.bootstrap, DLQ, ours, timeout=60) if ours(r))
    assert (header(dead, "dlq-service"), header(dead, "dlq-channel")) == ("notifier", "email")
    failed = await deliveries.find_one({"agent_id": agent.agent_id})
    assert failed is not None
    assert (failed["status"], failed["reason"]) == ("failed", "rejected")
    assert stack.mail.received_by(agent.address) == []

    del stack.mail.refuse_to[agent.address]  # the cause is fixed: the mailbox accepts mail again
    where = f"{dead.partition}:{dead.offset}"
    code, replay = await ops(stack, "dlq", "replay", DLQ, "--offset", where)
    assert code == 0
    [outcome] = replay["outcomes"]
    assert outcome["status"] == "replayed"

    mail = stack.mail
    await eventually(lambda: mail.received_by(agent.address), timeout=30, what="the replayed offer email")
    record = await eventually(lambda: deliveries.find_one({"_id": failed["_id"], "status": "sent"}), timeout=10,
                              what="the delivery record marked sent")  # fmt: skip
    assert record["replays"] == 1

    code, again = await ops(stack, "dlq", "replay", DLQ, "--offset", where)
    assert (code, [o["status"] for o in again["outcomes"]]) == (0, ["already-replayed"])
    marker = f"{DLQ}/{where}#"  # the coordinates, then a hash of the dead letter (decision 0091)
    copies = [r for r in await records_to_end(stack.bootstrap, topics.LEADS_EVENTS)
              if (header(r, "leadflow-replay") or "").startswith(marker)]  # fmt: skip
    assert len(copies) == 1, "the second replay published nothing"

    # A copy of the replayed record (as if the ledger had been lost): the notifier reopens a failed
    # delivery once per dead letter, and this one is sent. Wait until the notifier has committed past it.
    [replayed] = copies
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    try:
        copy = await producer.send_and_wait(topics.LEADS_EVENTS, replayed.value, key=replayed.key,
                                            headers=list(replayed.headers))  # fmt: skip
    finally:
        await producer.stop()

    partition, offset = int(copy.partition), int(copy.offset)

    async def past_copy() -> bool:
        return await committed(stack, partition) > offset

    await eventually(past_copy, timeout=30, what="the notifier committing past the copy")
    [email] = mail.received_by(agent.address)  # delivered exactly once
    assert str(email["Subject"]).startswith("Lead offer: ")
    assert (await deliveries.find_one({"_id": failed["_id"]}) or {}).get("replays") == 1
