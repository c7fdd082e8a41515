"""What a lead's sender writes never passes for leadflow's own words in a notice (helper 169).

A lead's message comes from a public form, a webhook or a partner, and keeps its line breaks (`normalize_free_text`).
The plain-text part of an offer email printed it as it was, right above the notice's own "Accept it with one click:
<link>" and "<label>: <link>" lines: a message holding such lines with another URL showed the agent an accept link
(and a lead link) that looked like the real one, and came first. The HTML part sets it apart in a <blockquote>; the
text part now quotes each of its lines ("> "), and the HTML part keeps its line breaks. The contact's name, printed
in the subject, the SMS and the push beside the notice's links, shows no host name an app would link by itself.
"""

from __future__ import annotations

import re
import time

import pytest
from fakes_notifier import by_channel
from hypothesis import given
from hypothesis import strategies as st
from test_notifier_channels import AGENT, NOON_UTC, offered

from leadflow_notifier.domain.messages import EmailContent, PushContent, SmsContent, messages_for
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.domain.templates import shown_name

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


LINKISH_NAMES = ["https://evil.example/v1/offer-links/abc", "www.evil.example", "Jane evil.example", "10.0.0.1"]


@pytest.mark.parametrize("name", LINKISH_NAMES)
def test_a_contacts_name_holding_a_host_is_no_link_in_any_channel_of_an_offer(name: str) -> None:
    """The name a form's visitor typed is printed in the subject, the SMS and the push next to the notice's own
    links, where a phone or a mail app turns a host name into a link by itself."""
    out = by_channel(
        messages_for(offered(name=name), AGENT, "https://app.example.com", now=NOON_UTC, accept_link=REAL_ACCEPT)
    )
    email, sms, push = out[Channel.EMAIL], out[Channel.SMS], out[Channel.PUSH]
    assert isinstance(email, EmailContent)
    assert isinstance(sms, SmsContent)
    assert isinstance(push, PushContent)
    for where, text in {
        "subject": email.subject, "text": email.text, "html": email.html, "sms": sms.body, "push title": push.title,
        "push body": push.body,
    }.items():  # fmt: skip
        assert "evil.example" not in text, (where, text)
        assert "10.0.0.1" not in text, (where, text)
    assert email.subject == f"Lead offer: {shown_name(name)} Doe"
    assert "[.]" in email.subject
    assert REAL_ACCEPT in sms.body  # the notice's own links are untouched


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("https://evil.example/x", "https[:]//evil[.]example/x"),
        ("www.evil.co", "www[.]evil[.]co"),
        ("evil\u3002example", "evil[\u3002]example"),
        ("Müller.de", "Müller[.]de"),
        ("J.R.R. Tolkien", "J.R.R. Tolkien"),
        ("Mary O'Neil-Smith", "Mary O'Neil-Smith"),
        ("Zoë Ånström", "Zoë Ånström"),
    ],
)
def test_a_name_keeps_its_words_and_loses_its_links(name: str, shown: str) -> None:
    assert shown_name(name) == shown


@given(st.text(max_size=60))
def test_no_name_shows_a_scheme_or_a_dotted_host(name: str) -> None:
    shown = shown_name(name)
    assert "://" not in shown
    assert not re.search(r"(?:[\w-]+[.\u3002\uff0e\uff61])+(?:[^\W\d_][\w-]+|\d+\b)", shown), shown


def test_the_html_part_keeps_the_line_breaks_of_a_contacts_message() -> None:
    html = _offer_email("First line\nSecond line").html
    assert '<blockquote style="white-space: pre-wrap">First line\nSecond line</blockquote>' in html


def test_a_name_is_read_in_time_linear_in_its_length() -> None:
    """Helper 176: a regex over the whole name backtracked quadratically ("A.A.A...", a name intake takes): 0.8 ms a
    name, 16 s of the event loop for one digest of 10,000 leads. Compared, not timed against a bound: one name of
    10,000 characters against a hundred of 100, the same characters in all (CPU time, each the best of three, so
    the machine's speed cancels out). Linear reading costs about the same; quadratic, a hundred times more."""
    short, long = "A." * 50, "A." * 5000
    assert shown_name(short) == short

    def cost(names: list[str]) -> float:
        runs = []
        for _ in range(3):
            started = time.process_time()
            for name in names:
                shown_name(name)
            runs.append(time.process_time() - started)
        return min(runs)

    one_long, many_short = cost([long] * 20), cost([short] * 2000)
    assert one_long < 10 * many_short + 0.05, f"{one_long:.3f} s against {many_short:.3f} s: not linear"
