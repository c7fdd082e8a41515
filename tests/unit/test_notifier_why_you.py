"""N5: a notice tells an agent why it got a lead in words about itself only, never the router's explanation,
which names the other agents who were eligible and why each was passed by (routing info: decisions 0062,
0076). Only the office's broker (roster position 1) reads it, on a lead released or fallen back to it."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, date, datetime

import pytest
from fakes_notifier import Directory, Log, NoDeadLetters, Outbox
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from leadflow_notifier.domain.digest import DigestWindow, digest_email, digest_item, new_lead_email
from leadflow_notifier.domain.messages import (
    WHY_YOU,
    EmailContent,
    PushContent,
    PushDevice,
    Recipient,
    SmsContent,
    email_of,
    messages_for,
    notice_for,
    push_of,
    sms_of,
)
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    LeadShared,
    LeadSharedPayload,
    LeadSummary,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
    WithdrawalReason,
)

pytestmark = pytest.mark.unit

NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)
LEAD = uuid.UUID("0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01")
ACCOUNT = "acme-realty"
PAGES = "https://crm.example.com/app"
# Every channel allowed, a phone and a device: whatever a notice has goes out somewhere.
ANA = Recipient(
    agent_id="ana",
    name="Ana",
    email="ana@example.com",
    time_zone="America/Chicago",
    phone="+13125550100",
    devices=(PushDevice("phone", "tok-ana"),),
)
BOSS = Recipient(agent_id="boss", name="Wade Boss", email="boss@example.com")
RIVALS = ("bo-rival", "cy-paused", "dee-capped", "eve-off-hours")
CONTACT = Contact.model_validate({"first_name": "Jane", "last_name": "Doe", "email": "jane@example.com"})
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def offer_explanation(me: str, rivals: tuple[str, ...]) -> str:
    """What the router writes on an offer (`offer_next`, `Eligibility.describe`, `_rule_note`): the rule tried,
    who was offered, who was eligible and why each other agent was skipped."""
    first, paused, capped, away = rivals
    return (
        "Routing rules: rule 'Buyers' matched (rule 'Sellers': source is not Listing). "
        f"R6: offered to {me}, {first} (next in rotation, race of 2) until 2024-01-10T12:15:00+00:00; "
        f"eligible: {me}, {first}; skipped {paused}: paused until 2024-01-11T09:00:00+00:00; "
        f"{capped}: at its daily cap (3 of 3); {away}: off hours."
    )


def idle_explanation(holder: str, me: str, rivals: tuple[str, ...]) -> str:
    """A lead its holder left idle, offered on (`on_idle`): the holder named, then the new offer's explanation."""
    return f"Idle: {holder} did nothing with the lead within 30 working minutes; " + offer_explanation(me, rivals)


def assigned(reason: AssignmentReason, rivals: tuple[str, ...], agent: str = "ana") -> LeadAssigned:
    return LeadAssigned.create(
        account_id=ACCOUNT,
        occurred_at=NOON,
        payload=LeadAssignedPayload(
            lead_id=LEAD,
            agent_id=agent,
            reason=reason,
            explanation=offer_explanation(agent, rivals),
            contact=CONTACT,
            source=SOURCE,
            message="Is 12 Elm St still for sale?",
        ),
    )


def every_event_to(agent: str, rivals: tuple[str, ...]) -> list[RoutingEvent]:
    """Every event that tells `agent` something about a lead, each carrying what names `rivals` if it can."""
    why = offer_explanation(agent, rivals)
    closed = {"lead_id": LEAD, "agent_id": agent, "offer_round": 1}
    events: list[RoutingEvent] = [assigned(reason, rivals, agent) for reason in AssignmentReason]
    events += [
        LeadOffered.create(account_id=ACCOUNT, occurred_at=NOON, payload=LeadOfferedPayload(
            lead_id=LEAD, agent_id=agent, offer_round=1, race_size=2, deadline=NOON, explanation=why,
            contact=CONTACT, source=SOURCE, pond="pond-north",
        )),
        LeadFellBack.create(account_id=ACCOUNT, occurred_at=NOON, payload=LeadFellBackPayload(
            lead_id=LEAD, agent_id=agent, explanation=why,
        )),
        LeadReleased.create(account_id=ACCOUNT, occurred_at=NOON, payload=LeadReleasedPayload(
            lead_id=LEAD, agent_id=rivals[0], broker_agent_id=agent, reason="idle",
            explanation=idle_explanation(rivals[0], agent, rivals),
        )),
        LeadReleased.create(account_id=ACCOUNT, occurred_at=NOON, payload=LeadReleasedPayload(
            lead_id=LEAD, agent_id=rivals[0], broker_agent_id=agent,
            explanation=f"{rivals[0]} left the office; the lead is unassigned until a broker or admin distributes "
            f"it ({agent} is told). {why}",
        )),
        LeadShared.create(account_id=ACCOUNT, occurred_at=NOON, payload=LeadSharedPayload(
            lead_id=LEAD, share_id=uuid.uuid4(), agent_id=agent, realtor_name="Ana", assigned_by="Acme Realty",
            previous_owner_agent_id=rivals[0], by_user_id=rivals[1],
        )),
        OfferExpired.create(account_id=ACCOUNT, occurred_at=NOON, payload=OfferClosedPayload(**closed)),
        ActivityLogged.create(account_id=ACCOUNT, occurred_at=NOON, payload=ActivityLoggedPayload(
            lead_id=LEAD, agent_id=agent, action=ActivityAction.INQUIRY,
            summary=LeadSummary(contact=CONTACT, source=SOURCE, message="Still looking"),
        )),
    ]  # fmt: skip
    events += [
        OfferWithdrawn.create(account_id=ACCOUNT, occurred_at=NOON, payload=OfferClosedPayload(**closed, reason=reason))
        for reason in (None, *WithdrawalReason)
    ]
    return events


