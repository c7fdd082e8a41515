"""LeadState <-> MongoDB document. Times are stored as epoch milliseconds (see docs/decisions/0004)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from leadflow_router.domain.model import LeadState, LeadStatus, Offer, OfferStatus
from leadflow_shared.clock import epoch_ms, from_epoch_ms
from leadflow_shared.events.routing import AssignmentReason, LeadSummary


def to_ms(moment: datetime | None) -> int | None:
    """Whole milliseconds since 1970, in integer arithmetic (a float timestamp can lose one)."""
    return None if moment is None else epoch_ms(moment)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else from_epoch_ms(value)


def encode_state(state: LeadState) -> dict[str, Any]:
    return {
        "_id": state.lead_id,
        "kind": "lead",
        "account_id": state.account_id,
        "summary": state.summary.model_dump(mode="json"),
        "status": state.status.value,
        "holder": state.holder,
        "reason": state.reason.value if state.reason else None,
        "offers": [
            {"agent_id": o.agent_id, "round": o.round, "deadline_ms": to_ms(o.deadline), "status": o.status.value}
            for o in state.offers
        ],
        # Derived, for finding an agent's leads when it leaves the office (never decoded).
        "open_to": sorted({o.agent_id for o in state.open_offers}),
        "round": state.round,
        "direct_phase": state.direct_phase,
        "next_deadline_ms": to_ms(state.next_deadline),
        "referral_fee_percent": state.referral_fee_percent,
        "share_id": state.share_id,
        "version": state.version,
        # Only on erased leads (decision 0050): every other record keeps the shape it always had.
        **({"erased": True} if state.erased else {}),
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
        version=int(doc["version"]),
    )
