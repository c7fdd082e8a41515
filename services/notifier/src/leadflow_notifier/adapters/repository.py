"""MongoDB adapters of the notifier: recipients (agents and their preferences) and the delivery log."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from enum import StrEnum
from time import monotonic
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, InvalidOperation
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_exponential_jitter

from leadflow_notifier.domain.delivery import Delivery, Unreadable
from leadflow_notifier.domain.digest import DigestBook, DigestItem, DigestWindow, Unlisted
from leadflow_notifier.domain.messages import Content, EmailContent, PushContent, PushDevice, Recipient, SmsContent
from leadflow_notifier.domain.preferences import Channel, Preferences, QuietHours, hears_account, holds_for
from leadflow_shared.account_config import ContactDetails, NoticeFields, time_zone_of
from leadflow_shared.coalesce import Coalesced
from leadflow_shared.collections import (
    ACCOUNTS,
    AGENTS,
    NOTIFIER_DELIVERIES,
    NOTIFIER_DIGEST_ITEMS,
    NOTIFIER_ERASURES,
    NOTIFIER_PREFERENCES,
    PUSH_DEVICES,
    STAFF,
)
from leadflow_shared.dead_letters import is_transient
from leadflow_shared.mongo_bulk import insert_each
from leadflow_shared.ttl_cache import TtlCache

log = logging.getLogger(__name__)

MAX_DEVICES = 10  # per user (crm-api refuses more); a bound on one notice's pushes


class QuietHoursDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: time
    end: time


class PreferencesDoc(BaseModel):
    """One agent's notification preferences (`notifier_preferences`, `_id` = agent id)."""

    model_config = ConfigDict(extra="ignore")
    account_id: str | None = None
    channels: list[Channel] = Field(default_factory=lambda: list(Channel))
    quiet_hours: QuietHoursDoc | None = None
    push_token: str | None = Field(default=None, max_length=4096)
    digest: bool = False
    team_updates: bool = False  # T2: email when a team member joins the account from another office
    new_lead_notices: bool = False  # N1: an email at once for every new lead of the account
    # Admins and staff who are not agents get the digest here.
    name: str | None = None
    email: str | None = None
    time_zone: str = "UTC"

    @field_validator("time_zone", mode="before")
    @classmethod
    def _usable_zone(cls, value: object) -> str:
        return time_zone_of({"time_zone": value})  # null or unknown: UTC, as for agents

    def preferences(self) -> Preferences:
        quiet = QuietHours(self.quiet_hours.start, self.quiet_hours.end) if self.quiet_hours else None
        return Preferences(channels=frozenset(self.channels), quiet_hours=quiet, digest=self.digest)


RecipientCache = TtlCache[str, Recipient | None]
SubscriberCache = TtlCache[str, list[Recipient]]  # by query: who subscribed to what in an account

# nx-27017 stores a `$set` boolean as 1/0 (decision 0018) and crm-api `$set`s preferences:
# match both forms, so the filter also holds on MongoDB, where true and 1 differ.
TRUE = {"$in": [True, 1]}


