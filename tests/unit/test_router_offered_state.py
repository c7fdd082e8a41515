"""`LeadState.offered` is `evolve` written out field by field (the decision core's hot path): it must carry
every field, so a field added to `LeadState` and forgotten there fails here."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from router_leads import LEAD_ID, NOW, SUMMARY

from leadflow_router.domain.model import LeadState, LeadStatus, Offer, OfferStatus
from leadflow_shared.events.routing import AssignmentReason

pytestmark = pytest.mark.unit


def test_offered_is_evolve_with_every_other_field_kept() -> None:
    # Every field away from its default, so a field the rebuild leaves out shows as a difference.
    earlier = Offer("a", 1, NOW, OfferStatus.EXPIRED)
    state = LeadState(
        lead_id=LEAD_ID,
        account_id="acme",
        summary=SUMMARY,
        status=LeadStatus.WAITING,
        holder="h",
        reason=AssignmentReason.CLAIMED,
        offers=(earlier,),
        round=1,
        direct_phase=True,
        next_deadline=NOW,
        referral_fee_percent=25.0,
        share_id="share-1",
        erased=True,
        rule_id="rule-1",
        fallback_step=2,
        idle_reassigned=1,
        pond="old-pond",
        version=7,
    )
    assert all(getattr(state, f.name) != f.default for f in dataclasses.fields(LeadState) if f.init), (
        "give the new field a value other than its default here"
    )
    deadline = NOW + timedelta(minutes=5)
    new = (Offer("b", 2, deadline), Offer("c", 2, deadline))

    offered = state.offered(new, 2, deadline, "pond-1")

    assert offered == state.evolve(
        status=LeadStatus.OFFERED,
        offers=(earlier, *new),
        round=2,
        direct_phase=False,
        next_deadline=deadline,
        pond="pond-1",
    )
