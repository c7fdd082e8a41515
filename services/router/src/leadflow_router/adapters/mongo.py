"""MongoDB adapters of the router: account snapshots, routing records, contacts, rotation cursors.

Collections (docs/account-config.md): accounts and agents (configuration, read only
here), router_leads (one routing record per lead, with its outbox), router_outboxes (a batch of
new leads' outboxes until they are published, decision 0068), router_contacts
(email/phone -> lead, for R1), router_rotations (one cursor per lead source), router_erasures
(one record per erasure request, decision 0050).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from leadflow_router.adapters.codec import decode_outbox, decode_record, encode_outbox, encode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.availability import Place
from leadflow_router.domain.contacts import ERASED_KEEP, contact_keys, erased_id
from leadflow_router.domain.erasure import ErasureRequest, Listing, PendingContacts
from leadflow_router.domain.model import (
    AccountSnapshot,
    Agent,
    LeadSourceConfig,
    PauseWindow,
    SourceKind,
)
from leadflow_router.domain.record import Outbox, OutboxDocument, RoutingRecord, Take, Taken
from leadflow_shared.account_config import RoutingFields, pause_windows, time_zone_of
from leadflow_shared.availability import availability_of, holidays_of
from leadflow_shared.collections import (
    ACCOUNTS,
    AGENTS,
    ROUTER_CAPACITY,
    ROUTER_CONTACTS,
    ROUTER_ERASURES,
    ROUTER_LEADS,
    ROUTER_OUTBOXES,
    ROUTER_ROTATIONS,
)
from leadflow_shared.routing_rules import RuleSet, rule_set_of
from leadflow_shared.ttl_cache import TtlCache

Doc = dict[str, Any]
DUPLICATE_KEY = 11000  # MongoDB's error code for an existing _id
# An outbox document stays well under MongoDB's 16 MB: a batch's outboxes take several when they are large
# (a pond's lead is offered to each of its agents: one LeadOffered each).
OUTBOX_DOC_BYTES = 4_000_000
# A routing record this version cannot read is set aside this long by the reads the sweeper makes (decision 0091).
SET_ASIDE_SECONDS = 60
# A pending hold a crash left (its decider died between holding and storing) counts this long, then is forgotten:
# far longer than a change takes to be stored, short enough that an agent is not kept from leads for long.
PENDING_KEEP = timedelta(minutes=10)

log = logging.getLogger(__name__)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    # No index names _id (nx-27017 defect, docs/decisions/0004); deadlines are epoch ms.
    await db[ROUTER_LEADS].create_index([("next_deadline_ms", ASCENDING)], name="due")
    await db[ROUTER_LEADS].create_index([("outbox_since_ms", ASCENDING)], name="unpublished")
    await db[ROUTER_OUTBOXES].create_index([("since_ms", ASCENDING)], name="unpublished")
    await db[ROUTER_CONTACTS].create_index([("lead_id", ASCENDING)], name="by_lead")  # a moving lead's keys (T2)
    # An erased contact's marks (decision 0106) go after ERASED_KEEP; the keys themselves have no `forget_at`.
    await db[ROUTER_CONTACTS].create_index([("forget_at", ASCENDING)], name="forget_erased", expireAfterSeconds=0)
    await db[ROUTER_CAPACITY].create_index([("lead_id", ASCENDING)], name="by_lead")
    await db[ROUTER_CAPACITY].create_index(
        [("account_id", ASCENDING), ("agent_id", ASCENDING), ("at_ms", ASCENDING)], name="by_agent"
    )
    await db[ROUTER_CAPACITY].create_index([("pending_until", ASCENDING)], name="forget_pending", expireAfterSeconds=0)


class AccountSnapshots:
    """Account configuration as a routing snapshot, cached briefly: it changes rarely, leads come often."""

    def __init__(self, db: AsyncDatabase[Doc], ttl_seconds: float = 5.0) -> None:
        self._db = db
        self._cache: TtlCache[str, AccountSnapshot | None] = TtlCache(ttl_seconds)

    async def get(self, account_id: str, *, fresh: bool = False) -> AccountSnapshot | None:
        """The account's snapshot, from the cache unless it is older than the TTL or `fresh` is asked."""
        return await self._cache.get_or_load(account_id, lambda: self._load_one(account_id), fresh=fresh)

    async def get_many(self, account_ids: Iterable[str]) -> dict[str, AccountSnapshot | None]:
        """Each account's snapshot, from the cache; those it does not hold read together: one query of the
        accounts and one of their agents, however many accounts (a batch of many offices' leads)."""
        return await self._cache.get_many_or_load(account_ids, self._load)

    async def _load_one(self, account_id: str) -> AccountSnapshot | None:
        return (await self._load([account_id]))[account_id]

    async def _load(self, account_ids: list[str]) -> dict[str, AccountSnapshot | None]:
        accounts = {a["_id"]: a async for a in self._db[ACCOUNTS].find({"_id": {"$in": account_ids}})}
        rosters = {account_id: RoutingFields.of(account).roster for account_id, account in accounts.items()}
        wanted = sorted({agent_id for roster in rosters.values() for agent_id in roster})
        agents = {a["_id"]: a async for a in self._db[AGENTS].find({"_id": {"$in": wanted}})} if wanted else {}
        return {
            account_id: _snapshot(accounts[account_id], _members(rosters[account_id], agents, account_id))
            if account_id in accounts
            else None
            for account_id in account_ids
        }


