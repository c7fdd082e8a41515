"""Notifier: the email telling an agent a lead is theirs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from leadflow_notifier.domain.messages import Recipient, lead_assigned_email
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

pytestmark = pytest.mark.unit

AGENT = Recipient(agent_id="agent-1", name="Alex Agent", email="alex@acme-realty.com")
LEAD_ID = uuid.UUID("0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01")


def _assigned(message: str = "", **contact: str) -> LeadAssigned:
    return LeadAssigned.create(
        account_id="acme-realty",
        occurred_at=datetime(2024, 5, 1, 12, tzinfo=UTC),
        payload=LeadAssignedPayload(
            lead_id=LEAD_ID,
            agent_id="agent-1",
            reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="Round robin is off: new leads go to roster position 1.",
            contact=Contact.model_validate({"first_name": "Jane", "last_name": "Doe"} | contact),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            message=message,
        ),
    )


def test_email_to_the_agent_about_the_lead() -> None:
    event = _assigned(message="Is 12 Elm St still for sale?", email="jane@example.com", phone="+14155550123")

    email = lead_assigned_email(event, AGENT, "https://crm.example.com/")

    assert email.to == "alex@acme-realty.com"
    assert "Jane Doe" in email.subject
    assert email.lead_id == str(LEAD_ID)
    assert f"https://crm.example.com/accounts/acme-realty/leads/{LEAD_ID}" in email.text
    assert "//v1" not in email.text
    for expected in (
        "Hi Alex Agent,",
        "jane@example.com",
        "+14155550123",
        "Is 12 Elm St still for sale?",
        "Why you: you are first on the office's roster",
        f"Lead id: {LEAD_ID}",
    ):
        assert expected in email.text
    assert "Round robin is off" not in email.text, "the router's explanation is routing info (N5)"


def test_email_without_contact_details_or_message() -> None:
    email = lead_assigned_email(_assigned(email="jane@example.com"), AGENT, "https://crm.example.com")

    assert "Phone: -" in email.text
    assert "Their message:" not in email.text
    assert f"https://crm.example.com/accounts/acme-realty/leads/{LEAD_ID}" in email.text


def test_subject_is_one_line() -> None:
    email = lead_assigned_email(_assigned(last_name="", email="jane@example.com"), AGENT, "https://crm.example.com")
    assert email.subject == "New lead: Jane"
    assert "\n" not in email.subject
