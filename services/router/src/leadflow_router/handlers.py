"""Router use cases: load state and snapshot, decide (pure), compare-and-set, publish.

Each routing record carries an outbox: the events of its last change, with ids derived
from the input (or the record's version), and the side effects to apply with them
(rotation cursor, contact keys). A change is stored first and flushed after, so a
crash in between is repaired by the next delivery or the sweeper, with the same ids.

Exceptions: RoutingRejected (unknown account, agent or lead; activity without an
offer) becomes a dead letter with its reason at the consumer's edge.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadflow_router.adapters.codec import decode_state, encode_state, to_ms
from leadflow_router.adapters.mongo import AccountSnapshots, Contacts, Doc, LeadRecords, Rotations
from leadflow_router.domain.decisions import (
    ExistingContact,
    NewLead,
    Outcome,
    RoutingContext,
    on_activity,
    on_deadline,
    route_new_lead,
)
from leadflow_router.domain.model import AccountSnapshot, Activity, RoutingRejected
from leadflow_router.metrics import RouterMetrics
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import LeadActivity
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.kafka import PublishRaw

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECENT_INPUTS = 20  # activity ids remembered per lead to drop redeliveries
CAS_ATTEMPTS = 10


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RouterService:
    records: LeadRecords
    accounts: AccountSnapshots
    contacts: Contacts
    rotations: Rotations
    publish: PublishRaw
    metrics: RouterMetrics
    clock: Clock = utc_now
    lease_ms: int = 10_000

    # --- intake ------------------------------------------------------------------------------

    async def on_lead_received(self, event: LeadReceived) -> None:
        """Route one received lead exactly once, however often it is delivered (I1)."""
        lead_id = str(event.event_id)
        if (doc := await self.records.get(lead_id)) is not None:
            await self.flush(doc)  # a redelivery: finish what the first delivery started
            return
        account = await self._account(event.account_id)
        summary = LeadSummary(contact=event.payload.contact, source=event.payload.source, message=event.payload.message)
        keys = Contacts.keys(event.account_id, summary.contact.email, summary.contact.phone)
        rotation_key = f"{event.account_id}:{summary.source.name}"
        context = RoutingContext(existing=await self._existing(keys), rotation=await self.rotations.get(rotation_key))
        now = self.clock()
        outcome = route_new_lead(NewLead(lead_id, event.account_id, summary), account, context, now)
        effects: dict[str, Any] = {}
        if outcome.rotation is not None:
            effects["rotation"] = {"key": rotation_key, "position": outcome.rotation}
        if outcome.state is not None:
            effects["contacts"] = keys
            doc = encode_state(outcome.state.evolve(version=1))
        else:
            doc = {
                "_id": lead_id,
                "kind": "merged",
                "account_id": event.account_id,
                "version": 1,
                "next_deadline_ms": None,
            }
        doc |= self._outbox(
            outcome,
            source_id=event.event_id,
            correlation_id=event.correlation_id,
            account_id=event.account_id,
            now=now,
            effects=effects,
        )
        doc["correlation_id"] = str(event.correlation_id)
        if not await self.records.insert(doc):
            existing = await self.records.get(lead_id)
            assert existing is not None  # noqa: S101 (the insert failed on this id)
            doc = existing
        else:
            self.metrics.decisions.labels(_rule(outcome)).inc()
            log.info("lead routed", extra={"lead_id": lead_id, "rule": _rule(outcome)})
        await self.flush(doc)

    async def _existing(self, keys: list[str]) -> ExistingContact | None:
        lead_id = await self.contacts.find(keys)
        if lead_id is None:
            return None
        doc = await self.records.get(lead_id)
        return ExistingContact(lead_id, None if doc is None else doc.get("holder"))

    # --- agents' activity --------------------------------------------------------------------

    async def on_activity(self, event: LeadActivity) -> None:
        """Apply an agent's action (R8 claims); a race with another claim or an expiry has one winner (I2)."""
        lead_id = str(event.payload.lead_id)
        activity = Activity(event.payload.agent_id, event.payload.action)
        for _ in range(CAS_ATTEMPTS):
            doc = await self.records.get(lead_id)
            if doc is None or doc.get("kind") != "lead" or doc["account_id"] != event.account_id:
                raise RoutingRejected(f"unknown lead {lead_id} in account {event.account_id}")
            if str(event.event_id) in doc.get("inputs", []):
                await self.flush(doc)
                return
            state = decode_state(doc)
            now = self.clock()
            outcome = on_activity(state, activity, now)
            if outcome.state == state and not outcome.events:
                return  # a view: nothing changes, nothing to tell
            new = self._next_doc(doc, outcome, source_id=event.event_id, now=now)
            new["inputs"] = [*doc.get("inputs", [])[-(RECENT_INPUTS - 1) :], str(event.event_id)]
            if await self.records.compare_and_set(new, expected_version=state.version):
                if outcome.state is not None and outcome.state.holder != state.holder:
                    self.metrics.claims.inc()
                await self.flush(new)
                return
            self.metrics.cas_conflicts.labels("activity").inc()
        raise RuntimeError(f"lead {lead_id} kept changing under {CAS_ATTEMPTS} attempts")

    # --- durable timers ----------------------------------------------------------------------

    async def sweep_once(self) -> bool:
        """Fire the most overdue deadline, if any (I3); True when one was handled."""
        now = self.clock()
        doc = await self.records.lease_due(to_ms(now) or 0, self.lease_ms)
        if doc is None:
            return False
        state = decode_state(doc)
        account = await self._account(state.account_id)
        rotation_key = f"{state.account_id}:{state.source_name}"
        outcome = on_deadline(state, account, await self.rotations.get(rotation_key), now)
        if state.next_deadline is not None:
            self.metrics.timer_lateness.observe(max(0.0, (now - state.next_deadline).total_seconds()))
        effects: dict[str, Any] = {}
        if outcome.rotation is not None:
            effects["rotation"] = {"key": rotation_key, "position": outcome.rotation}
        new = self._next_doc(doc, outcome, source_id=uuid.UUID(state.lead_id), now=now, effects=effects)
        if await self.records.compare_and_set(new, expected_version=state.version):
            self.metrics.expiries.labels(outcome.state.status.value if outcome.state else "none").inc()
            await self.flush(new)
        else:
            self.metrics.cas_conflicts.labels("sweeper").inc()  # a claim won the race: nothing to do
        return True

    async def republish_stale(self, older_than_ms: int = 5_000, limit: int = 100) -> int:
        """Flush outboxes a crash left behind (the inputs that made them were already committed)."""
        stale = await self.records.unflushed((to_ms(self.clock()) or 0) - older_than_ms, limit)
        for doc in stale:
            await self.flush(doc)
        return len(stale)

    # --- outbox ----------------------------------------------------------------------------------

    async def flush(self, doc: Doc) -> None:
        """Apply the record's pending side effects and publish its events, then clear them."""
        outbox: list[str] = doc.get("outbox") or []
        effects: dict[str, Any] = doc.get("effects") or {}
        if not outbox and not effects:
            return
        if rotation := effects.get("rotation"):
            await self.rotations.advance(rotation["key"], int(rotation["position"]))
        if keys := effects.get("contacts"):
            await self.contacts.register(list(keys), doc["_id"])
        for raw in outbox:
            await self.publish(doc["account_id"], raw.encode())
        self.metrics.events_published.inc(len(outbox))
        await self.records.mark_flushed(doc["_id"], int(doc["version"]))

    def _outbox(
        self,
        outcome: Outcome,
        *,
        source_id: uuid.UUID,
        correlation_id: uuid.UUID,
        account_id: str,
        now: datetime,
        effects: dict[str, Any],
        purpose: str = "",
    ) -> Doc:
        events = [
            emit.kind.create(
                account_id=account_id,
                event_id=derived_event_id(source_id, f"{purpose}{index}"),
                correlation_id=correlation_id,
                occurred_at=now,
                payload=emit.payload,
            ).model_dump_json()
            for index, emit in enumerate(outcome.events)
        ]
        return {
            "outbox": events,
            "effects": effects,
            "outbox_since_ms": to_ms(now) if events or effects else None,
            "lease_until_ms": 0,
        }

    def _next_doc(
        self, doc: Doc, outcome: Outcome, *, source_id: uuid.UUID, now: datetime, effects: dict[str, Any] | None = None
    ) -> Doc:
        """The record after `outcome`: state, version + 1, and an outbox that keeps any unflushed events."""
        state = outcome.state
        assert state is not None  # noqa: S101 (transitions of an existing lead keep a state)
        version = int(doc["version"]) + 1
        new = encode_state(state.evolve(version=version))
        pending = self._outbox(
            outcome,
            source_id=source_id,
            correlation_id=uuid.UUID(doc["correlation_id"]),
            account_id=state.account_id,
            now=now,
            effects=effects or {},
            purpose=f"v{version}:",
        )
        # Events of an earlier change not yet flushed go out first (same ids: consumers drop copies).
        pending["outbox"] = [*(doc.get("outbox") or []), *pending["outbox"]]
        pending["effects"] = {**(doc.get("effects") or {}), **pending["effects"]}
        if pending["outbox"] or pending["effects"]:
            pending["outbox_since_ms"] = doc.get("outbox_since_ms") or to_ms(now)
        return {**new, **pending, "correlation_id": doc["correlation_id"], "inputs": doc.get("inputs", [])}

    async def _account(self, account_id: str) -> AccountSnapshot:
        account = await self.accounts.get(account_id)
        if account is None:
            raise RoutingRejected(f"unknown account {account_id!r}")
        return account


def _rule(outcome: Outcome) -> str:
    """The rule that decided, for metrics ("R5", "R6"...): the explanation starts with it."""
    return outcome.explanation.split(":", 1)[0][:8]
