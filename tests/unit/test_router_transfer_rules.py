"""Office-to-office transfers (DESIGN T2), the router's pure side: no I/O."""

from __future__ import annotations

import uuid

import pytest
from router_leads import LEAD_ID, SUMMARY, direct_phase_lead, held_lead, race_withdrawn, raced_lead

from leadflow_router.domain.model import (
    AccountSnapshot,
    Agent,
    LeadState,
    LeadStatus,
    RoutingRejected,
)
from leadflow_router.domain.transfers import OfficeTransfer, on_office_transfer, team_member_transferred
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    TeamMemberTransferred,
    TeamMemberTransferredPayload,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

TRANSFER_ID = uuid.UUID(int=99)


def office(account_id: str, *roster: str) -> AccountSnapshot:
    return AccountSnapshot(
        account_id=account_id,
        name=f"{account_id.title()} Office",
        roster=tuple(Agent(agent_id=a, name=f"{a.title()} Agent") for a in roster),
    )


NORTH = office("north", "north-broker", "a", "b", "c")
SOUTH = office("south", "south-broker", "x")


def lead(**changes: object) -> LeadState:
    return held_lead("north", **changes)


def offered() -> LeadState:
    return raced_lead("north")


def transfer(lead_id: str = LEAD_ID) -> OfficeTransfer:
    return OfficeTransfer(transfer_id=TRANSFER_ID, lead_id=lead_id, by_user_id="admin-1")


def test_held_lead_moves_to_the_target_broker_pool() -> None:
    outcome = on_office_transfer(lead(), NORTH, SOUTH, transfer())
    state = outcome.state
    assert state is not None
    assert state.account_id == "south"
    assert state.status is LeadStatus.ASSIGNED
    assert state.holder == "south-broker"
    assert state.reason is AssignmentReason.OFFICE_TRANSFER
    assert state.next_deadline is None
    assert not state.direct_phase
    assert state.summary == SUMMARY
    assert [e.kind for e in outcome.events] == [LeadTransferred]
    assert outcome.explanation.startswith("T2:")


def test_lead_transferred_names_both_offices_and_the_previous_owner() -> None:
    outcome = on_office_transfer(lead(), NORTH, SOUTH, transfer())
    payload = outcome.events[-1].payload
    assert payload == LeadTransferredPayload(
        lead_id=uuid.UUID(LEAD_ID),
        transfer_id=TRANSFER_ID,
        from_account_id="north",
        from_account_name="North Office",
        previous_owner_agent_id="a",
        previous_owner_name="A Agent",
        to_account_id="south",
        to_account_name="South Office",
        agent_id="south-broker",
        by_user_id="admin-1",
        contact=SUMMARY.contact,
        source=SUMMARY.source,
    )


def test_offered_lead_withdraws_open_offers_first_then_transfers() -> None:
    outcome = on_office_transfer(offered(), NORTH, SOUTH, transfer())
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, OfferWithdrawn, LeadTransferred]
    withdrawn = [e.payload for e in outcome.events[:2]]
    assert withdrawn == [
        OfferClosedPayload(
            lead_id=uuid.UUID(LEAD_ID), agent_id=agent, offer_round=2, reason=WithdrawalReason.OFFICE_TRANSFER
        )
        for agent in ("b", "c")
    ]
    state = race_withdrawn(outcome)  # closed offers stay as they were
    assert state.holder == "south-broker"
    transferred = outcome.events[-1].payload
    assert isinstance(transferred, LeadTransferredPayload)
    assert transferred.previous_owner_agent_id is None
    assert transferred.previous_owner_name is None


def test_direct_phase_offer_is_withdrawn_and_the_phase_ends() -> None:
    state = direct_phase_lead("north")
    outcome = on_office_transfer(state, NORTH, SOUTH, transfer())
    assert outcome.state is not None
    assert not outcome.state.direct_phase
    assert [e.kind for e in outcome.events] == [OfferWithdrawn, LeadTransferred]


@pytest.mark.parametrize("status", [LeadStatus.FELL_BACK, LeadStatus.WAITING])
def test_fallen_back_or_waiting_lead_moves_too(status: LeadStatus) -> None:
    holder = "north-broker" if status is LeadStatus.FELL_BACK else None
    outcome = on_office_transfer(lead(status=status, holder=holder), NORTH, SOUTH, transfer())
    assert outcome.state is not None
    assert outcome.state.status is LeadStatus.ASSIGNED
    payload = outcome.events[-1].payload
    assert isinstance(payload, LeadTransferredPayload)
    assert payload.previous_owner_agent_id == holder
    assert payload.previous_owner_name == ("North-Broker Agent" if holder else None)


def test_previous_owner_no_longer_on_the_roster_has_no_name() -> None:
    outcome = on_office_transfer(lead(holder="gone"), NORTH, SOUTH, transfer())
    payload = outcome.events[-1].payload
    assert isinstance(payload, LeadTransferredPayload)
    assert payload.previous_owner_agent_id == "gone"
    assert payload.previous_owner_name is None


def test_lead_already_in_the_target_is_left_alone() -> None:
    moved = lead(account_id="south", holder="south-broker", reason=AssignmentReason.OFFICE_TRANSFER)
    outcome = on_office_transfer(moved, NORTH, SOUTH, transfer())
    assert outcome.state == moved
    assert outcome.events == ()


def test_transfer_to_the_same_office_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="own office"):
        on_office_transfer(lead(), NORTH, NORTH, transfer())


def test_lead_of_neither_office_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="unknown lead"):
        on_office_transfer(lead(account_id="east"), NORTH, SOUTH, transfer())


def test_target_with_an_empty_roster_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="empty roster"):
        on_office_transfer(lead(), NORTH, office("south"), transfer())


def test_command_for_another_lead_is_rejected() -> None:
    with pytest.raises(RoutingRejected):
        on_office_transfer(lead(), NORTH, SOUTH, transfer(str(uuid.UUID(int=8))))


def test_transfer_is_pure() -> None:
    state = offered()
    assert on_office_transfer(state, NORTH, SOUTH, transfer()) == on_office_transfer(state, NORTH, SOUTH, transfer())
    assert state.account_id == "north"  # the input is untouched
    assert len(state.open_offers) == 2


def test_team_member_relay_names_both_offices() -> None:
    emit = team_member_transferred(
        NORTH, SOUTH, transfer_id=TRANSFER_ID, agent_id="b", agent_name="B Agent", by_user_id="admin-1"
    )
    assert emit.kind is TeamMemberTransferred
    assert emit.payload == TeamMemberTransferredPayload(
        agent_id="b",
        agent_name="B Agent",
        transfer_id=TRANSFER_ID,
        from_account_id="north",
        from_account_name="North Office",
        to_account_name="South Office",
        by_user_id="admin-1",
    )


def test_team_member_to_the_same_office_is_rejected() -> None:
    with pytest.raises(RoutingRejected, match="own office"):
        team_member_transferred(
            NORTH, NORTH, transfer_id=TRANSFER_ID, agent_id="b", agent_name="B", by_user_id="admin-1"
        )
