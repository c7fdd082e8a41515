"""Rebuild the CRM views from leads.events.v1 into a fresh generation and switch to it (decision 0045).

`leadflow-ops crm rebuild-views` calls `rebuild_views` (and `abandon_rebuild`). crm-api keeps
serving and projecting meanwhile:

1. `crm_meta.views` goes from idle to building generation N+1 (in the slot N does not use), and the
   rebuild waits until every crm-api process has seen it: from then on each write to the views
   (a projected event, a request's change) is logged in `crm_rebuild_log` under a ticket.
2. Every partition is replayed from its beginning to its end offset as read now, into the new
   collections, indexed first. Then the request-owned fields and timeline entries are copied
   from generation N (no event holds them), and the log is applied in ticket order.
3. Switching: writers stop taking tickets and wait; the rebuild applies the rest of the log, copies
   again what requests changed during the rebuild, and makes N+1 active. Generation N is dropped
   once no reader can still be using it, unless kept (`keep_old`) until the next rebuild.

Any failure before the switch leaves generation N active and the new collections dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.buffered_views import BufferedViews, batched, insert_missing
from leadflow_crm_api.adapters.event_log import EventHistory
from leadflow_crm_api.adapters.generations import META_TTL_SECONDS, VIEWS, read_meta
from leadflow_crm_api.adapters.leads import LeadViews, ensure_view_indexes
from leadflow_crm_api.domain.generations import (
    LAST_ACTIVITY,
    PROJECTED_ENTRY_TYPES,
    REQUEST_ROW_FIELDS,
    Phase,
    ViewNames,
    Watermarks,
    carried_fields,
    names_of,
)
from leadflow_crm_api.handlers import project
from leadflow_shared import topics
from leadflow_shared.clock import now_ms
from leadflow_shared.collections import CRM_META, CRM_REBUILD_LOG
from leadflow_shared.dead_letters import POISON_ERRORS
from leadflow_shared.events.routing import ROUTING_EVENT, RoutingEvent
from leadflow_shared.kafka_records import unreadable
from leadflow_shared.mongo import Document, make_mongo_client
from leadflow_shared.settings import ServiceSettings

log = logging.getLogger(__name__)

# Told each step (counts and generations, never personal data). An async one is awaited before the
# rebuild goes on: tests act at a given step that way.
Progress = Callable[[str], Awaitable[None] | None]
BATCH = 1000  # events replayed per round trip to MongoDB
CHUNK = 500
SWITCH_SECONDS = 30.0  # writers wait at most this for a switch; past it they abort it and go on
POLL_SECONDS = 0.02


class RebuildRefusedError(RuntimeError):
    """Nothing was changed: another rebuild is under way, or the log no longer holds every event."""


class RebuildAbortedError(RuntimeError):
    """The rebuild stopped before switching; the old generation is still the active one."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    generation: int  # the active one now
    previous_generation: int
    events_replayed: int  # from the log's beginning to the end offsets read at the start
    events_caught_up: int  # projected live during the rebuild, applied from the rebuild log
    records_skipped: int  # unreadable or invalid records (the live projection dead-lettered them)
    leads: int
    timeline_entries: int
    rows_carried: int  # rows that took request-owned fields from the previous generation
    entries_carried: int  # timeline entries crm-api's requests wrote, copied
    rows_without_events: int  # rows of the previous generation no event rebuilds (not carried over)
    previous_dropped: bool
    seconds: float


@dataclass
class _Tally:
    replayed: int = 0
    caught_up: int = 0
    skipped: int = 0
    rows_carried: int = 0
    entries_carried: int = 0
    unrebuilt: set[str] = field(default_factory=set)


async def rebuild_views(
    settings: ServiceSettings,
    *,
    progress: Progress | None = None,
    keep_old: bool = False,
    topic: str = topics.LEADS_EVENTS,  # tests replay a topic of their own
) -> RebuildReport:
    """Rebuild the views into a fresh generation and switch to it; see the module docstring.

    `settings` are crm-api's (`CrmApiSettings`) or any service settings naming its Kafka and MongoDB
    (the ops tool's own): only `kafka` and `mongo` are read."""
    client = make_mongo_client(settings.mongo, app_name="leadflow-crm-rebuild")
    try:
        rebuild = _Rebuild(client[settings.mongo.database], settings, progress or _quiet, topic)
        return await rebuild.run(keep_old=keep_old)
    finally:
        await client.close()