def everything_sent(event: RoutingEvent, who: Recipient, *, routing_info: bool = False) -> list[str]:
    """Every text `who` could be sent of `event`: its notice on every channel (whatever the event's own channels),
    what `messages_for` sends, and the digest line and new-lead notice the event makes."""
    texts: list[str] = []
    notice = notice_for(
        event, who, PAGES, accept_link="https://crm.example.com/v1/offer-links/tkn", routing_info=routing_info
    )
    if notice is not None:
        email, sms, push = email_of(notice, who.email), sms_of(notice, "+13125550100"), push_of(notice, "tok")
        texts += [email.subject, email.text, email.html, sms.body, push.title, push.body, *push.data.values()]
    for out in messages_for(event, who, PAGES, now=NOON, routing_info=routing_info):
        texts += _texts_of(out.content)
    if (item := digest_item(event)) is not None:
        window = DigestWindow(date(2024, 1, 11), 0, 1)
        digest = digest_email([item], who, window, PAGES)
        assert digest is not None
        texts += [*_texts_of(digest), *_texts_of(new_lead_email(item, who, PAGES))]
    return texts


def _texts_of(content: EmailContent | SmsContent | PushContent) -> list[str]:
    if isinstance(content, EmailContent):
        return [content.subject, content.text, content.html]
    if isinstance(content, SmsContent):
        return [content.body]
    return [content.title, content.body, *content.data.values()]


def test_no_notice_to_an_agent_names_another_agent_on_any_channel() -> None:
    events = every_event_to("ana", RIVALS)
    named = [e for e in events if not isinstance(e, OfferExpired | OfferWithdrawn | ActivityLogged)]
    assert all(any(r in e.model_dump_json() for r in RIVALS) for e in named), "the events do name them"

    for event in events:
        texts = everything_sent(event, ANA)
        assert texts, event.type
        for text in texts:
            for rival in RIVALS:
                assert rival not in text, (event.type, rival, text)
            for routing_info in ("eligible", "skipped", "paused", "daily cap", "off hours", "Routing rules"):
                assert routing_info not in text, (event.type, routing_info, text)


@given(st.lists(st.from_regex(r"rv[a-z0-9]{6,12}", fullmatch=True), min_size=4, max_size=4, unique=True))
def test_whatever_the_other_agents_are_called_no_notice_names_them(names: list[str]) -> None:
    rivals = (names[0], names[1], names[2], names[3])
    for event in every_event_to("ana", rivals):
        for text in everything_sent(event, ANA):
            assert not any(rival in text for rival in rivals), (event.type, text)


def assigned_email(event: LeadAssigned) -> EmailContent:
    notice = notice_for(event, ANA, PAGES)
    assert notice is not None
    return email_of(notice, ANA.email)


def test_an_assignment_says_why_in_words_about_the_agent_alone() -> None:
    assert set(WHY_YOU) == set(AssignmentReason), "every reason has its words"
    for reason, words in WHY_YOU.items():
        assert not any(rival in words for rival in RIVALS)
        email = assigned_email(assigned(reason, RIVALS))
        assert f"Why you: {words}" in email.text, reason
        assert f"Why you: {words}" in html.unescape(email.html), reason

    email = assigned_email(assigned(AssignmentReason.PRE_ASSIGNED, RIVALS))
    assert "Why you: the lead provider assigned the lead to you." in email.text


