"""Office transfers (T2) in MongoDB: `crm_office_transfers`, `crm_labels`, and a team member's move.

Without multi-document transactions (nx-27017), a transfer is a record stored first, then
writes that each take their values from it and can be repeated, so retrying a transfer
(same Idempotency-Key) finishes one that crashed half-way. Authorisation happens before.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_crm_api.domain.offices import BULK_KIND, TeamStatus, TransferKind, TransferStatus, label_doc
from leadflow_shared.collections import (
    ACCOUNTS,
    AGENTS,
    CRM_LABELS,
    CRM_LEAD_MOVES,
    CRM_OFFICE_TRANSFERS,
    CRM_USED_OFFER_LINKS,
    NOTIFIER_PREFERENCES,
    PUSH_DEVICES,
)

MAX_OFFICES = 500
# How long a move not published (Kafka refused it: 503) holds its lead as being moved: its client's retries come
# within it (helper 158's review #4; decision 0020, session 32).
UNSENT_HOLD = timedelta(minutes=15)
# How long a published move holds its lead at most: the router applies one in seconds; one it refused (no event ever
# marks it done) must not hold its lead for good (helper 179's review; decision 0107).
PUBLISHED_HOLD = timedelta(hours=1)

Doc = dict[str, Any]


# How long a lead's move document is kept after it was last taken: far past any hold (the longest, PUBLISHED_HOLD), so
# a lead moved once is not a document for ever (helper 199's review).
MOVE_KEEP = timedelta(days=2)
# How long a used accept link is kept: past the longest an offer stays open (a pause of up to 60 days, then its claim
# window), after which `link_offer_ended` refuses the link anyway (helper 199's review).
USED_LINK_KEEP = timedelta(days=90)


async def ensure_indexes(db: AsyncDatabase[Doc]) -> None:
    await db[CRM_LABELS].create_index([("account_id", ASCENDING), ("key", ASCENDING)], name="account_labels")
    await db[ACCOUNTS].create_index([("organisation_id", ASCENDING)], name="organisation")
    await db[CRM_LEAD_MOVES].create_index(
        [("held_at", ASCENDING)], name="forget_moved", expireAfterSeconds=int(MOVE_KEEP.total_seconds())
    )
    await db[CRM_USED_OFFER_LINKS].create_index(
        [("at", ASCENDING)], name="forget_used", expireAfterSeconds=int(USED_LINK_KEEP.total_seconds())
    )


class Organisation:
    """The offices (accounts) of one account's organisation."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._accounts = db[ACCOUNTS]

    async def account(self, account_id: str) -> Doc | None:
        return await self._accounts.find_one({"_id": account_id}, {"name": 1, "organisation_id": 1, "roster": 1})

    async def offices(self, organisation_id: str) -> list[Doc]:
        cursor = self._accounts.find({"organisation_id": organisation_id}, {"name": 1, "organisation_id": 1})
        return sorted([doc async for doc in cursor.limit(MAX_OFFICES)], key=lambda d: (d.get("name", ""), d["_id"]))


class Labels:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._labels = db[CRM_LABELS]

    async def ensure(self, docs: list[Doc]) -> None:
        """Create the labels that are missing (one insert each: the ids collide on an existing label)."""
        for doc in docs:
            with contextlib.suppress(DuplicateKeyError):
                await self._labels.insert_one(doc)

    async def ensure_named(self, account_id: str, names: list[str], *, at: Any) -> None:
        await self.ensure([label_doc(account_id, name, at=at) for name in names])

    async def of_account(self, account_id: str) -> list[Doc]:
        cursor = self._labels.find({"account_id": account_id}).sort("key", ASCENDING).limit(5000)
        return [doc async for doc in cursor]