async def abandon_rebuild(settings: ServiceSettings) -> bool:
    """End a rebuild whose process died while building (writers would log forever); False if none was."""
    client = make_mongo_client(settings.mongo, app_name="leadflow-crm-rebuild")
    try:
        db = client[settings.mongo.database]
        meta = await read_meta(db)
        if meta.building is None:
            return False
        await _Rebuild(db, settings, _quiet, topics.LEADS_EVENTS).abort(names_of(meta.building))
        return True
    finally:
        await client.close()


def _quiet(_message: str) -> None:
    return None


class _Rebuild:
    def __init__(self, db: AsyncDatabase[Document], settings: ServiceSettings, progress: Progress, topic: str) -> None:
        self._db = db
        self._settings = settings
        self._topic = topic
        self._progress = progress
        self._tally = _Tally()
        self._drained = 0  # the last ticket applied; tickets are never reused
        self._touched: set[str] = set()  # leads requests changed during the rebuild
        self._ends: dict[int, int] = {}  # per partition, the end offset replayed up to

    async def _say(self, message: str) -> None:
        if inspect.isawaitable(said := self._progress(message)):
            await said

    async def run(self, *, keep_old: bool) -> RebuildReport:
        started = time.monotonic()
        old, new = await self._begin()
        try:
            await _settle()  # every process now logs its writes
            marks = await self._replay(new)
            self._tally.caught_up += await self._catch_up(new, marks)
            await self._carry(old, new, None)
            self._tally.caught_up += await self._catch_up(new, marks)
            await self._switch(old, new, marks)
        except BaseException:
            await self.abort(new)
            raise
        await self._db[CRM_REBUILD_LOG].delete_many({"_id": {"$lte": self._drained}})
        await self._say(f"generation {new.generation} is active")
        unrebuilt = await self._still_missing(new)
        if not keep_old:
            await _settle()  # readers' cached generation has moved on
            await _drop(self._db, old)
            await self._say(f"dropped generation {old.generation}")
        t = self._tally
        return RebuildReport(
            generation=new.generation, previous_generation=old.generation, events_replayed=t.replayed,
            events_caught_up=t.caught_up, records_skipped=t.skipped,
            leads=await self._db[new.leads].count_documents({}),
            timeline_entries=await self._db[new.timeline].count_documents({}),
            rows_carried=t.rows_carried, entries_carried=t.entries_carried, rows_without_events=unrebuilt,
            previous_dropped=not keep_old, seconds=round(time.monotonic() - started, 3),
        )  # fmt: skip

    async def _begin(self) -> tuple[ViewNames, ViewNames]:
        meta_docs = self._db[CRM_META]
        await meta_docs.update_one(
            {"_id": VIEWS}, {"$setOnInsert": {"active": 0, "phase": Phase.IDLE.value, "ticket": 0}}, upsert=True
        )
        meta = await read_meta(self._db)
        if meta.phase is not Phase.IDLE:
            raise RebuildRefusedError(f"generation {meta.building} is being rebuilt already ({meta.phase.value})")
        old, new = names_of(meta.active), names_of(meta.active + 1)
        claimed = await meta_docs.find_one_and_update(
            {"_id": VIEWS, "phase": Phase.IDLE.value, "active": meta.active},
            {"$set": {"phase": Phase.BUILDING.value, "building": new.generation, "switch_by_ms": None}},
            return_document=ReturnDocument.AFTER,
        )
        if claimed is None:
            raise RebuildRefusedError("another rebuild started at the same time")
        self._drained = int(claimed.get("ticket", 0))
        # Nothing but this rebuild uses the other slot: clear what a kept or failed generation left there.
        await _drop(self._db, new)
        await self._db[CRM_REBUILD_LOG].delete_many({"_id": {"$lte": self._drained}})
        await self._say(f"building generation {new.generation} (generation {old.generation} is active)")
        return old, new

    async def _replay(self, new: ViewNames) -> Watermarks:
        async with EventHistory(self._settings.kafka, self._topic) as history:
            if truncated := {p: s for p, s in history.starts.items() if s > 0}:
                raise RebuildRefusedError(f"{self._topic} no longer starts at offset 0 {truncated}: "
                                     "events are gone, and with them the leads they made")  # fmt: skip
            await ensure_view_indexes(self._db, new)
            await self._say(f"replaying {sum(history.ends.values())} records")
            buffer, batch = BufferedViews(self._db, new), []
            async for record in history.records():
                batch.append(record)
                if len(batch) >= BATCH:
                    await self._apply(buffer, batch)
                    batch = []
            await self._apply(buffer, batch)
            await self._say(f"replayed {self._tally.replayed} events")
            self._ends = dict(history.ends)
            return Watermarks(history.ends)

    async def _apply(self, buffer: BufferedViews, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        events = [event for record in records if (event := self._parsed(record)) is not None]
        lead_ids = {str(lead) for e in events if (lead := getattr(e.payload, "lead_id", None)) is not None}
        await buffer.load(lead_ids, {str(e.event_id) for e in events})
        for event in events:
            await project(event, views=buffer, side_effects=False)
        await buffer.flush()
        self._tally.replayed += len(events)

    def _parsed(self, record: ConsumerRecord[bytes, bytes]) -> RoutingEvent | None:
        """The record's event; None (counted) for what the live projection dead-letters."""
        if unreadable(record.headers) is None:
            try:
                return ROUTING_EVENT.validate_json(record.value or b"")
            except POISON_ERRORS:
                pass
        self._tally.skipped += 1
        return None

    async def _catch_up(self, new: ViewNames, marks: Watermarks) -> int:
        """Apply the rebuild log's tickets that follow the last one applied, up to the first gap (a
        writer still busy): they are applied in the order they were handed out, and only once."""
        applied, views = 0, LeadViews(self._db, new)
        cursor = self._db[CRM_REBUILD_LOG].find({"_id": {"$gt": self._drained}}).sort("_id", 1)
        async for doc in cursor:
            if doc["_id"] != self._drained + 1:
                break
            self._drained = doc["_id"]
            self._touched.update(doc.get("lead_ids", []))
            if "event" in doc and marks.take(doc.get("partition"), doc.get("offset")):
                await project(ROUTING_EVENT.validate_json(bytes(doc["event"])), views=views, side_effects=False)
                applied += 1
        return applied

    async def _carry(self, old: ViewNames, new: ViewNames, lead_ids: set[str] | None) -> None:
        """Copy what only requests write from `old` to `new`: row fields, and timeline entries.

        `lead_ids` None copies every lead's; otherwise those leads' (changed during the rebuild).
        """
        fields = dict.fromkeys((*REQUEST_ROW_FIELDS, *LAST_ACTIVITY), 1)
        scopes = [{}] if lead_ids is None else [{"_id": {"$in": c}} for c in batched(sorted(lead_ids), CHUNK)]
        for scope in scopes:
            async for old_rows in _chunks(self._db[old.leads].find(scope, fields)):
                await self._carry_rows(new, old_rows)
        entry_scopes = [{}] if lead_ids is None else [{"lead_id": {"$in": c}} for c in batched(sorted(lead_ids), CHUNK)]
        for scope in entry_scopes:
            entries = self._db[old.timeline].find({**scope, "type": {"$nin": list(PROJECTED_ENTRY_TYPES)}})
            async for chunk in _chunks(entries):
                self._tally.entries_carried += await insert_missing(self._db[new.timeline], chunk)
        if lead_ids is None:
            await self._say(f"carried {self._tally.rows_carried} rows' and {self._tally.entries_carried} "
                           "entries' request-owned data")  # fmt: skip

    async def _carry_rows(self, new: ViewNames, old_rows: list[Document]) -> None:
        fields = dict.fromkeys((*REQUEST_ROW_FIELDS, *LAST_ACTIVITY), 1)
        ids = [row["_id"] for row in old_rows]
        rebuilt = {row["_id"]: row async for row in self._db[new.leads].find({"_id": {"$in": ids}}, fields)}
        ops = []
        for row in old_rows:
            if (mine := rebuilt.get(row["_id"])) is None:
                self._tally.unrebuilt.add(row["_id"])  # no event made it (yet: it may come from the log)
            elif changes := carried_fields(row, mine):
                ops.append(UpdateOne({"_id": row["_id"]}, {"$set": changes}))
        if ops:
            await self._db[new.leads].bulk_write(ops, ordered=False)
            self._tally.rows_carried += len(ops)

    async def _switch(self, old: ViewNames, new: ViewNames, marks: Watermarks) -> None:
        deadline = time.time() + SWITCH_SECONDS
        switching = await self._db[CRM_META].find_one_and_update(
            {"_id": VIEWS, "phase": Phase.BUILDING.value, "building": new.generation},
            {"$set": {"phase": Phase.SWITCHING.value, "switch_by_ms": int(deadline * 1000)}},
            return_document=ReturnDocument.AFTER,
        )
        if switching is None:
            raise RebuildAbortedError("the rebuild was abandoned")
        last_ticket = int(switching["ticket"])  # no writer gets another one until the switch is over
        await self._say(f"switching: applying the rebuild log up to ticket {last_ticket}")
        while True:
            self._tally.caught_up += await self._catch_up(new, marks)
            if self._drained >= last_ticket:
                break
            if time.time() > deadline - SWITCH_SECONDS / 3:
                raise RebuildAbortedError(f"ticket {self._drained + 1} of the rebuild log never came (a writer died?)")
            await asyncio.sleep(POLL_SECONDS)  # a writer with a ticket is finishing its write
        await self._carry(old, new, self._touched)
        switched = await self._db[CRM_META].update_one(
            {"_id": VIEWS, "phase": Phase.SWITCHING.value, "building": new.generation},
            {"$set": {"active": new.generation, "phase": Phase.IDLE.value, "building": None, "switch_by_ms": None,
                      "previous": old.generation, "switched_ms": now_ms(),
                      "replayed": {str(p): end for p, end in self._ends.items()}}},
        )  # fmt: skip
        if not switched.modified_count:
            raise RebuildAbortedError(f"switching took over {SWITCH_SECONDS:.0f} s; writers went on with the old views")

    async def abort(self, new: ViewNames) -> None:
        """Back to idle on the active generation; the new collections and the log are dropped."""
        try:
            await self._db[CRM_META].update_one(
                {"_id": VIEWS, "building": new.generation},
                {"$set": {"phase": Phase.IDLE.value, "building": None, "switch_by_ms": None}},
            )
            await _drop(self._db, new)
            await self._db[CRM_REBUILD_LOG].delete_many({})
            await self._say(f"aborted: generation {new.generation} dropped")
        except Exception as exc:  # noqa: BLE001 (the original failure is the one to report)
            log.warning("crm views: cleaning up an aborted rebuild failed: %s", type(exc).__name__)

    async def _still_missing(self, new: ViewNames) -> int:
        """Rows of the old generation that no event rebuilt (those the log created meanwhile are there)."""
        missing = self._tally.unrebuilt
        for chunk in batched(sorted(missing), CHUNK):
            found = {doc["_id"] async for doc in self._db[new.leads].find({"_id": {"$in": chunk}}, {"_id": 1})}
            missing = missing - found
        return len(missing)


async def _drop(db: AsyncDatabase[Document], names: ViewNames) -> None:
    """A generation's collections: its rows, its timeline and the events it parked."""
    for name in (names.leads, names.timeline, names.parked):
        await db.drop_collection(name)


async def _chunks(cursor: AsyncCursor[Document]) -> AsyncIterator[list[Document]]:
    chunk: list[Document] = []
    async for doc in cursor:
        chunk.append(doc)
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _settle() -> None:
    """Wait out the processes' cached view of `crm_meta` (a bound, not a guess: `META_TTL_SECONDS`)."""
    await asyncio.sleep(2 * META_TTL_SECONDS)
