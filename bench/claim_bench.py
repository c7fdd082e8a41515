"""The router's claim path on the embedded servers: crm-api's 202 for an agent's claim -> the router's
`LeadClaimed` (or `LeadAssigned`) for that lead on leads.events.v1, at a few claim rates.

An agent claims an offer through crm-api (`POST /v1/accounts/{a}/leads/{lead}/activities`, `accept`); crm-api
publishes a `LeadActivity` to leads.activity.v1, which the router consumes one message at a time
(`entrypoints/kafka.py`, `on_activity`) and applies by compare-and-set (`RouterService.on_activity`), publishing
`LeadClaimed`. The four services run as separate processes beside Tansu and nx-27017 (the embedded stack).

For each of `--rates` (claims per second), in turn:
1. `--seconds` x rate website leads are posted to intake at that rate (round robin, a race of 1, a claim
   window of an hour: each lead is offered to one agent and nothing expires), and waited for: offered
   (`LeadOffered` read from leads.events.v1), projected by crm-api (its row `offered`, read in MongoDB) and
   emailed (the offer email accepted by the stack's SMTP sink). Not measured.
2. Each of those leads is claimed (`accept`, as the agent it was offered to) at the same rate, open loop; for
   each, the time from crm-api's 202 to `LeadClaimed`/`LeadAssigned` seen on leads.events.v1 (one clock, this
   process; the watcher's fetches wait at most 20 ms), split at the event's `occurred_at` (when the router
   decided it), and the request's own time to its 202.
3. The window ends when every claim answered 202 is seen, no other claim of the phase came for a second (one
   whose request timed out here may still have been applied) and crm-api has projected them (rows `assigned`).
   Per claim the router applied in it (`router_claims_total`): CPU ms of each process (/proc/<pid>/stat, user +
   system, with children), the router's MongoDB commands (`router_mongo_commands_total`, by command) and events
   published, and FastStream's own timing of the router's activity handler and of its publishes (its Prometheus
   middleware). Meanwhile, every `--probe-every` seconds, one round trip of each kind the router makes for a
   claim is timed from this process: a MongoDB find and update by _id on nx-27017, a Kafka produce (acks=all)
   and an offset commit on Tansu (FastStream commits after each message); the same, idle, before the first
   phase and after the last. Their sum in the router's proportions is what one claim handled strictly in turn
   waits.
4. The highest rate whose p99 stayed under 1 s. Past saturation each phase only adds minutes of backlog: after a
   rate whose p99 passed `--stop-at-s` (10 s) or whose claims were refused or timed out, the higher rates are
   skipped.

The load generator, the event watcher and the SMTP sink run in this process and are not counted.
Run: `.venv/bin/python bench/claim_bench.py` (about five minutes with the defaults; `--rates`, `--seconds`; each
phase's leads stay in the database, so a later phase runs on more data).
Results are written to `bench/results/claim-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_devstack.stack import SERVICES as STACK_SERVICES
from leadflow_devstack.stack import Stack
from leadflow_shared import topics
from leadflow_shared.collections import ROUTER_LEADS
from leadflow_shared.events.routing import ROUTING_EVENT, LeadAssigned, LeadClaimed, LeadOffered
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import TopicSpec
from notifier_bench import percentile
from path_bench import CpuMeter
from router_bench import tail_consumer

ACCOUNT = "claim-realty"
AGENTS = [f"claim-agent-{n:02d}" for n in range(10)]
CONFIG = {
    "accounts": [
        {
            "account_id": ACCOUNT,
            "name": "Claim Realty",
            "round_robin": True,
            "time_zone": "UTC",
            "agents": [{"agent_id": a, "name": a, "email": f"{a}@bench.example", "time_zone": "UTC"} for a in AGENTS],
            "roster": AGENTS,
            "default_source": {"claim_window_seconds": 3600, "race_count": 1},
        }
    ]
}
SERVICES = ("intake", "router", "notifier", "crm-api")
SERVERS = ("tansu", "nx-27017")
GOAL_MS = 1000.0
IN_FLIGHT = 200  # requests under way at once (connections), as notifier_bench
PROGRESS = Console(stderr=True)
CLAIMED = (LeadClaimed, LeadAssigned)


@dataclass
class Watch:
    """What this process saw on leads.events.v1 (time.monotonic when the fetch returned)."""

    offered: dict[str, str] = field(default_factory=dict)  # lead -> the agent it was offered to
    claimed: dict[str, tuple[float, float]] = field(default_factory=dict)  # lead -> (seen, occurred_at epoch s)
    emailed: set[str] = field(default_factory=set)  # leads whose offer email the SMTP sink accepted
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on_email(self, message: EmailMessage) -> None:  # the SMTP sink's thread
        with self._lock:
            self.emailed.add(str(message["X-Leadflow-Lead-Id"] or ""))

    def has_emails(self, leads: list[str]) -> bool:
        with self._lock:
            return all(lead in self.emailed for lead in leads)


async def watch_events(stack: Stack, watch: Watch, started: asyncio.Event, stop: asyncio.Event) -> None:
    consumer = await tail_consumer(stack.bootstrap, topics.LEADS_EVENTS)
    started.set()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            at = time.monotonic()
            for record in (r for records in batches.values() for r in records):
                event = ROUTING_EVENT.validate_json(record.value or b"")
                if isinstance(event, LeadOffered):
                    watch.offered.setdefault(str(event.payload.lead_id), event.payload.agent_id)
                elif isinstance(event, CLAIMED):
                    watch.claimed.setdefault(str(event.payload.lead_id), (at, event.occurred_at.timestamp()))
    finally:
        await consumer.stop()


async def paced(rate: float, count: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Start `one(n)` for n < count at `rate` per second, open loop (each at its slot whatever the others do),
    at most IN_FLIGHT at once; returns the rate they started at."""
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    sent: list[float] = []

    async def slot(n: int) -> None:
        async with in_flight:
            sent.append(time.monotonic())
            await one(n)

    start = time.monotonic()
    tasks = []
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(slot(n)))
    await asyncio.gather(*tasks)
    return (count - 1) / max(max(sent) - start, 1e-9) if count > 1 else rate


