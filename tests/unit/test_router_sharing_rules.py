"""Lead sharing (DESIGN T1), the router's pure side: no I/O."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from router_leads import LEAD_ID, NOW, SUMMARY, direct_phase_lead, held_lead, race_withdrawn, raced_lead

from leadflow_router.adapters.codec import decode_state, encode_state
from leadflow_router.domain.decisions import on_activity, on_deadline
from leadflow_router.domain.model import (
    AccountSnapshot,
    Activity,
    Agent,
    LeadState,
    LeadStatus,
    RoutingRejected,
)
from leadflow_router.domain.sharing import LeadShare, on_lead_shared
from leadflow_router.domain.transfers import OfficeTransfer, on_office_transfer
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    LeadShared,
    LeadSharedPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

SHARE_ID = uuid.UUID(int=42)
BROKERAGE = AccountSnapshot(
    account_id="acme",
    name="Acme Realty",
    roster=tuple(Agent(agent_id=a, name=f"{a.title()} Agent") for a in ("broker", "a", "b", "c")),
)


def lead(**changes: object) -> LeadState:
    return held_lead("acme", **changes)


def offered() -> LeadState:
    return raced_lead("acme")


def share(realtor: str = "realtor-1", share_id: uuid.UUID = SHARE_ID, **changes: str) -> LeadShare:
    fields: dict[str, str] = {
        "account_id": "acme",
        "lead_id": LEAD_ID,
        "realtor_name": f"Realtor {realtor}",
        "assigned_by": "Acme Realty",
        "by_user_id": "broker-user",
        **changes,
    }
    return LeadShare(share_id=share_id, realtor_id=realtor, **fields)


def test_held_lead_goes_to_the_realtor() -> None:
    outcome = on_lead_shared(lead(), share())
    state = outcome.state
    assert state is not None
    assert state.account_id == "acme"  # it stays the brokerage's lead
    assert state.status is LeadStatus.ASSIGNED
    assert state.holder == "realtor-1"
    assert state.reason is AssignmentReason.LEAD_SHARING
    assert state.share_id == str(SHARE_ID)
    assert state.next_deadline is None
    assert not state.direct_phase
    assert state.summary == SUMMARY
    assert [e.kind for e in outcome.events] == [LeadShared]
    assert outcome.events[0].payload == LeadSharedPayload(
        lead_id=uuid.UUID(LEAD_ID),
        share_id=SHARE_ID,
        agent_id="realtor-1",
        realtor_name="Realtor realtor-1",
        assigned_by="Acme Realty",
        previous_owner_agent_id="a",
        by_user_id="broker-user",
    )
    assert outcome.explanation.startswith("T1:")


def test_lead_in_a_race_withdraws_open_offers_first_then_is_shared() -> None:
    outcome = on_lead_shared(offered(), share())
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, OfferWithdrawn, LeadShared]
    assert [e.payload for e in outcome.events[:2]] == [
        OfferClosedPayload(
            lead_id=uuid.UUID(LEAD_ID), agent_id=agent, offer_round=2, reason=WithdrawalReason.LEAD_SHARING
        )
        for agent in ("b", "c")
    ]
    state = race_withdrawn(outcome)  # closed offers stay as they were
    assert (state.status, state.holder) == (LeadStatus.ASSIGNED, "realtor-1")
    shared = outcome.events[-1].payload
    assert isinstance(shared, LeadSharedPayload)
    assert shared.previous_owner_agent_id is None  # offered: nobody held it
    assert "2 open offer(s) withdrawn" in outcome.explanation


def test_direct_phase_offer_is_withdrawn_and_the_phase_ends() -> None:
    state = direct_phase_lead("acme")
    outcome = on_lead_shared(state, share())
    assert outcome.state is not None
    assert not outcome.state.direct_phase
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, LeadShared]


@pytest.mark.parametrize("status", [LeadStatus.FELL_BACK, LeadStatus.WAITING])
def test_fallen_back_or_waiting_lead_is_shared_too(status: LeadStatus) -> None:
    holder = "broker" if status is LeadStatus.FELL_BACK else None
    waiting_until = NOW + timedelta(hours=3) if status is LeadStatus.WAITING else None
    outcome = on_lead_shared(lead(status=status, holder=holder, next_deadline=waiting_until), share())
    assert outcome.state is not None
    assert (outcome.state.status, outcome.state.holder) == (LeadStatus.ASSIGNED, "realtor-1")
    assert outcome.state.next_deadline is None  # a paused re-offer (R10) will not happen
    payload = outcome.events[-1].payload
    assert isinstance(payload, LeadSharedPayload)
    assert payload.previous_owner_agent_id == holder


def test_realtor_outside_the_roster_is_fine() -> None:
    assert BROKERAGE.agent("outside-realtor") is None
    outcome = on_lead_shared(lead(), share("outside-realtor"))
    assert outcome.state is not None
    assert outcome.state.holder == "outside-realtor"


def test_same_share_to_the_current_holder_is_a_no_op() -> None:
    shared = on_lead_shared(offered(), share()).state
    assert shared is not None
    again = on_lead_shared(shared, share())
    assert again.state == shared
    assert again.events == ()


def test_another_share_to_the_same_realtor_is_told_again() -> None:
    shared = on_lead_shared(lead(), share()).state
    assert shared is not None
    later = uuid.UUID(int=43)
    outcome = on_lead_shared(shared, share(share_id=later))
    assert outcome.state is not None
    assert (outcome.state.holder, outcome.state.share_id) == ("realtor-1", str(later))
    [event] = outcome.events
    assert isinstance(event.payload, LeadSharedPayload)
    assert (event.payload.share_id, event.payload.previous_owner_agent_id) == (later, "realtor-1")


def test_sharing_again_moves_the_holder_to_the_second_realtor() -> None:
    first = on_lead_shared(offered(), share("realtor-1")).state
    assert first is not None
    second_share = uuid.UUID(int=44)
    outcome = on_lead_shared(first, share("realtor-2", second_share))
    assert outcome.state is not None
    assert (outcome.state.holder, outcome.state.share_id) == ("realtor-2", str(second_share))
    assert outcome.state.reason is AssignmentReason.LEAD_SHARING
    [event] = outcome.events  # the race's offers were withdrawn by the first share
    assert event.kind is LeadShared
    assert isinstance(event.payload, LeadSharedPayload)
    assert (event.payload.agent_id, event.payload.previous_owner_agent_id) == ("realtor-2", "realtor-1")
    assert event.payload.share_id == second_share


def test_realtor_acts_as_the_holder_and_withdrawn_racers_claim_nothing() -> None:
    shared = on_lead_shared(offered(), share()).state
    assert shared is not None
    logged = on_activity(shared, Activity("realtor-1", ActivityAction.NOTE), NOW)
    assert logged.state == shared
    assert [e.kind for e in logged.events] == [ActivityLogged]
    racer = on_activity(shared, Activity("b", ActivityAction.CALL), NOW)
    assert racer.state == shared
    [event] = racer.events
    assert isinstance(event.payload, ActivityLoggedPayload)
    assert event.payload.claim_refused == "the offer to b was withdrawn; the lead is held by realtor-1"


def test_sweeper_has_nothing_to_fire_on_a_shared_lead() -> None:
    shared = on_lead_shared(offered(), share()).state
    assert shared is not None
    outcome = on_deadline(shared, BROKERAGE, 0, NOW + timedelta(hours=1))
    assert outcome.state == shared
    assert outcome.events == ()


def test_share_id_survives_the_record_and_an_office_transfer_ends_it() -> None:
    shared = on_lead_shared(lead(), share()).state
    assert shared is not None
    assert decode_state(encode_state(shared)) == shared
    assert decode_state({k: v for k, v in encode_state(lead()).items() if k != "share_id"}).share_id is None
    other = AccountSnapshot(account_id="other", name="Other", roster=(Agent("other-broker", "Other Broker"),))
    moved = on_office_transfer(shared, BROKERAGE, other, OfficeTransfer(uuid.UUID(int=5), LEAD_ID, "admin")).state
    assert moved is not None
    assert (moved.holder, moved.share_id) == ("other-broker", None)


def test_lead_of_another_account_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="unknown lead"):
        on_lead_shared(lead(account_id="elsewhere"), share())


def test_command_for_another_lead_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="applied to lead"):
        on_lead_shared(lead(), share(lead_id=str(uuid.UUID(int=8))))