def _members(roster: Iterable[str], agents: dict[str, Doc], account_id: str) -> list[Doc]:
    """The roster's agents whose record is of this account: a roster still naming an agent who moved to another
    office (crm-api moves the record before it pulls the roster place) never routes this account's leads there."""
    return [agents[i] for i in roster if i in agents and agents[i].get("account_id") == account_id]


def _snapshot(account: Doc, agents: list[Doc]) -> AccountSnapshot:
    sources = {s["name"]: _source(s) for s in account.get("sources", [])}
    default = _source({"name": "default", **account.get("default_source", {})})
    routing = RoutingFields.of(account)
    rules = rule_set_of(account)  # None: stored rules that cannot be read; the default routes meanwhile
    return AccountSnapshot(
        account_id=account["_id"],
        name=account["name"],
        roster=tuple(_agent(a) for a in agents),
        round_robin=routing.round_robin,
        time_zone=time_zone_of(account),  # missing or unknown: UTC, never a lead that cannot be timed
        sources=sources,
        default_source=default,
        pause=tuple(PauseWindow(frozenset(w.weekdays), w.start, w.end) for w in pause_windows(account)),
        departed_agent_leads=routing.departed_agent_leads,
        allow_direct_to_user=routing.allow_direct_to_user,
        rules=rules or RuleSet(),
        rules_unreadable=rules is None,
        holidays=holidays_of(account),
    )


def _agent(doc: Doc) -> Agent:
    return Agent(
        agent_id=doc["_id"],
        name=doc["name"],
        active=doc.get("active", True),
        invitation_accepted=doc.get("invitation_accepted", True),
        round_robin=doc.get("round_robin", True),
        offices=frozenset(doc.get("offices", [])),
        lead_groups=frozenset(doc.get("lead_groups", [])),
        site_hosts=frozenset(h.lower() for h in doc.get("site_hosts", [])),
        time_zone=time_zone_of(doc),
        availability=availability_of(doc),
    )


def _source(doc: Doc) -> LeadSourceConfig:
    return LeadSourceConfig(
        name=doc["name"],
        kind=SourceKind(doc.get("kind", "general")),
        lead_group=doc.get("lead_group"),
        offices=frozenset(doc.get("offices", [])),
        race_count=int(doc.get("race_count", 1)),
        claim_window=timedelta(seconds=doc.get("claim_window_seconds", 900)),
        referral_fee_percent=float(doc.get("referral_fee_percent", 0.0)),
        auto_accept=bool(doc.get("auto_accept", True)),
        direct_period=timedelta(seconds=doc.get("direct_period_seconds", 900)),
    )


