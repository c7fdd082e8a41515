"""T1 lead sharing in the notifier: the realtor is told, no digest item, withdrawals say why,
and an outside realtor the directory does not know is skipped and counted, not poison."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes_notifier import Digest, Directory, Log, NoDeadLetters, Outbox, by_channel
from prometheus_client import CollectorRegistry

from leadflow_notifier.domain.digest import digest_item
from leadflow_notifier.domain.messages import (
    CHANNELS_BY_TYPE,
    EmailContent,
    PushContent,
    Recipient,
    messages_for,
    notice_for,
    recipient_of,
)
from leadflow_notifier.domain.preferences import Channel, Preferences
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadShared,
    LeadSharedPayload,
    OfferClosedPayload,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
LEAD = uuid.UUID("7a3e2c1d-0f4b-4e8a-9c6d-5b2a1f0e9d88")
SHARE = uuid.UUID("c4d9e8f7-1a2b-4c3d-8e5f-6a7b8c9d0e1f")
CONTACT = Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "j@example.com"})
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
REALTOR = Recipient(
    agent_id="rita", name="Rita", email="rita@realty.example", phone="+13125550100", push_token="rita-token"
)


def shared(agent_id: str = "rita") -> LeadShared:
    return LeadShared.create(
        account_id="acme",
        occurred_at=AT,
        payload=LeadSharedPayload(
            lead_id=LEAD,
            share_id=SHARE,
            agent_id=agent_id,
            realtor_name="Rita",
            assigned_by="Acme Realty",
            previous_owner_agent_id="bea",
            by_user_id="broker-1",
        ),
    )


def withdrawn(reason: WithdrawalReason | None, agent_id: str = "rita") -> OfferWithdrawn:
    return OfferWithdrawn.create(
        account_id="acme",
        occurred_at=AT,
        payload=OfferClosedPayload(lead_id=LEAD, agent_id=agent_id, offer_round=1, reason=reason),
    )


def assigned(reason: AssignmentReason) -> LeadAssigned:
    return LeadAssigned.create(
        account_id="acme",
        occurred_at=AT,
        payload=LeadAssignedPayload(
            lead_id=LEAD, agent_id="rita", reason=reason, explanation="T1", contact=CONTACT, source=SOURCE
        ),
    )


# The notice


def test_the_realtor_is_told_by_email_and_push_with_the_brokerage_and_the_link() -> None:
    event = shared()
    assert recipient_of(event) == "rita"
    assert CHANNELS_BY_TYPE["LeadShared"] == frozenset({Channel.EMAIL, Channel.PUSH})
    messages = by_channel(messages_for(event, REALTOR, "https://crm/", now=AT))
    assert set(messages) == {Channel.EMAIL, Channel.PUSH}  # no SMS, though the realtor has a phone

    email, push = messages[Channel.EMAIL], messages[Channel.PUSH]
    assert isinstance(email, EmailContent)
    assert isinstance(push, PushContent)
    link = f"https://crm/accounts/acme/leads/{LEAD}"
    assert (email.to, email.subject, email.lead_id) == (
        "rita@realty.example",
        "Acme Realty assigned you a lead",
        str(LEAD),
    )
    for expected in ("Hi Rita,", 'labelled "Assigned By: Acme Realty"', f"Open the lead: {link}", f"Lead id: {LEAD}"):
        assert expected in email.text
    assert f'href="{link}"' in email.html
    assert (push.token, push.title, push.link) == ("rita-token", "Acme Realty assigned you a lead", link)
    assert push.data == {"lead_id": str(LEAD), "link": link}
    assert "Acme Realty assigned you a lead" in push.body


def test_the_realtors_preferences_narrow_the_channels() -> None:
    email_only = Recipient(
        agent_id="rita",
        name="Rita",
        email="rita@realty.example",
        push_token="rita-token",
        preferences=Preferences(channels=frozenset({Channel.EMAIL})),
    )
    assert set(by_channel(messages_for(shared(), email_only, "https://crm", now=AT))) == {Channel.EMAIL}


def test_the_brokerage_name_is_escaped_in_html() -> None:
    event = shared()
    event = event.model_copy(update={"payload": event.payload.model_copy(update={"assigned_by": "<b>Acme</b>"})})
    notice = notice_for(event, REALTOR, "https://crm")
    assert notice is not None
    assert notice.subject == "<b>Acme</b> assigned you a lead"  # plain text as given; HTML escapes it
    email = by_channel(messages_for(event, REALTOR, "https://crm", now=AT))[Channel.EMAIL]
    assert isinstance(email, EmailContent)
    assert "<b>Acme</b>" not in email.html
    assert "&lt;b&gt;Acme&lt;/b&gt;" in email.html


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        (WithdrawalReason.LEAD_SHARING, "The brokerage assigned the lead to a realtor"),
        (WithdrawalReason.CLAIMED_BY_ANOTHER, "Another agent claimed the lead"),
        (WithdrawalReason.OFFICE_TRANSFER, "The lead moved to another office"),
    ],
)
def test_an_offer_withdrawn_by_a_share_says_the_brokerage_assigned_it(reason: WithdrawalReason, said: str) -> None:
    messages = by_channel(messages_for(withdrawn(reason), REALTOR, "https://crm", now=AT))
    assert set(messages) == {Channel.PUSH}
    push = messages[Channel.PUSH]
    assert isinstance(push, PushContent)
    assert push.title == said
    if reason is WithdrawalReason.LEAD_SHARING:
        assert "assigned the lead you were offered to a realtor" in push.body
        assert "claimed" not in push.body.lower()


# Not a new lead


def test_a_share_is_no_digest_item() -> None:
    assert digest_item(shared()) is None


def test_an_assignment_for_a_share_is_neither_a_digest_item_nor_a_second_notice() -> None:
    event = assigned(AssignmentReason.LEAD_SHARING)
    assert digest_item(event) is None
    assert recipient_of(event) is None  # the LeadShared tells the realtor
    assert digest_item(assigned(AssignmentReason.ROSTER_POSITION_1)) is not None  # unchanged


# The handler, with in-memory ports (fakes_notifier.py)


def notifier(outbox: Outbox, digest: Digest, registry: CollectorRegistry) -> Notifier:
    return Notifier(
        directory=Directory(REALTOR),
        deliveries=Log(),
        senders={Channel.EMAIL: outbox, Channel.SMS: outbox, Channel.PUSH: outbox},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: AT,
        retry=RetryPolicy(attempts=1),
        digest=digest,
    )


def unknown_count(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("notifier_recipients_unknown_total", {"type": kind}) or 0.0


@pytest.mark.asyncio
async def test_the_handler_tells_the_realtor_once_per_channel_and_files_no_digest_item() -> None:
    outbox, digest, registry = Outbox(), Digest(), CollectorRegistry()
    event = shared()
    n = notifier(outbox, digest, registry)

    await n.notify(event, b"{}")
    await n.notify(event, b"{}")  # redelivered

    assert sorted(key for key, _ in outbox.sent) == [f"{event.event_id}:email:rita", f"{event.event_id}:push:rita"]
    assert digest.items == []


@pytest.mark.asyncio
async def test_an_unknown_realtor_is_skipped_and_counted_not_poison(caplog: pytest.LogCaptureFixture) -> None:
    outbox, digest, registry = Outbox(), Digest(), CollectorRegistry()
    n = notifier(outbox, digest, registry)

    await n.notify(shared(agent_id="outside-realtor-7"), b"{}")  # no PoisonMessage

    assert outbox.sent == []
    assert unknown_count(registry, "LeadShared") == 1
    assert "outside-realtor-7" not in caplog.text
    # Other event types keep treating an unknown agent as poison.
    with pytest.raises(PoisonMessage):
        await n.notify(withdrawn(WithdrawalReason.LEAD_SHARING, agent_id="nobody"), b"{}")
    assert unknown_count(registry, "OfferWithdrawn") == 0


@pytest.mark.asyncio
async def test_a_batch_does_not_reject_a_share_to_an_unknown_realtor() -> None:
    outbox, digest, registry = Outbox(), Digest(), CollectorRegistry()
    known, unknown = shared(), shared(agent_id="outside-realtor-7")
    bodies = [known.model_dump_json().encode(), unknown.model_dump_json().encode()]
    assert ROUTING_EVENT.validate_json(bodies[1]).type == "LeadShared"

    rejected = await notifier(outbox, digest, registry).notify_batch(bodies, concurrency=2)

    assert rejected == []
    assert len(outbox.sent) == 2  # the known realtor's email and push
    assert unknown_count(registry, "LeadShared") == 1
