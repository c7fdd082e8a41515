"""CPU per event of crm-api's projection (issue 14, goals 1 and 5), without Kafka: the consumer's handler
`Projection.on_routing_events` (its batches, the generation gate, `project`, `LeadViews`, `ViewCommands`)
over consumed batches of events, built and decoded before the clock starts.

Two stores:
- `nx`: a real nx-27017 in its own process. The CPU is this process's (`time.process_time`): leadflow's code
  and PyMongo's share of each command (encoding, decoding, the socket), not the server's. MongoDB commands
  per event are counted by a PyMongo command listener.
- `memory`: an in-memory stand-in of the few MongoDB calls the projection makes, so only leadflow's code
  (and asyncio) is measured.

Lives, each lead's events in a batch in order, `--per-batch` leads a batch (13: about 50 leads/s at the
production fetch wait):
- `offered`: a round-robin website lead, one `LeadOffered` (the lead of `path_bench.py`);
- `race`: two offers, a claim, the other offer withdrawn (the offers read back, the row changed);
- `assigned`: a `LeadAssigned` (the row's state read, the row upserted).

Run: `.venv/bin/python bench/projection_bench.py` (about two minutes; `--store`, `--lives`, `--leads`,
`--repeats`). Each figure is the median of `--repeats` runs (the minimum beside it). Results are written to
`bench/results/projection-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import BulkWriteError
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent
from rich.console import Console
from rich.table import Table

import bench_results
from leadflow_crm_api.adapters.leads import ensure_indexes
from leadflow_crm_api.entrypoints.kafka import Projection
from leadflow_crm_api.metrics import CrmMetrics
from leadflow_devstack.servers import mongo_wire
from leadflow_shared.consumers import Batch, Incoming, Received
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    RoutingEvent,
)

Doc = dict[str, Any]
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
LIVES = ("offered", "race", "assigned")


class _Cursor:
    def __init__(self, docs: list[Doc]) -> None:
        self._docs = docs

    def __aiter__(self) -> AsyncIterator[Doc]:
        return self._each()

    async def _each(self) -> AsyncIterator[Doc]:
        for doc in self._docs:
            yield doc


class MemoryCollection:
    """What the projection's commands ask of a collection, in memory: `find` by `_id` `$in` (or `lead_id` `$in`),
    `find_one` by `_id`, `insert_many`, and a `bulk_write` of `UpdateOne`s (`$set`, `$setOnInsert`, upsert, a
    `last_activity_ms` `$lt` filter)."""

    def __init__(self) -> None:
        self.docs: dict[Any, Doc] = {}

    def find(self, query: Doc, projection: Doc | None = None) -> _Cursor:
        if "lead_id" in query:  # parked events of the batch's new leads (decision 0093): none in this bench
            wanted = set(query["lead_id"]["$in"])
            return _Cursor([dict(doc) for doc in self.docs.values() if doc.get("lead_id") in wanted])
        found = [self.docs[i] for i in query["_id"]["$in"] if i in self.docs]
        if projection is not None:
            return _Cursor([{"_id": doc["_id"]} for doc in found])
        return _Cursor([dict(doc) for doc in found])

    async def find_one(self, query: Doc) -> Doc | None:  # crm_meta's document (none: generation 0, idle)
        doc = self.docs.get(query["_id"])
        return None if doc is None else dict(doc)

    async def insert_many(self, docs: list[Doc], **_options: object) -> None:
        errors = []
        for index, doc in enumerate(docs):
            if doc["_id"] in self.docs:
                errors.append({"index": index, "code": 11000, "errmsg": "duplicate key"})
            else:
                self.docs[doc["_id"]] = dict(doc)
        if errors:
            raise BulkWriteError({"writeErrors": errors})

    async def bulk_write(self, ops: list[UpdateOne], **_options: object) -> None:
        for op in ops:  # in order, as `ordered=True`
            self._update(op._filter, cast("Mapping[str, Any]", op._doc), upsert=bool(op._upsert))

    def _update(self, query: Mapping[str, Any], update: Mapping[str, Any], *, upsert: bool) -> None:
        doc = self.docs.get(query["_id"])
        if doc is None:
            if upsert:
                self.docs[query["_id"]] = {"_id": query["_id"], **update.get("$setOnInsert", {}), **update["$set"]}
            return
        newer = query.get("last_activity_ms")
        stored = doc.get("last_activity_ms")
        if newer is not None and not (isinstance(stored, int) and stored < newer["$lt"]):
            return
        doc.update(update["$set"])


class MemoryDatabase:
    name = "bench"

    def __init__(self) -> None:
        self.client = self  # the views' generation is cached per client (weakly)
        self._collections: dict[str, MemoryCollection] = {}

    def __getitem__(self, name: str) -> MemoryCollection:
        return self._collections.setdefault(name, MemoryCollection())

    def __hash__(self) -> int:
        return id(self)


class Commands(CommandListener):
    """MongoDB commands sent, by name."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def started(self, event: CommandStartedEvent) -> None:
        self.sent[event.command_name] += 1

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def _contact(n: int) -> Contact:
    return Contact(first_name=f"Jane{n}", last_name="Doe", email=f"jane{n}@example.com", phone="+14155550123")


