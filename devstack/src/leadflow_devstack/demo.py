"""Feed sample leads and follow each one live: received by intake, assigned by the router, emailed;
then move one to another office of its organisation (T2) through crm-api."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

from leadflow_devstack.stack import Stack
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT, LeadAssigned, LeadOffered, LeadTransferred


@dataclass
class LeadProgress:
    name: str
    account_id: str = ""
    received: float | None = None
    agent: str | None = None
    emailed_to: str | None = None
    emailed_at: float | None = None
    emails: int = 0


@dataclass
class Demo:
    stack: Stack
    console: Console
    started: float = field(default_factory=time.monotonic)
    leads: dict[str, LeadProgress] = field(default_factory=dict)

    def _say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/dim]  {text}")

    async def feed(self, leads: list[dict[str, Any]]) -> None:
        async with httpx.AsyncClient(base_url=self.stack.url("intake"), timeout=10) as client:
            for lead in leads:
                response = await client.post("/v1/leads", json=lead, headers={"Idempotency-Key": str(uuid.uuid4())})
                response.raise_for_status()
                lead_id = response.json()["event_id"]
                name = f"{lead['first_name'].strip()} {lead.get('last_name', '')}".strip()
                self.leads[lead_id] = LeadProgress(name=name, account_id=lead["account_id"], received=time.monotonic())
                self._say(f"[cyan]received[/cyan]  {lead_id[:8]}  {name}")

    async def follow_events(self, ready: asyncio.Event) -> None:
        """Print each routing decision; `ready` is set once reading from the start is set up."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # fetches metadata, so the partitions are known
            partitions = [
                TopicPartition(topics.LEADS_EVENTS, p) for p in consumer.partitions_for_topic(topics.LEADS_EVENTS) or ()
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ready.set()
            async for record in consumer:
                event = ROUTING_EVENT.validate_json(record.value or b"")
                if isinstance(event, LeadOffered):
                    lead_id = str(event.payload.lead_id)
                    progress = self.leads.setdefault(lead_id, LeadProgress(name=event.payload.contact.full_name))
                    progress.name = event.payload.contact.full_name
                    progress.agent = ", ".join(filter(None, [progress.agent, f"{event.payload.agent_id} (offer)"]))
                    self._say(
                        f"[magenta]offered[/magenta]   {lead_id[:8]}  {progress.name} to "
                        f"{event.payload.agent_id} until {event.payload.deadline:%H:%M:%S} UTC "
                        f"(race of {event.payload.race_size})"
                    )
                elif isinstance(event, LeadAssigned):
                    lead_id = str(event.payload.lead_id)
                    progress = self.leads.setdefault(lead_id, LeadProgress(name=event.payload.contact.full_name))
                    progress.name = event.payload.contact.full_name  # as normalized by intake
                    progress.agent = event.payload.agent_id
                    self._say(
                        f"[yellow]assigned[/yellow]  {lead_id[:8]}  {progress.name} to "
                        f"{event.payload.agent_id} ({event.payload.reason.value})"
                    )
                elif isinstance(event, LeadTransferred):
                    p = event.payload
                    self._say(
                        f"[blue]moved[/blue]     {str(p.lead_id)[:8]}  from {p.from_account_name} to "
                        f"{p.to_account_name}, now held by {p.agent_id}"
                    )
        finally:
            await consumer.stop()

    async def follow_until_emailed(self, expected: int, timeout: float) -> bool:
        assert self.stack.mail is not None  # noqa: S101
        seen = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.stack.mail.received()
            for message in messages[seen:]:
                lead_id = str(message["X-Leadflow-Lead-Id"])
                progress = self.leads.setdefault(lead_id, LeadProgress(name="?"))
                progress.emailed_to, progress.emailed_at = str(message["To"]), time.monotonic()
                progress.emails += 1
                self._say(f"[green]emailed[/green]   {lead_id[:8]}  to {message['To']}: {message['Subject']}")
            seen = len(messages)
            if sum(1 for p in self.leads.values() if p.emailed_to and p.agent) >= expected:
                return True
            await asyncio.sleep(0.1)
        return False

    async def move_one(self, from_account: str, organisation: str, to_account: str, timeout: float) -> bool:
        """T2 through crm-api: move the first lead of `from_account` to `to_account` and show it there."""
        lead_id = next((i for i, p in self.leads.items() if p.account_id == from_account), None)
        if lead_id is None:
            return True
        token = self.stack.token(f"{from_account}-broker", "broker", from_account, organisation_id=organisation)
        target = self.stack.token(f"{to_account}-broker", "broker", to_account, organisation_id=organisation)
        async with httpx.AsyncClient(base_url=self.stack.url("crm-api"), timeout=10) as crm:
            # The email can beat crm-api's projection of the lead: move it once crm-api lists it.
            deadline = time.monotonic() + timeout
            source = f"/v1/accounts/{from_account}/leads/{lead_id}"
            while (await crm.get(source, headers={"Authorization": f"Bearer {token}"})).status_code != 200:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.1)
            asked = await crm.post(
                f"/v1/accounts/{from_account}/office-transfers",
                headers={"Authorization": f"Bearer {token}"},
                json={"lead_id": lead_id, "to_account_id": to_account},
            )
            asked.raise_for_status()
            self._say(f"[blue]transfer[/blue]  {lead_id[:8]}  asked: {from_account} -> {to_account}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = await crm.get(
                    f"/v1/accounts/{to_account}/leads/{lead_id}", headers={"Authorization": f"Bearer {target}"}
                )
                # The row moves before its timeline entry is written (crm-api's projection): wait for both.
                moved = (
                    [e["summary"] for e in got.json()["timeline"] if e["type"] == "LeadTransferred"]
                    if (got.status_code == 200)
                    else []
                )
                if moved:
                    self._say(f"[blue]arrived[/blue]   {lead_id[:8]}  in {to_account}'s CRM: {moved[-1]}")
                    return True
                await asyncio.sleep(0.1)
        return False

    def summary(self) -> Table:
        table = Table(title="Sample leads")
        for column in ("lead", "name", "agent", "emailed to", "seconds"):
            table.add_column(column)
        for lead_id, p in self.leads.items():
            took = f"{p.emailed_at - p.received:.2f}" if p.emailed_at and p.received else "-"
            table.add_row(lead_id[:8], p.name, p.agent or "-", p.emailed_to or "-", took)
        return table


async def run_demo(stack: Stack, console: Console, leads: list[dict[str, Any]], *, timeout: float) -> bool:
    """Feed the leads and follow them until every one was emailed; False on timeout."""
    demo = Demo(stack, console)
    expected = len(leads)
    ready = asyncio.Event()
    events = asyncio.create_task(demo.follow_events(ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        await demo.feed(leads)
        done = await demo.follow_until_emailed(expected, timeout)
        if done:
            done = await demo.move_one("acme-realty", "acme-group", "acme-brooklyn", timeout)
    finally:
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)
    console.print(demo.summary())
    return done