class LeadRecords:
    """Routing records (`RoutingRecord`, stored as `codec.encode_record` documents): every change is a
    compare-and-set on `version`."""

    _unreadable: Counter | None = None  # router_unreadable_records_total, by read

    def __init__(self, db: AsyncDatabase[Doc], *, unreadable: Counter | None = None) -> None:
        self._leads = db[ROUTER_LEADS]
        self._outboxes = db[ROUTER_OUTBOXES]
        self._unreadable = unreadable

    async def get(self, lead_id: str) -> RoutingRecord | None:
        doc = await self._leads.find_one({"_id": lead_id})
        return None if doc is None else decode_record(doc)

    async def get_many(self, lead_ids: list[str]) -> dict[str, RoutingRecord]:
        if not lead_ids:
            return {}
        return {doc["_id"]: decode_record(doc) async for doc in self._leads.find({"_id": {"$in": lead_ids}})}

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        """Insert a batch of new records whose outboxes wait in outbox documents (`router_outboxes`,
        decision 0068), written first; each record is stored with an empty outbox naming its document.
        Once published, `end_batch` drops the documents: one delete instead of a write per record.

        `before_records` is awaited between the two: what it reads is read after the documents are there for an
        erasure to find (decision 0050). If it raises, the documents are dropped and no record is stored.

        Returns what is stored under the records' ids (each of these records, with its outbox and its
        document's id; or one stored before: a redelivery, a replica racing) and the documents' ids.
        """
        if not records:
            return [], []
        chunks = _outbox_chunks(records, batch_id)
        await self._outboxes.insert_many(
            [{"_id": doc_id, "since_ms": now_ms, "leads": [{"lead_id": r.lead_id, **encode_outbox(r.outbox)}
                                                          for r in chunk]} for doc_id, chunk in chunks]
        )  # fmt: skip
        pointed = [replace(r, outbox=replace(r.outbox, batch=doc_id)) for doc_id, chunk in chunks for r in chunk]
        docs = [encode_record(replace(r, outbox=Outbox(batch=r.outbox.batch))) for r in pointed]
        doc_ids = [doc_id for doc_id, _ in chunks]
        if before_records is not None:
            try:
                await before_records()
            except BaseException:
                await self.end_batch(doc_ids)
                raise
        try:
            await self._leads.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise  # a record not stored must not count as routed: the batch runs again
            stored = await self.get_many([r.lead_id for r in pointed])
            mine = [r if stored[r.lead_id].outbox.batch == r.outbox.batch else stored[r.lead_id] for r in pointed]
            return mine, doc_ids
        return pointed, doc_ids

    async def end_batch(self, doc_ids: list[str]) -> None:
        """Drop outbox documents whose events are published and effects applied."""
        if doc_ids:
            await self._outboxes.delete_many({"_id": {"$in": doc_ids}})

    async def batch_outboxes(self, doc_ids: list[str]) -> dict[str, OutboxDocument]:
        """The outbox documents among `doc_ids` that are still there, by id."""
        if not doc_ids:
            return {}
        found: dict[str, OutboxDocument] = {}
        async for doc in self._outboxes.find({"_id": {"$in": doc_ids}}):
            leads = [item for item in doc.get("leads") or () if isinstance(item, dict) and "lead_id" in item]
            outboxes = {str(item["lead_id"]): decode_outbox(item | {"batch": doc["_id"]}) for item in leads}
            found[doc["_id"]] = OutboxDocument(int(doc.get("since_ms") or 0), outboxes)
        return found

    async def stale_batches(self, before_ms: int, limit: int) -> list[str]:
        """Outbox documents written before `before_ms` and still there (a crash left them), the oldest first: those
        kept while a lead they list has no record yet (up to ORPHAN_BATCH_SECONDS) are dropped when they are orphans,
        so however many are kept, each pass reaches the oldest and the read moves on (helper 88)."""
        query = self._outboxes.find({"since_ms": {"$lte": before_ms}}, {"_id": 1})
        cursor = query.sort("since_ms", ASCENDING).limit(limit)
        return [doc["_id"] async for doc in cursor]

    async def compare_and_set(self, record: RoutingRecord, expected_version: int) -> bool:
        doc = encode_record(record)
        result = await self._leads.replace_one({"_id": record.lead_id, "version": expected_version}, doc)
        return result.matched_count == 1

    async def mark_flushed(self, records: list[RoutingRecord]) -> None:
        """Clear the outboxes just published, unless a newer change (which carries them) replaced them."""
        by_version: dict[int, list[str]] = {}
        for record in records:
            by_version.setdefault(record.version, []).append(record.lead_id)
        cleared: Doc = {"outbox": [], "effects": {}, "outbox_since_ms": None}
        if any(record.outbox.keys for record in records):  # only after a transfer (T2)
            cleared["outbox_keys"] = None
        for version, ids in by_version.items():
            await self._leads.update_many({"_id": {"$in": ids}, "version": version}, {"$set": cleared})

    async def of_agent(self, account_id: str, agent_id: str) -> list[RoutingRecord]:
        """The account's leads `agent_id` holds or has an open offer on (`open_to`, see codec); also any
        offered record written before `open_to` existed (the caller decides on the decoded state)."""
        mine = [{"holder": agent_id}, {"open_to": agent_id}, {"status": "offered", "open_to": {"$exists": False}}]
        query = {"account_id": account_id, "kind": "lead", "$or": mine}
        return [decode_record(doc) async for doc in self._leads.find(query)]

    async def due(self, now_ms: int, limit: int) -> list[RoutingRecord]:
        """The most overdue records, oldest deadline first; one this version cannot read is set aside (`_readable`)."""
        cursor = self._leads.find({"next_deadline_ms": {"$lte": now_ms}}).sort("next_deadline_ms", ASCENDING)
        docs = [doc async for doc in cursor.limit(limit)]
        return await self._readable(docs, "due", "next_deadline_ms", now_ms)

    async def postpone(self, lead_id: str, *, expected_version: int, until_ms: int) -> None:
        """Make an unchanged record due again at `until_ms` (a deadline the sweeper could not fire, decision 0077)."""
        await self._leads.update_one(
            {"_id": lead_id, "version": expected_version}, {"$set": {"next_deadline_ms": until_ms}}
        )

    async def next_deadline_ms(self, after_ms: int) -> int | None:
        """The earliest deadline later than `after_ms`, if any record has one."""
        cursor = self._leads.find({"next_deadline_ms": {"$gt": after_ms}}, {"next_deadline_ms": 1})
        async for doc in cursor.sort("next_deadline_ms", ASCENDING).limit(1):
            return int(doc["next_deadline_ms"])
        return None

    async def unflushed(self, before_ms: int, limit: int) -> list[RoutingRecord]:
        """Records whose outbox waits since `before_ms` or earlier; one this version cannot read is set aside."""
        cursor = self._leads.find({"outbox_since_ms": {"$lte": before_ms}}).limit(limit)
        return await self._readable([doc async for doc in cursor], "unflushed", "outbox_since_ms", before_ms)

    async def readable_many(self, lead_ids: list[str], read: str = "batch") -> dict[str, RoutingRecord]:
        """`get_many` for reads that may go around a record this version cannot read (decision 0091): it is left
        out, counted (`read`) and logged by lead id (`_readable`). `batch`: the finishing of outbox documents a crash
        left (decision 0068): as if not stored yet, so the document's other leads are published and the document
        waits until it is an orphan. `contacts`: the earlier leads of a new lead's contact (R1): as unknown."""
        if not lead_ids:
            return {}
        docs = [doc async for doc in self._leads.find({"_id": {"$in": lead_ids}})]
        return {record.lead_id: record for record in await self._readable(docs, read)}

    async def _readable(
        self, docs: list[Doc], read: str, field: str | None = None, cutoff_ms: int = 0
    ) -> list[RoutingRecord]:
        """The records of `docs` this version can read, each decoded alone (decision 0091).

        One it cannot (written by a newer version during a rolling upgrade or after a rollback, or damaged) is
        left out; with a `field`, set aside too: its `field`, at or before `cutoff_ms` when read, moves
        SET_ASIDE_SECONDS later, so it heads no pass and holds up no other record (as decision 0077's postponed
        deadlines). It is counted and logged by lead id and exception type only: the message of a decoding error
        quotes the document (a phone)."""
        records = []
        for doc in docs:
            try:
                records.append(decode_record(doc))
            except Exception as exc:  # noqa: BLE001 (whatever the codec raises: pydantic's, a KeyError, a TypeError)
                if field is not None:
                    await self._set_aside(doc.get("_id"), field, cutoff_ms, cutoff_ms + SET_ASIDE_SECONDS * 1000)
                if self._unreadable is not None:
                    self._unreadable.labels(read).inc()
                log.error(
                    "routing record unreadable by this version (%s): left out%s",
                    type(exc).__name__,
                    "" if field is None else f", set aside for {SET_ASIDE_SECONDS} s",
                    extra={"lead_id": str(doc.get("_id")), "read": read, "error_type": type(exc).__name__},
                )
        return records

    async def _set_aside(self, lead_id: object, field: str, cutoff_ms: int, until_ms: int) -> None:
        """Move the record's `field` to `until_ms`, unless it changed since it was read (no longer due)."""
        await self._leads.update_one({"_id": lead_id, field: {"$lte": cutoff_ms}}, {"$set": {field: until_ms}})

    async def pending_contacts(self) -> PendingContacts:
        """The outboxes not applied yet that register contact keys (`PendingContacts`, decision 0050): every outbox
        document (only those in flight or left by a crash exist; nx-27017 matches no field of an array inside an
        array's items) and the records with an outbox (the `unpublished` index), one read of each."""
        documents = [doc async for doc in self._outboxes.find({}, {"leads": 1, "since_ms": 1})]
        records = [doc async for doc in self._leads.find({"outbox_since_ms": {"$gte": 0}}, {"effects": 1})]
        return pending_of(documents, records)

    async def erase_unstored(self, lead_ids: list[str], account_id: str) -> list[str]:
        """Store an erased placeholder under each of `lead_ids` that has no record yet (decision 0068, helper 94): a
        record with no state (as a merged repeat's), naming no outbox document, `erased`. Returns those stored here;
        the others' records were stored meanwhile. The insert is the compare-and-set on "no record yet": the batch's
        writer (stalled), a redelivery or a sweeper then finds it stored and publishes nothing of the lead from its
        document or its memory (`_finish_batches` publishes only a record naming the document)."""
        placed = []
        for lead_id in lead_ids:
            placeholder = RoutingRecord(lead_id, account_id, version=1, state=None, correlation_id=lead_id)
            try:
                await self._leads.insert_one(encode_record(placeholder) | {"erased": True})
            except DuplicateKeyError:
                continue
            placed.append(lead_id)
        return placed

    async def drop_from_batches(self, lead_ids: list[str], doc_ids: list[str]) -> None:
        """Take `lead_ids`' outboxes out of these outbox documents (their events carry an erased contact): the whole
        `leads` array is set again (decision 0004), by compare-and-set on the document's `rev`, so two erasures of
        leads in one document both hold."""
        gone = set(lead_ids)
        for doc_id in doc_ids:
            for _ in range(10):
                doc = await self._outboxes.find_one({"_id": doc_id})
                if doc is None:
                    break
                leads = [i for i in doc.get("leads") or () if not (isinstance(i, dict) and i.get("lead_id") in gone)]
                rev = int(doc.get("rev") or 0)
                same = {"_id": doc_id, "rev": rev} if rev else {"_id": doc_id, "rev": {"$exists": False}}
                result = await self._outboxes.update_one(same, {"$set": {"leads": leads, "rev": rev + 1}})
                if result.matched_count == 1:
                    break
            else:
                raise RuntimeError(f"outbox document {doc_id} kept changing")


