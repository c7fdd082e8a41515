"""Router benchmark on the embedded servers (Tansu, nx-27017): P1, P3, P4 and P5 of DESIGN section 8.

P1  leads/s from leads.intake.v1 to LeadOffered on leads.events.v1 (one router), against the
    broker's own produce-consume rate for the same messages and the rate at which nx-27017 takes
    exactly the router's reads and writes for those leads, issued directly in the router's batch
    size (its own adapters, no router), both measured in the same run: the two floors.
P3  p99 lateness of offer expiries with 100,000 open offers in the table.
P4  MongoDB commands and Kafka messages per routed lead (from the router's own metrics).
P5  the router's resident memory after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_devstack.processes import free_port
from leadflow_devstack.stack import Stack
from leadflow_router.adapters.codec import encode_record
from leadflow_router.adapters.mongo import Contacts, LeadRecords, Rotations
from leadflow_router.domain.model import LeadState, LeadStatus, Offer
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord
from leadflow_shared import topics
from leadflow_shared.clock import now_ms
from leadflow_shared.collections import ROUTER_LEADS
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered, LeadSummary, OfferExpired
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import TopicSpec
from path_bench import CpuMeter

ACCOUNT = "bench-realty"
AGENTS = [f"agent-{n:02d}" for n in range(10)]
CONFIG = {
    "accounts": [
        {
            "account_id": ACCOUNT,
            "name": "Bench Realty",
            "round_robin": True,
            "agents": [{"agent_id": a, "name": a, "email": f"{a}@bench.example"} for a in AGENTS],
            "roster": AGENTS,
            "default_source": {"claim_window_seconds": 3600},
        }
    ]
}


def leads(count: int) -> list[bytes]:
    return [
        LeadReceived.create(
            account_id=ACCOUNT,
            occurred_at=datetime.now(UTC),
            payload=LeadReceivedPayload(
                contact=Contact(first_name="Bench", email=f"b-{uuid.uuid4().hex}@example.com"),
                source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
            ),
        )
        .model_dump_json()
        .encode()
        for _ in range(count)
    ]


async def produce(bootstrap: str, topic: str, bodies: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = [await producer.send(topic, body, key=ACCOUNT.encode()) for body in bodies]
        for sent in pending:
            await sent
    finally:
        await producer.stop()
    return started


async def tail_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer positioned at the end of `topic`: it sees only what comes next."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    await consumer.topics()
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    return consumer


async def broker_rate(bootstrap: str, bodies: list[bytes]) -> float:
    """The broker's own produce-consume rate for the same messages (the P1 reference)."""
    topic = f"bench.baseline.{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, 3)])
    consumer = await tail_consumer(bootstrap, topic)
    try:
        started = await produce(bootstrap, topic, bodies)
        seen = 0
        while seen < len(bodies):
            seen += sum(len(r) for r in (await consumer.getmany(timeout_ms=500)).values())
        return len(bodies) / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def router_rate(stack: Stack, bodies: list[bytes]) -> float:
    ids = {json.loads(b)["event_id"] for b in bodies}
    consumer = await tail_consumer(stack.bootstrap, topics.LEADS_EVENTS)
    try:
        started = await produce(stack.bootstrap, topics.LEADS_INTAKE, bodies)
        offered: set[str] = set()
        deadline = time.monotonic() + 600
        while offered != ids and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    event = ROUTING_EVENT.validate_json(record.value or b"")
                    if isinstance(event, LeadOffered) and str(event.payload.lead_id) in ids:
                        offered.add(str(event.payload.lead_id))
        if offered != ids:
            raise RuntimeError(f"only {len(offered)} of {len(ids)} leads were offered")
        return len(ids) / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def routed_record(body: bytes, n: int) -> RoutingRecord:
    """The record the router stores for the lead in `body` (offered to one agent), with its outbox."""
    event = LeadReceived.model_validate_json(body)
    deadline = datetime.now(UTC) + timedelta(hours=1)
    summary = LeadSummary(contact=event.payload.contact, source=event.payload.source)
    state = LeadState(
        lead_id=str(event.event_id), account_id=ACCOUNT, summary=summary, status=LeadStatus.OFFERED,
        offers=(Offer(AGENTS[n % len(AGENTS)], 1, deadline),), round=1, next_deadline=deadline, version=1,
    )  # fmt: skip
    keys = tuple(Contacts.keys(ACCOUNT, event.payload.contact.email, event.payload.contact.phone))
    outbox = Outbox(
        events=(body.decode(),),  # an event of about the size of LeadOffered
        effects=Effects(rotation=(f"{ACCOUNT}:Partner", n), contacts=keys),
        since_ms=now_ms(),
    )
    agent, waiting = AGENTS[n % len(AGENTS)], [a for a in AGENTS if a != AGENTS[n % len(AGENTS)]]
    decision = {  # the routing decision the router keeps with the record ("why this agent", issue 15)
        "at": datetime.now(UTC).isoformat(), "step": "R6", "chosen": [agent], "waiting": waiting,
        "rotation": {"kind": "source", "mode": "round_robin", "cursor_before": n, "cursor_after": n + 1},
        "explanation": f"R6: offered to {agent} (next in rotation, race of 1) until {deadline.isoformat()}; "
        f"eligible: {', '.join(AGENTS)}.",
    }  # fmt: skip
    return RoutingRecord(
        state.lead_id, ACCOUNT, 1, state, state.lead_id, (str(event.event_id),), outbox, decisions=(decision,)
    )


