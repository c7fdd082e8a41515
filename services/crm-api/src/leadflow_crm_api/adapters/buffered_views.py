"""The projection's reads and writes of a fresh generation, folded in memory and written in bulk.

Only for a rebuild (decision 0045), while it replays the log into a generation nobody else writes:
a batch of events then costs a few round trips instead of several per event. It means what
`adapters.leads.LeadViews` means, write for write: both apply the typed writes of `domain.projection`, this one
as their `document` and `applied_to` say (tests/integration/test_crm_rebuild.py projects the same events
through both and compares).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.adapters.leads import erase_entries, parked_doc
from leadflow_crm_api.domain.erasure import without_free_text
from leadflow_crm_api.domain.generations import ViewNames
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.projection import NewRow, RowChanges, RowState, lead_row_of
from leadflow_shared.events.routing import LeadEvent
from leadflow_shared.mongo_bulk import insert_each

Doc = dict[str, Any]
CHUNK = 500  # documents per bulk command
T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`itertools.batched` of Python 3.12, as lists."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class BufferedViews:
    def __init__(self, db: AsyncDatabase[Doc], names: ViewNames) -> None:
        self.db = db
        self._leads = db[names.leads]
        self._timeline = db[names.timeline]
        self._rows: dict[str, Doc | None] = {}  # None: known to have no row
        self._dirty: set[str] = set()
        self._entries: dict[str, Doc] = {}  # recorded since the last flush
        self._recorded: dict[str, bool] = {}  # stored before, as far as looked up
        # Events of leads without a row, by lead, in the order they came (as `LeadViews.park`; kept across flushes:
        # a rebuild replays the whole log in one run). Each flush stores them in the generation's `parked` as well
        # (and forgets there those applied since), so the rebuild's catch-up and, after the switch, the live
        # projection find what the replay still holds (helper 93).
        self._parked: dict[str, dict[str, LeadEvent]] = {}
        self._parked_docs = db[names.parked]
        self._parked_seq: dict[str, int] = {}  # event id -> its `seq`, for those not stored yet
        self._parked_stored: set[str] = set()
        self._unparked: set[str] = set()  # stored, applied since: deleted at the next flush

    async def load(self, lead_ids: set[str], event_ids: set[str]) -> None:
        """Read the rows and timeline ids a batch of events will look at, in two queries."""
        missing = sorted(i for i in lead_ids if i not in self._rows)
        for chunk in batched(missing, CHUNK):
            found = {doc["_id"]: doc async for doc in self._leads.find({"_id": {"$in": chunk}})}
            self._rows |= {lead_id: found.get(lead_id) for lead_id in chunk}
        unknown = sorted(i for i in event_ids if i not in self._recorded and i not in self._entries)
        for chunk in batched(unknown, CHUNK):
            stored = {doc["_id"] async for doc in self._timeline.find({"_id": {"$in": chunk}}, {"_id": 1})}
            self._recorded |= {event_id: event_id in stored for event_id in chunk}

    async def _row(self, lead_id: str) -> Doc | None:
        if lead_id not in self._rows:
            await self.load({lead_id}, set())
        return self._rows[lead_id]

    def _put(self, lead_id: str, row: Doc) -> None:
        self._rows[lead_id] = row
        self._dirty.add(lead_id)

    async def state(self, lead_id: str) -> RowState:
        return RowState.of(await self._row(lead_id))

    async def row(self, lead_id: str) -> LeadRow | None:
        return lead_row_of(await self._row(lead_id))  # None for an erasure's marker too

    async def insert_new(self, row: NewRow) -> bool:
        if await self._row(row.lead_id) is not None:
            return False
        self._put(row.lead_id, row.document())
        return True

    async def update(self, changes: RowChanges) -> bool:
        if (current := await self._row(changes.lead_id)) is None:
            return True  # no row: nothing to hold (as LeadViews' update of no document)
        self._put(changes.lead_id, changes.applied_to(current))
        return changes.holds(current)

    async def recorded(self, event_id: str) -> bool:
        if event_id in self._entries:
            return True
        if event_id not in self._recorded:
            await self.load(set(), {event_id})
        return self._recorded[event_id]

    async def record(self, entry: Doc) -> None:
        if not await self.recorded(str(entry["_id"])):
            self._entries[str(entry["_id"])] = entry

    async def erase_timeline(self, lead_id: str) -> None:
        # Entries held for the next flush, and those a flush stored before.
        for event_id, entry in self._entries.items():
            if entry["lead_id"] == lead_id and (changes := without_free_text(entry)) is not None:
                self._entries[event_id] = {**entry, **changes}
        await erase_entries(self._timeline, lead_id)

    async def park(self, event: LeadEvent) -> None:
        held = self._parked.setdefault(str(event.payload.lead_id), {})
        if (event_id := str(event.event_id)) not in held:
            held[event_id] = event
            self._parked_seq[event_id] = time.time_ns()

    async def parked(self, lead_id: str) -> list[LeadEvent]:
        return list(self._parked.get(lead_id, {}).values())

    async def unpark(self, event_ids: list[str]) -> None:
        gone = set(event_ids)
        self._unparked |= gone & self._parked_stored
        self._parked_stored -= gone
        for event_id in gone:
            self._parked_seq.pop(event_id, None)
        for lead_id, events in list(self._parked.items()):
            if kept := {i: e for i, e in events.items() if i not in gone}:
                self._parked[lead_id] = kept
            else:
                del self._parked[lead_id]

    async def scrub_parked(self, events: list[LeadEvent]) -> None:
        for event in events:
            lead_id, event_id = str(event.payload.lead_id), str(event.event_id)
            if event_id in (held := self._parked.get(lead_id, {})):
                held[event_id] = event
            if event_id in self._parked_stored:  # stored by a flush before: replaced there too
                await self._parked_docs.update_one({"_id": event_id}, {"$set": {"event": event.model_dump_json()}})

    async def flush(self) -> None:
        """Write what changed, then forget it all (the next batch reads what it needs again)."""
        rows = [row for i in sorted(self._dirty) if (row := self._rows[i]) is not None]
        replacements = [ReplaceOne({"_id": row["_id"]}, row, upsert=True) for row in rows]
        for ops in batched(replacements, CHUNK):
            await self._leads.bulk_write(ops, ordered=False)
        for entries in batched(self._entries.values(), CHUNK):
            await insert_missing(self._timeline, entries)
        self._rows, self._dirty, self._entries, self._recorded = {}, set(), {}, {}
        await self._store_parked()

    async def _store_parked(self) -> None:
        """The events parked since the last flush, stored; those stored before and applied since, deleted."""
        if self._unparked:
            for gone in batched(sorted(self._unparked), CHUNK):
                await self._parked_docs.delete_many({"_id": {"$in": gone}})
            self._unparked = set()
        new = [
            parked_doc(event, seq=self._parked_seq[event_id])
            for events in self._parked.values()
            for event_id, event in events.items()
            if event_id in self._parked_seq
        ]
        for docs in batched(new, CHUNK):
            await insert_missing(self._parked_docs, docs)
        self._parked_stored |= set(self._parked_seq)
        self._parked_seq = {}


async def insert_missing(collection: AsyncCollection[Doc], docs: list[Doc]) -> int:
    """Insert `docs`, skipping those whose `_id` is there already; how many were inserted."""
    outcomes = await insert_each(collection, docs)
    if failed := next((o for o in outcomes if o is not None and not isinstance(o, DuplicateKeyError)), None):
        raise failed
    return outcomes.count(None)