def pending_of(documents: Iterable[Doc], records: Iterable[Doc]) -> PendingContacts:
    """`PendingContacts` of these outbox documents and of these records' outboxes (`effects`)."""
    registers: dict[str, tuple[str, frozenset[str]]] = {}
    listed: dict[str, tuple[Listing, ...]] = {}
    for doc in documents:
        for item in doc.get("leads") or ():
            if isinstance(item, dict) and "lead_id" in item:
                lead_id = str(item["lead_id"])
                listing = Listing(str(doc["_id"]), int(doc.get("since_ms") or 0), _account_of(item.get("events")))
                listed[lead_id] = (*listed.get(lead_id, ()), listing)
                registers |= _registering(lead_id, item.get("effects"))
    for doc in records:
        registers |= _registering(str(doc["_id"]), doc.get("effects"))
    return PendingContacts(registers, listed)


def _account_of(events: Any) -> str | None:
    """The account the first of an outbox's serialized events names (a new lead's events are its account's)."""
    try:
        account = json.loads(events[0]).get("account_id")
    except (TypeError, IndexError, KeyError, ValueError, AttributeError):
        return None
    return account if isinstance(account, str) else None


class Contacts:
    """Normalized email and phone -> lead, per account (R1)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._contacts = db[ROUTER_CONTACTS]

    keys = staticmethod(contact_keys)  # kept here too: the keys are this collection's ids

    async def of_lead(self, lead_id: str) -> list[str]:
        """Every key that points at `lead_id`: its first email and phone, and those of its repeats (R1)."""
        return sorted([doc["_id"] async for doc in self._contacts.find({"lead_id": lead_id}, {"_id": 1})])

    async def find(self, keys: list[str]) -> dict[str, str]:
        """key -> lead id, for the keys that are known."""
        if not keys:
            return {}
        return {doc["_id"]: str(doc["lead_id"]) async for doc in self._contacts.find({"_id": {"$in": keys}})}

    async def find_with_erasures(self, keys: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        """key -> lead id for the keys that are known, and erased id -> when it was erased for those whose contact
        an erasure named (decision 0106): the marks live beside the keys, so a batch reads both in one command."""
        if not keys:
            return {}, {}
        known: dict[str, str] = {}
        erased: dict[str, int] = {}
        async for doc in self._contacts.find({"_id": {"$in": [*keys, *map(erased_id, keys)]}}):
            if "erased_ms" in doc:
                erased[doc["_id"]] = int(doc["erased_ms"])
            elif "lead_id" in doc:
                known[doc["_id"]] = str(doc["lead_id"])
        return known, erased

    async def mark_erased(self, erased_ids: list[str], erased_ms: int) -> None:
        """Remember that the contacts of these keys were erased at `erased_ms`, for ERASED_KEEP (a TTL index); a
        later erasure of the same contact moves the time on. Two commands: nx-27017's upserts ignore the filter's
        id (decision 0004)."""
        if not erased_ids:
            return
        until = datetime.now(UTC) + ERASED_KEEP
        marks = [{"_id": i, "erased_ms": erased_ms, "forget_at": until} for i in erased_ids]
        try:
            await self._contacts.insert_many(marks, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise
        await self._contacts.update_many(
            {"_id": {"$in": erased_ids}}, {"$max": {"erased_ms": erased_ms, "forget_at": until}}
        )

    async def register(self, lead_by_key: dict[str, str]) -> None:
        if not lead_by_key:
            return
        docs = [{"_id": key, "lead_id": lead_id} for key, lead_id in lead_by_key.items()]
        try:
            await self._contacts.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise  # a key not written must keep its record's outbox pending (R1 depends on it)
            # Duplicates: the first lead with this email/phone keeps it.

    async def forget(self, lead_id: str, keys: list[str]) -> None:
        """Drop `keys` where they still point at `lead_id` (a lead that left the account: T2)."""
        if keys:
            await self._contacts.delete_many({"_id": {"$in": keys}, "lead_id": lead_id})

    async def forget_leads(self, lead_ids: list[str]) -> None:
        """Drop every key that points at these leads: their contact was erased (decision 0050), so its
        next inquiry is a new lead."""
        if lead_ids:
            await self._contacts.delete_many({"lead_id": {"$in": lead_ids}})


def _registering(owner: str, effects: Doc | None) -> dict[str, tuple[str, frozenset[str]]]:
    """{owner: (the lead its outbox registers contact keys for, the keys)}, if it registers any."""
    effects = effects or {}
    registers = frozenset(effects.get("contacts") or ())
    return {owner: (str(effects.get("contacts_lead") or owner), registers)} if registers else {}


def _outbox_chunks(records: list[RoutingRecord], batch_id: str) -> list[tuple[str, list[RoutingRecord]]]:
    """The records in runs whose outboxes fit one outbox document, each run with its document's id."""
    chunks: list[tuple[str, list[RoutingRecord]]] = []
    size = OUTBOX_DOC_BYTES
    for record in records:
        cost = 512 + sum(len(event) for event in record.outbox.events)
        if size + cost > OUTBOX_DOC_BYTES:
            chunks.append((f"{batch_id}/{len(chunks)}", []))
            size = 0
        chunks[-1][1].append(record)
        size += cost
    return chunks


