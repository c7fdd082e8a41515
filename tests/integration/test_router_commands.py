"""The MongoDB commands a batch of new leads costs the router, on the real MongoDB-wire server (issue 14
goal 1: PyMongo's client CPU is per command, whatever it carries).

A batch reads its records, contacts and rotation cursors once each, stores its outbox document and
records, then advances every rotation it moved, registers its contact keys (and reads their leads again: an erasure
may have scrubbed one meanwhile) and drops its outbox document, one command each: however many leads, sources, rules
and balanced counts it holds.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes_router import Published
from fakes_shared import Clock
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase
from router_harness import router_service

from leadflow_router.adapters.account_config import load_account_config
from leadflow_router.adapters.mongo import AccountSnapshots, ensure_indexes
from leadflow_router.handlers import RouterService
from leadflow_shared.collections import ROUTER_CAPACITY, ROUTER_ROTATIONS
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
AGENTS = ["broker", "lux1", "lux2", "r1", "r2", "r3", "gen"]
CONFIG = {
    "accounts": [
        {
            "account_id": "acme",
            "name": "Acme",
            "round_robin": True,
            "agents": [{"agent_id": i, "name": i.title(), "email": f"{i}@acme.example"} for i in AGENTS],
            "roster": AGENTS,
            "sources": [{"name": "Zillow"}],
            "routing_rules": {
                "rules": [
                    {
                        "id": "luxury",
                        "name": "Luxury",
                        "criteria": {"price_min": 1_000_000},
                        "action": {"kind": "rotation", "agents": ["lux1", "lux2"]},
                    },
                    {
                        "id": "rentals",
                        "name": "Rentals",
                        "criteria": {"intents": ["rent"]},
                        "action": {"kind": "rotation", "mode": "balanced", "agents": ["r1", "r2", "r3"]},
                    },
                ]
            },
        }
    ]
}
# One of each per batch, in this order (a batch of leads none of which was stored or seen before).
BATCH_COMMANDS = [
    ("find", "router_leads"),  # redeliveries (I1)
    ("find", "router_contacts"),  # repeat contacts (R1)
    ("find", "router_rotations"),  # every cursor and balanced count the batch's leads take turns in
    ("update", "router_rotations"),  # the turns taken, from where they stood (decisions 0010, 0061: session 32)
    ("insert", "router_outboxes"),  # decision 0068: outboxes first,
    ("insert", "router_leads"),  # then the records,
    ("insert", "router_contacts"),  # then the effects
    ("find", "router_leads"),  # the leads just registered, to forget their keys if erased meanwhile (decision 0050)
    ("delete", "router_outboxes"),  # and the outbox document dropped once published
]


class Commands(monitoring.CommandListener):
    """The commands sent on one client, as (name, collection)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self.sent.append((event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def lead(source: str = "Website", account_id: str = "acme", **criteria: Any) -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=Contact(first_name="Lead", email=f"lead-{uuid.uuid4().hex}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source),
        criteria=LeadCriteria.model_validate(criteria) if criteria else None,
    )
    return LeadReceived.create(account_id=account_id, payload=payload, occurred_at=NOW)


def mixed_batch() -> list[LeadReceived]:
    """Leads of two sources, a rule's rotation and a balanced rule's: four rotations, three counts."""
    return [
        one for _ in range(3) for one in (lead(), lead("Zillow"), lead(price={"min": 2_000_000}), lead(intent="rent"))
    ]


@dataclass
class Counted:
    service: RouterService
    db: AsyncDatabase[dict[str, Any]]
    published: Published
    commands: Commands

    async def sent_for(self, batch: list[LeadReceived]) -> list[tuple[str, str]]:
        """The commands routing `batch` sends (the account snapshot's reads left out: the harness caches none)."""
        self.commands.sent.clear()
        assert not await self.service.on_leads_received(batch)
        return [c for c in self.commands.sent if c[1] not in {"accounts", "agents"}]


@contextlib.asynccontextmanager
async def counted_router(mongo_url: str, config: dict[str, Any]) -> AsyncIterator[Counted]:
    """A router on its own database of nx-27017 with `config`, whose MongoDB commands are counted, after a
    first lead (the first batch also creates what the account's later ones only update)."""
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, event_listeners=[commands])
    db = client[f"router_{uuid.uuid4().hex[:12]}"]
    try:
        await load_account_config(db, config)
        await ensure_indexes(db)
        published = Published()
        service = router_service(db, published, Clock(NOW), CollectorRegistry())
        await service.on_leads_received([lead()])
        yield Counted(service, db, published, commands)
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_batch_of_new_leads_costs_one_command_of_each_kind(mongo_url: str) -> None:
    async with counted_router(mongo_url, CONFIG) as router:
        db, published = router.db, router.published
        for size, batch in [(1, [lead()]), (12, mixed_batch()), (12, mixed_batch())]:
            assert await router.sent_for(batch) == BATCH_COMMANDS, f"a batch of {size}"

        offered = [e.payload for _, e in published.events() if isinstance(e, LeadOffered)]
        assert len(offered) == 26
        by_kind = [offered[2 + n :: 4] for n in range(4)]  # website, zillow, luxury, rentals (after 2 singles)
        assert [o.agent_id for o in by_kind[2]] == ["lux1", "lux2"] * 3, "the rule's cursor, batch after batch"
        assert Counter(o.agent_id for o in by_kind[3]) == {"r1": 2, "r2": 2, "r3": 2}, "balanced across batches"
        for source in by_kind[:2]:  # each source's own rotation, on through the roster
            agents = [o.agent_id for o in source]
            assert len(set(agents)) == len(agents) == 6
        positions = {d["_id"]: d["position"] async for d in db[ROUTER_ROTATIONS].find({})}
        assert positions["acme:rule:luxury"] == 6
        assert {k: v for k, v in positions.items() if "@" in k} == {f"acme:rule:rentals@r{n}": 2 for n in (1, 2, 3)}


async def test_a_batch_for_capped_agents_reads_and_writes_their_counts_once(mongo_url: str) -> None:
    capped = [{"agent_id": a, "name": a.title(), "email": f"{a}@capped.example", "caps": {"day": 10}} for a in AGENTS]
    config = {"accounts": [{"account_id": "acme", "name": "Acme", "round_robin": True, "agents": capped,
                            "roster": AGENTS}]}  # fmt: skip
    async with counted_router(mongo_url, config) as router:
        db, published = router.db, router.published
        sent = await router.sent_for([lead() for _ in range(6)])
        assert (
            sent
            == [
                *BATCH_COMMANDS[:3],
                ("find", "router_capacity"),  # the capped agents' counted leads, once for the account
                ("insert", "router_capacity"),  # each lead counts against its agent, pending, before it is stored,
                ("find", "router_capacity"),  # and those agents read again: none past a cap (session 32)
                *BATCH_COMMANDS[3:6],
                ("find", "router_capacity"),  # stored: whom the leads counted against for good already (a replay),
                ("update", "router_capacity"),  # the record versions the counts are for (a late flush writes none),
                ("insert", "router_capacity"),  # each lead's count for good,
                ("delete", "router_capacity"),  # then the batch's pending holds dropped (session 33)
                *BATCH_COMMANDS[6:],
            ]
        )
        offered = {
            str(e.payload.lead_id): e.payload.agent_id for _, e in published.events() if isinstance(e, LeadOffered)
        }
        held = {d["lead_id"]: d["agent_id"] async for d in db[ROUTER_CAPACITY].find({"agent_id": {"$exists": True}})}
        assert held == offered
        assert len(set(offered.values())) == 7


def many_offices(agents: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """Ten offices, each with these agents, all on its round robin."""
    offices = [f"office-{n}" for n in range(10)]
    config = {
        "accounts": [
            {
                "account_id": office,
                "name": office.title(),
                "round_robin": True,
                "agents": [{"agent_id": f"{office}-{a}", "name": a.title(), "email": f"{a}@{office}.example"}
                           for a in agents],
                "roster": [f"{office}-{a}" for a in agents],
            }
            for office in offices
        ]
    }  # fmt: skip
    return offices, config


async def test_a_batch_of_many_offices_reads_their_configuration_in_one_command_per_collection(mongo_url: str) -> None:
    offices, config = many_offices(("broker", "ann", "bob"))
    async with counted_router(mongo_url, config | {"accounts": [*config["accounts"], *CONFIG["accounts"]]}) as router:
        router.service.accounts = AccountSnapshots(router.db, 60)  # cached, as in production (none cached yet)
        router.commands.sent.clear()
        batch = [lead(account_id=office) for office in offices for _ in range(2)] + [lead(account_id="nowhere")]
        rejected = await router.service.on_leads_received(batch)
        read = [c for c in router.commands.sent if c[1] in {"accounts", "agents"}]
        assert read == [("find", "accounts"), ("find", "agents")], "one query each for ten offices (and nowhere)"
        assert len(rejected) == 1, "the unknown account's lead is refused, the others routed"
        offered = [e.payload for _, e in router.published.events() if isinstance(e, LeadOffered)]
        by_office = Counter(o.agent_id.rpartition("-")[0] for o in offered if o.agent_id.startswith("office-"))
        assert by_office == dict.fromkeys(offices, 2), "each office's leads offered to its own agents"
        router.commands.sent.clear()
        assert not await router.service.on_leads_received([lead(account_id=office) for office in offices])
        assert not [c for c in router.commands.sent if c[1] in {"accounts", "agents"}], "all cached now"


async def test_a_sweep_pass_over_many_offices_takes_their_turns_in_one_command(mongo_url: str) -> None:
    """Ten offices, none with caps, each with one lead on offer; the offers run out together and one sweep pass
    re-offers all ten, taking their turns in one `update` of router_rotations (helper 160: 6d8d5b3 took them office by
    office, ten updates; one more only where one was lost and given back)."""
    offices, config = many_offices(("ann", "bob"))
    async with counted_router(mongo_url, config) as router:
        service = router.service
        service.accounts = AccountSnapshots(router.db, 60)  # cached, as in production
        assert not await service.on_leads_received([lead(account_id=office) for office in offices])
        service.clock.advance(16 * 60 * 1000)  # type: ignore[attr-defined]  # every offer (15 min) ran out
        router.published.clear()
        router.commands.sent.clear()
        assert await service.sweep_once() == 10
        offered = [e.payload for _, e in router.published.events() if isinstance(e, LeadOffered)]
        assert len(offered) == 10, "each office's lead re-offered in the pass"
        sent = Counter(c for c in router.commands.sent if c[1] not in {"accounts", "agents"})
        assert sent[("update", "router_rotations")] == 1, f"one pass's turns: {dict(sent)}"
