"""RoutingRecord and LeadState <-> MongoDB document (`router_leads`). Times are stored as epoch
milliseconds (see docs/decisions/0004). The document's shape is what it always was: records stored
before this module took domain objects read the same."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from leadflow_router.domain.model import LeadState, LeadStatus, Offer, OfferStatus
from leadflow_router.domain.record import Effects, Outbox, RoutingRecord
from leadflow_shared.clock import epoch_ms, epoch_ms_ceil, from_epoch_ms
from leadflow_shared.events.routing import AssignmentReason, LeadSummary
from leadflow_shared.routing_info import RoutingDecision


def to_ms(moment: datetime | None) -> int | None:
    """Whole milliseconds since 1970, in integer arithmetic (a float timestamp can lose one)."""
    return None if moment is None else epoch_ms(moment)


def deadline_ms(moment: datetime | None) -> int | None:
    """A deadline in whole milliseconds, rounded up: stored and swept so, it is never before the one
    an event stated (docs/rules.md, R claim window)."""
    return None if moment is None else epoch_ms_ceil(moment)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else from_epoch_ms(value)


def encode_state(state: LeadState) -> dict[str, Any]:
    return {
        "_id": state.lead_id,
        "kind": "lead",
        "account_id": state.account_id,
        # Criteria only when the lead has them: older records keep the shape they had.
        "summary": state.summary.model_dump(mode="json", exclude=None if state.summary.criteria else {"criteria"}),
        "status": state.status.value,
        "holder": state.holder,
        "reason": state.reason.value if state.reason else None,
        "offers": [
            {"agent_id": o.agent_id, "round": o.round, "deadline_ms": deadline_ms(o.deadline), "status": o.status.value}
            for o in state.offers
        ],
        # Derived, for finding an agent's leads when it leaves the office (never decoded).
        "open_to": sorted({o.agent_id for o in state.open_offers}),
        "round": state.round,
        "direct_phase": state.direct_phase,
        "next_deadline_ms": deadline_ms(state.next_deadline),
        "referral_fee_percent": state.referral_fee_percent,
        "share_id": state.share_id,
        "version": state.version,
        # Only on erased leads (decision 0050): every other record keeps the shape it always had.
        **({"erased": True} if state.erased else {}),
        **({"rule_id": state.rule_id} if state.rule_id is not None else {}),
        **({"fallback_step": state.fallback_step} if state.fallback_step else {}),
        **({"idle_reassigned": state.idle_reassigned} if state.idle_reassigned else {}),
        **({"pond": state.pond} if state.pond is not None else {}),
    }


def decode_state(doc: dict[str, Any]) -> LeadState:
    return LeadState(
        lead_id=doc["_id"],
        account_id=doc["account_id"],
        summary=LeadSummary.model_validate(doc["summary"]),
        status=LeadStatus(doc["status"]),
        holder=doc.get("holder"),
        reason=AssignmentReason(doc["reason"]) if doc.get("reason") else None,
        offers=tuple(
            Offer(
                o["agent_id"],
                o["round"],
                from_ms(o["deadline_ms"]) or datetime.min.replace(tzinfo=UTC),
                OfferStatus(o["status"]),
            )
            for o in doc.get("offers", [])
        ),
        round=doc.get("round", 0),
        direct_phase=bool(doc.get("direct_phase", False)),
        next_deadline=from_ms(doc.get("next_deadline_ms")),
        referral_fee_percent=float(doc.get("referral_fee_percent", 0.0)),
        share_id=doc.get("share_id"),
        erased=bool(doc.get("erased", False)),
        rule_id=doc.get("rule_id"),
        fallback_step=int(doc.get("fallback_step", 0)),
        idle_reassigned=int(doc.get("idle_reassigned", 0)),
        pond=doc.get("pond"),
        version=int(doc["version"]),
    )


def encode_record(record: RoutingRecord) -> dict[str, Any]:
    """The record's `router_leads` document: its state's fields (or a merged repeat's few), the outbox."""
    if record.state is not None:
        doc = encode_state(record.state.evolve(version=record.version))
    else:
        doc = {"_id": record.lead_id, "kind": "merged", "account_id": record.account_id,
               "version": record.version, "next_deadline_ms": None}  # fmt: skip
    outbox = encode_outbox(record.outbox)
    doc["outbox"], doc["effects"], doc["outbox_since_ms"] = outbox.pop("events"), outbox.pop("effects"), None
    doc |= {f"outbox_{name}": value for name, value in outbox.items()}
    if record.outbox.batch is not None:
        doc["outbox_batch"] = record.outbox.batch
    if record.decisions:
        doc["routing"] = list(record.decisions)
    if record.received is not None:
        doc["received_digest"] = record.received
    return doc | {"correlation_id": record.correlation_id, "inputs": list(record.inputs)}


def decode_record(doc: dict[str, Any]) -> RoutingRecord:
    return RoutingRecord(
        lead_id=doc["_id"],
        account_id=doc["account_id"],
        version=int(doc["version"]),
        state=decode_state(doc) if doc.get("kind") == "lead" else None,
        correlation_id=str(doc.get("correlation_id") or doc["_id"]),
        inputs=tuple(doc.get("inputs") or ()),
        outbox=decode_outbox({"events": doc.get("outbox"), "effects": doc.get("effects")} | _outbox_fields(doc)),
        decisions=_decisions(doc.get("routing")),
        received=doc["received_digest"] if isinstance(doc.get("received_digest"), str) else None,
    )


def _outbox_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The record's `outbox_*` fields, by their names in an outbox document."""
    return {name: doc.get(f"outbox_{name}") for name in ("since_ms", "keys", "trace", "batch")}


def encode_outbox(outbox: Outbox) -> dict[str, Any]:
    """An outbox as stored: in its record's fields `outbox*` and `effects`, or in a batch's outbox document."""
    doc: dict[str, Any] = {"events": list(outbox.events), "effects": _encode_effects(outbox.effects)}
    if outbox.since_ms is not None:
        doc["since_ms"] = outbox.since_ms
    if outbox.keys is not None:
        doc["keys"] = list(outbox.keys)
    if outbox.trace is not None:
        doc["trace"] = outbox.trace
    return doc


def decode_outbox(doc: dict[str, Any]) -> Outbox:
    effects: dict[str, Any] = doc.get("effects") or {}
    rotation = effects.get("rotation")
    return Outbox(
        events=tuple(doc.get("events") or ()),
        keys=tuple(doc["keys"]) if doc.get("keys") else None,
        effects=Effects(
            rotation=(str(rotation["key"]), int(rotation["position"])) if rotation else None,
            counts=tuple((str(key), int(count)) for key, count in effects.get("counts") or ()),
            contacts=tuple(effects.get("contacts") or ()),
            contacts_lead=effects.get("contacts_lead"),
            forget_contacts=tuple(effects.get("forget_contacts") or ()),
            capacity=tuple(effects["capacity"]) if effects.get("capacity") is not None else None,
            pending=tuple(str(by) for by in effects.get("pending") or ()),
        ),
        since_ms=doc.get("since_ms"),
        trace=doc.get("trace"),
        batch=doc.get("batch"),
    )


def _decisions(stored: Any) -> tuple[str | dict[str, Any], ...]:
    """The stored routing decisions, as stored: JSON text, or documents in records stored before decision 0096
    (read by `readable_decisions` when someone asks)."""
    return tuple(item for item in stored if isinstance(item, str | dict)) if isinstance(stored, list) else ()


def readable_decisions(stored: tuple[str | dict[str, Any], ...]) -> tuple[RoutingDecision, ...]:
    """The stored routing decisions that can be read (a record is never unreadable because of them)."""
    decisions = []
    for item in stored:
        with contextlib.suppress(ValidationError):
            if isinstance(item, str):
                decisions.append(RoutingDecision.model_validate_json(item))
            else:
                decisions.append(RoutingDecision.model_validate(item))
    return tuple(decisions)


def _encode_effects(effects: Effects) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if effects.rotation is not None:
        doc["rotation"] = {"key": effects.rotation[0], "position": effects.rotation[1]}
    if effects.counts:
        doc["counts"] = [list(count) for count in effects.counts]
    if effects.contacts:
        doc["contacts"] = list(effects.contacts)
    if effects.contacts_lead is not None:
        doc["contacts_lead"] = effects.contacts_lead
    if effects.forget_contacts:
        doc["forget_contacts"] = list(effects.forget_contacts)
    if effects.capacity is not None:
        doc["capacity"] = list(effects.capacity)
    if effects.pending:
        doc["pending"] = list(effects.pending)
    return doc
