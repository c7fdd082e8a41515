"""crm-api list benchmark (V1 "at scale"): list queries over HTTP against 100,000 leads in one account.

Rows are built by the projection's own row builder (domain/views.py) and inserted in chunks into
crm_leads on nx-27017, with a few thousand more in other accounts; crm-api runs alone (no other
service). Each query kind is sent `--requests` times, one at a time, as a broker of the account;
p50/p99 are of the HTTP round trip as the client sees it.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_crm_api.domain.views import LeadSort, encode_cursor, lead_row_from_assigned
from leadflow_devstack.processes import free_port
from leadflow_devstack.stack import Stack
from leadflow_devstack.tokens import bearer
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

ACCOUNT = "bench-crm-realty"
OTHERS = [f"other-realty-{n}" for n in range(5)]
AGENTS = [f"agent-{n:02d}" for n in range(20)]
SOURCES = ["Website", "Zillow", "Realtor.com", "Open House", "Referral", "Facebook"]
FIRST = ["Ana", "Ben", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kemal", "Lena"]
LAST = ["Smith", "Garcia", "Nguyen", "Okafor", "Rossi", "Schmidt", "Tanaka", "Walker", "Young", "Zhou"]
SPAN = timedelta(days=365)  # leads' creation times spread over the last year


def row(account_id: str, n: int, now: datetime, rng: random.Random) -> dict[str, Any]:
    """One crm_leads document as the projection writes it for a LeadAssigned, varied afterwards
    the way later events (offers, fallback, sharing) would leave it."""
    created = now - SPAN * rng.random()
    event = LeadAssigned.create(
        account_id=account_id,
        occurred_at=created,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id=rng.choice(AGENTS),
            reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="bench",
            contact=Contact(
                first_name=rng.choice(FIRST),
                last_name=rng.choice(LAST),
                email=f"lead{n}@mail.example",
                phone=f"+1555{n:07d}",
            ),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=rng.choice(SOURCES)),
        ),
    )
    doc = {"_id": str(event.payload.lead_id), **lead_row_from_assigned(event)}
    kind = rng.random()
    if kind < 0.2:  # offered, nobody holds it yet
        doc |= {"status": "offered", "owner_agent_id": None, "offered_to": [rng.choice(AGENTS)]}
    elif kind < 0.3:
        doc |= {"status": "fell_back", "assignment_reason": "fallback"}
    if rng.random() < 0.05:  # shared with a realtor (T1): leaves "My Leads"
        doc["transferred_to"] = f"realtor-{rng.randrange(50)}"
    active = created + (now - created) * rng.random()
    doc |= {"last_activity_at": active, "last_activity_ms": epoch_ms(active)}
    return doc


def seed(mongo_url: str, leads: int, others: int) -> list[dict[str, Any]]:
    """Insert the rows; returns the bench account's (for building deep cursors and picking filters)."""
    rng, now = random.Random(7), datetime.now(UTC)  # noqa: S311 (not for security)
    mine = [row(ACCOUNT, n, now, rng) for n in range(leads)]
    rest = [row(OTHERS[n % len(OTHERS)], leads + n, now, rng) for n in range(others)]
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
    try:
        collection = client["leadflow"][CRM_LEADS]
        docs = mine + rest
        for start in range(0, len(docs), 2000):
            collection.insert_many(docs[start : start + 2000], ordered=False)
    finally:
        client.close()
    return mine


@dataclass(frozen=True)
class Kind:
    name: str
    params: Callable[[random.Random], dict[str, str]]  # the query string of one request


def deep_cursors(rows: list[dict[str, Any]], sort: LeadSort) -> list[str]:
    """Cursors of pages deep in the list (past the first 1,000 rows), as the API would have returned them."""
    ordered = sorted(rows, key=lambda r: (r[sort.field], r["_id"]), reverse=sort.descending)
    return [encode_cursor(r[sort.field], r["_id"], sort=sort) for r in ordered[1000:]]