def _only_duplicates(exc: BulkWriteError) -> bool:
    """Whether every write of a failed bulk insert failed for an existing _id alone."""
    details = exc.details
    return not details.get("writeConcernErrors") and all(
        error.get("code") == DUPLICATE_KEY for error in details.get("writeErrors", [])
    )


class Erasures:
    """`router_erasures`: one document per erasure request (`_id` = the EraseContact's event id), the audit
    trail of erasures: the account, the leads it resolved to, who asked, the ticket, when it was asked
    and done (epoch ms). It holds no personal data; the email and phone it was asked for are not kept.
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._erasures = db[ROUTER_ERASURES]

    async def get(self, erasure_id: str) -> ErasureRequest | None:
        doc = await self._erasures.find_one({"_id": erasure_id})
        return None if doc is None else _erasure(doc)

    async def start(self, request: ErasureRequest) -> ErasureRequest:
        """Store a request resolved to its leads; a request stored before (a redelivery) wins."""
        try:
            await self._erasures.insert_one({
                "_id": request.erasure_id, "account_id": request.account_id, "lead_ids": list(request.lead_ids),
                "by_user_id": request.by_user_id, "reason": request.reason, "requested_ms": request.requested_ms,
                "status": "done" if request.done else "started", "contact_ids": list(request.contact_ids),
            })  # fmt: skip
        except DuplicateKeyError:
            stored = await self.get(request.erasure_id)
            assert stored is not None  # noqa: S101 (the duplicate key proves it exists)
            return stored
        return request

    async def finish(self, erasure_id: str, *, done_ms: int) -> None:
        """Done: the contact's key hashes go (a done erasure is not run again; the marks in the contact index hold
        for their 31 days): the audit record keeps nothing a phone number can be guessed back from (helper 173)."""
        await self._erasures.update_one(
            {"_id": erasure_id}, {"$set": {"status": "done", "done_ms": done_ms}, "$unset": {"contact_ids": ""}}
        )


def _erasure(doc: Doc) -> ErasureRequest:
    return ErasureRequest(
        erasure_id=str(doc["_id"]),
        account_id=doc["account_id"],
        lead_ids=tuple(doc.get("lead_ids") or ()),
        by_user_id=doc.get("by_user_id", ""),
        reason=doc.get("reason", ""),
        requested_ms=doc.get("requested_ms"),
        done=doc.get("status") == "done",
        done_ms=doc.get("done_ms"),
        contact_ids=tuple(doc.get("contact_ids") or ()),
    )


class Rotations:
    """Rotation cursors (per lead source, per routing rule) and balanced rotations' lead counts
    (per rule and agent): they only grow, so replaying an update is harmless."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._rotations = db[ROUTER_ROTATIONS]

    async def get(self, key: str) -> int:
        doc = await self._rotations.find_one({"_id": key})
        return 0 if doc is None else int(doc["position"])

    async def get_many(self, keys: list[str]) -> dict[str, int]:
        """Each key's position (0 when it has none), in one query."""
        found = {doc["_id"]: int(doc["position"]) async for doc in self._rotations.find({"_id": {"$in": keys}})}
        return {key: found.get(key, 0) for key in keys}

    async def advance(self, key: str, position: int) -> None:
        await self.advance_many({key: position})

    async def rule_keys(self) -> list[str]:
        """The keys of routing rules' cursors and counts (`<account>:rule:<rule id>[@<agent>]`), read by id alone
        (a cursor per source and rule: a small collection; nx-27017 is not asked for a pattern)."""
        return [key async for doc in self._rotations.find({}, {"_id": 1}) if ":rule:" in (key := str(doc["_id"]))]

    async def drop(self, keys: list[str]) -> None:
        """Remove these cursors and counts (their rule was deleted)."""
        if keys:
            await self._rotations.delete_many({"_id": {"$in": keys}})

    async def read_many(self, keys: list[str]) -> dict[str, Taken]:
        """Each key's position (0 when it has none) with its last take, in one query."""
        found = {doc["_id"]: doc async for doc in self._rotations.find({"_id": {"$in": keys}})}
        return {key: _taken(found.get(key)) for key in keys}

    async def take(self, moves: dict[str, Take]) -> set[str]:
        """Move each key from where it stood when read (`Take.expected`) to `Take.to`, in one command, unless it moved
        since (a turn another decider took meanwhile, or a deleted rule's key dropped: those keys are returned, lost,
        and left as they are); the take is noted on the key (its start and leads). Only a key read at 0 may have no
        document: it is created, unless another decider created it first. Each key is taken on its own: the caller
        gives back those taken when one is lost (`RouterService._reserve`)."""
        if not moves:
            return set()
        keys, by = list(moves), uuid.uuid4().hex  # `by`: this take's, to tell its writes from another's
        ups = [UpdateOne({"_id": key, "position": moves[key].expected}, {"$set": _take_fields(moves[key], by)},
                         upsert=moves[key].expected == 0) for key in keys]  # fmt: skip
        lost: set[str] = set()
        try:
            result = await self._rotations.bulk_write(ups, ordered=False)
            taken = result.matched_count + result.upserted_count
        except BulkWriteError as exc:
            if not _only_duplicates(exc):
                raise
            # The filter missed (moved since): the upsert's insert met the key's document.
            lost = {keys[error["index"]] for error in exc.details["writeErrors"]}
            taken = int(exc.details.get("nMatched", 0)) + int(exc.details.get("nUpserted", 0))
        if taken + len(lost) < len(keys):  # an update without upsert matched nothing: read which
            left = [key for key in keys if key not in lost]
            query = {"_id": {"$in": left}, "taken.by": by}
            mine = {doc["_id"] async for doc in self._rotations.find(query, {"_id": 1})}
            lost |= set(left) - mine
        return lost

    async def advance_many(self, positions: dict[str, int]) -> None:
        """Move each key at least as far as its position, in one command (`$max`, created when missing)."""
        if not positions:
            return
        ups = [UpdateOne({"_id": key}, {"$max": {"position": p}}, upsert=True) for key, p in positions.items()]
        await _upsert_max(self._rotations, ups)


