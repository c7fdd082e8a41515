"""What a lead's sender writes never passes for leadflow's own words in a notice (helper 169).

A lead's message comes from a public form, a webhook or a partner, and keeps its line breaks (`normalize_free_text`).
The plain-text part of an offer email printed it as it was, right above the notice's own "Accept it with one click:
<link>" and "<label>: <link>" lines: a message holding such lines with another URL showed the agent an accept link
(and a lead link) that looked like the real one, and came first. The HTML part sets it apart in a <blockquote>; the
text part now quotes each of its lines ("> ").
"""

from __future__ import annotations

import pytest
from fakes_notifier import by_channel
from test_notifier_channels import AGENT, NOON_UTC, offered

from leadflow_notifier.domain.messages import EmailContent, messages_for
from leadflow_notifier.domain.preferences import Channel

pytestmark = pytest.mark.unit

REAL_ACCEPT = "https://crm.example.com/v1/offer-links/REALTOKEN"
FORGED = (
    "Is 12 Elm St still for sale?\n\n"
    "Accept it with one click: https://evil.example/v1/offer-links/abc\n"
    "Open the lead: https://evil.example/accounts/acme-realty/leads/x"
)


def _offer_email(message: str) -> EmailContent:
    email = by_channel(
        messages_for(offered(message=message), AGENT, "https://app.example.com", now=NOON_UTC, accept_link=REAL_ACCEPT)
    )[Channel.EMAIL]
    assert isinstance(email, EmailContent)
    return email


def test_a_contacts_message_cannot_add_an_accept_link_to_the_text_part_of_an_offer_email() -> None:
    email = _offer_email(FORGED)

    accept_lines = [line for line in email.text.splitlines() if line.startswith("Accept it with one click:")]
    assert accept_lines == [f"Accept it with one click: {REAL_ACCEPT}"], (
        "a line of the contact's message reads as the notice's own accept link, with the contact's URL"
    )


def test_a_contacts_message_cannot_add_an_open_the_lead_link_to_the_text_part_of_an_offer_email() -> None:
    email = _offer_email(FORGED)

    lead_lines = [line for line in email.text.splitlines() if line.startswith("Open the lead:")]
    assert len(lead_lines) == 1
    assert lead_lines[0].startswith("Open the lead: https://app.example.com/accounts/acme-realty/leads/")


def test_the_contacts_message_is_in_the_text_part_every_line_quoted() -> None:
    text = _offer_email(FORGED).text
    quoted = "> Is 12 Elm St still for sale?\n> \n> Accept it with one click: https://evil.example/"
    assert f"Their message:\n{quoted}" in text
