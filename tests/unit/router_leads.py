"""Leads in the states the router's rule tests start from (T1 sharing, T2 transfers), what withdrawing
a race's open offers leaves, and new leads for the router's state tests.

Imported by the test modules (pyproject puts this folder on pytest's sys.path; it holds no tests).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadflow_router.domain.decisions import Outcome
from leadflow_router.domain.model import LeadState, LeadStatus, Offer, OfferStatus
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadSummary

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
LEAD_ID = str(uuid.UUID(int=7))
SUMMARY = LeadSummary(
    contact=Contact(first_name="Jane", email="jane@example.com", phone="+15555550100"),
    source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
)


def held_lead(account_id: str, /, **changes: object) -> LeadState:
    """Agent "a" claimed the lead; `changes` on top (an `account_id` among them too)."""
    base = LeadState(lead_id=LEAD_ID, account_id=account_id, summary=SUMMARY, status=LeadStatus.ASSIGNED, holder="a")
    return base.evolve(**{"reason": AssignmentReason.CLAIMED, **changes})


def raced_lead(account_id: str) -> LeadState:
    """Round 2 of a race: "a"'s offer of round 1 expired; "b" and "c" have theirs open for 10 minutes."""
    deadline = NOW + timedelta(minutes=10)
    return held_lead(
        account_id,
        status=LeadStatus.OFFERED,
        holder=None,
        reason=None,
        round=2,
        offers=(
            Offer("a", 1, NOW - timedelta(minutes=5), OfferStatus.EXPIRED),
            Offer("b", 2, deadline),
            Offer("c", 2, deadline),
        ),
        next_deadline=deadline,
    )


def direct_phase_lead(account_id: str) -> LeadState:
    """Offered to "a" alone, in the direct phase, for 10 minutes."""
    deadline = NOW + timedelta(minutes=10)
    return held_lead(
        account_id,
        status=LeadStatus.OFFERED,
        holder=None,
        offers=(Offer("a", 1, deadline),),
        round=1,
        direct_phase=True,
        next_deadline=deadline,
    )


def race_withdrawn(outcome: Outcome) -> LeadState:
    """The state `outcome` leaves a `raced_lead` in, checked: its open offers withdrawn (closed ones stay as
    they were), nothing left open and no deadline."""
    state = outcome.state
    assert state is not None
    assert [(o.agent_id, o.status) for o in state.offers] == [
        ("a", OfferStatus.EXPIRED),
        ("b", OfferStatus.WITHDRAWN),
        ("c", OfferStatus.WITHDRAWN),
    ]
    assert not state.open_offers
    assert state.next_deadline is None
    return state


def lead_received(account_id: str, *, at: datetime, email: str | None = None, source: str = "Website") -> LeadReceived:
    """A new lead from the brokerage's site, as intake hands it to the router; a fresh email unless given."""
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=at,
        payload=LeadReceivedPayload(
            contact=Contact(
                first_name="Lead", email=email or f"lead-{uuid.uuid4().hex}@example.com", phone="+15555550123"
            ),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source),
        ),
    )