class AgentDirectory:
    """Agents with their preferences; with caches, a change applies within their time to live."""

    def __init__(
        self,
        db: AsyncDatabase[dict[str, Any]],
        *,
        cache: RecipientCache | None = None,
        subscribers: SubscriberCache | None = None,
    ) -> None:
        self._accounts = db[ACCOUNTS]
        self._db = db
        self._agents = db[AGENTS]
        self._staff = db[STAFF]
        self._preferences = db[NOTIFIER_PREFERENCES]
        self._cache = cache if cache is not None else RecipientCache(0.0)
        # New-lead notices are looked up for every new lead: one read per account per TTL, not per lead.
        self._subscriber_lists = subscribers if subscribers is not None else SubscriberCache(0.0)

    async def get(self, agent_id: str) -> Recipient | None:
        return await self._cache.get_or_load(agent_id, lambda: self._load(agent_id))

    async def _load(self, agent_id: str) -> Recipient | None:
        # An agent, or an admin or staff member who is not one (crm-api's `staff`).
        doc = await self._agents.find_one({"_id": agent_id}) or await self._staff.find_one({"_id": agent_id})
        if doc is None:
            return None
        # Preferences and devices count for the account the user belongs to only (decision 0076).
        account_id = doc.get("account_id")
        prefs_doc = await self._preferences.find_one({"_id": agent_id})
        if prefs_doc is not None and not holds_for(prefs_doc.get("account_id"), account_id):
            prefs_doc = None
        prefs = PreferencesDoc.model_validate(prefs_doc or {})
        registry = PushDevices(self._db)
        devices = await registry.of_user(agent_id, account_id if isinstance(account_id, str) else None)
        legacy = prefs.push_token
        if (
            legacy
            and all(d.token != legacy for d in devices)
            and await registry.registered_by_another(legacy, agent_id)
        ):
            legacy = None  # the phone was handed on: its new user registered it (helper 174)
        return Recipient(
            agent_id=agent_id,
            active=bool(doc.get("active", True)),  # nx-27017 may keep a `$set` boolean as 1/0 (decision 0004)
            account_id=account_id if isinstance(account_id, str) else None,
            name=doc["name"],
            email=doc["email"],
            time_zone=time_zone_of(doc),  # missing or unknown: UTC, never a notice that cannot be written
            phone=doc.get("phone"),
            push_token=legacy,
            preferences=prefs.preferences(),
            devices=tuple(devices),
        )

    async def save_preferences(self, agent_id: str, prefs: PreferencesDoc) -> None:
        # The replacement repeats _id: nx-27017 ignores the filter's _id on upsert (decision 0004).
        doc = {"_id": agent_id, **prefs.model_dump(mode="json")}
        await self._preferences.replace_one({"_id": agent_id}, doc, upsert=True)

    async def digest_subscribers(self, account_id: str) -> list[Recipient]:
        return await self._subscribers({"account_id": account_id, "digest": TRUE})

    async def new_lead_subscribers(self, account_id: str) -> list[Recipient]:
        query = {"account_id": account_id, "new_lead_notices": TRUE}
        return await self._subscriber_lists.get_or_load(f"new_lead:{account_id}", lambda: self._subscribers(query))

    async def broker_of(self, account_id: str) -> str | None:
        """The office's broker: position 1 of its roster as stored, as crm-api reads it (None: no roster): who reads
        the router's explanations (N5), a stand-in holding the broker pool for it not (helper 187's review).
        Read each time, not cached: a new broker reads its office's routing info at once (N5)."""
        roster = await self._roster(account_id)
        return roster[0] if roster else None

    async def pool_holder_of(self, account_id: str) -> str | None:
        """Who holds the office's broker pool, as the router reads it (`AccountSnapshot.pool_holder`): position 1,
        or the next active agent of the office when position 1 is not (one who left, T3, stays on the roster until
        taken off it: helper 186's review); position 1 when none is; None: no roster."""
        roster = await self._roster(account_id)
        if not roster:
            return None
        fields = {"account_id": 1, "active": 1}
        agents = {a["_id"]: a async for a in self._agents.find({"_id": {"$in": roster}}, fields)}
        return next((a for a in roster if a in agents and hears_account(agents[a], account_id)), roster[0])

    async def _roster(self, account_id: str) -> list[str]:
        account = await self._accounts.find_one({"_id": account_id}, {"roster": 1})
        return [str(a) for a in account.get("roster") or []] if account is not None else []

    async def team_staff(self, account_id: str) -> list[Recipient]:
        """Who hears that a team member joined the account (T2): who holds its broker pool (`pool_holder_of`, if
        still the office's active agent) and every user of the account subscribed to team updates, each once."""
        found: dict[str, Recipient] = {}
        broker_id = await self.pool_holder_of(account_id)
        fields = {"account_id": 1, "active": 1}
        agent = None if broker_id is None else await self._agents.find_one({"_id": broker_id}, fields)
        if broker_id is not None and hears_account(agent, account_id) and (broker := await self.get(broker_id)):
            found[broker.agent_id] = broker
        for who in await self._subscribers({"account_id": account_id, "team_updates": TRUE}):
            found.setdefault(who.agent_id, who)
        return list(found.values())

    async def _subscribers(self, query: dict[str, Any]) -> list[Recipient]:
        """Agents (with their agent record) and staff who are not agents (name and email in the preferences).

        An agent is left out unless it is active and of the account (`hears_account`): its agent record is read
        here, not from the recipients' cache, so a departure counts from the list's next read.
        """
        docs = [doc async for doc in self._preferences.find(query)]
        ids = [doc["_id"] for doc in docs]
        fields = {"account_id": 1, "active": 1}
        agents = {a["_id"]: a async for a in self._agents.find({"_id": {"$in": ids}}, fields)} if ids else {}
        # A subscriber who is no agent but another office's staff member is that office's now: preferences the
        # office it left still holds (a write that landed after its removal) reach it no more (helper 176).
        others = {"$in": [i for i in ids if i not in agents]}
        staff_elsewhere = self._staff.find({"_id": others, "account_id": {"$ne": query["account_id"]}}, {"_id": 1})
        elsewhere = {s["_id"] async for s in staff_elsewhere} if others["$in"] else set()
        found = []
        for doc in docs:
            if doc["_id"] in elsewhere or not hears_account(agents.get(doc["_id"]), query["account_id"]):
                continue
            recipient = await self.get(str(doc["_id"]))
            prefs = PreferencesDoc.model_validate(doc)
            if recipient is None and prefs.email:
                recipient = Recipient(
                    agent_id=str(doc["_id"]),
                    name=prefs.name or prefs.email,
                    email=prefs.email,
                    time_zone=prefs.time_zone,
                    preferences=prefs.preferences(),
                )
            if recipient is not None:
                found.append(recipient)
        return found


