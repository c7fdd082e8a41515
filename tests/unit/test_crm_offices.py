"""T2's pure rules in crm-api: who may move what where, labels, and what a move does to a lead's row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from leadflow_crm_api.domain.distribution import LeadFilter
from leadflow_crm_api.domain.lead_row import LeadRow
from leadflow_crm_api.domain.offices import (
    CARRIED_PROFILE,
    DROPPED_ON_MOVE,
    label_id,
    member_refusal,
    moved_row,
    office_refusal,
    office_transfer_id,
    profile_fields,
    same_bulk,
)
from leadflow_crm_api.domain.views import moved_summary
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadTransferred, LeadTransferredPayload

pytestmark = pytest.mark.unit

NORTH = {"_id": "north", "organisation_id": "group"}
SOUTH = {"_id": "south", "organisation_id": "group"}
ELSEWHERE = {"_id": "zeta", "organisation_id": "other-group"}
AT = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def moved(owner: str | None = "ana", owner_name: str | None = "Ana Diaz") -> LeadTransferred:
    return LeadTransferred.create(
        account_id="north",
        occurred_at=AT,
        payload=LeadTransferredPayload(
            lead_id=uuid.uuid4(),
            transfer_id=uuid.uuid4(),
            from_account_id="north",
            from_account_name="North",
            previous_owner_agent_id=owner,
            previous_owner_name=owner_name,
            to_account_id="south",
            to_account_name="South",
            agent_id="sol",
            by_user_id="nora",
            contact=Contact(first_name="Mo"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def test_offices_of_one_organisation_may_move_to_each_other() -> None:
    assert office_refusal(source=NORTH, target=SOUTH, token_organisation=None) is None
    assert office_refusal(source=NORTH, target=SOUTH, token_organisation="group") is None


@pytest.mark.parametrize(
    ("source", "target", "token", "reason"),
    [
        ({"_id": "north"}, SOUTH, None, "belongs to no organisation"),
        (NORTH, ELSEWHERE, None, "not an office of this account's organisation"),
        (NORTH, None, None, "not an office of this account's organisation"),  # unknown reads like foreign
        (NORTH, NORTH, None, "in this office already"),
        (NORTH, SOUTH, "other-group", "token's organisation"),
    ],
)
def test_refusals_name_the_field_and_the_reason(
    source: dict[str, str], target: dict[str, str] | None, token: str | None, reason: str
) -> None:
    refusal = office_refusal(source=source, target=target, token_organisation=token)
    assert refusal is not None
    assert refusal.startswith("to_account_id: ")
    assert reason in refusal


def test_a_member_must_be_of_the_account_and_not_leave_it_without_a_broker_pool() -> None:
    assert member_refusal(None, ["a"]) == "agent_id: not a team member of this account"
    assert "only agent" in (member_refusal({"_id": "a"}, ["a"]) or "")
    assert member_refusal({"_id": "a"}, ["a", "b"]) is None


def test_labels_are_one_per_name_whatever_the_case_and_spacing() -> None:
    assert label_id("south", "Hot  Lead") == label_id("south", " hot lead")
    assert label_id("south", "hot") != label_id("north", "hot")
    assert profile_fields({"labels": ["Hot", "HOT", "Cold"]})["search_labels"] == ["cold", "hot"]


def test_transfer_ids_follow_the_idempotency_key() -> None:
    assert office_transfer_id("north", "k1") == office_transfer_id("north", "k1")
    assert office_transfer_id("north", "k1") != office_transfer_id("south", "k1")
    assert office_transfer_id("north", None) != office_transfer_id("north", None)


def test_a_move_drops_campaigns_and_sharing_and_leaves_the_carried_profile_alone() -> None:
    row = {"created_at": AT.replace(year=2024), "created_ms": 1, "company": "Acme", "labels": ["Hot"]}
    changes = moved_row(LeadRow.from_doc({"_id": "l1", **row}), moved())
    assert not set(CARRIED_PROFILE) & set(changes), "a $set that never names them keeps them"
    assert {k: changes[k] for k in DROPPED_ON_MOVE} == {key: [] for key in DROPPED_ON_MOVE}
    assert (changes["transferred_to"], changes["assigned_by"], changes["open_offers"]) == (None, None, [])
    assert (changes["account_id"], changes["owner_agent_id"], changes["created_ms"]) == ("south", "sol", epoch_ms(AT))
    assert (changes["first_created_at"], changes["first_created_ms"]) == (row["created_at"], 1)
    again = moved_row(LeadRow.from_doc({"_id": "l1", **row, **changes}), moved())
    assert again["first_created_ms"] == 1, "a second move keeps the first creation"


def test_the_timeline_event_names_the_previous_owner_and_office() -> None:
    assert moved_summary(moved()) == "Transferred from North (north), owned there by Ana Diaz, to South by nora"
    assert "owned there by nobody" in moved_summary(moved(owner=None, owner_name=None))


@pytest.mark.parametrize(
    ("assigned_at", "kept"),
    [
        (AT + timedelta(minutes=5), True),  # assigned by the target office after the move: its own
        (AT - timedelta(minutes=5), False),  # before the move: the office left's (the lead came back to it)
        (None, False),  # set before the time was kept (session 30): maybe the office left's, cleared
    ],
    ids=["after-the-move", "before-the-move", "without-its-time"],
)
def test_a_move_clears_the_office_lefts_assigned_users_and_keeps_those_its_target_assigned_since(
    assigned_at: datetime | None, kept: bool
) -> None:
    """The users an office assigned to work a lead are its people (decision 0076): a move clears them as it clears
    lead sharing (helper 122: South's lead named North's Ben, who then saw and worked it once he joined South). A
    move read after the target office changed the row (a higher state version: `_left_to_target`) keeps those it
    assigned since."""
    users = {"assigned_users": ["ben"], "assigned_users_at": assigned_at}
    in_order = moved_row(LeadRow.from_doc({"_id": "l1", "account_id": "north", **users}), moved())
    assert (in_order["assigned_users"], in_order["assigned_users_at"]) == ([], None)

    late = moved()
    late = late.model_copy(update={"payload": late.payload.model_copy(update={"router_version": 4})})
    row = {"_id": "l1", "account_id": "south", "state_version": 6, "state_office": "south", **users}
    changes = moved_row(LeadRow.from_doc(row), late)
    assert ("assigned_users" not in changes) is kept, changes.get("assigned_users")


def test_a_bulk_move_is_known_again_by_its_office_and_its_selection_not_by_what_it_matches_now() -> None:
    # Session 32 (helper 144): a retry of a bulk move by filter after the moves matches none of its leads; the bulk
    # move's record keeps the filter and the leads it picked. Another office, selection or a single move's record
    # under the key is another request.
    by_filter = LeadFilter(source="Zillow").as_stored()
    stored = {"kind": "bulk", "to_account_id": "south", "lead_ids": ["l1", "l2"], "filter": by_filter}
    assert same_bulk(stored, to_account_id="south", lead_ids=None, lead_filter=by_filter)
    assert not same_bulk(stored, to_account_id="west", lead_ids=None, lead_filter=by_filter)
    assert not same_bulk(stored, to_account_id="south", lead_ids=None, lead_filter=LeadFilter().as_stored())
    assert not same_bulk(stored, to_account_id="south", lead_ids=["l1", "l2"], lead_filter=None)
    named = stored | {"filter": None}
    assert same_bulk(named, to_account_id="south", lead_ids=["l2", "l1", "l2"], lead_filter=None)
    assert not same_bulk(named, to_account_id="south", lead_ids=["l1"], lead_filter=None)
    single = {"kind": "lead", "lead_id": "l1", "to_account_id": "south", "lead_ids": ["l1"], "filter": None}
    assert not same_bulk(single, to_account_id="south", lead_ids=["l1"], lead_filter=None)
