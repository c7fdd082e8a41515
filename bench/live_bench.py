"""What an open page's live stream costs the database (web/live.py polls its mark four times a second): the reads of
one poll, timed and charged to nx-27017's CPU (/proc/<pid>/stat), for each scope crm-api builds.

A database of `--leads` rows in `--accounts` accounts (each with `--entries` timeline entries, rows built as the
projection builds them, inserted directly), then for a broker, a realtor in its account and a realtor's CRM:
- `lead mark`: a lead page's poll (`ScopedLeads.lead_mark`), and beside it the reads it sent before session 34 (the
  lead in its scope by one `find_one`, its timeline counted by `count_documents`);
- `list mark`: a list page's poll (`ScopedLeads.change_mark`);
- `list page`: the list's first 50 rows by last activity (`ScopedLeads.find_page`), which a page reads again at
  each change it hears.

Run: `.venv/bin/python bench/live_bench.py` (about a minute; `--leads`, `--entries`, `--polls`). Results are written
to `bench/results/live-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_crm_api.adapters.leads import (
    CRM_LEADS,
    CRM_TIMELINE,
    ScopedLeads,
    ensure_indexes,
    merge_conditions,
    realtor_filter,
    scope_filter,
)
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery, LeadSort
from leadflow_devstack.servers import mongo_wire

Doc = dict[str, Any]
TICKS = os.sysconf("SC_CLK_TCK")
AGENTS = [f"agent-{n}" for n in range(10)]


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def seed(client: AsyncMongoClient[Doc], args: argparse.Namespace) -> tuple[Any, str]:
    db = client[f"live_{uuid.uuid4().hex[:8]}"]
    await ensure_indexes(db)
    rows, entries = [], []
    for n in range(args.leads):
        lead_id, agent = str(uuid.uuid4()), AGENTS[n % len(AGENTS)]
        rows.append({"_id": lead_id, "account_id": f"acct-{n % args.accounts}", "status": "offered",
                     "owner_agent_id": None, "offered_to": [agent], "last_activity_ms": 1_700_000_000_000 + n,
                     "last_event_id": str(uuid.uuid4()), "created_ms": 1_700_000_000_000 + n})  # fmt: skip
        entries += [{"_id": str(uuid.uuid4()), "lead_id": lead_id, "type": "LeadOffered",
                     "occurred_ms": 1_700_000_000_000 + n + k} for k in range(args.entries)]  # fmt: skip
    for start in range(0, len(rows), 1000):
        await db[CRM_LEADS].insert_many(rows[start : start + 1000])
    for start in range(0, len(entries), 1000):
        await db[CRM_TIMELINE].insert_many(entries[start : start + 1000])
    return db, str(rows[0]["_id"])


async def timed(poll: Callable[[], Awaitable[Any]], polls: int, pid: int) -> dict[str, float]:
    await poll()  # warm
    took, cpu = [], server_cpu(pid)
    for _ in range(polls):
        started = time.perf_counter()
        await poll()
        took.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": statistics.median(took), "server_cpu_ms": (server_cpu(pid) - cpu) * 1000 / polls}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    server, url = mongo_wire(Path(tempfile.mkdtemp(prefix="live-bench-")))
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True)
    try:
        db, lead_id = await seed(client, args)
        realtor = Principal(AGENTS[0], Role.REALTOR, "acct-0")
        scopes = {
            "broker": scope_filter(Principal("boss", Role.BROKER, "acct-0"), "acct-0"),
            "realtor in its account": scope_filter(realtor, "acct-0"),
            "realtor's CRM": realtor_filter(realtor),
        }
        result: dict[str, Any] = {"leads": args.leads, "entries_per_lead": args.entries, "polls": args.polls}
        figures: dict[str, dict[str, dict[str, float]]] = {}
        for name, scope in scopes.items():
            leads = ScopedLeads(db, scope)

            async def before(scope: dict[str, Any] = scope) -> None:
                await db[CRM_LEADS].find_one(merge_conditions([scope, {"_id": lead_id}]))
                await db[CRM_TIMELINE].count_documents({"lead_id": lead_id})

            async def mark(leads: ScopedLeads = leads) -> str:
                return await leads.lead_mark(lead_id)

            async def page(leads: ScopedLeads = leads) -> list[LeadRow]:
                return await leads.find_page(LeadQuery(sort=LeadSort.ACTIVITY_DESC), limit=50, after=None)

            figures[name] = {
                "lead mark": await timed(mark, args.polls, server.pid),
                "lead mark before session 34": await timed(before, args.polls, server.pid),
                "list mark": await timed(leads.change_mark, args.polls, server.pid),
                "list page (50 rows)": await timed(page, args.polls, server.pid),
            }
        result["scopes"] = figures
        return result
    finally:
        await client.close()
        server.stop(timeout=5)


def report(result: dict[str, Any], console: Console) -> None:
    title = f"one live poll on nx-27017: {result['leads']} leads, {result['entries_per_lead']} timeline entries each"
    table = Table(title=title)
    for column in ("scope", "read", "p50 ms", "nx-27017 CPU ms"):
        table.add_column(column, justify="right")
    for scope, reads in result["scopes"].items():
        for read, figures in reads.items():
            table.add_row(scope, read, f"{figures['p50_ms']:.1f}", f"{figures['server_cpu_ms']:.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--entries", type=int, default=2, help="timeline entries per lead")
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    result = asyncio.run(measure(args))
    bench_results.save(result, name="live", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
