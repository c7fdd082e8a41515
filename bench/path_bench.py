"""CPU per lead and idle CPU of every process on the whole path (issue 14, P2), on the embedded servers.

One run, four phases, the four services as separate processes beside Tansu and nx-27017:
1. idle: nothing to do for `--idle` seconds; CPU seconds per second of each process (from
   /proc/<pid>/stat, user + system, the process and its children) and how often it woke (times
   its threads were put on a CPU, /proc/<pid>/task/*/schedstat). Beside them a reference: a bare
   Python process that only sleeps in 0.5 s steps, what this machine charges for waking at all
   (on this virtual machine a wake-up costs far more than the few microseconds of code it runs);
2. single leads: `--singles` leads posted one at a time to an idle system, each waited for:
   intake 202 -> offer email accepted by SMTP (what an idle brokerage sees);
3. steady load at each of `--rates` for `--seconds`: latency 202 -> email (p50, p99, max), and
   CPU per lead of each process from the first post until every lead's email is accepted and
   its crm-api row exists (counted in MongoDB directly, so the wait costs crm-api nothing);
4. the highest rate whose p99 stayed under 100 ms.

The load generator and the SMTP sink run in this process and are not counted.

`--fetch-wait-idle-ms` sets how long the services' fetches wait at the broker while idle (decision
0052). The embedded stack uses 20 ms, because Tansu does not answer a waiting fetch when data
arrives; production uses 500 ms, which Kafka answers as soon as data arrives. Measure both.
`--fetch-wait-idle-off-path-ms` is the same for the consumers off a new lead's way to its first
notice (the router's activity and commands, crm-api's projection): production uses 2,000 ms
(decision 0070), so the production run is `--fetch-wait-idle-ms 500 --fetch-wait-idle-off-path-ms 2000`.
`--session-timeout-ms` is the consumers' group session timeout; they heartbeat every third of it, so it is
part of the idle cost. It defaults to production's (10 s), not the embedded stack's 6 s (decision 0073: a
shorter one only makes joins on Tansu quicker), so the idle figure is the production configuration's; so
is the notifier's digest check (every 60 s; the embedded stack checks every 2 s, for its demo).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_crm_api.adapters.leads import CRM_LEADS
from leadflow_devstack.stack import SERVICES as STACK_SERVICES
from leadflow_devstack.stack import Stack
from leadflow_notifier.settings import DigestSettings
from leadflow_shared.settings import KafkaSettings
from notifier_bench import ACCOUNT, CONFIG, Clock, percentile, post_steadily, wait_for_emails

SERVICES = ("intake", "router", "notifier", "crm-api")
SERVERS = ("tansu", "nx-27017")
REFERENCE = "reference sleeper"
SLEEPER = "import time\nwhile True:\n    time.sleep(0.5)\n"
TICKS = os.sysconf("SC_CLK_TCK")
P2_MS = 100.0


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _cpu_seconds(pid: int, tree: dict[int, list[int]]) -> float:
    """User + system CPU of `pid` and its living descendants (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / TICKS
    return own + sum(_cpu_seconds(child, tree) for child in tree.get(pid, []))


@dataclass
class CpuMeter:
    """CPU seconds of each named process, read from /proc."""

    pids: dict[str, int]

    def read(self) -> dict[str, float]:
        tree = _children()
        return {name: _cpu_seconds(pid, tree) for name, pid in self.pids.items()}

    def wakeups(self) -> dict[str, float]:
        return {name: _wakeups(pid) for name, pid in self.pids.items()}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: after[name] - before[name] for name in before}