class PushDevices:
    """A user's devices for push (`push_devices`, `_id` = `<user>/<device>`), and forgetting one."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._devices = db[PUSH_DEVICES]
        self._preferences = db[NOTIFIER_PREFERENCES]

    async def of_user(self, user_id: str, account_id: str | None) -> list[PushDevice]:
        """The user's devices registered in `account_id`, the account it belongs to (crm-api records each device's
        account): those another office registered for its id are not its (decision 0076). None (a user record
        with no account): all of them."""
        query = {"user_id": user_id} if account_id is None else {"user_id": user_id, "account_id": account_id}
        cursor = self._devices.find(query).sort("_id", 1).limit(MAX_DEVICES)
        return [PushDevice(str(d["device_id"]), str(d["token"])) async for d in cursor if d.get("token")]

    async def registered_by_another(self, token: str, user_id: str) -> bool:
        """Whether another user has registered `token` as a device since (a handed-on phone): a preferences
        document's legacy token is then no longer `user_id`'s to push to."""
        return await self._devices.find_one({"token": token, "user_id": {"$ne": user_id}}, {"_id": 1}) is not None

    async def forget_token(self, user_id: str, token: str) -> None:
        """The provider no longer knows `token`: drop it from the user's devices (and the legacy field)."""
        await self._devices.delete_many({"user_id": user_id, "token": token})
        await self._preferences.update_one({"_id": user_id, "push_token": token}, {"$set": {"push_token": None}})


class OfferContactPolicies:
    """Each account's `offer_contact_details` (shown, hidden_for_races, hidden), with an optional cache."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, cache: TtlCache[str, ContactDetails] | None = None
    ) -> None:
        self._accounts = db[ACCOUNTS]
        self._cache: TtlCache[str, ContactDetails] = cache if cache is not None else TtlCache(0.0)

    async def hide_contact(self, account_id: str, race_size: int) -> bool:
        policy = await self._cache.get_or_load(account_id, lambda: self._policy(account_id))
        return policy is ContactDetails.HIDDEN or (policy is ContactDetails.HIDDEN_FOR_RACES and race_size > 1)

    async def _policy(self, account_id: str) -> ContactDetails:
        doc = await self._accounts.find_one({"_id": account_id}, {"offer_contact_details": 1}) or {}
        return NoticeFields.of(doc).contact_details  # missing or malformed: hidden for races


class AccountSchedules:
    """Each account's digest hour (`digest_hour`, local) and time zone, from `accounts`."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._accounts = db[ACCOUNTS]

    async def of(self, account_id: str) -> tuple[int | None, str]:
        """The digest hour (None: the deployment's default) and the time zone, as crm-api shows them."""
        doc = await self._accounts.find_one({"_id": account_id}, {"digest_hour": 1, "time_zone": 1}) or {}
        fields = NoticeFields.of(doc)
        return fields.digest_hour, fields.time_zone


