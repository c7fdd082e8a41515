"""The crm_leads and crm_timeline views in MongoDB: the projection writes them, the API reads them.

Readers get a `ScopedLeads` built from the caller, so every query carries the caller's
account and role scope (S1) and no endpoint can forget it. Reads answer typed rows and entries
(`domain.lead_row`); the projection's port (`LeadViews`) reads and writes the typed values of
`domain.projection`, encoded here as MongoDB commands. Both use
the views' active generation (`adapters.generations`, decision 0045); every write goes through
`generations.writing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.adapters import callers, generations, invitations, offices, settings_audit
from leadflow_crm_api.adapters.filter_match import matches
from leadflow_crm_api.adapters.generations import Write, active_names, writing
from leadflow_crm_api.adapters.view_commands import ViewCommands
from leadflow_crm_api.domain.erasure import without_free_text
from leadflow_crm_api.domain.generations import ViewNames, names_of
from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_crm_api.domain.offices import label_key
from leadflow_crm_api.domain.principal import Principal
from leadflow_crm_api.domain.projection import (
    LAST_ACTIVITY_VERSION,
    NewRow,
    RowChanges,
    RowState,
    lead_row_of,
)
from leadflow_crm_api.domain.views import RACE_ENTRIES, LeadQuery, LeadTab, search_patterns
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import AGENTS
from leadflow_shared.events.routing import LEAD_EVENT, LeadEvent

# Lead events that found no row of their lead and made none (its first event dead-lettered, replayed later): held
# in the generation's `ViewNames.parked` until the row is created (decision 0093, amended), for as long as the dead
# letters are kept.
PARKED_EVENTS = names_of(0).parked
PARKED_KEEP = timedelta(days=30)  # the dead-letter topics' retention (docs/operations.md)
TIES_READ = 1_000  # rows tied on a list's sort key read at once past a cursor (`ScopedLeads._ties`)
CRM_LEADS = names_of(0).leads  # generation 0's names (decision 0045): the active ones unless rebuilt
CRM_TIMELINE = names_of(0).timeline
TIMELINE_LIMIT = 2000  # a lead's detail shows at most this many entries, oldest first


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    """crm-api's startup hook for its collections (a rebuild indexes the generation it builds itself)."""
    await ensure_view_indexes(db, names_of((await generations.read_meta(db)).active))
    await invitations.ensure_indexes(db)
    await callers.ensure_indexes(db)
    await offices.ensure_indexes(db)
    await settings_audit.ensure_indexes(db)


async def ensure_view_indexes(db: AsyncDatabase[dict[str, Any]], names: ViewNames) -> None:
    # Sorts, filters and cursors use epoch-millisecond ints and no index names _id:
    # nx-27017 compares datetimes to the second and breaks on indexes that name _id
    # (docs/decisions/0004-mongodb-wire-fidelity.md). The (key, _id) tie-break sorts in memory
    # over the few rows sharing a millisecond.
    leads = db[names.leads]
    await leads.create_index([("account_id", ASCENDING), ("created_ms", DESCENDING)], name="account_recent")
    await leads.create_index([("account_id", ASCENDING), ("last_activity_ms", DESCENDING)], name="account_activity")
    await leads.create_index(
        [("account_id", ASCENDING), ("owner_agent_id", ASCENDING), ("created_ms", DESCENDING)], name="account_owner"
    )
    await leads.create_index(
        [("account_id", ASCENDING), ("status", ASCENDING), ("created_ms", DESCENDING)], name="account_status"
    )
    await leads.create_index([("account_id", ASCENDING), ("offered_to", ASCENDING)], name="account_offered_to")
    await leads.create_index([("account_id", ASCENDING), ("pond", ASCENDING)], name="account_pond")
    await leads.create_index([("transferred_to", ASCENDING), ("created_ms", DESCENDING)], name="transferred_to")
    await db[names.timeline].create_index([("lead_id", ASCENDING), ("occurred_ms", ASCENDING)], name="lead_timeline")
    # No index on `offer_link_ids`: nx-27017 then stops matching array elements (a conformance xfail).
    await leads.create_index(
        [("account_id", ASCENDING), ("search_labels", ASCENDING), ("created_ms", DESCENDING)], name="account_labels"
    )
    parked = db[names.parked]
    await parked.create_index([("lead_id", ASCENDING), ("seq", ASCENDING)], name="lead_parked")
    await parked.create_index(
        [("parked_at", ASCENDING)], name="forget_parked", expireAfterSeconds=int(PARKED_KEEP.total_seconds())
    )


