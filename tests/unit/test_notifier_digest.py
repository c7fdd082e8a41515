"""The daily digest: which leads are new, which window is due, what the email says."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from leadflow_notifier.domain.digest import DigestItem, digest_email, digest_item, due_window
from leadflow_notifier.domain.messages import Recipient
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

pytestmark = pytest.mark.unit

AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)


def assigned(reason: AssignmentReason) -> LeadAssigned:
    return LeadAssigned.create(
        account_id="office-2",
        occurred_at=AT,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id="a",
            reason=reason,
            explanation="x",
            contact=Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "j@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


@pytest.mark.parametrize(
    ("reason", "is_new"),
    [
        (AssignmentReason.ROSTER_POSITION_1, True),
        (AssignmentReason.PRE_ASSIGNED, True),
        (AssignmentReason.CLAIMED, False),
        (AssignmentReason.FALLBACK, False),
    ],
)
def test_a_first_assignment_is_a_new_lead_a_claim_or_fall_back_is_not(reason: AssignmentReason, is_new: bool) -> None:
    item = digest_item(assigned(reason))
    assert (item is not None) is is_new
    if item is not None:
        assert (item.account_id, item.name, item.created_ms) == ("office-2", "Jane Doe", int(AT.timestamp() * 1000))


def test_the_due_window_is_the_24_hours_before_the_latest_digest_hour() -> None:
    before = due_window(datetime(2024, 3, 5, 6, 59, tzinfo=UTC), hour=7)
    after = due_window(datetime(2024, 3, 5, 7, 0, tzinfo=UTC), hour=7)
    assert before.day == date(2024, 3, 4)
    assert after.day == date(2024, 3, 5)
    assert after.end_ms == int(datetime(2024, 3, 5, 7, tzinfo=UTC).timestamp() * 1000)
    assert after.end_ms - after.start_ms == 24 * 3600 * 1000


@pytest.mark.parametrize(
    ("now", "day", "hours"),
    [
        (datetime(2026, 3, 8, 11, 59, tzinfo=UTC), date(2026, 3, 7), 24),  # 07:59 EDT: yesterday's is the due one
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), date(2026, 3, 8), 23),  # 08:00 EDT: the night lost an hour
        (datetime(2026, 11, 1, 13, 0, tzinfo=UTC), date(2026, 11, 1), 25),  # 08:00 EST: the night gained one
    ],
)
def test_each_office_gets_its_digest_at_its_own_hour_across_daylight_saving(
    now: datetime, day: date, hours: int
) -> None:
    window = due_window(now, hour=8, time_zone="America/New_York")
    assert window.day == day
    local_end = datetime.fromtimestamp(window.end_ms / 1000, ZoneInfo("America/New_York"))
    assert (local_end.date(), local_end.hour, local_end.minute) == (day, 8, 0)
    assert window.end_ms - window.start_ms == hours * 3600 * 1000


def test_the_digest_lists_each_new_lead_with_its_link() -> None:
    items = [DigestItem("office-2", f"lead-{i}", f"Lead {i}", "Website", 0) for i in range(2)]
    who = Recipient(agent_id="admin", name="Ada", email="ada@example.com")
    email = digest_email(items, who, due_window(AT, hour=7), "https://crm")
    assert email is not None
    assert email.subject == "2 new leads on Tue 05 Mar"
    for i in range(2):
        assert f"Lead {i} (Website): https://crm/accounts/office-2/leads/lead-{i}" in email.text
        assert f'href="https://crm/accounts/office-2/leads/lead-{i}"' in email.html
    assert digest_email([], who, due_window(AT, hour=7), "https://crm") is None
