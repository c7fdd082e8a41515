"""Restart to serving: how long after a SIGKILL and restart each kind of work is done again.

For intake: the first website lead answered 202, and the first partner lead from
leads.inbound.v1 on leads.intake.v1 (its consumer joined). For the router: an offer that
fell due while the router was down expires (the sweeper), and a lead sent while it was down
is offered (its consumer joined). Times are from the restart (process spawn), in seconds;
the lateness of the overdue expiry is from the restart too, as its deadline had passed.

    .venv/bin/python bench/restart_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_devstack.stack import Stack
from leadflow_intake.domain import partner_signature
from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_shared import topics
from leadflow_shared.events.inbound import InboundContact, InboundSource, LeadSubmitted, LeadSubmittedPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered, OfferExpired

ACCOUNT = "restart-realty"
CONFIG = {
    "accounts": [
        {
            "account_id": ACCOUNT, "name": "Restart", "round_robin": True,
            "agents": [{"agent_id": f"restart-{n}", "name": f"Agent {n}", "email": f"restart-{n}@example.com"}
                       for n in range(3)],
            "roster": [f"restart-{n}" for n in range(3)],
            "default_source": {"claim_window_seconds": 10},
        }
    ]
}  # fmt: skip


class Watch:
    """Reads a topic from its end and calls back with each record's time of arrival."""

    def __init__(self, stack: Stack, topic: str) -> None:
        self.stack, self.topic = stack, topic
        self.seen: list[tuple[float, ConsumerRecord[bytes, bytes]]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Watch:
        self._consumer = AIOKafkaConsumer(self.topic, bootstrap_servers=self.stack.bootstrap,
                                          auto_offset_reset="latest", enable_auto_commit=False)  # fmt: skip
        await self._consumer.start()
        await self._consumer.seek_to_end()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            for records in (await self._consumer.getmany(timeout_ms=50)).values():
                now = time.monotonic()
                self.seen.extend((now, r) for r in records)

    async def first(self, match: Any, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, record in self.seen:
                if match(record):
                    return at
            await asyncio.sleep(0.02)  # polling a local list; the wait is bounded by the deadline
        raise TimeoutError(f"nothing matched on {self.topic} within {timeout}s")

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        assert self._consumer is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


def website_lead() -> dict[str, str]:
    marker = uuid.uuid4().hex[:10]
    return {
        "account_id": ACCOUNT,
        "first_name": "Rae",
        "last_name": f"Bench-{marker}",
        "email": f"rae.{marker}@example.com",
    }


async def produce(stack: Stack, topic: str, body: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()
    key = ACCOUNT.encode()
    # Signed as the embedded stack's demo partner (decision 0098); other topics ignore the header.
    signature = partner_signature.sign(DEVELOPMENT_SECRET.encode(), topic, key, body)
    try:
        await producer.send_and_wait(topic, body, key=key, headers=[(partner_signature.HEADER, signature.encode())])
    finally:
        await producer.stop()


async def intake_round(stack: Stack) -> dict[str, float]:
    stack.services["intake"].kill()
    partner = LeadSubmitted.create(
        account_id=ACCOUNT, occurred_at=datetime.now(UTC),
        payload=LeadSubmittedPayload(
            contact=InboundContact(first_name="Pat", email=f"pat-{uuid.uuid4().hex}@example.com"),
            source=InboundSource(partner="homefinder", name="Partner"),
        ),
    )  # fmt: skip
    async with Watch(stack, topics.LEADS_INTAKE) as watch, httpx.AsyncClient(timeout=5) as http:
        await produce(stack, topics.LEADS_INBOUND, partner.model_dump_json().encode())
        spawned = time.monotonic()
        stack.start_service("intake")
        while True:
            try:
                response = await http.post(f"{stack.url('intake')}/v1/leads", json=website_lead())
                if response.status_code == 202:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)  # the next attempt; the port is not open yet
        http_at = time.monotonic()
        marker = str(partner.correlation_id).encode()
        consumed_at = await watch.first(lambda r: marker in (r.value or b""))
    return {"http_s": http_at - spawned, "consumer_s": consumed_at - spawned}


def received(email: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=ACCOUNT, occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(contact=Contact(first_name="Kim", email=email),
                                    source=LeadSource(channel=LeadChannel.PARTNER, name="Partner")),
    )  # fmt: skip


async def router_round(stack: Stack) -> dict[str, float]:
    async with Watch(stack, topics.LEADS_EVENTS) as watch:
        due = received(f"due-{uuid.uuid4().hex}@example.com")
        await produce(stack, topics.LEADS_INTAKE, due.model_dump_json().encode())

        def offered(lead: LeadReceived) -> Any:
            def match(record: ConsumerRecord[bytes, bytes]) -> bool:
                event = ROUTING_EVENT.validate_json(record.value or b"")
                return isinstance(event, LeadOffered) and event.payload.lead_id == lead.event_id

            return match

        offered_at = await watch.first(offered(due))
        stack.services["router"].kill()
        # Down past the offer's deadline (10 s window), with a new lead waiting on the topic.
        waiting = received(f"waiting-{uuid.uuid4().hex}@example.com")
        await produce(stack, topics.LEADS_INTAKE, waiting.model_dump_json().encode())
        await asyncio.sleep(max(0.0, offered_at + 12 - time.monotonic()))  # the outage itself
        spawned = time.monotonic()
        stack.start_service("router")

        def expired(record: ConsumerRecord[bytes, bytes]) -> bool:
            event = ROUTING_EVENT.validate_json(record.value or b"")
            return isinstance(event, OfferExpired) and event.payload.lead_id == due.event_id

        expired_at = await watch.first(expired)
        routed_at = await watch.first(offered(waiting))
    return {"sweeper_s": expired_at - spawned, "consumer_s": routed_at - spawned}


async def run(stack: Stack, rounds: int) -> dict[str, Any]:
    intake = [await intake_round(stack) for _ in range(rounds)]
    router = [await router_round(stack) for _ in range(rounds)]

    def summary(values: list[dict[str, float]], key: str) -> dict[str, float]:
        column = [v[key] for v in values]
        return {"median": statistics.median(column), "max": max(column)}

    return {
        "rounds": rounds,
        "intake_http": summary(intake, "http_s"),
        "intake_consumer": summary(intake, "consumer_s"),
        "router_sweeper": summary(router, "sweeper_s"),
        "router_consumer": summary(router, "consumer_s"),
        "raw": {"intake": intake, "router": router},
    }


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"restart to serving after SIGKILL ({result['rounds']} rounds, seconds from spawn)")
    for column in ("what", "median", "max"):
        table.add_column(column)
    for key, label in [("intake_http", "intake: first website lead 202"),
                       ("intake_consumer", "intake: partner lead consumed"),
                       ("router_sweeper", "router: overdue offer expired"),
                       ("router_consumer", "router: waiting lead offered")]:  # fmt: skip
        table.add_row(label, f"{result[key]['median']:.1f}", f"{result[key]['max']:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    with bench_results.embedded_stack(CONFIG) as stack:
        stack.start_services(timeout=90)
        result = asyncio.run(run(stack, args.rounds))
    bench_results.save(result, name="restart", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
