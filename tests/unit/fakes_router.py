"""In-memory fakes of the router's ports (the MongoDB stores, the publisher) and the leads its tests share.

The stores subclass the MongoDB adapters (the service is typed with them) and keep their documents
in dicts (routing records as the documents the real store writes), with the same semantics:
insert_batch keeps a record stored before and returns it, mark_flushed clears an outbox only at the
version given, outbox documents live in `outboxes` until end_batch. `Published` is also the publisher of the
integration harness (tests/integration/router_harness.py), where the stores are the real ones.

Imported by unit and integration tests alike (pyproject puts tests/unit on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from leadflow_router.adapters.codec import decode_outbox, decode_record, encode_outbox, encode_record
from leadflow_router.adapters.mongo import AccountSnapshots, Contacts, Doc, LeadRecords, Rotations, pending_of
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.availability import Place
from leadflow_router.domain.contacts import erased_id
from leadflow_router.domain.erasure import ErasureRequest, PendingContacts
from leadflow_router.domain.model import AccountSnapshot
from leadflow_router.domain.record import Outbox, OutboxDocument, RoutingRecord, Take, Taken
from leadflow_router.handlers import Clock, RouterService
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LEAD_EVENT, ROUTING_EVENT, LeadAssigned, LeadEvent, RoutingEvent


class FakeAccounts(AccountSnapshots):
    def __init__(self, *accounts: AccountSnapshot) -> None:
        self._accounts = {a.account_id: a for a in accounts}

    async def get(self, account_id: str, *, fresh: bool = False) -> AccountSnapshot | None:  # noqa: ARG002
        return self._accounts.get(account_id)

    async def get_many(self, account_ids: Iterable[str]) -> dict[str, AccountSnapshot | None]:
        return {account_id: self._accounts.get(account_id) for account_id in account_ids}


class FakeRecords(LeadRecords):
    """Keeps each record as the document the real store writes (`codec.encode_record`): tests read `docs`."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.outboxes: dict[str, Doc] = {}  # outbox documents (router_outboxes) by id
        self.inserted = 0

    async def get(self, lead_id: str) -> RoutingRecord | None:
        doc = self.docs.get(lead_id)
        return None if doc is None else decode_record(doc)

    async def get_many(self, lead_ids: list[str]) -> dict[str, RoutingRecord]:
        return {i: decode_record(self.docs[i]) for i in lead_ids if i in self.docs}

    async def readable_many(self, lead_ids: list[str], read: str = "batch") -> dict[str, RoutingRecord]:
        return {r.lead_id: r for r in await self._readable([self.docs[i] for i in lead_ids if i in self.docs], read)}

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        if not records:
            return [], []
        doc_id = f"{batch_id}/0"
        leads = [{"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records]
        self.outboxes[doc_id] = {"_id": doc_id, "since_ms": now_ms, "leads": leads}
        if before_records is not None:
            try:
                await before_records()
            except BaseException:
                await self.end_batch([doc_id])
                raise
        stored = []
        for record in records:
            mine = replace(record, outbox=replace(record.outbox, batch=doc_id))
            if record.lead_id not in self.docs:
                self.docs[record.lead_id] = encode_record(replace(record, outbox=Outbox(batch=doc_id)))
                self.inserted += 1
                stored.append(mine)
            else:
                stored.append(decode_record(self.docs[record.lead_id]))
        return stored, [doc_id]

    async def end_batch(self, doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            self.outboxes.pop(doc_id, None)

    async def batch_outboxes(self, doc_ids: list[str]) -> dict[str, OutboxDocument]:
        return {
            i: OutboxDocument(
                self.outboxes[i]["since_ms"],
                {item["lead_id"]: decode_outbox(item | {"batch": i}) for item in self.outboxes[i]["leads"]},
            )
            for i in doc_ids
            if i in self.outboxes
        }

    async def stale_batches(self, before_ms: int, limit: int) -> list[str]:
        stale = sorted((doc["since_ms"], i) for i, doc in self.outboxes.items() if doc["since_ms"] <= before_ms)
        return [i for _, i in stale][:limit]

    async def compare_and_set(self, record: RoutingRecord, expected_version: int) -> bool:
        if self.docs.get(record.lead_id, {}).get("version") != expected_version:
            return False
        self.docs[record.lead_id] = encode_record(record)
        return True

    async def mark_flushed(self, records: list[RoutingRecord]) -> None:
        for record in records:
            stored = self.docs.get(record.lead_id)
            if stored is not None and stored["version"] == record.version:
                stored |= {"outbox": [], "effects": {}, "outbox_since_ms": None, "outbox_keys": None}  # as the adapter

    async def due(self, now_ms: int, limit: int) -> list[RoutingRecord]:
        due = [d for d in self.docs.values() if d.get("next_deadline_ms") is not None]
        ordered = sorted((d for d in due if d["next_deadline_ms"] <= now_ms), key=lambda d: d["next_deadline_ms"])
        return await self._readable(ordered[:limit], "due", "next_deadline_ms", now_ms)

    async def postpone(self, lead_id: str, *, expected_version: int, until_ms: int) -> None:
        stored = self.docs.get(lead_id)
        if stored is not None and stored["version"] == expected_version:
            stored["next_deadline_ms"] = until_ms

    async def unflushed(self, before_ms: int, limit: int) -> list[RoutingRecord]:
        pending = [d for d in self.docs.values() if d.get("outbox_since_ms") is not None]
        docs = [d for d in pending if d["outbox_since_ms"] <= before_ms][:limit]
        return await self._readable(docs, "unflushed", "outbox_since_ms", before_ms)

    async def _set_aside(self, lead_id: object, field: str, cutoff_ms: int, until_ms: int) -> None:
        stored = self.docs.get(str(lead_id))
        if stored is not None and (stored.get(field) or 0) <= cutoff_ms:
            stored[field] = until_ms

    async def pending_contacts(self) -> PendingContacts:
        unpublished = [d for d in self.docs.values() if d.get("outbox_since_ms") is not None]
        return pending_of(self.outboxes.values(), unpublished)

    async def erase_unstored(self, lead_ids: list[str], account_id: str) -> list[str]:
        placed = [i for i in lead_ids if i not in self.docs]
        for lead_id in placed:
            placeholder = RoutingRecord(lead_id, account_id, version=1, state=None, correlation_id=lead_id)
            self.docs[lead_id] = encode_record(placeholder) | {"erased": True}
        return placed

    async def drop_from_batches(self, lead_ids: list[str], doc_ids: list[str]) -> None:
        for doc_id in doc_ids:
            if (doc := self.outboxes.get(doc_id)) is not None:
                doc["leads"] = [item for item in doc["leads"] if item["lead_id"] not in lead_ids]


class FakeContacts(Contacts):
    def __init__(self) -> None:
        self.leads: dict[str, str] = {}
        self.erased: dict[str, int] = {}  # erased id -> when (decision 0106)

    async def find(self, keys: list[str]) -> dict[str, str]:
        return {k: self.leads[k] for k in keys if k in self.leads}

    async def find_with_erasures(self, keys: list[str]) -> tuple[dict[str, str], dict[str, int]]:
        ids = {erased_id(k) for k in keys}
        return await self.find(keys), {i: ms for i, ms in self.erased.items() if i in ids}

    async def mark_erased(self, erased_ids: list[str], erased_ms: int) -> None:
        for i in erased_ids:
            self.erased[i] = max(self.erased.get(i, erased_ms), erased_ms)

    async def register(self, lead_by_key: dict[str, str]) -> None:
        for key, lead_id in lead_by_key.items():
            self.leads.setdefault(key, lead_id)

    async def of_lead(self, lead_id: str) -> list[str]:
        return sorted(k for k, v in self.leads.items() if v == lead_id)

    async def forget(self, lead_id: str, keys: list[str]) -> None:
        for key in keys:
            if self.leads.get(key) == lead_id:
                del self.leads[key]

    async def forget_leads(self, lead_ids: list[str]) -> None:
        for key in [k for k, v in self.leads.items() if v in lead_ids]:
            del self.leads[key]


class FakeRotations(Rotations):
    def __init__(self) -> None:
        self.positions: dict[str, int] = {}
        self.taken: dict[str, Taken] = {}  # each key's last take, while its position is the take's

    async def get(self, key: str) -> int:
        return self.positions.get(key, 0)

    async def get_many(self, keys: list[str]) -> dict[str, int]:
        return {key: self.positions.get(key, 0) for key in keys}

    async def advance(self, key: str, position: int) -> None:
        self.positions[key] = max(position, self.positions.get(key, 0))

    async def advance_many(self, positions: dict[str, int]) -> None:
        for key, position in positions.items():
            await self.advance(key, position)

    async def read_many(self, keys: list[str]) -> dict[str, Taken]:
        taken = {key: self.taken.get(key) for key in keys}
        return {key: t if t and t.position == self.positions.get(key, 0) else Taken(self.positions.get(key, 0))
                for key, t in taken.items()}  # fmt: skip

    async def take(self, moves: dict[str, Take]) -> set[str]:
        lost = {key for key, take in moves.items() if self.positions.get(key, 0) != take.expected}
        for key, take in ((k, t) for k, t in moves.items() if k not in lost):
            self.positions[key] = take.to
            self.taken[key] = Taken(take.to, take.start, take.leads)
        return lost

    async def rule_keys(self) -> list[str]:
        return [key for key in self.positions if ":rule:" in key]

    async def drop(self, keys: list[str]) -> None:
        for key in keys:
            self.positions.pop(key, None)


class FakeErasures:
    """In-memory `router_erasures` (ErasureLog)."""

    def __init__(self) -> None:
        self.requests: dict[str, ErasureRequest] = {}

    async def get(self, erasure_id: str) -> ErasureRequest | None:
        return self.requests.get(erasure_id)

    async def start(self, request: ErasureRequest) -> ErasureRequest:
        return self.requests.setdefault(request.erasure_id, request)

    async def finish(self, erasure_id: str, *, done_ms: int) -> None:
        self.requests[erasure_id] = replace(self.requests[erasure_id], done=True, done_ms=done_ms, contact_ids=())


class FakeCapacity:
    """The leads each agent counts against (CapacityLog): lead -> (account, agent -> at_ms), as `Capacity` keeps
    them (an agent already counted keeps its time), and beside them each decider's pending holds, (lead, agent,
    decider) -> (account, at_ms)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, dict[str, int]]] = {}
        self.pending: dict[tuple[str, str, str], tuple[str, int]] = {}
        self.versions: dict[str, int] = {}  # each lead's record version its count was written for

    def counting(self, lead_id: str) -> set[str]:
        """The agents the lead counts against now, held for good or pending."""
        held = set(self.held.get(lead_id, ("", {}))[1])
        return held | {agent for lead, agent, _ in self.pending if lead == lead_id}

    async def places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        return self._places(account_id, agent_ids, since_ms)

    def _places(self, account_id: str, agent_ids: list[str], since_ms: int) -> dict[str, dict[str, Place]]:
        found: dict[str, dict[str, Place]] = {agent: {} for agent in agent_ids}
        held = [(lead, agent, Place(at)) for lead, (account, agents) in self.held.items() if account == account_id
                for agent, at in agents.items()]  # fmt: skip
        pending = [(lead, agent, Place(at, by)) for (lead, agent, by), (account, at) in self.pending.items()
                   if account == account_id]  # fmt: skip
        for lead, agent, place in (*held, *pending):
            line = found.get(agent)
            if (
                line is not None
                and place.at_ms >= since_ms
                and (lead not in line or place.rank(lead) < line[lead].rank(lead))
            ):
                line[lead] = place
        return found

    async def hold_many(self, holds: list[tuple[str, str, tuple[str, ...], int]], at_ms: int) -> None:
        for lead_id, account_id, agents, version in holds:
            if self.versions.get(lead_id, 0) > version:
                continue  # a later version's count stands
            self.versions[lead_id] = version
            before = self.held.get(lead_id, (account_id, {}))[1]
            self.held[lead_id] = (account_id, {a: before.get(a, at_ms) for a in agents})

    async def pend(self, by: str, holds: list[tuple[str, str, tuple[str, ...]]], at_ms: int) -> None:
        for lead_id, account_id, agents in holds:
            for agent in agents:
                self.pending.setdefault((lead_id, agent, by), (account_id, at_ms))

    async def unpend(self, by: Collection[str], lead_ids: Collection[str]) -> None:
        for key in [key for key in self.pending if key[2] in by and key[0] in lead_ids]:
            del self.pending[key]


@dataclass
class Published:
    """What the router published, as (Kafka key, body); `failing` simulates a broker outage."""

    records: list[tuple[str, bytes]] = field(default_factory=list)
    failing: bool = False

    async def __call__(self, key: str, body: bytes) -> None:
        if self.failing:
            raise ConnectionError("broker down")
        self.records.append((key, body))

    def events(self) -> list[tuple[str, RoutingEvent]]:
        return [(key, ROUTING_EVENT.validate_json(body)) for key, body in self.records]

    def lead_events(self) -> list[LeadEvent]:
        return [LEAD_EVENT.validate_json(body) for _, body in self.records]

    def assigned(self) -> list[LeadAssigned]:
        """The LeadAssigned events, after checking nothing else was published."""
        events = self.lead_events()
        assert all(isinstance(e, LeadAssigned) for e in events)
        return [e for e in events if isinstance(e, LeadAssigned)]

    def clear(self) -> None:
        self.records.clear()


def pre_assigned(account_id: str, agent_id: str) -> LeadReceived:
    """A lead-gen lead (Zillow) that names its agent, with a contact unique to it."""
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pre", email=f"pre-{uuid.uuid4().hex}@example.com"),
            source=LeadSource(
                channel=LeadChannel.LEAD_GEN, name="Zillow", provider="Zillow", assigned_agent_id=agent_id
            ),
        ),
    )


def router_on_fakes(*accounts: AccountSnapshot, clock: Clock, **ports: Any) -> RouterService:
    """A RouterService on these in-memory stores, serving `accounts`; `ports` replace any of the fresh ones
    (records=, contacts=, rotations=, publish=, ...)."""
    fresh: dict[str, Any] = {"records": FakeRecords(), "contacts": FakeContacts(), "rotations": FakeRotations(),
                             "publish": Published(), "metrics": RouterMetrics(CollectorRegistry())}  # fmt: skip
    return RouterService(accounts=FakeAccounts(*accounts), clock=clock, **(fresh | ports))


def deciders_sharing(*accounts: AccountSnapshot, clocks: Sequence[Clock], **stores: Any) -> list[RouterService]:
    """A decider per clock (replicas; a consumer and a sweeper), all on one set of in-memory stores: `stores` replace
    any of the fresh ones (records=, publish=, rotations=, capacity=, ...)."""
    shared = {"records": FakeRecords(), "contacts": FakeContacts(), "rotations": FakeRotations(),
              "publish": Published()} | stores  # fmt: skip
    return [router_on_fakes(*accounts, clock=clock, **shared) for clock in clocks]


def website_lead(account_id: str, occurred_at: datetime, email: str = "pat@example.com") -> LeadReceived:
    """A lead from the brokerage's website."""
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=occurred_at,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=email),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


class ClaimRacingSweep(FakeRecords):
    """`due` answers, then `claim` lands before the sweeper's compare-and-set (another consumer or replica)."""

    def __init__(self) -> None:
        super().__init__()
        self.claim: LeadActivity | None = None
        self.service: RouterService | None = None

    async def due(self, now_ms: int, limit: int) -> list[RoutingRecord]:
        found = await super().due(now_ms, limit)
        if self.claim is not None and self.service is not None:
            claim, self.claim = self.claim, None
            await self.service.on_activity(claim)
        return found