def test_only_the_broker_reads_the_routers_explanation_of_a_lead_back_with_it() -> None:
    why = offer_explanation("ana", RIVALS)
    fell_back = LeadFellBack.create(
        account_id=ACCOUNT,
        occurred_at=NOON,
        payload=LeadFellBackPayload(lead_id=LEAD, agent_id="boss", explanation=why),
    )

    broker = " ".join(everything_sent(fell_back, BOSS, routing_info=True))
    agent = " ".join(everything_sent(fell_back, BOSS))

    assert f"Why: {why}" in broker, "the broker reads the whole line, in the email"
    assert "Nobody claimed this lead in time, so it is back with you." in agent, "anyone reads why it is back"
    assert not any(rival in agent for rival in RIVALS)
    # An assignment's explanation is nobody's, the broker's neither: its words come from its reason.
    to_broker = everything_sent(
        assigned(AssignmentReason.ROSTER_POSITION_1, RIVALS, agent="boss"), BOSS, routing_info=True
    )
    assert not any(rival in text for text in to_broker for rival in RIVALS)


class Brokers:
    """Each office's roster position 1, and how often it was asked."""

    def __init__(self, **brokers: str) -> None:
        self.brokers = brokers
        self.asked: list[str] = []

    async def broker_of(self, account_id: str) -> str | None:
        self.asked.append(account_id)
        return self.brokers.get(account_id)


def released_to(broker_agent_id: str) -> LeadReleased:
    return LeadReleased.create(
        account_id=ACCOUNT,
        occurred_at=NOON,
        payload=LeadReleasedPayload(
            lead_id=uuid.uuid4(),
            agent_id="bo-rival",
            broker_agent_id=broker_agent_id,
            explanation=idle_explanation("bo-rival", "cy-paused", RIVALS),
            reason="idle",
        ),
    )


@pytest.mark.asyncio
async def test_the_notifier_gives_the_explanation_to_the_offices_broker_alone() -> None:
    outbox, brokers = Outbox(), Brokers(**{ACCOUNT: "boss"})
    notifier = Notifier(
        directory=Directory(ANA, BOSS),
        deliveries=Log(),
        senders={Channel.EMAIL: outbox},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url=PAGES,
        clock=lambda: NOON,
        retry=RetryPolicy(attempts=1),
        brokers=brokers,
    )

    to_broker, to_agent = released_to("boss"), released_to("ana")  # ana: the broker pool's agent, not position 1
    await notifier.notify(to_broker, b"{}")
    await notifier.notify(to_agent, b"{}")
    await notifier.notify(assigned(AssignmentReason.MANUAL, RIVALS), b"{}")

    emails = {content.to: content for _, content in outbox.sent if isinstance(content, EmailContent)}
    assert set(emails) == {"boss@example.com", "ana@example.com"}
    assert f"Why: {to_broker.payload.explanation}" in emails["boss@example.com"].text
    mails_to_ana = [c for _, c in outbox.sent if c.to == "ana@example.com"]
    assert len(mails_to_ana) == 2
    for mail in mails_to_ana:
        assert not any(rival in text for text in (mail.subject, mail.text, mail.html) for rival in RIVALS)
    assert brokers.asked == [ACCOUNT, ACCOUNT], "asked for a lead back with the broker pool only"

    without = Notifier(
        directory=Directory(BOSS), deliveries=Log(), senders={Channel.EMAIL: outbox}, dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()), pages_url=PAGES, clock=lambda: NOON,
        retry=RetryPolicy(attempts=1),
    )  # fmt: skip
    outbox.sent.clear()
    await without.notify(released_to("boss"), b"{}")
    [(_, mail)] = outbox.sent
    assert "bo-rival" not in mail.text, "no roster to read: nobody is taken for the broker"


def test_an_agent_who_gave_a_lead_back_with_nobody_to_take_it_is_told_so_not_that_it_left() -> None:
    event = LeadReleased.create(
        account_id=ACCOUNT,
        occurred_at=NOON,
        payload=LeadReleasedPayload(
            lead_id=uuid.uuid4(),
            agent_id=ANA.agent_id,
            broker_agent_id=ANA.agent_id,
            explanation="ana gave the lead back; nobody else can hold it, so it is unassigned.",
            reason="returned",
        ),
    )
    notice = notice_for(event, ANA, PAGES)
    assert notice is not None
    assert notice.subject == "A lead you gave back is unassigned"
    assert "left the office" not in " ".join((notice.subject, notice.headline, *notice.lines))
