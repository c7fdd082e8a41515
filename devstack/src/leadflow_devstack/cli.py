"""`leadflow-dev`: run all of leadflow on this machine, feed sample leads, show what happens.

No Docker: Tansu (Kafka protocol), nx-27017 (MongoDB wire protocol) and an SMTP server
run as local processes; the four services run as their own processes. Ctrl-C stops all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from leadflow_devstack.demo import run_demo
from leadflow_devstack.stack import SAMPLE_ACCOUNTS, SAMPLE_LEADS, Stack


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leadflow-dev", description=__doc__)
    parser.add_argument("--work-dir", type=Path, default=Path(".leadflow"), help="logs, data and captured mail")
    parser.add_argument("--leads", type=Path, default=SAMPLE_LEADS, help="JSON list of leads to post to intake")
    parser.add_argument("--accounts", type=Path, default=SAMPLE_ACCOUNTS, help="account configuration to load")
    parser.add_argument("--exit-when-done", action="store_true", help="stop once every sample lead was emailed")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the sample emails")
    args = parser.parse_args(argv)

    console = Console()
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop as cleanly on SIGTERM as on Ctrl-C
    shutil.rmtree(args.work_dir, ignore_errors=True)
    stack = Stack(args.work_dir.resolve(), accounts_file=args.accounts, preferred_ports=True)
    ok = False
    try:
        with console.status("starting Kafka (Tansu), MongoDB wire (nx-27017) and SMTP..."):
            stack.start_infra()
        console.print(
            f"[bold]Kafka[/bold] {stack.bootstrap}   [bold]MongoDB[/bold] {stack.mongo_url}   "
            f"[bold]SMTP[/bold] 127.0.0.1:{stack.mail.port if stack.mail else '?'}"
        )
        with console.status("starting intake, router, notifier, crm-api..."):
            stack.start_services()
        for name in ("intake", "router", "notifier", "crm-api"):
            # The router's API and its /docs take this run's service token (Stack.router_token) only; crm-api
            # serves its contract, not FastAPI's documentation pages (decision 0092).
            docs = {"router": "", "crm-api": ", /openapi.json, /app"}.get(name, ", /docs")
            pages = f"/health/ready, /metrics{docs}"
            console.print(f"[bold]{name:9}[/bold] {stack.url(name)}  ({pages})")
        console.rule("sample leads")
        leads = json.loads(args.leads.read_text())
        ok = asyncio.run(run_demo(stack, console, leads, timeout=args.timeout))
        console.print(
            "[bold green]every sample lead reached its agent's inbox[/bold green]"
            if ok
            else f"[bold red]not every sample lead was emailed within {args.timeout:.0f}s[/bold red]"
        )
        console.rule("where to look")
        console.print(f"[bold]Web app[/bold] {stack.url('crm-api')}/app/  sign in as a sample user:")
        for account in json.loads(args.accounts.read_text())["accounts"]:
            roster = account["roster"]
            agents = ", ".join(roster[1:4]) or "none"
            console.print(f"  {account['account_id']}: broker {roster[0] if roster else '-'}; agents {agents}")
        token = stack.token("dev-broker", "broker", "acme-realty")  # valid for an hour, this run only
        console.print(
            f"Brokerage CRM (All Leads): curl -H 'Authorization: Bearer {token}' "
            f"'{stack.url('crm-api')}/v1/accounts/acme-realty/leads'"
        )
        console.print(
            f"Post a lead:  curl -X POST {stack.url('intake')}/v1/leads -H 'content-type: application/json' "
            '-d \'{"account_id":"acme-realty","first_name":"Ada","email":"ada@example.com"}\''
        )
        console.print(f"Captured emails: {stack.work_dir / 'mail'}   Logs: {stack.log_dir}")
        if not args.exit_when_done:
            console.print("[dim]Running. Ctrl-C stops everything.[/dim]")
            while all(p.running() for p in stack.services.values()):
                time.sleep(0.5)
            console.print("[red]a service exited; see the logs[/red]")
            ok = False
    except KeyboardInterrupt:
        console.print("\nstopping...")
    finally:
        # A second Ctrl-C (or the same one passed on by a wrapper) must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        console.print("stopped: no leadflow process is left running")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