def _offered(lead: uuid.UUID, agent: str, n: int) -> LeadOffered:
    at = T0 + timedelta(seconds=n)
    return LeadOffered.create(account_id="acme", occurred_at=at, payload=LeadOfferedPayload(
        lead_id=lead, agent_id=agent, offer_round=1, race_size=2, deadline=at + timedelta(minutes=15),
        explanation="R6: next in rotation", contact=_contact(n), source=SOURCE))  # fmt: skip


def life(kind: str, n: int) -> list[RoutingEvent]:
    lead, at = uuid.uuid4(), T0 + timedelta(seconds=n)
    if kind == "offered":
        return [_offered(lead, "ana", n)]
    if kind == "assigned":
        return [LeadAssigned.create(account_id="acme", occurred_at=at, payload=LeadAssignedPayload(
            lead_id=lead, agent_id="ana", reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="Round robin is off.", contact=_contact(n), source=SOURCE))]  # fmt: skip
    later = at + timedelta(minutes=1)
    claimed = LeadClaimed.create(account_id="acme", occurred_at=later, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1))  # fmt: skip
    withdrawn = OfferWithdrawn.create(account_id="acme", occurred_at=later, payload=OfferClosedPayload(
        lead_id=lead, agent_id="ben", offer_round=1))  # fmt: skip
    return [_offered(lead, "ana", n), _offered(lead, "ben", n), claimed, withdrawn]


def batches(kind: str, leads: int, per_batch: int) -> list[Batch[RoutingEvent]]:
    """Batches of `per_batch` leads' whole lives: each lead's events in order, the leads' interleaved."""
    out: list[Batch[RoutingEvent]] = []
    offset = 0
    for start in range(0, leads, per_batch):
        lives = [life(kind, n) for n in range(start, min(start + per_batch, leads))]
        batch: Batch[RoutingEvent] = Batch()
        for step in range(max(len(one) for one in lives)):
            for event in (one[step] for one in lives if step < len(one)):
                batch.append(Received(event, Incoming(event.model_dump_json().encode(), {}, 0, offset)))
                offset += 1
        out.append(batch)
    return out


async def run_once(db: Any, kind: str, leads: int, per_batch: int) -> tuple[float, int]:
    """CPU milliseconds per event, and how many events."""
    projection = Projection(lambda: db, CrmMetrics(CollectorRegistry()))
    await projection.on_routing_events(batches(kind, per_batch, per_batch)[0])  # warm: caches, first commands
    work = batches(kind, leads, per_batch)
    events = sum(len(batch) for batch in work)
    started = time.process_time()
    for batch in work:
        if rejected := await projection.on_routing_events(batch):
            raise RuntimeError(f"rejected: {rejected}")
    return (time.process_time() - started) / events * 1000, events


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    listener = Commands()
    make: Callable[[], Any] = MemoryDatabase
    server, client = None, None
    if args.store == "nx":
        server, url = mongo_wire(Path(tempfile.mkdtemp(prefix="projection-bench-")))
        client = AsyncMongoClient[Doc](url, tz_aware=True, event_listeners=[listener])
        make = lambda: client[f"bench_{uuid.uuid4().hex[:8]}"]  # noqa: E731
    result: dict[str, Any] = {"store": args.store, "per_batch": args.per_batch, "leads": args.leads, "lives": {}}
    try:
        for kind in args.lives:
            figures, commands, events = [], 0, 0
            for _ in range(args.repeats):
                db = make()
                if client is not None:
                    await ensure_indexes(db)
                before = sum(listener.sent.values())
                per_event, events = await run_once(db, kind, args.leads, args.per_batch)
                figures.append(per_event)
                commands = sum(listener.sent.values()) - before
            result["lives"][kind] = {
                "events": events,
                "cpu_ms_per_event": statistics.median(figures),
                "cpu_ms_per_event_min": min(figures),
                "runs": figures,
                # The last run's, its warm-up batch included (one batch of `per_batch` leads more).
                "mongo_commands_per_event": commands / events if client is not None else None,
            }
    finally:
        if client is not None:
            await client.close()
        if server is not None:
            server.stop(timeout=5)
    return result


def report(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"crm-api projection, store {result['store']}, {result['per_batch']} leads a batch")
    for column in ("life", "events", "CPU ms per event (median)", "min", "MongoDB commands per event"):
        table.add_column(column, justify="right")
    for kind, figures in result["lives"].items():
        commands = figures["mongo_commands_per_event"]
        table.add_row(
            kind, str(figures["events"]), f"{figures['cpu_ms_per_event']:.3f}",
            f"{figures['cpu_ms_per_event_min']:.3f}", "-" if commands is None else f"{commands:.2f}",
        )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["nx", "memory"], default="nx")
    parser.add_argument("--lives", nargs="+", choices=LIVES, default=list(LIVES))
    parser.add_argument("--leads", type=int, default=1000, help="leads per run")
    parser.add_argument("--per-batch", type=int, default=13, help="leads per consumed batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    console = Console()
    result = asyncio.run(measure(args))
    bench_results.save(result, name="projection", out=args.out, console=console)
    report(result, console)


if __name__ == "__main__":
    main()
