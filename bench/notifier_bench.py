"""Whole-path latency benchmark (P2 of DESIGN section 8) on the embedded servers.

At a steady rate (200 leads/s by default), website leads are posted to intake; for each,
the time from intake's HTTP 202 to the offer email being accepted by the SMTP server
(the stack's aiosmtpd sink, in this process: one clock for both ends). Round robin is on
with a race of 1, so every lead yields exactly one offer email. Reports p50, p99 and max,
the achieved posting rate, and how many emails arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_devstack.stack import Stack
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered

ACCOUNT = "p2-realty"
AGENTS = [f"p2-agent-{n:02d}" for n in range(10)]
CONFIG = {
    "accounts": [
        {
            "account_id": ACCOUNT,
            "name": "P2 Realty",
            "round_robin": True,
            "time_zone": "America/New_York",
            "agents": [
                {"agent_id": a, "name": a, "email": f"{a}@bench.example", "time_zone": "America/New_York"}
                for a in AGENTS
            ],
            "roster": AGENTS,
            "default_source": {"claim_window_seconds": 3600, "race_count": 1},
        }
    ]
}


class Clock:
    """When each 202 came back and when each lead's email was accepted (time.monotonic, one process)."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.offered: dict[str, float] = {}  # LeadOffered read from leads.events.v1: splits the path in two
        self.emailed: dict[str, float] = {}
        self._lock = threading.Lock()

    def on_email(self, message: EmailMessage) -> None:
        at = time.monotonic()
        lead_id = str(message["X-Leadflow-Lead-Id"] or "")
        with self._lock:
            self.emailed.setdefault(lead_id, at)


async def watch_offers(stack: Stack, clock: Clock, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        topics.LEADS_EVENTS,
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )  # as the services' consumers
    await consumer.start()
    try:
        await consumer.seek_to_end()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            at = time.monotonic()
            for record in (r for records in batches.values() for r in records):
                event = ROUTING_EVENT.validate_json(record.value or b"")
                if isinstance(event, LeadOffered):
                    clock.offered.setdefault(str(event.payload.lead_id), at)
    finally:
        await consumer.stop()


IN_FLIGHT = 200  # requests under way at once (connections)


async def post_steadily(stack: Stack, clock: Clock, rate: float, seconds: float) -> tuple[int, float]:
    count = int(rate * seconds)
    # httpx drops an idle connection after 5 s, long before the services' keep-alive (75 s, decision 0103) closes it.
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    # At most as many requests under way as connections: httpx's pool matches every queued request against every
    # connection each time one frees (quadratic), so thousands queued behind a slow system froze the load generator
    # (session 31: 200/s, ten minutes without a request sent). A request waiting here is late, as it would be queued.
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        url = f"{stack.url('intake')}/v1/leads"

        async def one(n: int) -> None:
            body = {
                "account_id": ACCOUNT,
                "first_name": "Pat",
                "last_name": f"Bench{n}",
                "email": f"p2-{uuid.uuid4().hex}@example.com",
            }
            async with in_flight:
                sent.append(time.monotonic())
                response = await client.post(url, json=body)
            at = time.monotonic()
            if response.status_code == 202:
                clock.accepted[str(response.json()["event_id"])] = at

        start = time.monotonic()
        tasks = []
        sent: list[float] = []  # when each request was sent (its slot, or later when `in_flight` held it)
        for n in range(count):
            # Open-loop pacing: each request starts at its slot whatever the previous ones do.
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        return count, (count - 1) / max(max(sent) - start, 1e-9)  # the rate the requests went out at


async def wait_for_emails(clock: Clock, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    # Polls: the emails are recorded by the SMTP server's thread, not by this loop.
    while time.monotonic() < deadline and any(lead not in clock.emailed for lead in clock.accepted):  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock()
    assert stack.mail is not None
    stack.mail.on_accept = clock.on_email
    # Warm-up (connections, caches, JIT-less but lazy imports) is measured and thrown away.
    await post_steadily(stack, clock, args.rate, 2)
    await wait_for_emails(clock, 30)
    clock.accepted.clear()
    clock.emailed.clear()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_offers(stack, clock, stop))
    posted, achieved = await post_steadily(stack, clock, args.rate, args.seconds)
    await wait_for_emails(clock, 60)
    stop.set()
    await watcher
    latencies = sorted(clock.emailed[lead] - at for lead, at in clock.accepted.items() if lead in clock.emailed)
    routed = sorted(clock.offered[lead] - at for lead, at in clock.accepted.items() if lead in clock.offered)
    notified = sorted(clock.emailed[lead] - at for lead, at in clock.offered.items() if lead in clock.emailed)
    split = {
        "to_offer_p50_ms": percentile(routed, 0.5) * 1000 if routed else float("nan"),
        "to_offer_p99_ms": percentile(routed, 0.99) * 1000 if routed else float("nan"),
        "offer_to_email_p50_ms": percentile(notified, 0.5) * 1000 if notified else float("nan"),
        "offer_to_email_p99_ms": percentile(notified, 0.99) * 1000 if notified else float("nan"),
    }
    return split | {
        "rate_target": args.rate,
        "rate_achieved": achieved,
        "posted": posted,
        "accepted": len(clock.accepted),
        "emailed": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else float("nan"),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title="notifier benchmark (P2: intake 202 -> offer email accepted by SMTP)")
    for column in ("measure", "value", "goal"):
        table.add_column(column)
    table.add_row(
        "leads/s posted (target / achieved)", f"{result['rate_target']:.0f} / {result['rate_achieved']:.0f}", ""
    )
    table.add_row(
        "leads posted / 202 / emailed", f"{result['posted']} / {result['accepted']} / {result['emailed']}", "all"
    )
    table.add_row("latency p50", f"{result['p50_ms']:.1f} ms", "")
    table.add_row("latency p99", f"{result['p99_ms']:.1f} ms", "< 100 ms")
    table.add_row("latency max", f"{result['max_ms']:.1f} ms", "")
    table.add_row(
        "  of which 202 -> LeadOffered on Kafka, p50 / p99",
        f"{result['to_offer_p50_ms']:.1f} / {result['to_offer_p99_ms']:.1f} ms",
        "",
    )
    table.add_row(
        "  of which LeadOffered -> email accepted, p50 / p99",
        f"{result['offer_to_email_p50_ms']:.1f} / {result['offer_to_email_p99_ms']:.1f} ms",
        "",
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="leads per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to post at that rate")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    with bench_results.embedded_stack(CONFIG) as stack:
        stack.start_services(timeout=90)
        result = asyncio.run(run(stack, args))
    bench_results.save(result, name="notifier", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