async def _upsert_max(collection: AsyncCollection[Doc], ups: list[UpdateOne]) -> None:
    """`$max` upserts in one command; those whose document another writer created at the same moment (a duplicate
    key) again, once: the document exists now, so `$max` applies."""
    try:
        await collection.bulk_write(ups, ordered=False)
    except BulkWriteError as exc:
        if not _only_duplicates(exc):
            raise
        await collection.bulk_write([ups[error["index"]] for error in exc.details["writeErrors"]])


def _take_fields(take: Take, by: str) -> Doc:
    leads = [list(lead) for lead in take.leads]
    return {"position": take.to, "taken": {"start": take.start, "to": take.to, "leads": leads, "by": by}}


def _taken(doc: Doc | None) -> Taken:
    if doc is None:
        return Taken(0)
    position, taken = int(doc["position"]), doc.get("taken")
    if not isinstance(taken, dict) or taken.get("to") != position:  # none, or moved since by `advance_many`
        return Taken(position)
    start = taken.get("start")
    leads = tuple((str(lead), int(at)) for lead, at in taken.get("leads") or ())
    return Taken(position, int(start) if isinstance(start, int) else None, leads)


class Capacity:
    """The leads each agent counts against its caps (issue 15): one document per lead and agent, from
    the moment the lead is offered to the agent until it no longer counts (`hold_many` replaces a lead's set);
    beside them, while a change is being stored, its decider's pending holds (`pend`: one document per lead,
    agent and decider, dropped by that decider alone; one a crash left is forgotten after `PENDING_KEEP`)."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._held = db[ROUTER_CAPACITY]

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        """Each agent's leads counted from `since_ms` on, pending ones included, with their places in its line: a
        lead once per agent (held for good before pending; pending, its first decider by `Place.rank`)."""
        found: dict[str, dict[str, Place]] = {agent_id: {} for agent_id in agent_ids}
        query = {"account_id": account_id, "agent_id": {"$in": agent_ids}, "at_ms": {"$gte": since_ms}}
        async for doc in self._held.find(query, {"lead_id": 1, "agent_id": 1, "at_ms": 1, "by": 1}):
            line, lead_id = found.setdefault(doc["agent_id"], {}), doc["lead_id"]
            place = Place(int(doc["at_ms"]), doc.get("by"))
            if lead_id not in line or place.rank(lead_id) < line[lead_id].rank(lead_id):
                line[lead_id] = place
        return found

    async def pend(self, by: str, holds: list[tuple[str, str, tuple[str, ...]]], at_ms: int) -> None:
        """The decider `by`'s pending holds: each lead counts against these agents too until `unpend`."""
        until = datetime.now(UTC) + PENDING_KEEP  # real time, as the TTL index reads it
        docs = [
            {"_id": f"{lead_id}|{agent_id}|{by}", "lead_id": lead_id, "account_id": account_id, "agent_id": agent_id,
             "at_ms": at_ms, "by": by, "pending_until": until}
            for lead_id, account_id, agent_ids in holds for agent_id in agent_ids
        ]  # fmt: skip
        if docs:
            await self._insert_new(docs)

    async def unpend(self, by: Collection[str], lead_ids: Collection[str]) -> None:
        """Drop the pending holds of the deciders `by` on the leads `lead_ids` (found by lead: indexed)."""
        if by and lead_ids:
            await self._held.delete_many({"lead_id": {"$in": sorted(lead_ids)}, "by": {"$in": sorted(by)}})

    async def hold_many(self, holds: list[tuple[str, str, tuple[str, ...], int]], at_ms: int) -> None:
        """Each (lead, account, agents, version): the lead now counts against exactly these agents, as its record's
        `version` says (those already counted keep their time); a lead named twice, the last. A lead whose count a
        later version wrote already is left as it is: a flush that stalled while another change of the lead was
        stored and flushed does not write an older count over it (helper 161). One read, one write of the leads'
        versions (a document per lead, `<lead>|`, counting against nobody), at most one delete and one insert.
        Pending holds are not touched: only their deciders drop them."""
        if not holds:
            return
        wanted = {lead_id: (account_id, agent_ids, version) for lead_id, account_id, agent_ids, version in holds}
        stored: dict[str, dict[str, str]] = {}
        newest: dict[str, int] = {}
        query = {"lead_id": {"$in": list(wanted)}, "by": None}
        async for doc in self._held.find(query, {"lead_id": 1, "agent_id": 1, "v": 1}):
            if doc.get("agent_id") is None:  # the lead's version document
                newest[doc["lead_id"]] = int(doc.get("v") or 0)
            else:
                stored.setdefault(doc["lead_id"], {})[doc["agent_id"]] = doc["_id"]
        # Not a lead a later version wrote; nor one that counts against nobody and never did (nothing to write).
        wanted = {lead_id: w for lead_id, w in wanted.items() if newest.get(lead_id, 0) <= w[2]
                  and (w[1] or lead_id in stored or lead_id in newest)}  # fmt: skip
        if not wanted:
            return
        versions = [UpdateOne({"_id": f"{lead_id}|"}, {"$max": {"v": w[2]}, "$set": {"lead_id": lead_id}}, upsert=True)
                    for lead_id, w in wanted.items()]  # fmt: skip
        await _upsert_max(self._held, versions)
        stored = {lead_id: held for lead_id, held in stored.items() if lead_id in wanted}
        if stale := [
            doc_id for lead_id, held in stored.items() for agent_id, doc_id in held.items()
            if agent_id not in wanted[lead_id][1]
        ]:  # fmt: skip
            await self._held.delete_many({"_id": {"$in": stale}})
        new = [
            {"_id": f"{lead_id}|{agent_id}", "lead_id": lead_id, "account_id": account_id, "agent_id": agent_id,
             "at_ms": at_ms}
            for lead_id, (account_id, agent_ids, _) in wanted.items() for agent_id in agent_ids
            if agent_id not in stored.get(lead_id, {})
        ]  # fmt: skip
        if new:
            await self._insert_new(new)

    async def _insert_new(self, docs: list[Doc]) -> None:
        """Insert the documents; those a replay inserted already are fine."""
        try:
            await self._held.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if not _only_duplicates(exc):  # a replay inserted some already: nothing else is fine
                raise