def _wakeups(pid: int) -> float:
    """How many times the threads of `pid` were put on a CPU (the third field of each schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[2])
        except (OSError, IndexError, ValueError):
            continue
    return float(total)


def meter(stack: Stack, reference: int) -> CpuMeter:
    pids = {name: stack.services[name].pid for name in SERVICES}
    pids |= {proc.name: proc.pid for proc in stack.servers}
    return CpuMeter(pids | {REFERENCE: reference})


async def mongo_commands(stack: Stack) -> dict[str, float]:
    """MongoDB commands each service has sent so far, in all (`<service>`) and by command name
    (`<service>/<command>`), from its `<service>_mongo_commands_total`."""
    counts: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for service in SERVICES:
            text = (await client.get(f"{stack.url(service)}/metrics")).text
            name = f"{service.replace('-', '_')}_mongo_commands"
            counts[service] = 0.0
            for family in text_string_to_metric_families(text):
                for sample in family.samples if family.name == name else ():
                    if sample.name.endswith("_total"):
                        counts[service] += sample.value
                        key = f"{service}/{sample.labels.get('command', '?')}"
                        counts[key] = counts.get(key, 0.0) + sample.value
    return counts


async def wait_for_rows(mongo: AsyncMongoClient[dict[str, Any]], count: int, timeout: float) -> None:
    rows = mongo.get_default_database("leadflow")[CRM_LEADS]
    deadline = time.monotonic() + timeout
    # Polls: the rows are written by crm-api's process.
    while time.monotonic() < deadline and await rows.count_documents({"account_id": ACCOUNT}) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def measure_idle(cpu: CpuMeter, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """CPU ms per second and wake-ups per second of each process."""
    before, woken, start = cpu.read(), cpu.wakeups(), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    spent = CpuMeter.delta(before, cpu.read())
    wakeups = CpuMeter.delta(woken, cpu.wakeups())
    return {name: ms / elapsed * 1000 for name, ms in spent.items()}, {n: w / elapsed for n, w in wakeups.items()}


async def measure_singles(stack: Stack, count: int) -> list[float]:
    """Latencies (ms) of leads posted one at a time to an otherwise idle system."""
    latencies = []
    for _ in range(count):
        clock = Clock()
        assert stack.mail is not None
        stack.mail.on_accept = clock.on_email
        await post_steadily(stack, clock, 1.0, 1.0)
        await wait_for_emails(clock, 30)
        latencies += [(clock.emailed[lead] - at) * 1000 for lead, at in clock.accepted.items() if lead in clock.emailed]
        await asyncio.sleep(1.0)  # idle again before the next one
    return latencies


async def measure_rate(
    stack: Stack, cpu: CpuMeter, mongo: AsyncMongoClient[dict[str, Any]], rate: float, seconds: float, rows_before: int
) -> dict[str, Any]:
    clock = Clock()
    assert stack.mail is not None
    stack.mail.on_accept = clock.on_email
    commands_before = await mongo_commands(stack)
    before, woken, start = cpu.read(), cpu.wakeups(), time.monotonic()
    posted, achieved = await post_steadily(stack, clock, rate, seconds)
    await wait_for_emails(clock, 120)
    await wait_for_rows(mongo, rows_before + len(clock.accepted), 120)
    spent = CpuMeter.delta(before, cpu.read())
    wakeups = CpuMeter.delta(woken, cpu.wakeups())
    elapsed = time.monotonic() - start
    commands_after = await mongo_commands(stack)
    commands = {name: n - commands_before.get(name, 0.0) for name, n in commands_after.items()}
    latencies = sorted(
        (clock.emailed[lead] - at) * 1000 for lead, at in clock.accepted.items() if lead in clock.emailed
    )
    leads = max(len(clock.accepted), 1)
    return {
        "rate_target": rate,
        "rate_achieved": achieved,
        "posted": posted,
        "accepted": len(clock.accepted),
        "emailed": len(latencies),
        "elapsed_s": elapsed,
        "p50_ms": percentile(latencies, 0.5) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "cpu_ms_per_lead": {name: s * 1000 / leads for name, s in spent.items()},
        "wakeups_per_lead": {name: w / leads for name, w in wakeups.items()},
        "mongo_commands_per_lead": {name: n / leads for name, n in commands.items() if "/" not in name},
        "mongo_commands_per_lead_by_name": {name: n / leads for name, n in commands.items() if "/" in name and n},
    }


async def run(stack: Stack, args: argparse.Namespace, reference: int) -> dict[str, Any]:
    cpu = meter(stack, reference)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        # Warm-up (connections, caches, lazy imports) is measured and thrown away.
        warm = Clock()
        assert stack.mail is not None
        stack.mail.on_accept = warm.on_email
        await post_steadily(stack, warm, 20, 1)
        await wait_for_emails(warm, 30)
        await asyncio.sleep(args.settle)
        idle, idle_wakeups = await measure_idle(cpu, args.idle)
        singles = sorted(await measure_singles(stack, args.singles))
        rows = len(warm.accepted) + len(singles)
        await wait_for_rows(mongo, rows, 30)
        rates = []
        for rate in args.rates:
            result = await measure_rate(stack, cpu, mongo, rate, args.seconds, rows)
            rows += result["accepted"]
            rates.append(result)
            await asyncio.sleep(args.settle)
    finally:
        await mongo.close()
    met = [r["rate_target"] for r in rates if r["p99_ms"] < P2_MS and r["emailed"] == r["accepted"]]
    return {
        "fetch_wait_idle_ms": args.fetch_wait_idle_ms,
        "fetch_wait_idle_off_path_ms": args.fetch_wait_idle_off_path_ms or args.fetch_wait_idle_ms,
        "session_timeout_ms": args.session_timeout_ms,
        "idle_cpu_ms_per_s": idle,
        "idle_wakeups_per_s": idle_wakeups,
        "singles_ms": {
            "count": len(singles),
            "p50": percentile(singles, 0.5) if singles else None,
            "max": singles[-1] if singles else None,
        },
        "rates": rates,
        "highest_rate_p99_under_100ms": max(met, default=None),
    }


def report(result: dict[str, Any], console: Console) -> None:
    console.print(_cpu_table(result))
    wakeups = "whole path: wake-ups per lead (times a process's threads were put on a CPU)"
    console.print(_per_lead(result, "wakeups_per_lead", (*SERVICES, *SERVERS), wakeups, "{:.1f}"))
    commands = "whole path: MongoDB commands per lead, each service (round trips)"
    console.print(_per_lead(result, "mongo_commands_per_lead", SERVICES, commands, "{:.2f}"))
    console.print(_latency_table(result))
    console.print(f"highest rate with p99 < {P2_MS:.0f} ms: {result['highest_rate_p99_under_100ms']}")


def _cpu_table(result: dict[str, Any]) -> Table:
    idle, wakeups = result["idle_cpu_ms_per_s"], result["idle_wakeups_per_s"]
    table = Table(title="whole path: CPU per process (ms)")
    for column in ("process", "idle, ms/s", "idle wake-ups/s"):
        table.add_column(column)
    for r in result["rates"]:
        table.add_column(f"per lead at {r['rate_target']:.0f}/s")
    for name in (*SERVICES, "services", *SERVERS, REFERENCE):

        def cell(values: dict[str, float], name: str = name) -> str:
            return f"{sum(values[s] for s in SERVICES) if name == 'services' else values[name]:.2f}"

        rates = result["rates"]
        per_lead = ("",) * len(rates) if name == REFERENCE else (cell(r["cpu_ms_per_lead"]) for r in rates)
        table.add_row(name, cell(idle), cell(wakeups), *per_lead)
    return table


def _per_lead(result: dict[str, Any], key: str, names: tuple[str, ...], title: str, fmt: str) -> Table:
    table = Table(title=title)
    table.add_column("process")
    for r in result["rates"]:
        table.add_column(f"at {r['rate_target']:.0f}/s")
    for name in names:
        table.add_row(name, *(fmt.format(r[key][name]) for r in result["rates"]))
    return table


def _latency_table(result: dict[str, Any]) -> Table:
    latency = Table(title="whole path: intake 202 -> offer email accepted (ms)")
    for column in ("load", "leads (202 / emailed)", "p50", "p99", "max"):
        latency.add_column(column)
    singles = result["singles_ms"]
    if singles["count"]:
        latency.add_row(
            "one lead at a time, idle", f"{singles['count']}", f"{singles['p50']:.1f}", "", f"{singles['max']:.1f}"
        )
    for r in result["rates"]:
        latency.add_row(
            f"{r['rate_target']:.0f}/s (achieved {r['rate_achieved']:.0f})",
            f"{r['accepted']} / {r['emailed']}",
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            f"{r['max_ms']:.1f}",
        )
    return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=[50.0, 100.0, 200.0],
        help="comma-separated leads per second, measured in turn",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to post at each rate")
    parser.add_argument(
        "--idle",
        type=float,
        default=30.0,
        help="seconds of idle CPU measured (CPU time counts in 10 ms ticks: 30 s reads each process to 0.33 ms/s)",
    )
    parser.add_argument("--singles", type=int, default=10, help="leads posted one at a time to an idle system")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before each phase")
    parser.add_argument("--fetch-wait-idle-ms", type=int, default=20, help="the services' idle fetch wait (see above)")
    parser.add_argument(
        "--fetch-wait-idle-off-path-ms",
        type=int,
        default=None,
        help="idle fetch wait of the consumers off a new lead's path (decision 0070); default: --fetch-wait-idle-ms",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=KafkaSettings.model_fields["session_timeout_ms"].default,
        help="the consumers' group session timeout; heartbeats every third of it (default: production's)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    with bench_results.embedded_stack(CONFIG) as stack:
        for service, prefix, _ in STACK_SERVICES:
            off_path = args.fetch_wait_idle_off_path_ms or args.fetch_wait_idle_ms
            stack.extra_env[service] = {
                f"{prefix}KAFKA__FETCH_WAIT_IDLE_MS": str(args.fetch_wait_idle_ms),
                f"{prefix}KAFKA__FETCH_WAIT_IDLE_OFF_PATH_MS": str(off_path),
                f"{prefix}KAFKA__SESSION_TIMEOUT_MS": str(args.session_timeout_ms),
            }
        stack.extra_env["notifier"]["NOTIFIER_DIGEST__CHECK_SECONDS"] = str(DigestSettings().check_seconds)
        stack.start_services(timeout=90)
        with subprocess.Popen([sys.executable, "-c", SLEEPER]) as sleeper:  # noqa: S603 (a constant program)
            try:
                result = asyncio.run(run(stack, args, sleeper.pid))
            finally:
                sleeper.kill()
    bench_results.save(result, name="path", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