def client(timeout: float = 30) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    return httpx.AsyncClient(limits=limits, timeout=timeout)


async def post_leads(stack: Stack, rate: float, count: int) -> list[str]:
    """Website leads posted to intake at `rate`; the ids of those answered 202, in posting order."""
    ids: list[str | None] = [None] * count
    async with client() as http:
        url = f"{stack.url('intake')}/v1/leads"

        async def one(n: int) -> None:
            body = {"account_id": ACCOUNT, "first_name": "Cleo", "last_name": f"Claim{n}",
                    "email": f"claim-{uuid.uuid4().hex}@example.com"}  # fmt: skip
            try:
                response = await http.post(url, json=body)
            except httpx.HTTPError:
                return  # a lead not taken is simply not claimed
            if response.status_code == 202:
                ids[n] = str(response.json()["event_id"])

        await paced(rate, count, one)
    return [i for i in ids if i is not None]


async def until(done: Callable[[], Awaitable[bool] | bool], timeout: float, step: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = done()
        if await outcome if isinstance(outcome, Awaitable) else outcome:
            return True
        await asyncio.sleep(step)
    return False


async def rows_in(mongo: AsyncMongoClient[dict[str, Any]], leads: list[str], status: str) -> int:
    """How many of `leads` have their crm-api row in `status` (a find: nx-27017 runs `count_documents`'s
    aggregation in Python, blocking every other client meanwhile)."""
    rows = mongo.get_default_database("leadflow")[CRM_LEADS]
    return len(await rows.find({"_id": {"$in": leads}, "status": status}, {"_id": 1}).to_list(None))


async def offers_ready(watch: Watch, mongo: AsyncMongoClient[dict[str, Any]], leads: list[str]) -> None:
    """Every lead offered, projected by crm-api and emailed: the system quiet before the claims."""
    if not await until(lambda: all(lead in watch.offered for lead in leads), 120, 0.1):
        raise RuntimeError(f"only {sum(lead in watch.offered for lead in leads)} of {len(leads)} leads offered")

    async def projected() -> bool:
        return await rows_in(mongo, leads, "offered") == len(leads)

    if not await until(projected, 120, 1.0):
        raise RuntimeError("crm-api did not project every offer")
    await until(lambda: watch.has_emails(leads), 60, 0.2)


@dataclass
class Claim:
    lead: str
    sent: float = 0.0
    answered: float = 0.0  # monotonic, at the 202
    answered_wall: float = 0.0  # epoch s, at the 202 (against the event's occurred_at)
    status: int = 0


async def send_claims(
    stack: Stack, watch: Watch, rate: float, leads: list[str], timeout: float
) -> tuple[list[Claim], float]:
    """Each lead claimed (`accept`) by the agent it was offered to, at `rate`; a request not answered within
    `timeout` seconds counts as refused (status 0)."""
    headers = {agent: stack.auth(agent, "realtor", ACCOUNT) for agent in AGENTS}
    claims = [Claim(lead) for lead in leads]
    async with client(timeout) as http:

        async def one(n: int) -> None:
            claim = claims[n]
            url = f"{stack.url('crm-api')}/v1/accounts/{ACCOUNT}/leads/{claim.lead}/activities"
            claim.sent = time.monotonic()
            try:
                response = await http.post(url, headers=headers[watch.offered[claim.lead]], json={"action": "accept"})
            except httpx.HTTPError:
                return
            claim.answered, claim.answered_wall, claim.status = time.monotonic(), time.time(), response.status_code

        achieved = await paced(rate, len(claims), one)
    return claims, achieved


async def metric_samples(stack: Stack, service: str) -> dict[str, float]:
    """The counters and histogram sums/counts of `service`'s /metrics, keyed `<sample>|<what>` (`what`: the
    command, FastStream's handler or destination, the CAS path; empty when none)."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"{stack.url(service)}/metrics")).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_total", "_sum", "_count")):
                labels = sample.labels
                what = labels.get("command") or labels.get("handler") or labels.get("destination") or ""
                what = what or labels.get("path", "")
                key = f"{sample.name}|{what}"
                found[key] = found.get(key, 0.0) + sample.value
    return found


async def snapshot(stack: Stack) -> dict[str, dict[str, float]]:
    return {service: await metric_samples(stack, service) for service in ("router", "crm-api")}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value - before.get(key, 0.0)}


def _stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": values[-1]}


def _mean_ms(delta: dict[str, float], sample: str, what: str) -> float | None:
    count = next((v for k, v in delta.items() if k.endswith(f"{sample}_count|{what}")), 0.0)
    total = next((v for k, v in delta.items() if k.endswith(f"{sample}_sum|{what}")), 0.0)
    return total / count * 1000 if count else None


async def measure_rate(
    stack: Stack, watch: Watch, cpu: CpuMeter, mongo: AsyncMongoClient[dict[str, Any]], probes: Probes,
    args: argparse.Namespace, rate: float,
) -> dict[str, Any]:  # fmt: skip
    count = int(rate * args.seconds)
    PROGRESS.log(f"{rate:.0f}/s: posting {count} leads")
    leads = await post_leads(stack, rate, count)
    await offers_ready(watch, mongo, leads)
    PROGRESS.log(f"{rate:.0f}/s: {len(leads)} offered, projected and emailed; claiming")
    await asyncio.sleep(args.settle)
    load_before = os.getloadavg()[0]
    metrics_before, before, own = await snapshot(stack), cpu.read(), time.process_time()
    start = time.monotonic()
    loaded: dict[str, list[float]] = {}
    stop = asyncio.Event()
    probing = asyncio.create_task(probes.under_load(loaded, stop, args.probe_every))
    claims, achieved = await send_claims(stack, watch, rate, leads, args.claim_timeout)
    sent_done = time.monotonic()
    accepted = [c for c in claims if c.status == 202]
    await until(lambda: all(c.lead in watch.claimed for c in accepted), args.drain, 0.1)
    seen_all = time.monotonic()
    # A claim whose request timed out here may still have been published and applied: counted too, once none came
    # for a second (the router's queue empty).
    claimed_count = sum(lead in watch.claimed for lead in leads)

    def quiet() -> bool:
        nonlocal claimed_count
        now, claimed_count = claimed_count, sum(lead in watch.claimed for lead in leads)
        return now == claimed_count

    await until(quiet, max(args.drain - (seen_all - start), 1.0), 1.0)
    PROGRESS.log(f"{rate:.0f}/s: {len(accepted)} claims answered 202 of {len(claims)}, "
                 f"{sum(c.lead in watch.claimed for c in accepted)} seen claimed")  # fmt: skip
    stop.set()
    await probing

    async def projected() -> bool:
        return await rows_in(mongo, [c.lead for c in accepted], "assigned") == len(accepted)

    await until(projected, 30, 0.5)
    spent, elapsed = CpuMeter.delta(before, cpu.read()), time.monotonic() - start
    own = time.process_time() - own
    metrics_after = await snapshot(stack)
    router = _delta(metrics_before["router"], metrics_after["router"])
    crm = _delta(metrics_before["crm-api"], metrics_after["crm-api"])
    seen = [c for c in accepted if c.lead in watch.claimed]
    applied = router.get("router_claims_total|", 0.0)
    n = max(applied, 1.0)  # per claim: per claim the router applied in the window
    # Claims crm-api answered but the router had not yet published for, at each moment: the activity consumer's lag.
    moments = sorted([(c.answered, 1) for c in seen] + [(watch.claimed[c.lead][0], -1) for c in seen])
    backlog = peak = 0
    for _, step in moments:
        backlog += step
        peak = max(peak, backlog)
    first = min((c.answered for c in seen), default=start)
    last = max((watch.claimed[c.lead][0] for c in seen), default=start)
    router_commands = {
        k.split("|", 1)[1]: v / n for k, v in router.items() if k.startswith("router_mongo_commands_total")
    }
    return {
        "rate_target": rate,
        "rate_achieved": achieved,
        "leads": len(leads),
        "claims_sent": len(claims),
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        "round_trips_under_load_ms": {kind: statistics.median(values) for kind, values in loaded.items()},
        "claims_202": len(accepted),
        "claims_refused": dict(Counter(str(c.status) for c in claims if c.status != 202)),
        "claims_seen": len(seen),
        "send_seconds": sent_done - start,
        "until_all_seen_seconds": seen_all - start,
        "window_seconds": elapsed,
        "latency_ms": _stats([(watch.claimed[c.lead][0] - c.answered) * 1000 for c in seen]),
        "to_decided_ms": _stats([(watch.claimed[c.lead][1] - c.answered_wall) * 1000 for c in seen]),
        "request_ms": _stats([(c.answered - c.sent) * 1000 for c in accepted]),
        "router_claims_per_s": len(seen) / max(last - first, 1e-9),
        "peak_backlog": peak,
        "cpu_ms_per_claim": {name: s * 1000 / n for name, s in spent.items()},
        "cpu_core_share": {name: s / elapsed for name, s in spent.items()},
        "bench_cpu_ms_per_claim": own * 1000 / n,
        "router_mongo_commands_per_claim": sum(router_commands.values()),
        "router_mongo_commands_per_claim_by_name": router_commands,
        "crm_api_mongo_commands_per_claim": sum(
            v for k, v in crm.items() if k.startswith("crm_api_mongo_commands_total")
        )
        / n,
        "router_events_published_per_claim": router.get("router_events_published_total|", 0.0) / n,
        "claims_applied": applied,
        "leads_claimed": sum(lead in watch.claimed for lead in leads),
        "router_cas_conflicts": sum(v for k, v in router.items() if k.startswith("router_cas_conflicts_total")),
        "router_activity_handler_mean_ms": _mean_ms(
            router, "received_processed_messages_duration_seconds", topics.LEADS_ACTIVITY
        ),
        "router_publish_mean_ms": _mean_ms(router, "published_messages_duration_seconds", topics.LEADS_EVENTS),
    }


@dataclass
class Probes:
    """One round trip of each kind the router makes for a claim, timed from this process (its own client's cost
    included): a MongoDB find by _id (a routing record) and update by _id on nx-27017, a Kafka produce with
    acks=all and an offset commit on Tansu."""

    db: Any
    lead_id: Any
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    topic: str

    KINDS = ("mongo find by _id", "mongo update by _id", "kafka produce, acks=all", "kafka offset commit")

    @classmethod
    async def open(cls, stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]) -> Probes:
        db = mongo.get_default_database("leadflow")
        lead = await db[ROUTER_LEADS].find_one({}, {"_id": 1})
        topic = f"bench.claim.probe.{uuid.uuid4().hex[:6]}"
        await ensure_topics(stack.bootstrap, [TopicSpec(topic, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        group = f"bench-claim-{uuid.uuid4().hex[:6]}"
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([TopicPartition(topic, 0)])
        probes = cls(db, (lead or {}).get("_id"), producer, consumer, topic)
        for kind in cls.KINDS:  # connections opened, not timed
            await probes.once(kind, 0)
        return probes

    async def once(self, kind: str, n: int) -> float:
        started = time.perf_counter()
        if kind == "mongo find by _id":
            await self.db[ROUTER_LEADS].find_one({"_id": self.lead_id})
        elif kind == "mongo update by _id":
            await self.db["bench_claim_probe"].update_one({"_id": "probe"}, {"$set": {"n": n}}, upsert=True)
        elif kind == "kafka produce, acks=all":
            await self.producer.send_and_wait(self.topic, b"x" * 600, key=ACCOUNT.encode())
        else:
            await self.consumer.commit({TopicPartition(self.topic, 0): OffsetAndMetadata(n, "")})
        return (time.perf_counter() - started) * 1000

    async def idle(self, times: int) -> dict[str, float]:
        """Median ms of each kind, `times` one after another."""
        return {kind: statistics.median([await self.once(kind, n) for n in range(times)]) for kind in self.KINDS}

    async def under_load(self, found: dict[str, list[float]], stop: asyncio.Event, every: float) -> None:
        """One of each kind every `every` seconds until `stop`, into `found`."""
        n = 0
        while not stop.is_set():
            for kind in self.KINDS:
                found.setdefault(kind, []).append(await self.once(kind, n))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def close(self) -> None:
        await self.db["bench_claim_probe"].drop()
        await self.producer.stop()
        await self.consumer.stop()


async def warm_up(stack: Stack, watch: Watch, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
    """Connections, caches (each agent's record behind its token), lazy imports: measured and thrown away."""
    leads = await post_leads(stack, 10, 30)
    await offers_ready(watch, mongo, leads)
    claims, _ = await send_claims(stack, watch, 10, leads, 30)
    await until(lambda: all(c.lead in watch.claimed for c in claims if c.status == 202), 60, 0.1)


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    watch = Watch()
    assert stack.mail is not None
    stack.mail.on_accept = watch.on_email
    pids = {name: stack.services[name].pid for name in SERVICES} | {proc.name: proc.pid for proc in stack.servers}
    cpu = CpuMeter(pids)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    started, stop = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(watch_events(stack, watch, started, stop))
    await started.wait()
    try:
        await warm_up(stack, watch, mongo)
        probes = await Probes.open(stack, mongo)
        try:
            first_trips = await probes.idle(args.round_trips)
            rates = []
            for rate in args.rates:
                rates.append(await measure_rate(stack, watch, cpu, mongo, probes, args, rate))
                if args.stop_at_s and _saturated(rates[-1], args.stop_at_s) and rate != args.rates[-1]:
                    skipped = [r for r in args.rates if r > rate]
                    PROGRESS.log(f"{rate:.0f}/s saturated the claim path: {skipped} skipped (--stop-at-s)")
                    break
            await asyncio.sleep(args.settle)
            trips = await probes.idle(args.round_trips)
        finally:
            await probes.close()
    finally:
        stop.set()
        await watcher
        await mongo.close()
    met = [r["rate_target"] for r in rates if r["latency_ms"]["p99"] < GOAL_MS and r["claims_seen"] == r["claims_202"]]
    return {
        "fetch_wait_idle_ms": args.fetch_wait_idle_ms,
        "fetch_wait_idle_off_path_ms": args.fetch_wait_idle_off_path_ms,
        "rates": rates,
        "rates_skipped": [r for r in args.rates if r not in {m["rate_target"] for m in rates}],
        "round_trips_ms": {"idle, first": first_trips, "idle, last": trips},
        "highest_rate_p99_under_1s": max(met, default=None),
    }


def _saturated(r: dict[str, Any], stop_at_s: float) -> bool:
    """Claims waited more than `stop_at_s` (p99), or more than 5% were not answered 202."""
    refused = r["claims_sent"] - r["claims_202"]
    return bool(r["latency_ms"]["p99"] > stop_at_s * 1000 or refused > 0.05 * r["claims_sent"])


def _waits(r: dict[str, Any], trips: dict[str, float]) -> float:
    """What the router's round trips for one claim add up to, made one after another at these times: each MongoDB
    command as a find or an update, each event as a produce, one offset commit (FastStream acks each message)."""
    by_name: dict[str, float] = r["router_mongo_commands_per_claim_by_name"]
    finds = sum(n for name, n in by_name.items() if name != "update")
    return float(
        finds * trips.get("mongo find by _id", float("nan"))
        + by_name.get("update", 0.0) * trips.get("mongo update by _id", float("nan"))
        + r["router_events_published_per_claim"] * trips.get("kafka produce, acks=all", float("nan"))
        + trips.get("kafka offset commit", float("nan"))
    )


def report(result: dict[str, Any], console: Console) -> None:
    rates = result["rates"]
    console.print(_latency_table(rates))
    console.print(_cpu_table(rates))
    console.print(_router_table(rates))
    console.print(_round_trips_table(result))
    if result["rates_skipped"]:
        console.print(f"skipped after saturation: {result['rates_skipped']} claims/s")
    console.print(f"highest claim rate with p99 < {GOAL_MS:.0f} ms: {result['highest_rate_p99_under_1s']}")


def _latency_table(rates: list[dict[str, Any]]) -> Table:
    latency = Table(title="claim path: crm-api 202 -> LeadClaimed on leads.events.v1 (ms)")
    for column in ("claims/s (achieved)", "202 / seen", "p50", "p99", "max", "202 -> decided p50 / p99",
                   "request -> 202 p50 / p99", "router claims/s", "peak backlog"):  # fmt: skip
        latency.add_column(column)
    for r in rates:
        lat, dec, req = r["latency_ms"], r["to_decided_ms"], r["request_ms"]
        refused = f" ({r['claims_refused']})" if r["claims_refused"] else ""
        latency.add_row(
            f"{r['rate_target']:.0f} ({r['rate_achieved']:.1f})",
            f"{r['claims_202']} / {r['claims_seen']}{refused}",
            f"{lat['p50']:.0f}", f"{lat['p99']:.0f}", f"{lat['max']:.0f}",
            f"{dec['p50']:.0f} / {dec['p99']:.0f}", f"{req['p50']:.0f} / {req['p99']:.0f}",
            f"{r['router_claims_per_s']:.1f}", f"{r['peak_backlog']}",
        )  # fmt: skip
    return latency


def _cpu_table(rates: list[dict[str, Any]]) -> Table:
    cpu = Table(title="claim path: CPU ms per claim (share of one core over the window)")
    cpu.add_column("process")
    for r in rates:
        cpu.add_column(f"at {r['rate_target']:.0f}/s")
    for name in (*SERVICES, *SERVERS):
        cpu.add_row(name, *(f"{r['cpu_ms_per_claim'][name]:.2f} ({r['cpu_core_share'][name]:.0%})" for r in rates))
    cpu.add_row("this process (load, watcher)", *(f"{r['bench_cpu_ms_per_claim']:.2f}" for r in rates))
    cpu.add_row("1-min load average, before / after", *(
        "{:.1f} / {:.1f}".format(*r["loadavg_1min_before_after"]) for r in rates
    ))  # fmt: skip
    return cpu


def _router_table(rates: list[dict[str, Any]]) -> Table:
    router = Table(title="router, per claim")
    router.add_column("measure")
    for r in rates:
        router.add_column(f"at {r['rate_target']:.0f}/s")

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        router.add_row(label, *(cell(r) for r in rates))

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    row("MongoDB commands", lambda r: f"{r['router_mongo_commands_per_claim']:.2f}")
    for name in sorted({name for r in rates for name in r["router_mongo_commands_per_claim_by_name"]}):
        by_name = (r["router_mongo_commands_per_claim_by_name"].get(name, 0.0) for r in rates)
        router.add_row(f"  {name}", *(f"{n:.2f}" for n in by_name))
    row("events published", lambda r: f"{r['router_events_published_per_claim']:.2f}")
    row("activity handler, mean ms (FastStream)", lambda r: ms(r["router_activity_handler_mean_ms"]))
    row("publish to leads.events.v1, mean ms", lambda r: ms(r["router_publish_mean_ms"]))
    row("wall ms per claim at its pace (1000 / claims/s)", lambda r: f"{1000 / r['router_claims_per_s']:.1f}")
    row("CAS conflicts (in all)", lambda r: f"{r['router_cas_conflicts']:.0f}")
    row("crm-api MongoDB commands", lambda r: f"{r['crm_api_mongo_commands_per_claim']:.2f}")
    return router


def _round_trips_table(result: dict[str, Any]) -> Table:
    rates, idle = result["rates"], result["round_trips_ms"]
    trips = Table(
        title="one round trip at a time from this process (median ms): idle before and after, during each phase"
    )
    trips.add_column("round trip")
    for when in idle:
        trips.add_column(when)
    for r in rates:
        trips.add_column(f"at {r['rate_target']:.0f}/s")
    for kind in Probes.KINDS:
        values = [*(idle[when].get(kind, float("nan")) for when in idle)]
        values += [r["round_trips_under_load_ms"].get(kind, float("nan")) for r in rates]
        trips.add_row(kind, *(f"{v:.2f}" for v in values))
    trips.add_row(
        "the router's per claim, one after another (its commands x find/update, its events x produce, a commit)",
        *(f"{_waits(rates[0], idle[when]):.1f}" if rates else "" for when in idle),
        *(f"{_waits(r, r['round_trips_under_load_ms']):.1f}" for r in rates),
    )
    return trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=[10.0, 25.0, 50.0, 100.0],
        help="comma-separated claims per second, measured in turn (leads are posted at the same rate first)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to claim (and post leads) at each rate")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before each claim phase")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for every claim to be seen")
    parser.add_argument("--claim-timeout", type=float, default=10.0, help="seconds a claim request may take")
    parser.add_argument(
        "--stop-at-s",
        type=float,
        default=10.0,
        help="skip the higher rates after one whose p99 passed this many seconds or whose claims were refused or "
        "timed out (over 5%%): past saturation each phase only adds minutes of backlog (0: never skip)",
    )
    parser.add_argument("--round-trips", type=int, default=200, help="round trips of each kind timed at the end")
    parser.add_argument(
        "--probe-every", type=float, default=0.25, help="seconds between the round trips timed during the claims"
    )
    parser.add_argument(
        "--fetch-wait-idle-ms", type=int, default=None, help="the services' idle fetch wait (default: the stack's)"
    )
    parser.add_argument(
        "--fetch-wait-idle-off-path-ms",
        type=int,
        default=None,
        help="idle fetch wait of the consumers off a new lead's path, the router's activity consumer among them "
        "(decision 0070; default: the stack's)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (logs) after the run")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    with bench_results.embedded_stack(CONFIG) as stack:
        for service, prefix, _ in STACK_SERVICES:
            env = stack.extra_env.setdefault(service, {})
            if args.fetch_wait_idle_ms is not None:
                env[f"{prefix}KAFKA__FETCH_WAIT_IDLE_MS"] = str(args.fetch_wait_idle_ms)
            if args.fetch_wait_idle_off_path_ms is not None:
                env[f"{prefix}KAFKA__FETCH_WAIT_IDLE_OFF_PATH_MS"] = str(args.fetch_wait_idle_off_path_ms)
        stack.start_services(timeout=90)
        for service in ("router", "crm-api", "notifier"):
            stack.wait_consuming(service, timeout=90)
        try:
            result = asyncio.run(run(stack, args))
        finally:
            console.print(f"stack logs: {stack.log_dir}")
    if not args.keep:
        shutil.rmtree(stack.work_dir, ignore_errors=True)
    bench_results.save(result, name="claim", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