Coll = AsyncCollection[dict[str, Any]]


class LeadViews:
    """The projection's port to the views (`handlers.ViewWriter`; no caller scope: it applies the account's own
    events), and a request's timeline entry.

    Bound to `names`, it reads and writes that generation: the projection inside its own
    `generations.writing` block, and a rebuild. Unbound, it reads the active generation and
    writes through `generations.writing` (a request's timeline entry). Its commands are `commands`, shared with
    the other leads of the consumer's batch (coalesced), or its own: one command each.
    """

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], names: ViewNames | None = None, *, commands: ViewCommands | None = None
    ) -> None:
        self.db = db
        self._names = names
        self._bound = None if names is None else contextlib.nullcontext(names)
        self._commands = commands or ViewCommands(db)

    async def _read(self) -> ViewNames:
        return self._names or await active_names(self.db)

    def _write(self, lead_id: str) -> contextlib.AbstractAsyncContextManager[ViewNames]:
        """The generation to write: the bound one, else the active one, through the generation gate."""
        return self._bound or writing(self.db, Write(lead_ids=(lead_id,)))

    async def _doc(self, lead_id: str) -> dict[str, Any] | None:
        names = self._names or await active_names(self.db)
        return await self._commands[names.leads].find(lead_id)

    async def state(self, lead_id: str) -> RowState:
        return RowState.of(await self._doc(lead_id))

    async def row(self, lead_id: str) -> LeadRow | None:
        return lead_row_of(await self._doc(lead_id))  # None for an erasure's marker too

    async def insert_new(self, row: NewRow) -> bool:
        """Create the row unless the lead has one; whether it did."""
        async with self._write(row.lead_id) as names:
            try:
                await self._commands[names.leads].insert(row.document())
            except DuplicateKeyError:
                return False
            return True

    async def update(self, changes: RowChanges) -> bool:
        """False when `changes.expect` may not have held: an op of the command, this lead's or another's sent with it,
        matched no row (a bulk write says only how many matched: `view_commands._update`)."""
        if not (ops := _update_ops(changes)):
            return True
        async with self._write(changes.lead_id) as names:
            held = await self._commands[names.leads].update(ops)
        return changes.expect is None or held

    async def recorded(self, event_id: str) -> bool:
        return await self._commands[(await self._read()).timeline].exists(event_id)

    async def timeline_of(self, lead_id: str) -> list[TimelineEntry]:
        timeline = self.db[(await self._read()).timeline]
        cursor = timeline.find({"lead_id": lead_id}).sort([("occurred_ms", ASCENDING), ("_id", ASCENDING)])
        return [TimelineEntry.from_doc(doc) async for doc in cursor.limit(TIMELINE_LIMIT)]

    async def by_offer_link(self, link_id: str) -> LeadRow | None:
        """The lead one of whose offers had this accept link (issue 11.6)."""
        return _row(await self.db[(await self._read()).leads].find_one({"offer_link_ids": link_id}))

    async def record(self, entry: dict[str, Any]) -> None:
        """Add a timeline entry; the same event id twice is one entry."""
        async with self._write(str(entry["lead_id"])) as names:
            with contextlib.suppress(DuplicateKeyError):
                await self._commands[names.timeline].insert(entry)

    async def erase_timeline(self, lead_id: str) -> None:
        """Drop what people wrote from the lead's timeline entries (decision 0050)."""
        async with self._write(lead_id) as names:
            await erase_entries(self.db[names.timeline], lead_id)

    async def park(self, event: LeadEvent) -> None:
        """Hold an event of a lead without a row until it has one; the same event twice is held once."""
        async with self._write(str(event.payload.lead_id)) as names:
            with contextlib.suppress(DuplicateKeyError):
                await self._commands[names.parked].insert(parked_doc(event))

    async def parked(self, lead_id: str) -> list[LeadEvent]:
        """The lead's parked events, in the order they came (one command for the batch's leads asking)."""
        docs = await self._commands[(await self._read()).parked].of_lead(lead_id)
        return [LEAD_EVENT.validate_json(doc["event"]) for doc in docs]

    async def unpark(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        names = await self._read()  # bound: the projection's generation (no lead to log a write under)
        await self.db[names.parked].delete_many({"_id": {"$in": event_ids}})

    async def scrub_parked(self, events: list[LeadEvent]) -> None:
        """Replace each parked event with `event` (its id's), where it is still held: its place kept (an erasure
        scrubs those parked before they were held without the person)."""
        for event in events:
            async with self._write(str(event.payload.lead_id)) as names:
                await self.db[names.parked].update_one(
                    {"_id": str(event.event_id)}, {"$set": {"event": event.model_dump_json()}}
                )


def parked_doc(event: LeadEvent, *, seq: int | None = None) -> dict[str, Any]:
    """A parked event as stored (`LeadViews.park`, and a rebuild's at its end)."""
    return {
        "_id": str(event.event_id),
        "lead_id": str(event.payload.lead_id),
        # The order they came in: one lead's events come in order to one consumer.
        "seq": time.time_ns() if seq is None else seq,
        "parked_at": datetime.now(UTC),
        "event": event.model_dump_json(),
    }


def _update_ops(changes: RowChanges) -> list[UpdateOne]:
    """`changes` as MongoDB updates, applied in order: the fields, then the last activity if the row's is older
    (`RowChanges.applied_to` says the same in memory). One lead's, sent together as one ordered `bulk_write`."""
    update: dict[str, Any] = {"$set": changes.fields} if changes.fields else {}
    if changes.unset:
        update["$unset"] = dict.fromkeys(changes.unset, "")
    # {"f": None}: missing or null, as read; a list by `$eq` (nx-27017 refuses a bare list in an update's filter).
    held = {k: {"$eq": v} if isinstance(v, list) else v for k, v in (changes.expect or {}).items()}
    row: dict[str, Any] = {"_id": changes.lead_id, **held}
    ops = [UpdateOne(row, update)] if update else []
    if changes.activity:
        # Not over `expect`: the fields op just changed what it names (a move's `moved_ms`), so it never matched after
        # it (review of 2717b17). The activity keeps its own rule, only when newer (or first of its millisecond).
        newer: dict[str, Any] = {"_id": changes.lead_id}
        if changes.replaces is not None:  # of that millisecond, over a later version's only (`first_of_its_ms`)
            ms, version = changes.replaces
            newer |= {"last_activity_ms": ms, LAST_ACTIVITY_VERSION: {"$gt": version}}
        elif "last_activity_ms" in changes.activity:
            newer["last_activity_ms"] = {"$lt": changes.activity["last_activity_ms"]}
        ops.append(UpdateOne(newer, {"$set": changes.activity}))
    return ops


async def erase_entries(timeline: Coll, lead_id: str) -> None:
    """`domain.erasure.without_free_text` on each of the lead's entries that has content."""
    async for entry in timeline.find({"lead_id": lead_id, "content": {"$exists": True}}):
        if (changes := without_free_text(entry)) is not None:
            await timeline.update_one({"_id": entry["_id"]}, {"$set": changes})


async def lost_offer(
    db: AsyncDatabase[dict[str, Any]], account_id: str, lead_id: str, agent_id: str
) -> tuple[LeadRow, list[TimelineEntry]] | None:
    """A lead of `account_id` outside a realtor's scope that was offered to it: (row, its offer entries).

    Lets crm-api tell a realtor how its offer ended instead of "no such lead"; None otherwise.
    """
    names = await active_names(db)
    row = await db[names.leads].find_one({"_id": lead_id, "account_id": account_id})
    if row is None:
        return None
    offer_types = ["LeadOffered", "OfferExpired", "OfferWithdrawn", "LeadClaimed"]
    query = {"lead_id": lead_id, "agent_id": agent_id, "type": {"$in": offer_types}}
    timeline = db[names.timeline]
    cursor = timeline.find(query).sort([("occurred_ms", ASCENDING), ("_id", ASCENDING)])
    entries = [TimelineEntry.from_doc(e) async for e in cursor]
    return (LeadRow.from_doc(row), entries) if entries else None


async def ask_back_entries(db: AsyncDatabase[dict[str, Any]], lead_id: str, agent_id: str) -> list[TimelineEntry]:
    """The agent's asks for a missed offer of the lead (`LeadActivity`, recorded by crm-api) and the router's
    refusals of them (`ActivityLogged`), issue 15; oldest first."""
    names = await active_names(db)
    kinds = ["LeadActivity", "ActivityLogged"]
    query = {"lead_id": lead_id, "agent_id": agent_id, "type": {"$in": kinds}, "action": "ask_back"}
    cursor = db[names.timeline].find(query).sort([("occurred_ms", ASCENDING), ("_id", ASCENDING)])
    return [TimelineEntry.from_doc(e) async for e in cursor]


async def agent_names(db: AsyncDatabase[dict[str, Any]], agent_ids: set[str]) -> dict[str, str]:
    """Agent id -> name, for the ids that are agents (names change: read, never copied into rows)."""
    ids = sorted(i for i in agent_ids if i)
    if not ids:
        return {}
    cursor = db[AGENTS].find({"_id": {"$in": ids}}, {"name": 1})
    return {doc["_id"]: str(doc["name"]) async for doc in cursor if doc.get("name")}


def _opaque(*parts: object) -> str:
    """A mark as the page carries it (its live stream's `since`): a digest, so it tells a realtor nothing of what the
    page does not show (the timeline's entries another agent's race hides, the last event's id)."""
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def scope_filter(principal: Principal, account_id: str) -> dict[str, Any]:
    """What `principal` may read in `account_id`: the whole account, or a realtor's own leads.

    A realtor's own: held by it, offered to it right now (so it can claim), assigned to it as a user by
    the lead's owner, or shared with it (T1).
    """
    if principal.sees_whole_account:
        return {"account_id": account_id}
    mine: list[dict[str, Any]] = [{"transferred_to": principal.sub}]
    if account_id == principal.account_id:
        # The owner (holder), an agent offered it now, and the users its owner assigned (ClientBAY).
        mine += [{"owner_agent_id": principal.sub}, {"offered_to": principal.sub}, {"assigned_users": principal.sub}]
    return {"account_id": account_id, "$or": mine}


def realtor_filter(principal: Principal) -> dict[str, Any]:
    """V2: leads a realtor holds or was offered in its own account, and leads shared with it from any."""
    return {
        "$or": [
            {"account_id": principal.account_id, "owner_agent_id": principal.sub},
            {"account_id": principal.account_id, "offered_to": principal.sub},
            {"transferred_to": principal.sub},
        ]
    }


def query_filter(query: LeadQuery) -> list[dict[str, Any]]:
    """The list query's conditions; values are typed strings and ints, regexes escaped (S3)."""
    conditions: list[dict[str, Any]] = []
    if query.tab is LeadTab.MINE:
        # $eq, not a bare None: inside $and, nx-27017 matches a bare None only on missing fields.
        conditions.append({"transferred_to": {"$eq": None}})
    equal = {
        "status": query.status.value if query.status is not None else None,
        "owner_agent_id": query.owner_agent_id,
        "transferred_to": query.assigned_to,
        "source": query.source,
        "search_labels": label_key(query.label) if query.label is not None else None,
        "pond": query.pond,
    }
    conditions += [{name: value} for name, value in equal.items() if value is not None]
    created = {op: ms for op, ms in (("$gte", query.created_from_ms), ("$lt", query.created_to_ms)) if ms is not None}
    if created:
        conditions.append({"created_ms": created})
    if query.search:
        conditions.append({"$or": _search_matches(query.search)})
    return conditions


def _search_matches(search: str) -> list[dict[str, Any]]:
    text, digits = search_patterns(search)
    matches: list[dict[str, Any]] = [{"search_name": {"$regex": text}}, {"search_email": {"$regex": text}}]
    if digits:
        matches.append({"search_phone": {"$regex": digits}})
    return matches


class ScopedLeads:
    """Reads of the views, always inside `scope` (from `scope_filter` or `realtor_filter`); `realtor`: the
    realtor reading them (None: a broker or admin), whom a row shows less (`views.shown_to_realtor`)."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], scope: dict[str, Any], *, realtor: str | None = None) -> None:
        self._db = db
        self._scope = scope
        self.realtor = realtor

    async def _views(self) -> tuple[Coll, Coll]:
        names = await active_names(self._db)
        return self._db[names.leads], self._db[names.timeline]

    async def find_page(self, query: LeadQuery, *, limit: int, after: tuple[int, str] | None) -> list[LeadRow]:
        field, direction = query.sort.field, DESCENDING if query.sort.descending else ASCENDING
        conditions = [self._scope, *query_filter(query)]
        order = [(field, direction), ("_id", direction)]
        if after is None:
            return await self._find(merge_conditions(conditions), order, limit)
        # The keyset "after (key, id)" as two flat queries rather than one $or (which
        # nx-27017 runs in Python over the whole collection): the rest of the rows tied on
        # `key`, then the rows beyond it. Concatenated they are in sort order.
        key, lead_id = after
        beyond = "$lt" if query.sort.descending else "$gt"
        ties = await self._ties(conditions, field, key, lead_id, beyond, order, limit)
        if len(ties) >= limit:
            return ties
        rest = await self._find(merge_conditions([*conditions, {field: {beyond: key}}]), order, limit - len(ties))
        return ties + rest

    async def _ties(
        self, conditions: list[dict[str, Any]], field: str, key: int, lead_id: str, beyond: str,
        order: list[tuple[str, int]], limit: int,
    ) -> list[LeadRow]:  # fmt: skip
        """The rows tied with the cursor on the sort key and past its id, read by the key alone with the ids compared
        here: nx-27017 does not serve a range on `_id` from SQL and matched every office's rows in Python for the
        usual 0 or 1 tied row (a small office's second page cost a scan of all tenants: helper 177). A key that
        TIES_READ rows share is asked with its `_id` range after all."""
        # A range on the sort key (a date range) holds for the key or for none of its ties: checked here, the ties
        # asked by the key alone (an equality beside a range on one field made an `$and`, read in Python).
        ranges = [c[field] for c in conditions if list(c) == [field] and _comparisons(c[field])]
        if not all(_within(key, bounds) for bounds in ranges):
            return []
        unranged = [c for c in conditions if not (list(c) == [field] and c[field] in ranges)]
        tied = await self._find(merge_conditions([*unranged, {field: key}]), order, TIES_READ)
        if len(tied) >= TIES_READ:
            return await self._find(
                merge_conditions([*conditions, {field: key, "_id": {beyond: lead_id}}]), order, limit
            )
        past = [row for row in tied if (row.lead_id < lead_id if beyond == "$lt" else row.lead_id > lead_id)]
        return past[:limit]

    async def _find(self, query: dict[str, Any], order: list[tuple[str, int]], limit: int) -> list[LeadRow]:
        # One query, however dear a realtor's `$or` is on nx-27017: asked a branch at a time, the branches read
        # different moments, and a lead claimed between two of them (offered -> held) was in none: a cursor walk
        # passed it for good (helper 166). A list's rows are one snapshot; only its poll's mark may be split.
        leads, _ = await self._views()
        return [LeadRow.from_doc(doc) async for doc in leads.find(query).sort(order).limit(limit)]

    async def get(self, lead_id: str) -> LeadRow | None:
        return _row(await self._scoped(lead_id))

    async def _scoped(self, lead_id: str) -> dict[str, Any] | None:
        """The lead's row if it is in the scope: read by its id alone and the scope matched here (`filter_match`:
        nx-27017 reads a realtor's `$or` scope over the whole collection), else by the database where that cannot
        tell."""
        leads, _ = await self._views()
        doc = await leads.find_one({"_id": lead_id})
        verdict = None if doc is None else matches(doc, self._scope)
        if verdict is None and doc is not None:
            return await leads.find_one(merge_conditions([self._scope, {"_id": lead_id}]))
        return doc if verdict else None

    async def change_mark(self) -> str:
        """Changes whenever a lead of the scope does: every projected event sets the row's `last_event_id`
        and moves its last activity forward, so the most recently active row tells (the web app's live pages)."""
        leads, _ = await self._views()
        # A realtor's `$or` asked one branch at a time: nx-27017 runs each flat branch in SQL, the `$or` in Python over
        # the whole collection (80-90 ms a poll at a few thousand leads). The union's most recent row is the most
        # recent of the branches' (one order, `_id` breaking ties). The branches may read different moments (a lead
        # moving from one to another meanwhile): the mark then changes once more than needed, or one poll late.
        docs = [
            doc
            for branch in or_branches(self._scope)
            for doc in await leads.find(branch, {"last_activity_ms": 1, "last_event_id": 1})
            .sort([("last_activity_ms", DESCENDING), ("_id", DESCENDING)])
            .limit(1)
            .to_list()
        ]
        if not docs:
            return ""
        top = max(docs, key=_recency)
        return _opaque(top["_id"], top.get("last_activity_ms"), top.get("last_event_id"))

    async def lead_mark(self, lead_id: str) -> str:
        """Changes whenever the lead's row or timeline does (a view adds to the timeline only)."""
        doc = await self._scoped(lead_id)
        if doc is None:
            return "gone"
        _, timeline = await self._views()
        # The entries' ids counted here, not by `count_documents`: that is an aggregation, which nx-27017 runs
        # outside SQL over the whole collection (hundreds of ms once it holds a few thousand entries), and every open
        # lead page asks this four times a second (`web/live.py`).
        entries = [entry async for entry in timeline.find({"lead_id": lead_id}, {"_id": 1})]
        return _opaque(doc.get("last_activity_ms"), doc.get("last_event_id"), len(entries))

    async def get_many(self, lead_ids: list[str]) -> dict[str, LeadRow]:
        """The rows of `lead_ids` in this scope, by id (missing ones are absent)."""
        query = merge_conditions([self._scope, {"_id": {"$in": lead_ids}}])
        leads, _ = await self._views()
        rows = [LeadRow.from_doc(doc) async for doc in leads.find(query)]
        return {row.lead_id: row for row in rows}

    async def matching(self, query: LeadQuery, limit: int) -> list[LeadRow]:
        """Up to `limit` rows the list `query` matches, oldest first (a stable order for a bulk action)."""
        conditions = merge_conditions([self._scope, *query_filter(query)])
        return await self._find(conditions, [("created_ms", ASCENDING), ("_id", ASCENDING)], limit)

    async def timeline(self, lead: LeadRow) -> list[TimelineEntry]:
        """The timeline of a lead this scope returned (pass `get`'s row, so the scope holds)."""
        _, timeline = await self._views()
        cursor = (
            # By lead only: a lead moved from another office (T2) keeps the timeline it had there.
            timeline.find({"lead_id": lead.lead_id})
            .sort([("occurred_ms", ASCENDING), ("_id", ASCENDING)])
            .limit(TIMELINE_LIMIT)
        )
        return [TimelineEntry.from_doc(doc) async for doc in cursor]

    async def race_entries(self, lead_ids: list[str]) -> dict[str, list[TimelineEntry]]:
        """The offer and holder entries (`views.RACE_ENTRIES`) of leads this scope returned, by lead id."""
        if not lead_ids:
            return {}
        _, timeline = await self._views()
        query = {"lead_id": {"$in": sorted(set(lead_ids))}, "type": {"$in": sorted(RACE_ENTRIES)}}
        found: dict[str, list[TimelineEntry]] = {}
        async for doc in timeline.find(query, {"lead_id": 1, "type": 1, "agent_id": 1, "occurred_ms": 1}):
            entry = TimelineEntry.from_doc(doc)
            found.setdefault(entry.lead_id, []).append(entry)
        return found

    async def record(self, entry: dict[str, Any]) -> None:
        async with writing(self._db, Write(lead_ids=(str(entry["lead_id"]),))) as names:
            with contextlib.suppress(DuplicateKeyError):
                await self._db[names.timeline].insert_one(entry)

    async def touch(self, lead_id: str, *, at: datetime, kind: str, by: str) -> None:
        """The row's last activity is this action (crm-api took it; the router's echo is not recorded)."""
        fields = {
            "last_activity_at": at,
            "last_activity_ms": epoch_ms(at),
            "last_activity_kind": kind,
            "last_activity_by": by,
            # No router version: a late event of this millisecond does not replace crm-api's own action.
            LAST_ACTIVITY_VERSION: None,
        }
        await self.set_profile(lead_id, fields)

    async def set_profile(self, lead_id: str, fields: dict[str, Any]) -> bool:
        """`$set` on a lead of this scope; False when it is not one.

        The scope is checked by a read, and the write filters by id and the office the read found the lead in:
        nx-27017 ignores `_id` in an update whose filter also holds `$or` (a realtor's scope does) and writes the
        first other lead the `$or` matches (tests/integration/test_mongo_conformance.py); a lead moved to another
        office between the two (T2) is not written (helper 122: the office left's users on the new office's lead).
        """
        async with writing(self._db, Write(lead_ids=(lead_id,))) as names:
            leads = self._db[names.leads]
            found = await leads.find_one(merge_conditions([self._scope, {"_id": lead_id}]), {"account_id": 1})
            if found is None:
                return False
            result = await leads.update_one({"_id": lead_id, "account_id": found["account_id"]}, {"$set": fields})
            return result.matched_count > 0


def offered_to(agent_id: str) -> dict[str, Any]:
    """Leads offered to the agent now. Inside an `$or`, as the realtor's scope has it: nx-27017 matches no
    element of the indexed `offered_to` array in a flat filter (tests/integration/test_mongo_conformance.py)."""
    return {"$or": [{"offered_to": agent_id}]}


async def pond_counts(
    db: AsyncDatabase[dict[str, Any]], account_id: str, agent_id: str | None, *, now: datetime
) -> dict[str, int]:
    """Pond id -> how many of the account's leads are in it (issue 15); with `agent_id`, only those it holds an
    open offer of there, its deadline after `now` (an offer past it is not claimable, though the router's sweeper
    may not have closed it yet). Whether the router lets the agent claim now is asked of it (`use_cases.ponds`).
    Counted here: nx-27017's `$match` misses array elements."""
    names = await active_names(db)
    # `$gt: ""`: a pond's id (text), never null or missing (MongoDB and nx-27017 agree; `$ne: null` differs).
    query: dict[str, Any] = {"account_id": account_id, "pond": {"$gt": ""}}
    if agent_id is not None:
        query |= offered_to(agent_id)
    counts: dict[str, int] = {}
    async for doc in db[names.leads].find(query, {"pond": 1, "open_offers": 1}):
        row = LeadRow.from_doc(doc)
        if row.pond is None:
            continue
        if agent_id is None or any(
            o.agent_id == agent_id and o.pond == row.pond and o.open_at(now) for o in row.open_offers
        ):
            counts[row.pond] = counts.get(row.pond, 0) + 1
    return counts


def _row(doc: dict[str, Any] | None) -> LeadRow | None:
    return None if doc is None else LeadRow.from_doc(doc)


def or_branches(scope: dict[str, Any]) -> list[dict[str, Any]]:
    """A filter with a top-level `$or` as the flat filters its branches make with the rest of it (their union is
    what it matches); any other filter as it is. A branch's field equal to a string is asked as `$in` of that one
    string, the same match in MongoDB: nx-27017 matches no element of an indexed array (`offered_to`) in a flat
    equality, but does in `$in` (tests/integration/test_crm_branch_reads.py)."""
    branches = scope.get("$or")
    if not isinstance(branches, list) or "$and" in scope:
        return [scope]
    rest = {key: value for key, value in scope.items() if key != "$or"}
    return [
        merge_conditions([rest, {k: {"$in": [v]} if isinstance(v, str) else v for k, v in branch.items()}])
        for branch in branches
    ]


def _recency(doc: dict[str, Any]) -> tuple[float, str]:
    """A row's place in a list sorted by last activity, newest first (a row without one sorts last, as in MongoDB)."""
    at = doc.get("last_activity_ms")
    return (float(at) if isinstance(at, int | float) else float("-inf"), str(doc["_id"]))


_COMPARISONS = frozenset({"$gt", "$gte", "$lt", "$lte"})


def _comparisons(value: Any) -> bool:
    """An operator document of comparisons only (`$gt`, `$gte`, `$lt`, `$lte`)."""
    return isinstance(value, dict) and bool(value) and set(value) <= _COMPARISONS


def _ranges_apart(one: Any, other: Any) -> bool:
    """Both documents of comparisons, none the same: one AND the other is both in one document."""
    return _comparisons(one) and _comparisons(other) and not set(one) & set(other)


def _within(value: Any, bounds: dict[str, Any]) -> bool:
    """Whether `value` meets every comparison of `bounds` (`$gt`, `$gte`, `$lt`, `$lte`)."""
    tests = {"$gt": lambda b: value > b, "$gte": lambda b: value >= b, "$lt": lambda b: value < b,
             "$lte": lambda b: value <= b}  # fmt: skip
    return all(tests[op](bound) for op, bound in bounds.items())


def merge_conditions(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """AND the conditions as one flat filter where their keys allow, `$and` for the rest.

    Same meaning either way; a flat filter is what nx-27017 can turn into SQL (its `$and`
    scans and sorts the whole collection in Python: docs/performance.md, crm-api).
    """
    merged: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for condition in conditions:
        clash = [key for key in condition if key in merged]
        if not clash:
            merged.update(condition)
        elif all(_ranges_apart(merged[key], condition[key]) for key in clash):
            # Two ranges on one field (a date range and a cursor's bound) as one: `{f: {$gte: a, $lt: b}}` is
            # what nx-27017 serves from SQL, where an `$and` of them read every tenant's rows (helper 177).
            merged.update(
                {key: {**merged[key], **value} if key in clash else value for key, value in condition.items()}
            )
        else:
            rest.append(condition)
    # A condition's own `$and` kept beside the ones added (helper 166: it was overwritten).
    return {**merged, "$and": [*merged.get("$and", []), *rest]} if rest else merged