async def database_rate(stack: Stack, bodies: list[bytes], batch: int) -> float:
    """The P1 database floor: per batch, the router's commands for new leads (look the leads and
    their contacts up, insert the outbox document and the records, advance the rotation, register the
    contacts and read their leads again (decision 0050), drop the outbox document), through its own adapters and
    nothing else; leads per second."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    db = client["leadflow"]
    store, contacts, rotations = LeadRecords(db), Contacts(db), Rotations(db)
    records = [routed_record(body, n) for n, body in enumerate(bodies)]
    started = time.perf_counter()
    try:
        for first in range(0, len(records), batch):
            chunk = records[first : first + batch]
            keys = {key: record.lead_id for record in chunk for key in record.outbox.effects.contacts}
            await store.get_many([record.lead_id for record in chunk])
            await contacts.find(sorted(keys))
            _, outbox_docs = await store.insert_batch(chunk, batch_id=uuid.uuid4().hex, now_ms=now_ms())
            await rotations.advance(f"{ACCOUNT}:Partner", first + len(chunk))
            await contacts.register(keys)
            await store.readable_many(sorted(set(keys.values())), read="contacts")
            await store.end_batch(outbox_docs)
        return len(records) / (time.perf_counter() - started)
    finally:
        await client.close()


def metrics(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url('router')}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def timers(stack: Stack, open_offers: int, due: int, due_window: float) -> dict[str, float]:
    """P3: `open_offers` open offers, `due` of them falling due over `due_window` seconds."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    db = client["leadflow"]
    summary = LeadSummary(
        contact=Contact(first_name="Timer", email="t@example.com"),
        source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
    )

    def offer(n: int, deadline: datetime) -> dict[str, Any]:
        state = LeadState(
            lead_id=str(uuid.uuid4()),
            account_id=ACCOUNT,
            summary=summary,
            status=LeadStatus.OFFERED,
            offers=(Offer(AGENTS[n % len(AGENTS)], 1, deadline),),
            round=1,
            next_deadline=deadline,
            version=1,
        )
        return encode_record(RoutingRecord(state.lead_id, ACCOUNT, 1, state, state.lead_id))

    # The open offers that stay open (deadlines over the next day) go in first...
    now = datetime.now(UTC)
    idle = [offer(n, now + timedelta(hours=1, seconds=random.uniform(0, 86_400))) for n in range(open_offers - due)]  # noqa: S311
    for chunk in range(0, len(idle), 2000):
        await db[ROUTER_LEADS].insert_many(idle[chunk : chunk + 2000], ordered=False)
    # ...then those falling due during the run, timed from when they are stored.
    start_due = datetime.now(UTC) + timedelta(seconds=2)
    due_docs = [offer(n, start_due + timedelta(seconds=due_window * n / due)) for n in range(due)]
    deadlines = {d["_id"]: start_due + timedelta(seconds=due_window * n / due) for n, d in enumerate(due_docs)}
    consumer = await tail_consumer(stack.bootstrap, topics.LEADS_EVENTS)
    await db[ROUTER_LEADS].insert_many(due_docs, ordered=False)
    lateness: list[float] = []
    try:
        deadline = time.monotonic() + due_window + 300
        while len(lateness) < due and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    event = ROUTING_EVENT.validate_json(record.value or b"")
                    if isinstance(event, OfferExpired) and str(event.payload.lead_id) in deadlines:
                        lateness.append((event.occurred_at - deadlines[str(event.payload.lead_id)]).total_seconds())
    finally:
        await consumer.stop()
        await client.close()
    lateness.sort()
    return {
        "open_offers": open_offers,
        "due": due,
        "due_window_seconds": due_window,
        "fired": len(lateness),
        "lateness_p50_s": statistics.median(lateness) if lateness else float("nan"),
        "lateness_p99_s": lateness[int(len(lateness) * 0.99) - 1] if lateness else float("nan"),
        "lateness_max_s": lateness[-1] if lateness else float("nan"),
    }


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    # The router serves before its consumers have joined (decision 0026): one lead routed first, so
    # the measure starts with a router that consumes.
    await router_rate(stack, leads(1))
    bodies = leads(args.leads)
    baseline = await broker_rate(stack.bootstrap, bodies)
    cpu = CpuMeter({"router": stack.services["router"].pid} | {proc.name: proc.pid for proc in stack.servers})
    start = cpu.read() | {"benchmark": time.process_time()}  # its own threads only, not the stack it started
    database = await database_rate(stack, leads(args.leads), args.db_batch)
    middle = cpu.read() | {"benchmark": time.process_time()}
    before = metrics(stack)
    routed = await router_rate(stack, bodies)
    after = metrics(stack)
    end = cpu.read() | {"benchmark": time.process_time()}
    # CPU ms per lead of each process, in each phase: where a lead's cost goes on the two cores.
    cpu_floor = {name: 1000 * used / args.leads for name, used in CpuMeter.delta(start, middle).items()}
    cpu_routed = {name: 1000 * used / args.leads for name, used in CpuMeter.delta(middle, end).items()}
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    mongo_commands = delta.get("router_mongo_commands_total", 0.0) / args.leads
    kafka_out = delta.get("router_events_published_total", 0.0) / args.leads
    memory = rss_mb(stack.services["router"].pid)
    p3 = await timers(stack, args.open_offers, args.due, args.due_window)
    return {
        "p1": {
            "leads": args.leads,
            "router_leads_per_s": routed,
            "broker_msgs_per_s": baseline,
            "database_leads_per_s": database,
            "database_batch": args.db_batch,
            "ratio": routed / baseline,
            "ratio_to_database": routed / database,
            "ratio_to_lower_floor": routed / min(baseline, database),
            "cpu_ms_per_lead_database_floor": cpu_floor,
            "cpu_ms_per_lead_routed": cpu_routed,
        },
        "p3": p3,
        "p4": {"mongo_commands_per_lead": mongo_commands, "kafka_messages_per_lead": 1 + kafka_out},
        "p5": {"router_rss_mb": memory},
    }


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title="router benchmark")
    for column in ("target", "measure", "value", "goal"):
        table.add_column(column)
    p1, p3, p4, p5 = result["p1"], result["p3"], result["p4"], result["p5"]
    table.add_row("P1", f"router leads/s ({p1['leads']} leads)", f"{p1['router_leads_per_s']:.0f}", "")
    table.add_row("P1", "broker produce-consume msgs/s, same messages", f"{p1['broker_msgs_per_s']:.0f}", "")
    table.add_row(
        "P1", f"nx-27017 leads/s, the router's commands issued directly (batches of {p1['database_batch']})",
        f"{p1['database_leads_per_s']:.0f}", "",
    )  # fmt: skip
    table.add_row("P1", "router / broker", f"{p1['ratio']:.2f}", "")
    table.add_row("P1", "router / database", f"{p1['ratio_to_database']:.2f}", "")
    table.add_row("P1", "router / the lower of the two", f"{p1['ratio_to_lower_floor']:.2f}", ">= 0.5")
    for phase, key in (("routed", "cpu_ms_per_lead_routed"), ("database floor", "cpu_ms_per_lead_database_floor")):
        shares = ", ".join(f"{name} {ms:.2f}" for name, ms in p1[key].items())
        table.add_row("P1", f"CPU ms per lead, {phase} (whole run of that phase)", shares, "")
    table.add_row(
        "P3",
        f"expiry lateness p50 ({p3['fired']}/{p3['due']} due of {p3['open_offers']} open)",
        f"{p3['lateness_p50_s']:.3f} s",
        "",
    )
    table.add_row("P3", "expiry lateness p99", f"{p3['lateness_p99_s']:.3f} s", "< 1 s")
    table.add_row("P3", "expiry lateness max", f"{p3['lateness_max_s']:.3f} s", "")
    table.add_row("P4", "MongoDB commands per routed lead", f"{p4['mongo_commands_per_lead']:.2f}", "reported")
    table.add_row("P4", "Kafka messages per routed lead (in + out)", f"{p4['kafka_messages_per_lead']:.1f}", "reported")
    table.add_row("P5", "router resident memory after the run", f"{p5['router_rss_mb']:.0f} MB", "reported")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--db-batch", type=int, default=500, help="batch of the database floor (router's intake_batch)")
    parser.add_argument("--open-offers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=2000, help="offers falling due during the run")
    parser.add_argument("--due-window", type=float, default=20.0, help="seconds over which they fall due")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    with bench_results.embedded_stack(CONFIG) as stack:
        stack.ports["router"] = free_port()
        stack.start_service("router")
        stack.wait_ready("router", timeout=90)
        result = asyncio.run(run(stack, args))
    bench_results.save(result, name="router", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
