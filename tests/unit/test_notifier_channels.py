"""Notifier domain: who hears what on which channel, quiet hours, and the rendered messages."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, time

import pytest
from fakes_notifier import by_channel
from hypothesis import given
from hypothesis import strategies as st

from leadflow_notifier.domain.messages import (
    EmailContent,
    PushContent,
    PushDevice,
    Recipient,
    SmsContent,
    messages_for,
    recipient_of,
)
from leadflow_notifier.domain.order import ended_in_batch
from leadflow_notifier.domain.preferences import Channel, Preferences, QuietHours, allowed_channels, hears_account
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
)

pytestmark = pytest.mark.unit

LEAD_ID = uuid.UUID("0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01")
NOON_UTC = datetime(2024, 1, 10, 12, tzinfo=UTC)  # 06:00 in Chicago (CST)
AGENT = Recipient(
    agent_id="a-1",
    name="Ana",
    email="ana@example.com",
    time_zone="America/Chicago",
    phone="+13125550100",
    push_token="tok-1",
)


def offered(name: str = "Jane", message: str = "") -> LeadOffered:
    return LeadOffered.create(
        account_id="acme-realty",
        occurred_at=NOON_UTC,
        payload=LeadOfferedPayload(
            lead_id=LEAD_ID,
            agent_id="a-1",
            offer_round=1,
            race_size=2,
            deadline=datetime(2024, 1, 10, 12, 15, tzinfo=UTC),
            explanation="round robin",
            contact=Contact.model_validate({"first_name": name, "last_name": "Doe", "email": "jane@example.com"}),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
            message=message,
        ),
    )


def test_an_offer_goes_out_on_every_channel_with_link_and_deadline_in_the_agents_zone() -> None:
    out = by_channel(messages_for(offered(), AGENT, "https://crm.example.com/", now=NOON_UTC))

    assert set(out) == {Channel.EMAIL, Channel.SMS, Channel.PUSH}
    link = f"https://crm.example.com/accounts/acme-realty/leads/{LEAD_ID}"
    email, sms, push = out[Channel.EMAIL], out[Channel.SMS], out[Channel.PUSH]
    assert isinstance(email, EmailContent)
    assert isinstance(sms, SmsContent)
    assert isinstance(push, PushContent)
    assert email.subject == "Lead offer: Jane Doe"
    for body in (email.text, email.html, sms.body, push.body):
        assert "06:15 CST" in body, body
    for body in (email.text, email.html, sms.body):
        assert link in body
    assert (sms.to, push.token, push.data["lead_id"]) == ("+13125550100", "tok-1", str(LEAD_ID))
    assert "2 agents" in email.text


def test_html_escapes_what_the_contact_wrote() -> None:
    event = offered(name="<b>Jane</b>", message="<script>x()</script>")
    out = by_channel(messages_for(event, AGENT, "https://c", now=NOON_UTC))
    email = out[Channel.EMAIL]
    assert isinstance(email, EmailContent)
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "<script>x()</script>" in email.text  # plain text is not HTML: shown as written


@pytest.mark.parametrize(
    ("quiet", "expected"),
    [
        (None, {Channel.EMAIL, Channel.SMS, Channel.PUSH}),
        (QuietHours(time(22), time(7)), {Channel.EMAIL}),  # 06:00 local: inside, crossing midnight
        (QuietHours(time(7), time(22)), {Channel.EMAIL, Channel.SMS, Channel.PUSH}),
        (QuietHours(time(5), time(6)), {Channel.EMAIL, Channel.SMS, Channel.PUSH}),  # end is exclusive
    ],
)
def test_quiet_hours_hold_back_sms_and_push_in_the_recipients_zone(
    quiet: QuietHours | None, expected: set[Channel]
) -> None:
    prefs = Preferences(quiet_hours=quiet)
    assert allowed_channels(prefs, time_zone="America/Chicago", now=NOON_UTC) == expected


def test_channels_the_recipient_turned_off_or_has_no_address_for_are_skipped() -> None:
    no_sms = Recipient(
        agent_id="a-1",
        name="Ana",
        email="ana@example.com",
        preferences=Preferences(channels=frozenset({Channel.EMAIL, Channel.SMS})),
    )
    assert set(by_channel(messages_for(offered(), no_sms, "https://c", now=NOON_UTC))) == {Channel.EMAIL}


def test_a_withdrawn_offer_only_pushes() -> None:
    event = OfferWithdrawn.create(
        account_id="acme-realty",
        occurred_at=NOON_UTC,
        payload=OfferClosedPayload(lead_id=LEAD_ID, agent_id="a-1", offer_round=1),
    )
    assert recipient_of(event) == "a-1"
    out = by_channel(messages_for(event, AGENT, "https://c", now=NOON_UTC))
    assert set(out) == {Channel.PUSH}
    push = out[Channel.PUSH]
    assert isinstance(push, PushContent)
    assert push.title == "Another agent claimed the lead"


def test_every_registered_device_gets_the_push_and_the_legacy_token_once() -> None:
    devices = (PushDevice("phone", "tok-phone"), PushDevice("tablet", "tok-tablet"))
    many = dataclasses.replace(AGENT, devices=devices, push_token="tok-phone")  # the legacy token is a device too

    def pushed(who: Recipient) -> list[tuple[str, str]]:
        out = messages_for(offered(), who, "https://c", now=NOON_UTC)
        return [(m.device_id, m.content.token) for m in out if isinstance(m.content, PushContent)]

    assert pushed(many) == [("phone", "tok-phone"), ("tablet", "tok-tablet")]
    legacy = dataclasses.replace(AGENT, devices=devices, push_token="tok-old")
    assert pushed(legacy) == [("phone", "tok-phone"), ("tablet", "tok-tablet"), ("", "tok-old")]


def test_an_offer_carries_its_one_click_accept_link_and_can_hide_the_contact_until_claimed() -> None:
    accept = "https://crm.example.com/v1/offer-links/T0KEN"
    shown = by_channel(messages_for(offered(), AGENT, "https://app", now=NOON_UTC, accept_link=accept))
    hidden = by_channel(
        messages_for(offered(), AGENT, "https://app", now=NOON_UTC, accept_link=accept, hide_contact=True)
    )
    for out in (shown, hidden):
        email, sms = out[Channel.EMAIL], out[Channel.SMS]
        assert isinstance(email, EmailContent)
        assert isinstance(sms, SmsContent)
        assert f"Accept it with one click: {accept}" in email.text
        assert f'href="{accept}"' in email.html
        assert f"Accept: {accept}" in sms.body
        assert f"https://app/accounts/acme-realty/leads/{LEAD_ID}" in email.text, "the lead's page in the web app"
    assert "jane@example.com" in shown[Channel.EMAIL].text  # type: ignore[union-attr]
    assert "jane@example.com" not in hidden[Channel.EMAIL].text + hidden[Channel.EMAIL].html  # type: ignore[union-attr]
    assert "Email: shown once you claim the lead" in hidden[Channel.EMAIL].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("agent", "hears"),
    [
        (None, True),  # an admin or staff member who is no agent: as its preferences say
        ({"account_id": "acme", "active": True}, True),
        ({"account_id": "acme"}, True),  # `active` unset: active, as the router reads it
        ({"account_id": "acme", "active": 1}, True),  # nx-27017 stores a `$set` boolean as 1/0
        ({"account_id": "acme", "active": False}, False),  # made inactive (T3)
        ({"account_id": "acme", "active": 0}, False),
        ({"account_id": "acme", "status": "onboarding", "active": False}, False),  # not activated yet
        ({"account_id": "other", "active": True}, False),  # moved to another office (T2), preferences left behind
    ],
)
def test_an_offices_news_reach_an_agent_only_while_it_is_active_there(
    agent: dict[str, object] | None, hears: bool
) -> None:
    assert hears_account(agent, "acme") is hears


KINDS = st.sampled_from(["offer", "claim", "expire", "withdraw"])
STEPS = st.lists(st.tuples(KINDS, st.sampled_from(["ana", "bob"]), st.integers(1, 2)), max_size=8)


def step_event(kind: str, agent: str, round_: int) -> RoutingEvent:
    """One event of the lead `LEAD_ID`: an offer to `agent` in `round_`, a claim by it, or its offer's end."""
    if kind == "offer":
        payload = offered().payload.model_copy(update={"agent_id": agent, "offer_round": round_})
        return LeadOffered.create(account_id="acme-realty", occurred_at=NOON_UTC, payload=payload)
    if kind == "claim":
        claim = LeadClaimedPayload(lead_id=LEAD_ID, agent_id=agent, action=ActivityAction.CALL, offer_round=round_)
        return LeadClaimed.create(account_id="acme-realty", occurred_at=NOON_UTC, payload=claim)
    closed = OfferClosedPayload(lead_id=LEAD_ID, agent_id=agent, offer_round=round_)
    kind_of = OfferExpired if kind == "expire" else OfferWithdrawn
    return kind_of.create(account_id="acme-realty", occurred_at=NOON_UTC, payload=closed)


@given(steps=STEPS)
def test_an_offer_is_quiet_exactly_when_a_later_event_of_the_batch_ends_it(steps: list[tuple[str, str, int]]) -> None:
    """N1 (decision 0094): a batch's offer is not announced when a later event of the batch ends it (a claim of its
    round or a later one, its withdrawal or expiry), and an end is left untold only after its offer."""
    events = [step_event(*step) for step in steps]

    quiet = ended_in_batch(events)

    def ends(later: tuple[str, str, int], offer: tuple[str, str, int]) -> bool:
        kind, agent, round_ = later
        return (kind == "claim" and round_ >= offer[2]) or (
            kind in {"expire", "withdraw"} and (agent, round_) == offer[1:]
        )

    for i, step in enumerate(steps):
        if step[0] == "offer":
            assert (i in quiet) == any(ends(later, step) for later in steps[i + 1 :]), (i, steps)
        elif step[0] == "claim":
            assert i not in quiet
        elif i in quiet:
            assert any(s[0] == "offer" and s[1:] == step[1:] for s in steps[:i]), (i, steps)