class DigestItems:
    """New leads waiting for the daily digest (`notifier_digest_items`, `_id` = `DigestItem.key`), and the digests
    that took them.

    The key is per (account, lead, arrival): inserting it again (a redelivery, the second offer
    of a race) changes nothing, and a lead moved to another office is a new item there. Items
    stored before the key had the account (`_id` = lead id, no `lead_id` field) still read.

    An item is filed with `stored_ms` (when the notifier filed it) and no `digest`; the digest that takes it marks
    it with its day (`digest`, ISO date). A digest's list is sealed by one document in the same collection,
    `_id` = `digest:<account>:<day>` (`digest_of`, `day`, `items`: the keys it took, `created_at` for the TTL:
    it outlives the days its digest is sendable), inserted once: whoever inserts it made the digest; a retry, a
    crash's successor or another replica reads it and sends that list (decision 0013, amended in session 32).

    A lead whose first decision filed no item (a fall-back at its arrival: no contact) is noted by one document
    too, `_id` = `unlisted:<account>:<lead>` (`unlisted_of`, `lead_id`, `noted_at` for its own TTL, as long as the
    delivery records': `forget_noted`), inserted once; its first later event with the contact files the item and
    writes its id (`filed_by`): no other event files it again (`file_noted`). Neither a seal nor a note has an
    `account_id`: a query of an account's items reads neither.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._items = db[NOTIFIER_DIGEST_ITEMS]
        self._insert = Coalesced(self._insert_many)  # one command for a batch's leads

    async def add(self, item: DigestItem) -> None:
        doc = {
            "_id": item.key,
            "account_id": item.account_id,
            "lead_id": item.lead_id,
            "name": item.name,
            "source": item.source,
            "created_ms": item.created_ms,
            "transfer_id": item.transfer_id,
            "from_account": item.from_account,
            "created_at": datetime.now(UTC),
        }
        if item.stored_ms is not None:
            doc["stored_ms"] = item.stored_ms
        await self._insert(doc)

    async def _insert_many(self, docs: list[dict[str, Any]]) -> list[BaseException | None]:
        # A key stored already is a redelivery, or the second offer of a race: nothing to add.
        return [None if isinstance(e, DuplicateKeyError) else e for e in await insert_each(self._items, docs)]

    async def note(self, lead: Unlisted) -> None:
        """Note a lead whose first decision filed no item (`unlisted_arrival`); a redelivery changes nothing."""
        doc = {"_id": lead.key, "unlisted_of": lead.account_id, "lead_id": lead.lead_id, "noted_at": _wall_clock()}
        await self._insert(doc)

    async def file_noted(self, item: DigestItem, *, by: str, write: bool = True) -> bool:
        """File `item` (`late_item` of the event `by`) if its lead is noted unlisted in its account and no other
        event filed it; whether `by` is the event that filed it (now, or before: a redelivery after a crash plans
        its new-lead notices again, the item's insert changing nothing). Without `write` (a replayed delivery's
        dead letter), only whether `by` filed it. One conditional write by `_id`; nothing for a lead never noted."""
        noted = Unlisted(item.account_id, item.lead_id).key
        if not write:
            return await self._items.find_one({"_id": noted, "filed_by": by}, {"_id": 1}) is not None
        claimed = await self._items.find_one_and_update(
            {"_id": noted, "$or": [{"filed_by": {"$exists": False}}, {"filed_by": by}]},
            {"$set": {"filed_by": by}},
            projection={"_id": 1},
        )
        if claimed is None:
            return False
        await self.add(item)
        return True

    async def accounts_since(self, since_ms: int) -> list[str]:
        """Accounts with items filed, or created, since `since_ms` (each account's window is its own), and those
        with items filed earlier that no digest took yet: the set made by the database, not from every item of the
        last days. Filed since: a late item waiting, or taken by a digest still sendable (a retry after a crash
        sends it to the subscribers it did not reach). Filed before and waiting: items are kept
        `NOTIFIER_DIGEST__KEEP_DAYS`, which may be more than the 3 days looked back; one whose office made no
        digest since (the digest worker down longer) is in the next one."""
        found: set[str] = set()
        for by in ("created_ms", "stored_ms"):
            found.update(str(a) for a in await self._items.distinct("account_id", {by: {"$gte": since_ms}}))
        waiting = {"stored_ms": {"$lt": since_ms}, "digest": {"$exists": False}}
        found.update(str(a) for a in await self._items.distinct("account_id", waiting))
        return sorted(found)

    async def digests(self, account_id: str, windows: list[DigestWindow]) -> DigestBook:
        """The items each of `windows` (oldest first, meeting) took, and those waiting; one read of the seals and
        one of the items. Items a seal lists that are not marked yet (a crash between the seal and the mark) are
        marked now, and count as taken either way."""
        seals = {
            str(doc["day"]): [str(k) for k in doc.get("items") or []]
            async for doc in self._items.find({"_id": {"$in": [_seal_id(account_id, w) for w in windows]}})
        }
        sealed_keys = {key for keys in seals.values() for key in keys}
        waiting_filter = {"digest": {"$exists": False}, "created_ms": {"$lt": windows[-1].end_ms}}
        either: list[dict[str, Any]] = [waiting_filter]
        if sealed_keys:
            either.append({"_id": {"$in": sorted(sealed_keys)}})
        docs = [d async for d in self._items.find({"account_id": account_id, "$or": either}).sort("created_ms", 1)]
        marked = {str(d["_id"]): "digest" in d for d in docs}
        by_key = {str(d["_id"]): _item_of(d) for d in docs}
        for day, keys in sorted(seals.items()):
            await self._mark([k for k in keys if marked.get(k) is False], day)
        return DigestBook(
            taken={date.fromisoformat(day): [by_key[k] for k in keys if k in by_key] for day, keys in seals.items()},
            waiting=[item for key, item in by_key.items() if not marked[key] and key not in sealed_keys],
        )

    async def take(self, account_id: str, window: DigestWindow, items: list[DigestItem]) -> list[DigestItem]:
        """Make `window`'s digest of `items` unless it was made: the seal is inserted once; returns the items of the
        digest made (these, or the list another run sealed first), marked as taken by it."""
        day = window.day.isoformat()
        seal = {
            "_id": _seal_id(account_id, window),
            "digest_of": account_id,
            "day": day,
            "items": [item.key for item in items],
            "created_at": datetime.now(UTC),
        }
        try:
            await self._items.insert_one(seal)
            taken = items
        except DuplicateKeyError:
            made = await self._items.find_one({"_id": seal["_id"]}) or {}
            keys = [str(k) for k in made.get("items") or []]
            mine = {item.key: item for item in items}
            others = [k for k in keys if k not in mine]
            read: dict[str, DigestItem] = {}
            if others:  # items of the made digest this run did not read (filed after its read)
                read = {str(d["_id"]): _item_of(d) async for d in self._items.find({"_id": {"$in": others}})}
            taken = [found for k in keys if (found := mine.get(k) or read.get(k)) is not None]
        await self._mark([item.key for item in taken], day)
        return taken

    async def _mark(self, keys: list[str], day: str) -> None:
        if keys:
            await self._items.update_many({"_id": {"$in": keys}}, {"$set": {"digest": day}})


def _seal_id(account_id: str, window: DigestWindow) -> str:
    return f"digest:{account_id}:{window.day.isoformat()}"


def _item_of(d: dict[str, Any]) -> DigestItem:
    stored = d.get("stored_ms")
    return DigestItem(
        account_id=d["account_id"],
        lead_id=str(d.get("lead_id") or d["_id"]),
        name=d["name"],
        source=d["source"],
        created_ms=d["created_ms"],
        transfer_id=d.get("transfer_id") or "",
        from_account=d.get("from_account") or "",
        stored_ms=int(stored) if isinstance(stored, int | float) else None,
    )


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]], *, delivery_days: int = 30, digest_days: int = 3) -> None:
    # No index names _id (nx-27017, decision 0004); epoch-ms ints, not datetimes, for ranges.
    await db[NOTIFIER_DIGEST_ITEMS].create_index([("created_ms", 1), ("account_id", 1)], name="digest_window")
    await db[NOTIFIER_DIGEST_ITEMS].create_index([("stored_ms", 1), ("account_id", 1)], name="digest_filed")
    await db[PUSH_DEVICES].create_index([("user_id", 1)], name="by_user")
    # The re-driver's query: pending records whose lease ran out (equality, then range).
    await db[NOTIFIER_DELIVERIES].create_index([("status", 1), ("lease_until_ms", 1)], name="pending_lease")
    # Forgetting (decision 0049): a finished delivery once a redelivery or replay of its event can no
    # longer come (the dead-letter topics keep 30 days); a digest item (a lead's name) after its digest.
    day = 86_400
    await db[NOTIFIER_DELIVERIES].create_index(
        [("done_at", 1)], name="forget_done", expireAfterSeconds=delivery_days * day
    )
    await db[NOTIFIER_DIGEST_ITEMS].create_index(
        [("created_at", 1)], name="forget_after", expireAfterSeconds=digest_days * day
    )
    # A lead noted unlisted (a fall-back at its arrival; a lead id, no personal data): until its first event with
    # the contact files its item, and after, so that no later one does (an event can come again for 30 days).
    await db[NOTIFIER_DIGEST_ITEMS].create_index(
        [("noted_at", 1)], name="forget_noted", expireAfterSeconds=delivery_days * day
    )
    # An erasure marker (a lead id, no personal data) as long as a finished delivery: an event of the lead can
    # come again until then (the dead-letter topics' 30 days); after it, a redelivery would be sent again anyway.
    await db[NOTIFIER_ERASURES].create_index(
        [("created_at", 1)], name="forget_after", expireAfterSeconds=delivery_days * day
    )


class Begin(StrEnum):
    SEND = "send"  # nobody started it yet: deliver now
    DONE = "done"  # sent or dead-lettered already: a redelivered event sends nothing twice
    BUSY = "busy"  # pending: its owner is on it, or the re-driver takes it once the owner's lease runs out


@dataclass
class Leases:
    """This process's leases on pending deliveries, renewed while it works on them (decision 0021).

    A record's lease is short, so a crashed process blocks its deliveries only briefly; a live one
    renews the leases of the deliveries it holds every third of the lease, so a slow provider does not
    let another process take a delivery still in progress.
    """

    lease_ms: int
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)  # one per process run
    held: set[str] = field(default_factory=set)

    @property
    def renew_seconds(self) -> float:
        return self.lease_ms / 3000


@dataclass
class Claimed:
    """What one `claim_due` took over: deliveries to drive, and records to end as unreadable."""

    deliveries: list[Delivery] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.deliveries) + len(self.unreadable)


# How long a `sent` mark waits for those of the other sends in progress (decision 0072): a few SMTP
# exchanges' spread; the connection's permit is held meanwhile.
MARK_LINGER_SECONDS = 0.02
# A `sent` mark that meets a MongoDB outage is tried again (N3): at once, then after this, doubling with jitter
# up to the cap; once MongoDB is back the mark lands within the cap, well before a re-driver's next look (2 s).
MARK_RETRY_FIRST_SECONDS = 0.05
MARK_RETRY_MAX_SECONDS = 0.5


class DeliveryLog:
    """One record per (event, channel, recipient): the N3 at-most-once key.

    `status`: `pending`, then `sent` or `failed` (a replayed dead letter may reopen a failed one:
    `replay`, `replays`, `reopened_ms`), or `erased` (its lead's contact was erased: `LeadErasure`; a digest
    ended so unsent is begun again without that lead: `erased_attempts`, decision 0094). A
    pending record carries its message (`content`) and, for the dead letter, the original `event`, so
    the re-driver can finish it after its process died; both are removed once it is done (they hold
    personal data); `lead_ids` (what it is about) stay. `lease_until_ms` (epoch ms)
    and `owner`: who works on it until when; `drives`: how many times a process started it since
    its last orderly end; `postponed`, `expires_ms`: a digest's tries left for later, and until when.
    """

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, leases: Leases, marks_on_the_way: Callable[[], int] | None = None
    ) -> None:
        """`marks_on_the_way`: how many sends in progress will be marked next (the SMTP connections' permits
        held); a `sent` mark then waits for them, at most `MARK_LINGER_SECONDS`, so a batch's emails, which
        end one by one, are marked in one command (decision 0072). None: each mark goes at once."""
        self._deliveries = db[NOTIFIER_DELIVERIES]
        self._leases = leases
        # A batch's deliveries start, and end as sent, in one command each (shared/coalesce.py).
        self._insert: Coalesced[dict[str, Any], None] = Coalesced(lambda docs: insert_each(self._deliveries, docs))
        self._mark_sent = Coalesced(self._sent_many, expected=marks_on_the_way, linger=MARK_LINGER_SECONDS)

    async def recorded(self, keys: list[str]) -> list[str]:
        """Which of `keys` have a record, whatever its status: one read by `_id`."""
        if not keys:
            return []
        return [str(d["_id"]) async for d in self._deliveries.find({"_id": {"$in": keys}}, {"_id": 1})]

    async def begin(self, delivery: Delivery, *, now_ms: int) -> Begin:
        """Start `delivery` unless a record of it exists; on SEND this process holds its lease."""
        payload = _payload(delivery)
        try:
            await self._insert(
                {
                    "_id": delivery.key,
                    "channel": str(delivery.channel),
                    "status": "pending",
                    "created_ms": now_ms,
                    "lease_until_ms": now_ms + self._leases.lease_ms,
                    "owner": self._leases.owner,
                    "drives": 1,
                    **payload,
                }
            )
        except DuplicateKeyError:
            # Never taken over here: a pending record is the re-driver's once its lease ran out. Its
            # message is (re)written, so one started before records kept it can be finished too.
            pending = await self._deliveries.find_one_and_update(
                {"_id": delivery.key, "status": "pending"}, {"$set": payload}, projection={"_id": 1}
            )
            if pending is not None:
                return Begin.BUSY
            if not delivery.again_after_erasure:
                return Begin.DONE
            state = await self._begin_after_erasure(delivery, now_ms=now_ms)
            if state is not Begin.SEND:
                return state
        self._leases.held.add(delivery.key)
        return Begin.SEND

    async def _begin_after_erasure(self, delivery: Delivery, *, now_ms: int) -> Begin:
        """A digest whose record an erasure ended while it was pending, unsent (decision 0094): it goes back to
        pending with this content, which the run built without the erased leads, under this process's lease.

        Not one that had failed before its erasure (`reason`): it was the digest's end. Not while a drive may still
        be sending the old content (`drives` > 0, its lease not run out; an erased record's lease is no longer
        renewed): `BUSY`, a later run begins it; a postponed one (`drives` 0) at once. A compare-and-set on the
        record read: of several replicas one begins it, the others find it pending. A send under way that ends
        after its lease ran out may still mark it sent or failed, as with the re-driver (decision 0021).
        """
        seen = await self._deliveries.find_one(
            {"_id": delivery.key}, {"status": 1, "reason": 1, "drives": 1, "lease_until_ms": 1, "done_ms": 1}
        )
        if seen is not None and seen.get("status") == "pending":  # another replica began it again just now
            return Begin.BUSY
        if seen is None or seen.get("status") != "erased" or "reason" in seen:
            return Begin.DONE
        if int(seen.get("drives") or 0) > 0 and int(seen.get("lease_until_ms") or 0) >= now_ms:
            return Begin.BUSY
        again = await self._deliveries.find_one_and_update(
            {"_id": delivery.key, "status": "erased", "done_ms": seen.get("done_ms")},
            {
                "$set": self._pending_again(delivery, now_ms),
                "$unset": {"done_ms": "", "done_at": ""},
                "$inc": {"erased_attempts": 1},
            },
            projection={"_id": 1},
        )
        return Begin.SEND if again is not None else Begin.BUSY

    def _pending_again(self, delivery: Delivery, now_ms: int) -> dict[str, Any]:
        """An ended record made pending again with `delivery`'s message, under this process's lease."""
        lease = {"lease_until_ms": now_ms + self._leases.lease_ms, "owner": self._leases.owner}
        return {"status": "pending", **lease, "drives": 1, "postponed": 0, **_payload(delivery)}

    async def reopen(self, delivery: Delivery, *, marker: str, now_ms: int) -> bool:
        """An operator replayed this delivery's dead letter (`marker`): a `failed` record goes back to
        pending, with its message written again, under this process's lease (decision 0044).

        A sent or pending record is left alone, and so is one this marker reopened before (a
        redelivered replay), so a replayed dead letter is attempted again at most once.
        """
        failed = await self._deliveries.find_one({"_id": delivery.key, "status": "failed"}, {"replay": 1})
        if failed is None or failed.get("replay") == marker:
            return False
        # A compare-and-set on the marker seen (one replica wins): nx-27017 neither matches nor writes
        # an update filtered by `$ne`/`$nin` on a field the update sets (decision 0044).
        reopened = await self._deliveries.find_one_and_update(
            {"_id": delivery.key, "status": "failed", "replay": failed.get("replay")},
            {
                "$set": self._pending_again(delivery, now_ms) | {"replay": marker, "reopened_ms": now_ms},
                "$unset": {"reason": "", "done_ms": "", "done_at": ""},
                "$inc": {"replays": 1},
            },
            projection={"_id": 1},
        )
        if reopened is None:
            return False
        self._leases.held.add(delivery.key)
        return True

    async def claim_due(self, *, now_ms: int, limit: int) -> Claimed:
        """Take over up to `limit` pending deliveries whose lease ran out (their process died).

        A record is held (its lease renewed) only once it reads back as a delivery; one that does
        not is returned as `unreadable`, for the caller to end. If MongoDB fails midway, the records
        claimed so far are let go: their leases run out and a later round drives them.
        """
        due = {"status": "pending", "lease_until_ms": {"$lt": now_ms}, "content": {"$exists": True}}
        cursor = self._deliveries.find(due, {"_id": 1}).sort("lease_until_ms", 1).limit(limit)
        claimed = Claimed()
        try:
            for key in [str(d["_id"]) async for d in cursor]:
                # Conditional on the expired lease: of several replicas, one wins each record.
                doc = await self._deliveries.find_one_and_update(
                    {"_id": key, **due},
                    {
                        "$set": {"lease_until_ms": now_ms + self._leases.lease_ms, "owner": self._leases.owner},
                        "$inc": {"drives": 1},
                    },
                    return_document=ReturnDocument.AFTER,
                )
                if doc is None:
                    continue
                try:
                    delivery = _delivery_of(doc)
                except (KeyError, TypeError, ValueError, AttributeError):
                    claimed.unreadable.append(_unreadable_of(doc))
                    continue
                self._leases.held.add(key)
                claimed.deliveries.append(delivery)
        except BaseException:
            for delivery in claimed.deliveries:
                self._leases.held.discard(delivery.key)
            raise
        return claimed

    async def postpone(self, key: str, *, until_ms: int) -> None:
        """Leave a pending delivery for a later try at `until_ms`: an orderly end of this drive, no crash."""
        await self._deliveries.update_one(
            {"_id": key, "status": "pending", "owner": self._leases.owner},
            {"$set": {"lease_until_ms": until_ms, "drives": 0}, "$inc": {"postponed": 1}},
        )

    async def renew(self, *, now_ms: int) -> None:
        """Extend the leases of the deliveries this process is working on."""
        if not self._leases.held:
            return
        await self._deliveries.update_many(
            {"_id": {"$in": sorted(self._leases.held)}, "status": "pending", "owner": self._leases.owner},
            {"$set": {"lease_until_ms": now_ms + self._leases.lease_ms}},
        )

    def release(self, key: str) -> None:
        """Stop renewing: the delivery is done, or left to the re-driver after its lease."""
        self._leases.held.discard(key)

    async def sent(self, key: str, *, now_ms: int) -> None:
        """Mark a delivery the provider accepted as sent (N3): its record is `sent`, its message gone.

        A transient MongoDB error (`is_transient`: an election, a dropped connection; PyMongo does not
        retry an `update_many` itself) is not the end of it: the mark is tried again, with backoff, for
        up to two thirds of a lease: the lease, renewed every third of one, lasts at least that long after
        the first failure even if no renewal lands meanwhile. The caller holds the delivery meanwhile
        (released only after this returns), so the pending record is no re-driver's: a blip sends nothing
        twice. Past that the lease may run out, and a re-driver may take the record as soon as MongoDB is
        back: the error is raised and the record left pending, to be sent again (same key, same
        Message-ID). So does a kill before the mark lands.
        """
        await self._mark_sent((key, now_ms))

    async def _sent_many(self, sent: list[tuple[str, int]]) -> list[None]:
        # One `done_ms` for the lot: the latest of theirs (they ended within one database command).
        done = {"status": "sent", "done_ms": max(ms for _, ms in sent), "done_at": _wall_clock()}
        query, update = {"_id": {"$in": [key for key, _ in sent]}}, {"$set": done, "$unset": DONE_UNSET}
        began = monotonic()
        try:
            await self._deliveries.update_many(query, update)  # the usual case, without the retry machinery
        except Exception as error:
            if not _mark_again(error):
                raise
            # The same `update_many` again: it sets what it set, whether the failed one landed or not.
            async for attempt in self._mark_retrying(len(sent), error, since=began):
                with attempt:
                    await self._deliveries.update_many(query, update)
        return [None] * len(sent)

    def _mark_retrying(self, marks: int, first: BaseException, *, since: float) -> AsyncRetrying:
        """The retries of `marks` sent marks after a `first` failure, while the lease surely holds: two thirds of a
        lease from the first try (`since`)."""
        log.warning("%d sent marks failed (%s): tried again", marks, type(first).__name__)

        def again(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning("%d sent marks failed (%s): tried again", marks, type(error).__name__)

        left = self._leases.lease_ms * 2 / 3 / 1000 - (monotonic() - since)
        return AsyncRetrying(
            stop=stop_after_delay(max(0.0, left)),
            wait=wait_exponential_jitter(
                multiplier=MARK_RETRY_FIRST_SECONDS, jitter=MARK_RETRY_FIRST_SECONDS, max=MARK_RETRY_MAX_SECONDS
            ),
            retry=retry_if_exception(_mark_again),
            before_sleep=again,
            reraise=True,
        )

    async def failed(self, key: str, *, reason: str, now_ms: int) -> None:
        """Mark a pending delivery failed (its dead letter goes with it). Only a pending one: a drive that lost its
        lease (decision 0021) must not turn the `sent` another drive marked into `failed`, whose dead letter's replay
        would send it again, nor an erasure's end into a record the replay reopens (helper 126)."""
        await self._deliveries.update_one(
            {"_id": key, "status": "pending"},
            {
                "$set": {"status": "failed", "reason": reason, "done_ms": now_ms, "done_at": _wall_clock()},
                "$unset": DONE_UNSET,
            },
        )


def _mark_again(error: BaseException) -> bool:
    """An outage a `sent` mark waits out; a closed client (this process stopping) does not come back."""
    return is_transient(error) and not isinstance(error, InvalidOperation)


# A finished record keeps no message or event: they hold personal data and nothing will send them again.
DONE_UNSET = {"content": "", "event": ""}


class LeadErasure:
    """What the notifier forgets of leads whose contact was erased (decision 0050), and that it did (0094).

    First a marker per lead (`notifier_erasures`, `_id` = lead id, `erased_ms`, `created_at` for its TTL; the
    first erasure's is kept): an event of the lead read later is read without the contact (`erased`, one read
    per batch; once per digest run, which `forget`s an erased lead's items found then). Then their digest items
    go. Their deliveries still pending end as `erased`, unsent, without their message (a send already under way
    finishes); failed ones become `erased` too, so replaying their dead letter does not send the old details
    again. A delivery started before its record had
    `lead_ids` is recognised by the lead id in the event it still carries.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._items = db[NOTIFIER_DIGEST_ITEMS]
        self._deliveries = db[NOTIFIER_DELIVERIES]
        self._markers = db[NOTIFIER_ERASURES]

    async def erased(self, lead_ids: list[str]) -> set[str]:
        """Which of `lead_ids` were erased: one query, by `_id`."""
        if not lead_ids:
            return set()
        return {str(d["_id"]) async for d in self._markers.find({"_id": {"$in": lead_ids}}, {"_id": 1})}

    async def erase(self, lead_ids: list[str], *, now_ms: int) -> int:
        """Mark the leads erased, forget their digest items and end their open deliveries; how many
        deliveries it ended. The markers come first: an event read meanwhile by another replica and checked
        after them files nothing."""
        if not lead_ids:
            return 0
        await self._mark(lead_ids, now_ms)
        return await self.forget(lead_ids, now_ms=now_ms)

    async def forget(self, lead_ids: list[str], *, now_ms: int) -> int:
        """Delete the leads' digest items and end their open deliveries unsent; how many deliveries it ended.
        `erase` after its markers; the digest run for leads it finds marked, whose items and deliveries a replica
        wrote after the erasure (it read the markers before they were there, decision 0094)."""
        await self._items.delete_many({"lead_id": {"$in": lead_ids}})
        await self._items.delete_many({"_id": {"$in": lead_ids}})  # items stored before the key had the account
        open_states = {"$in": ["pending", "failed"]}
        keys = {str(d["_id"]) async for d in self._deliveries.find(
            {"status": open_states, "lead_ids": {"$in": lead_ids}}, {"_id": 1})}  # fmt: skip
        wanted = set(lead_ids)
        async for doc in self._deliveries.find({"status": "pending", "lead_ids": {"$exists": False}}, {"event": 1}):
            if _event_lead(doc.get("event")) in wanted:
                keys.add(str(doc["_id"]))
        ended = 0
        for key in sorted(keys):
            result = await self._deliveries.update_one(
                {"_id": key, "status": open_states},
                {"$set": {"status": "erased", "done_ms": now_ms, "done_at": _wall_clock()}, "$unset": DONE_UNSET},
            )
            ended += result.modified_count
        return ended

    async def _mark(self, lead_ids: list[str], now_ms: int) -> None:
        """One marker per lead, in one command; a lead erased before keeps its first marker (a redelivery)."""
        docs = [{"_id": lead, "erased_ms": now_ms, "created_at": _wall_clock()} for lead in dict.fromkeys(lead_ids)]
        for outcome in await insert_each(self._markers, docs):
            if outcome is not None and not isinstance(outcome, DuplicateKeyError):
                raise outcome


def _event_lead(raw: object) -> str | None:
    """The lead id in a stored event's payload, if it reads."""
    if not isinstance(raw, bytes | bytearray | str):
        return None
    try:
        lead = json.loads(raw).get("payload", {}).get("lead_id")
    except (ValueError, AttributeError):
        return None
    return lead if isinstance(lead, str) else None


def _payload(delivery: Delivery) -> dict[str, Any]:
    """What a pending record needs to be delivered, and dead-lettered, by any process."""
    doc: dict[str, Any] = {
        "agent_id": delivery.agent_id,
        "account_id": delivery.account_id,
        "event_type": delivery.event_type,
        "content": {"kind": type(delivery.content).__name__, **asdict(delivery.content)},
        "occurred_ms": delivery.occurred_ms,
    }
    if delivery.event is not None:
        doc["event"] = delivery.event
    if delivery.expires_ms is not None:
        doc["expires_ms"] = delivery.expires_ms
    if delivery.lead_ids:
        doc["lead_ids"] = list(delivery.lead_ids)
    return doc


CONTENT_KINDS: dict[str, type[Content]] = {kind.__name__: kind for kind in (EmailContent, SmsContent, PushContent)}


def _delivery_of(doc: dict[str, Any]) -> Delivery:
    content = dict(doc["content"])
    kind = CONTENT_KINDS[content.pop("kind")]
    return Delivery(
        key=str(doc["_id"]),
        channel=Channel(doc["channel"]),
        agent_id=doc["agent_id"],
        account_id=doc["account_id"],
        event_type=doc["event_type"],
        content=kind(**content),
        event=doc.get("event"),
        occurred_ms=doc.get("occurred_ms"),
        drives=int(doc.get("drives", 1)),
        expires_ms=doc.get("expires_ms"),
        postponed=int(doc.get("postponed", 0)),
        lead_ids=tuple(str(i) for i in doc.get("lead_ids") or ()),
    )


def _unreadable_of(doc: dict[str, Any]) -> Unreadable:
    """What a dead letter of a record that no longer reads can still carry."""
    event, account_id = doc.get("event"), doc.get("account_id")
    return Unreadable(
        key=str(doc["_id"]),
        channel=str(doc.get("channel") or "unknown"),
        account_id=account_id if isinstance(account_id, str) else None,
        agent_id=str(doc.get("agent_id") or ""),
        event=bytes(event) if isinstance(event, bytes | bytearray) else None,
    )


def _wall_clock() -> datetime:
    """When a record was written, for its TTL index: real time, whatever clock the handler runs on."""
    return datetime.now(UTC)