class OfficeTransfers:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._transfers = db[CRM_OFFICE_TRANSFERS]
        self._moves = db[CRM_LEAD_MOVES]

    async def begin(self, record: Doc) -> Doc:
        """Store the record; if its id is stored already (a retry), return the stored one."""
        try:
            await self._transfers.insert_one(record)
        except DuplicateKeyError:
            stored = await self._transfers.find_one({"_id": record["_id"], "account_id": record["account_id"]})
            if stored is None:  # ids hash the account, so only a foreign uuid4 clash lands here: never read it
                raise
            return stored
        return record

    async def get(self, account_id: str, transfer_id: str) -> Doc | None:
        """The account's transfer of a lead or a team member (not a bulk move's record)."""
        doc = await self._transfers.find_one({"_id": transfer_id, "account_id": account_id})
        return None if doc is None or doc.get("kind") == BULK_KIND else doc

    async def bulk(self, account_id: str, bulk_id: str) -> Doc | None:
        """The account's bulk move's record (a retry's, looked up before its request is checked again)."""
        return await self._transfers.find_one({"_id": bulk_id, "account_id": account_id, "kind": BULK_KIND})

    async def of_ids(self, account_id: str, transfer_ids: list[str]) -> dict[str, Doc]:
        """The account's transfers of these ids that are stored, by id."""
        cursor = self._transfers.find({"_id": {"$in": transfer_ids}, "account_id": account_id})
        return {doc["_id"]: doc async for doc in cursor}

    async def moving(self, account_id: str, lead_ids: list[str], *, now: datetime | None = None) -> dict[str, str]:
        """The account's `lead_ids` an office transfer is moving right now, with that transfer's id: a pending move
        whose command was published less than `PUBLISHED_HOLD` ago (decision 0107), or one not published that was
        asked for less than `UNSENT_HOLD` ago (its client may still retry it). An older unpublished move holds its
        lead no more (helper 158's review, #4): it never reached the router, or did and was applied (or refused) long
        since; its retry is checked against the present then, as any retry."""
        query = {"account_id": account_id, "lead_id": {"$in": lead_ids}, **_holding(now or datetime.now(UTC))}
        return {doc["lead_id"]: doc["_id"] async for doc in self._transfers.find(query, {"lead_id": 1})}

    async def hold_lead(self, transfer: Doc, *, now: datetime | None = None) -> bool:
        """Whether the lead move `transfer` holds its lead now, taking it (`crm_lead_moves`, one document per
        account and lead, naming the move that holds it) unless another move still holds it (`moving`'s terms).
        Two moves checked at the same time (two replicas) both passed `moving`; only one of them takes the lead
        here, before its command goes (helper 179's review; decision 0107)."""
        key, mine = f"{transfer['account_id']}|{transfer['lead_id']}", transfer["_id"]
        try:
            await self._moves.insert_one({"_id": key, "transfer_id": mine, "held_at": datetime.now(UTC)})
            return True
        except DuplicateKeyError:
            pass
        held = await self._moves.find_one({"_id": key})
        holder = None if held is None else held["transfer_id"]
        if holder == mine:  # a retry of the move: its hold counts from now for the TTL (`MOVE_KEEP`)
            await self._moves.update_one({"_id": key, "transfer_id": mine}, {"$set": {"held_at": datetime.now(UTC)}})
            return True
        # Read by id and judged here: nx-27017 answers `{_id: .., $or: [.., {at: {$gte: ..}}]}` with other ids'
        # documents (decision 0004's amendment).
        record = await self._transfers.find_one({"_id": holder, "account_id": transfer["account_id"]})
        if record is not None and _holds(record, now or datetime.now(UTC)):
            return False
        # The holder is done, forgotten or past its hold: taken over, unless another move took it over first.
        taken = await self._moves.update_one(
            {"_id": key, "transfer_id": holder}, {"$set": {"transfer_id": mine, "held_at": datetime.now(UTC)}}
        )
        return taken.matched_count == 1

    async def mark_done(self, transfer_id: str) -> None:
        """The projection saw the router's event for it (unscoped: the event names the transfer)."""
        await self._transfers.update_one({"_id": transfer_id}, {"$set": {"status": TransferStatus.DONE.value}})

    async def move_member(self, transfer: Doc) -> None:
        """The team member's settings documents (agent record, roster places, notification preferences, push
        devices) to the target office; each write can be repeated.

        It arrives as Onboarding, out of round robin and of the first office's offices and
        lead groups (they name that office's setup); the target's broker activates it.
        """
        agent_id, source, target = transfer["agent_id"], transfer["account_id"], transfer["to_account_id"]
        await self._db[AGENTS].update_one(
            {"_id": agent_id, "account_id": {"$in": [source, target]}},
            {
                "$set": {
                    "account_id": target,
                    "status": TeamStatus.ONBOARDING.value,
                    "active": False,
                    "round_robin": False,
                    "offices": [],
                    "lead_groups": [],
                }
            },
        )
        # Rosters are lists of ids; $pull and $addToSet of strings (not documents: decision 0004).
        await self._db[ACCOUNTS].update_one({"_id": source}, {"$pull": {"roster": agent_id}})
        await self._db[ACCOUNTS].update_one({"_id": target}, {"$addToSet": {"roster": agent_id}})
        await self._db[NOTIFIER_PREFERENCES].update_one(
            {"_id": agent_id, "account_id": {"$in": [source, target]}}, {"$set": {"account_id": target}}
        )
        # Its push devices too: they are listed, removed and pushed to in the office it belongs to (decision 0076).
        await self._db[PUSH_DEVICES].update_many(
            {"user_id": agent_id, "account_id": {"$in": [source, target]}}, {"$set": {"account_id": target}}
        )

    async def mark_published(self, transfer_id: str) -> None:
        """Its command went: it holds its lead `PUBLISHED_HOLD` from now (`published_ms`: a move published by a late
        retry holds from then, not from when it was first asked; helper 183's review)."""
        published = {"published": True, "published_ms": _now_ms()}
        gone = {"sending": "", "sending_ms": ""}
        await self._transfers.update_one({"_id": transfer_id}, {"$set": published, "$unset": gone})

    async def mark_sending(self, transfer_id: str) -> None:
        """Its command is about to be handed to Kafka: from now until `mark_published` (or `mark_unsent`), it may
        have gone out (a crash after publishing loses the mark), and the record is never released. Meanwhile it holds
        its lead (`sending_ms`: `UNSENT_HOLD` from now), whenever it was first asked."""
        await self._transfers.update_one({"_id": transfer_id}, {"$set": {"sending": True, "sending_ms": _now_ms()}})

    async def mark_unsent(self, transfer_id: str) -> None:
        """Kafka refused its command (the client is answered 503, "not handed to the router"): it holds its lead as
        it did before it was tried (`UNSENT_HOLD` from when it was asked)."""
        await self._transfers.update_one({"_id": transfer_id}, {"$unset": {"sending": "", "sending_ms": ""}})

    async def release(self, account_id: str, transfer_ids: list[str]) -> None:
        """Forget the account's lead moves of these ids whose command certainly never went out (not published, never
        being sent: `sending` unset, still pending): a retry refused now sends none of them, and a move left pending
        would keep its lead "being moved" (`moving`). Published moves, those whose command may have gone out (a
        crash after publishing, before the mark: the router applies it, helper 158's review #6) and team members'
        moves stay."""
        if transfer_ids:
            await self._transfers.delete_many({
                "_id": {"$in": transfer_ids},
                "account_id": account_id,
                "kind": TransferKind.LEAD.value,
                "published": False,
                "sending": {"$exists": False},
                "status": TransferStatus.PENDING.value,
            })  # fmt: skip

    async def skip(self, account_id: str, bulk_id: str, lead_ids: list[str], skipped: list[Doc]) -> None:
        """A bulk move's retry left out leads that can no longer move: its record keeps the leads it still moves and
        the skipped (whole arrays `$set`: no `$push` of documents, decision 0004), so a next retry answers the same."""
        await self._transfers.update_one(
            {"_id": bulk_id, "account_id": account_id, "kind": BULK_KIND},
            {"$set": {"lead_ids": lead_ids, "skipped": skipped}},
        )

    async def set_filter(self, account_id: str, bulk_id: str, was: str, digest: str) -> None:
        """A bulk move's filter, kept as text before digests (`was`), rewritten as its digest."""
        await self._transfers.update_one(
            {"_id": bulk_id, "account_id": account_id, "kind": BULK_KIND, "filter": was}, {"$set": {"filter": digest}}
        )


