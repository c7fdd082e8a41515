"""T2 office transfers in the notifier: the target's digest, no immediate notices, the staff email."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from fakes_notifier import Digest, Directory, Log, NoDeadLetters, Outbox, Staff, by_channel, member_moved
from prometheus_client import CollectorRegistry

from leadflow_notifier.domain.digest import DigestItem, digest_email, digest_item, distinct_leads, due_window
from leadflow_notifier.domain.messages import (
    Recipient,
    messages_for,
    notice_for,
    recipient_of,
    team_member_email,
)
from leadflow_notifier.domain.preferences import Channel, Preferences
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
LEAD = uuid.UUID("0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01")
TRANSFER = uuid.UUID("5d1c7f7e-3b0b-4f6e-8a57-0c2f6c1f9a10")
CONTACT = Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "j@example.com"})
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
BROKER = Recipient(agent_id="bea", name="Bea", email="bea@north.example", phone="+13125550100", push_token="tok")


def transferred(transfer_id: uuid.UUID = TRANSFER, to: str = "north") -> LeadTransferred:
    return LeadTransferred.create(
        account_id="south",
        occurred_at=AT,
        payload=LeadTransferredPayload(
            lead_id=LEAD,
            transfer_id=transfer_id,
            from_account_id="south",
            from_account_name="South Office",
            previous_owner_agent_id="sam",
            previous_owner_name="Sam",
            to_account_id=to,
            to_account_name="North Office",
            agent_id="bea",
            by_user_id="admin-1",
            contact=CONTACT,
            source=SOURCE,
        ),
    )


def closed(kind: type[OfferExpired | OfferWithdrawn], reason: WithdrawalReason | None) -> OfferExpired | OfferWithdrawn:
    return kind.create(
        account_id="south",
        occurred_at=AT,
        payload=OfferClosedPayload(lead_id=LEAD, agent_id="bea", offer_round=1, reason=reason),
    )


# The digest


def test_a_transferred_lead_is_a_new_lead_of_the_target_office() -> None:
    item = digest_item(transferred())
    assert item == DigestItem(
        account_id="north",
        lead_id=str(LEAD),
        name="Jane Doe",
        source="Website",
        created_ms=int(AT.timestamp() * 1000),
        transfer_id=str(TRANSFER),
        from_account="South Office",
    )


def test_the_digest_key_is_per_account_lead_and_arrival() -> None:
    first = DigestItem("south", str(LEAD), "Jane Doe", "Website", 0)
    moved = digest_item(transferred())
    back = digest_item(transferred(transfer_id=uuid.uuid4(), to="south"))
    assert moved is not None
    assert back is not None
    assert first.key == f"south:{LEAD}"  # a race's second offer or a redelivery: the same key
    assert moved.key == digest_item(transferred()).key  # type: ignore[union-attr]  # a redelivered transfer
    assert len({first.key, moved.key, back.key}) == 3  # yesterday in South, today in North, later South again


def test_the_assignment_that_comes_with_a_transfer_is_not_a_second_new_lead() -> None:
    event = LeadAssigned.create(
        account_id="north",
        occurred_at=AT,
        payload=LeadAssignedPayload(
            lead_id=LEAD,
            agent_id="bea",
            reason=AssignmentReason.OFFICE_TRANSFER,
            explanation="T2",
            contact=CONTACT,
            source=SOURCE,
        ),
    )
    assert digest_item(event) is None
    assert recipient_of(event) is None  # the new-lead notice is the next digest, not an email now


def test_one_row_per_lead_in_a_digest() -> None:
    items = [
        DigestItem("north", "l1", "Jane", "Web", 20, transfer_id="t2", from_account="South"),
        DigestItem("north", "l1", "Jane", "Web", 10),
        DigestItem("north", "l2", "Joe", "Web", 15),
    ]
    assert [(i.lead_id, i.created_ms) for i in distinct_leads(items)] == [("l1", 10), ("l2", 15)]


def test_the_digest_links_the_lead_in_the_target_office_and_names_the_office_it_left() -> None:
    item = digest_item(transferred())
    assert item is not None
    who = Recipient(agent_id="admin", name="Ada", email="ada@north.example")
    email = digest_email([item], who, due_window(AT, hour=7), "https://crm")
    assert email is not None
    assert f"Jane Doe (Website, transferred from South Office): https://crm/accounts/north/leads/{LEAD}" in (email.text)
    assert f'href="https://crm/accounts/north/leads/{LEAD}"' in email.html


def test_a_team_member_is_not_a_new_lead() -> None:
    assert digest_item(member_moved(AT, TRANSFER)) is None
    assert recipient_of(member_moved(AT, TRANSFER)) is None


# Immediate notices


def test_nobody_is_told_of_a_lead_transfer_at_once() -> None:
    assert recipient_of(transferred()) is None
    assert notice_for(transferred(), BROKER, "https://crm") is None
    assert by_channel(messages_for(transferred(), BROKER, "https://crm", now=AT)) == {}


@pytest.mark.parametrize(
    ("kind", "reason", "said"),
    [
        (OfferWithdrawn, WithdrawalReason.OFFICE_TRANSFER, "The lead moved to another office"),
        (OfferWithdrawn, WithdrawalReason.CLAIMED_BY_ANOTHER, "Another agent claimed the lead"),
        (OfferWithdrawn, None, "Another agent claimed the lead"),
        (OfferExpired, None, "Your offer expired"),
    ],
)
def test_a_withdrawn_offer_says_why(
    kind: type[OfferExpired | OfferWithdrawn], reason: WithdrawalReason | None, said: str
) -> None:
    messages = by_channel(messages_for(closed(kind, reason), BROKER, "https://crm", now=AT))
    assert set(messages) == {Channel.PUSH}
    push = messages[Channel.PUSH]
    assert push.title == said  # type: ignore[union-attr]
    if reason is WithdrawalReason.OFFICE_TRANSFER:
        assert "moved to another office" in push.body  # type: ignore[union-attr]
        assert "claimed" not in push.body  # type: ignore[union-attr]
    else:
        assert said in push.body  # type: ignore[union-attr]


def test_the_team_member_email_names_who_joined_from_where_as_onboarding() -> None:
    email = team_member_email(member_moved(AT, TRANSFER), BROKER, "https://crm/")
    assert email.to == "bea@north.example"
    assert email.subject == "Tom Jones joined North Office from South Office (Onboarding)"
    assert email.lead_id == ""
    for expected in (
        "Hi Bea,",
        "Tom Jones was moved from South Office to North Office.",
        "status Onboarding",
        "Open the team settings: https://crm/accounts/north/team",
    ):
        assert expected in email.text
    assert "Lead id" not in email.text
    assert "new lead" not in email.subject.lower()
    assert 'href="https://crm/accounts/north/team"' in email.html


def test_team_member_html_is_escaped() -> None:
    event = member_moved(AT, TRANSFER)
    event = event.model_copy(update={"payload": event.payload.model_copy(update={"agent_name": "<b>Tom</b>"})})
    email = team_member_email(event, BROKER, "https://crm")
    assert "<b>Tom</b>" not in email.html
    assert "&lt;b&gt;Tom&lt;/b&gt;" in email.html


# The handler, with in-memory ports (fakes_notifier.py)


def notifier(outbox: Outbox, staff: Staff, digest: Digest, log: Log | None = None) -> Notifier:
    return Notifier(
        directory=Directory(BROKER),
        deliveries=log or Log(),
        senders={Channel.EMAIL: outbox, Channel.SMS: outbox, Channel.PUSH: outbox},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: AT,
        retry=RetryPolicy(attempts=1),
        digest=digest,
        staff=staff,
    )


@pytest.mark.asyncio
async def test_the_handler_emails_each_staff_member_once_and_nothing_else() -> None:
    # The moved member is listed (its preferences moved with it) but is not told about itself.
    tom = Recipient(agent_id="tom", name="Tom", email="tom@north.example")
    ada = Recipient(
        agent_id="ada",
        name="Ada",
        email="ada@north.example",
        preferences=Preferences(channels=frozenset({Channel.PUSH})),
    )
    outbox, digest, log = Outbox(), Digest(), Log()
    event = member_moved(AT, TRANSFER)
    n = notifier(outbox, Staff(BROKER, ada, tom), digest, log)

    await n.notify(event, b"{}")
    await n.notify(event, b"{}")  # redelivered

    assert sorted(key for key, _ in outbox.sent) == [f"{event.event_id}:email:ada", f"{event.event_id}:email:bea"]
    assert {content.to for _, content in outbox.sent} == {"bea@north.example", "ada@north.example"}
    assert digest.items == []


@pytest.mark.asyncio
async def test_the_handler_files_a_transfer_for_the_target_digest_and_sends_nothing() -> None:
    outbox, digest = Outbox(), Digest()
    await notifier(outbox, Staff(BROKER), digest).notify(transferred(), b"{}")
    assert [i.account_id for i in digest.items] == ["north"]
    assert outbox.sent == []


@pytest.mark.asyncio
async def test_a_batch_with_a_team_member_event_groups_it_on_its_own() -> None:
    outbox, digest = Outbox(), Digest()
    bodies = [
        transferred().model_dump_json().encode(),
        member_moved(AT, TRANSFER).model_dump_json().encode(),
        member_moved(AT, TRANSFER).model_dump_json().encode(),
        b"not json",
    ]
    rejected = await notifier(outbox, Staff(BROKER), digest).notify_batch(bodies, concurrency=4)
    assert [index for index, _ in rejected] == [3]
    assert len(outbox.sent) == 2  # two transfers (two event ids), the broker each time
    assert len(digest.items) == 1
