"""Which generation of the CRM views to read and write (decision 0045): `crm_meta` and the rebuild log.

Readers use the active generation from a cache of `META_TTL_SECONDS`. Every write to the views goes
through `writing`: while a rebuild builds a new generation, the write goes to the active one as
always and is then recorded in `crm_rebuild_log` under a sequence number (a ticket) taken from
`crm_meta`, so the rebuild can bring it to the new generation in the order it happened; while the
rebuild switches over, writers wait for it. A ticket is taken with a conditional update, so once
the rebuild has moved to switching, no writer gets one any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bson import Binary
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.domain.generations import Phase, ViewNames, ViewsMeta, names_of
from leadflow_shared.clock import now_ms
from leadflow_shared.collections import CRM_META, CRM_REBUILD_LOG
from leadflow_shared.ttl_cache import TtlCache

log = logging.getLogger(__name__)

VIEWS = "views"  # the `crm_meta` document of the views' generations
# How stale a process's idea of the active generation may be. A rebuild waits twice this after each
# change of phase, so every process has seen it before the rebuild relies on it.
META_TTL_SECONDS = 0.5
SWITCH_POLL_SECONDS = 0.02

Doc = dict[str, Any]
# Per client, per database name: tests run several databases on one client. Kept by the client's identity (a
# client's own hash sorts its seeds: the lookup, twice per event projected, cost 23 µs), while it lives.
_caches: dict[int, tuple[weakref.ref[AsyncMongoClient[Doc]], TtlCache[str, ViewsMeta]]] = {}


@dataclass(frozen=True, slots=True)
class Write:
    """What a write to the views is about, for the rebuild log: leads a request changed, or an event
    of leads.events.v1 the projection applied (its bytes, and where it was on the topic)."""

    lead_ids: tuple[str, ...] = ()
    event: bytes | None = None
    partition: int | None = None
    offset: int | None = None

    def log_doc(self, ticket: int) -> Doc:
        doc: Doc = {"_id": ticket, "lead_ids": list(self.lead_ids)}
        if self.event is not None:
            doc |= {"event": Binary(self.event), "partition": self.partition, "offset": self.offset}
        return doc


async def read_meta(db: AsyncDatabase[Doc]) -> ViewsMeta:
    """`crm_meta.views` as stored now (and the cache refreshed with it)."""
    return await _meta_cache(db).get_or_load(db.name, lambda: _read_meta(db), fresh=True)


async def cached_meta(db: AsyncDatabase[Doc]) -> ViewsMeta:
    return await _meta_cache(db).get_or_load(db.name, lambda: _read_meta(db))


def _meta_cache(db: AsyncDatabase[Doc]) -> TtlCache[str, ViewsMeta]:
    client = db.client
    found = _caches.get(key := id(client))
    if found is not None and found[0]() is client:
        return found[1]

    def forget(gone: weakref.ref[AsyncMongoClient[Doc]]) -> None:
        if _caches.get(key, (None,))[0] is gone:
            del _caches[key]

    cache: TtlCache[str, ViewsMeta] = TtlCache(META_TTL_SECONDS)
    _caches[key] = (weakref.ref(client, forget), cache)
    return cache


async def _read_meta(db: AsyncDatabase[Doc]) -> ViewsMeta:
    return ViewsMeta.from_doc(await db[CRM_META].find_one({"_id": VIEWS}))


async def active_names(db: AsyncDatabase[Doc]) -> ViewNames:
    """The collections readers use (at most `META_TTL_SECONDS` behind a switch)."""
    return names_of((await cached_meta(db)).active)


@contextlib.asynccontextmanager
async def writing(db: AsyncDatabase[Doc], write: Write) -> AsyncIterator[ViewNames]:
    """The generation to write to; during a rebuild, the write is logged once the block ends.

    Never nest: a writer holding a ticket that waited on a switch would hold up that switch.
    """
    meta, ticket = await cached_meta(db), None
    while True:
        if meta.phase is Phase.SWITCHING:
            meta = await _wait_for_switch(db, meta)
            continue
        if meta.phase is Phase.BUILDING:
            doc = await db[CRM_META].find_one_and_update(
                {"_id": VIEWS, "phase": Phase.BUILDING.value, "building": meta.building},
                {"$inc": {"ticket": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:  # the phase moved on since `meta` was read
                meta = await read_meta(db)
                continue
            meta, ticket = ViewsMeta.from_doc(doc), int(doc["ticket"])
        break
    try:
        yield names_of(meta.active)
    finally:
        if ticket is not None:  # also when the write failed: the rebuild waits for every ticket
            await db[CRM_REBUILD_LOG].insert_one(write.log_doc(ticket))


async def replayed_already(db: AsyncDatabase[Doc], write: Write) -> bool:
    """The event is one the rebuild of the active generation replayed: a consumer that lagged behind the
    rebuild's snapshot meets it after the switch, and applying it again could undo a later event."""
    if write.partition is None or write.offset is None:
        return False
    return write.offset < (await cached_meta(db)).replayed.get(write.partition, 0)


async def _wait_for_switch(db: AsyncDatabase[Doc], meta: ViewsMeta) -> ViewsMeta:
    """Wait while a rebuild switches; past its deadline, abort it (the old generation stays active)."""
    while meta.phase is Phase.SWITCHING:
        if meta.switch_by_ms is not None and now_ms() > meta.switch_by_ms:
            aborted = await db[CRM_META].update_one(
                {"_id": VIEWS, "phase": Phase.SWITCHING.value, "building": meta.building},
                {"$set": {"phase": Phase.IDLE.value, "building": None}},
            )
            if aborted.modified_count:
                log.warning("crm views: a rebuild did not finish switching in time; aborted it")
        else:
            await asyncio.sleep(SWITCH_POLL_SECONDS)  # polling the switch, bounded by switch_by_ms
        meta = await read_meta(db)
    return meta