def _holds(record: Doc, now: datetime) -> bool:
    """`_holding`, of one record."""
    if record["status"] != TransferStatus.PENDING.value:
        return False
    at = record["at"] if record["at"].tzinfo else record["at"].replace(tzinfo=UTC)
    now_ms, asked_ms = to_ms(now), to_ms(at)
    published = int(record.get("published_ms", asked_ms)) if record.get("published") else None
    if published is not None and published >= now_ms - to_ms_span(PUBLISHED_HOLD):
        return True
    return max(asked_ms, int(record.get("sending_ms", 0))) >= now_ms - to_ms_span(UNSENT_HOLD)


def _holding(now: datetime) -> Doc:
    """A lead move that holds its lead as being moved: pending, and published less than `PUBLISHED_HOLD` ago (by its
    `published_ms`; before it was kept, its `at`), or asked for, or last tried (`sending_ms`), less than
    `UNSENT_HOLD` ago."""
    now_ms = to_ms(now)
    return {
        "status": TransferStatus.PENDING.value,
        "$or": [
            {"published": True, "published_ms": {"$gte": now_ms - to_ms_span(PUBLISHED_HOLD)}},
            {"published": True, "published_ms": {"$exists": False}, "at": {"$gte": now - PUBLISHED_HOLD}},
            {"at": {"$gte": now - UNSENT_HOLD}},
            {"sending_ms": {"$gte": now_ms - to_ms_span(UNSENT_HOLD)}},
        ],
    }


def _now_ms() -> int:
    return to_ms(datetime.now(UTC))


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def to_ms_span(span: timedelta) -> int:
    return int(span.total_seconds() * 1000)
