"""crm-api records an agent's action on the row itself (`LeadViews.touch`, another process, no lock with the
projection). A late event of the millisecond of the row's last activity, decided before the event that set it
(`projection.first_of_its_ms`, decision 0093), replaces that activity only while it is still that millisecond's of a
later version (`RowChanges.replaces`; the same filter in MongoDB): an action recorded between the projection's read
and its write stays (a review, session 27)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow_crm_api.domain.projection import LAST_ACTIVITY_VERSION, RowState, first_row, row_changes
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadEvent,
    LeadOffered,
    LeadOfferedPayload,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
LEAD = uuid.uuid4()
CONTACT = Contact(first_name="Jane", last_name="Doe", email="jane@example.com")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def _events() -> tuple[LeadOffered, LeadClaimed, ActivityLogged]:
    """Offered to ana (v1); ana claims it (v2); bob's claim of the same millisecond refused (v3)."""
    offer = LeadOffered.create(account_id="acme", occurred_at=T0, payload=LeadOfferedPayload(
        lead_id=LEAD, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=15),
        explanation="R6", contact=CONTACT, source=SOURCE, router_version=1))  # fmt: skip
    claim = LeadClaimed.create(account_id="acme", occurred_at=T1, payload=LeadClaimedPayload(
        lead_id=LEAD, agent_id="ana", action=ActivityAction.CALL, offer_round=1, router_version=2))  # fmt: skip
    refused = ActivityLogged.create(account_id="acme", occurred_at=T1, payload=ActivityLoggedPayload(
        lead_id=LEAD, agent_id="ana", action=ActivityAction.CALL, by_agent_id="bob",
        claim_refused="ana holds the lead", router_version=3))  # fmt: skip
    return offer, claim, refused


def _apply(row: Mapping[str, Any], event: LeadEvent) -> dict[str, Any]:
    return dict(row_changes(event, RowState.of(row)).applied_to(row))


def test_an_action_recorded_while_a_late_event_of_the_same_millisecond_is_projected_stays_the_last_activity() -> None:
    offer, claim, refused = _events()
    made = first_row(offer)
    assert made is not None
    row = _apply(made.fields, refused)  # the claim (v2) dead-lettered, the refusal (v3) applied
    assert (row["last_activity_ms"], row[LAST_ACTIVITY_VERSION]) == (epoch_ms(T1), 3)

    read = RowState.of(row)  # the projection reads the row for the claim, replayed
    action_at = T1 + timedelta(seconds=30)
    touched = row | {  # meanwhile crm-api records ana's note on the row (`LeadViews.touch`)
        "last_activity_at": action_at,
        "last_activity_ms": epoch_ms(action_at),
        "last_activity_kind": "note",
        "last_activity_by": "ana",
    }
    after = row_changes(claim, read).applied_to(touched)  # the claim's write, on the row as it is now

    assert (after["last_activity_ms"], after["last_activity_kind"]) == (epoch_ms(action_at), "note"), (
        "the late claim's activity, older, overwrote the action crm-api recorded after it"
    )