def kinds(rows: list[dict[str, Any]]) -> list[Kind]:
    created = sorted(r["created_ms"] for r in rows)
    by_desc, by_activity = deep_cursors(rows, LeadSort.CREATED_DESC), deep_cursors(rows, LeadSort.ACTIVITY_DESC)

    def week(rng: random.Random) -> dict[str, str]:
        start = datetime.fromtimestamp(rng.choice(created) / 1000, UTC)
        return {"created_from": start.isoformat(), "created_to": (start + timedelta(days=7)).isoformat()}

    return [
        Kind("first page (created_desc)", lambda _: {}),
        Kind("deep page via cursor (created_desc)", lambda rng: {"cursor": rng.choice(by_desc)}),
        Kind(
            "deep page via cursor (last_activity_desc)",
            lambda rng: {"cursor": rng.choice(by_activity), "sort": "last_activity_desc"},
        ),
        Kind("tab=mine", lambda _: {"tab": "mine"}),
        Kind("status", lambda rng: {"status": rng.choice(["offered", "assigned", "fell_back"])}),
        Kind("owner", lambda rng: {"owner": rng.choice(AGENTS)}),
        Kind("assigned_to (shared)", lambda rng: {"assigned_to": f"realtor-{rng.randrange(50)}"}),
        Kind("source", lambda rng: {"source": rng.choice(SOURCES)}),
        Kind("created range (7 days)", week),
        Kind("status + owner", lambda rng: {"status": "assigned", "owner": rng.choice(AGENTS)}),
        Kind("q name (common)", lambda rng: {"q": rng.choice(LAST).lower()}),
        Kind("q email (one lead)", lambda rng: {"q": f"lead{rng.randrange(len(rows))}@"}),
        Kind("q phone digits (one lead)", lambda rng: {"q": f"555{rng.randrange(len(rows)):07d}"}),
        Kind("q no match", lambda _: {"q": "nobody-at-all"}),
        Kind("sort created_asc", lambda _: {"sort": "created_asc"}),
        Kind("sort last_activity_desc", lambda _: {"sort": "last_activity_desc"}),
        Kind("sort last_activity_asc", lambda _: {"sort": "last_activity_asc"}),
    ]


def measure(http: httpx.Client, kind: Kind, requests: int, limit: int) -> dict[str, Any]:
    rng = random.Random(kind.name)  # noqa: S311
    path = f"/v1/accounts/{ACCOUNT}/leads"
    for _ in range(3):  # warm-up, not counted
        http.get(path, params={"limit": str(limit), **kind.params(rng)}).raise_for_status()
    times, items = [], []
    for _ in range(requests):
        params = {"limit": str(limit), **kind.params(rng)}
        started = time.perf_counter()
        response = http.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        items.append(len(response.json()["items"]))
    times.sort()
    return {
        "kind": kind.name,
        "requests": requests,
        "limit": limit,
        "items_mean": statistics.fmean(items),
        "p50_ms": statistics.median(times),
        "p99_ms": times[max(0, round(len(times) * 0.99) - 1)],
        "max_ms": times[-1],
        "mean_ms": statistics.fmean(times),
    }


def report(result: dict[str, Any], console: Console) -> None:
    seeded = result["seeded"]
    table = Table(
        title=f"crm-api list queries, {seeded['account']:,} leads in the account "
        f"({seeded['other_accounts']:,} in others), limit {result['limit']}"
    )
    for column in ("query", "rows/page", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "query" else "right")
    for q in result["queries"]:
        table.add_row(
            q["kind"], f"{q['items_mean']:.0f}", f"{q['p50_ms']:.1f}", f"{q['p99_ms']:.1f}", f"{q['max_ms']:.1f}"
        )
    console.print(table)
    console.print(f"seeded in {seeded['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000, help="leads in the benchmarked account")
    parser.add_argument("--others", type=int, default=5_000, help="leads spread over five other accounts")
    parser.add_argument("--requests", type=int, default=20, help="requests per query kind")
    parser.add_argument("--limit", type=int, default=50, help="page size")
    parser.add_argument("--only", help="run only the query kinds whose name contains this")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    stack = Stack(Path(tempfile.mkdtemp(prefix="leadflow-bench-")))
    try:
        stack.start_infra()
        stack.ports["crm-api"] = free_port()
        stack.start_service("crm-api")
        stack.wait_ready("crm-api", timeout=90)  # its indexes exist before the rows go in
        started = time.perf_counter()
        rows = seed(stack.mongo_url, args.leads, args.others)
        seeded = {"account": args.leads, "other_accounts": args.others, "seconds": time.perf_counter() - started}
        console.print(f"seeded {args.leads + args.others:,} leads in {seeded['seconds']:.0f} s")
        token = stack.token(sub="bench-broker", role="broker", account_id=ACCOUNT)
        queries = []
        with httpx.Client(base_url=stack.url("crm-api"), headers=bearer(token), timeout=120) as http:
            for kind in kinds(rows):
                if args.only and args.only not in kind.name:
                    continue
                queries.append(measure(http, kind, args.requests, args.limit))
                console.print(f"  {kind.name}: p50 {queries[-1]['p50_ms']:.1f} ms, p99 {queries[-1]['p99_ms']:.1f} ms")
    finally:
        stack.stop()
    result = {"seeded": seeded, "limit": args.limit, "queries": queries}
    bench_results.save(result, name="crm", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
