"""What each recipient is told: pure functions from an event to notices, then to messages.

An event becomes one `Notice` (what to say, in the recipient's time zone); the Jinja2
templates in `leadflow_notifier/templates/` turn it into an email (plain text and HTML),
an SMS and a push notification. Which of those go out is `CHANNELS_BY_TYPE` narrowed by
the recipient's preferences.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from leadflow_notifier.domain.preferences import DEFAULT_PREFERENCES, Channel, Preferences, allowed_channels
from leadflow_notifier.domain.templates import render, shown_name
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.commands import INVITATION_VALID_DAYS
from leadflow_shared.events.routing import (
    ActivityLogged,
    AssignmentReason,
    ContactErased,
    ContactMessaged,
    LeadAssigned,
    LeadFellBack,
    LeadOffered,
    LeadReleased,
    LeadShared,
    OfferExpired,
    OfferWithdrawn,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
    WithdrawalReason,
)
from leadflow_shared.offer_links import link_id_of, token_for


@dataclass(frozen=True, slots=True)
class PushDevice:
    """One of a user's devices registered for push; `device_id` "" for a token set before devices existed."""

    device_id: str
    token: str


@dataclass(frozen=True, slots=True)
class Recipient:
    agent_id: str
    name: str
    email: str
    time_zone: str = "UTC"
    phone: str | None = None
    push_token: str | None = None  # the one token of the preferences document, before devices existed
    preferences: Preferences = DEFAULT_PREFERENCES
    devices: tuple[PushDevice, ...] = ()
    active: bool = True  # its agent record says so (a staff member, with none, is)
    account_id: str | None = None  # the office its agent (or staff) record is of; None: not known

    @property
    def push_devices(self) -> tuple[PushDevice, ...]:
        """Every device to push to: the registered ones, and the legacy token unless one of them has it."""
        if self.push_token and all(d.token != self.push_token for d in self.devices):
            return (*self.devices, PushDevice("", self.push_token))
        return self.devices


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: a channel, what to send, and for push, which device ("" for the legacy one)."""

    channel: Channel
    content: Content
    device_id: str = ""


HIDDEN_UNTIL_CLAIMED = "shown once you claim the lead"


@dataclass(frozen=True, slots=True)
class AcceptLinks:
    """Signs each offer's one-click accept link (crm-api serves `/v1/offer-links/{token}`)."""

    api_url: str  # crm-api's public URL
    key: str

    def url_for(self, offer_event_id: uuid.UUID) -> str:
        token = token_for(link_id_of(offer_event_id), self.key)
        return f"{self.api_url.rstrip('/')}/v1/offer-links/{token}"


@dataclass(frozen=True, slots=True)
class Notice:
    """What one event tells one recipient, independent of the channel."""

    lead_id: str  # "" when the notice is not about a lead (a team member's transfer)
    subject: str
    greeting: str
    lines: tuple[str, ...]
    link: str
    headline: str  # the short form for SMS and push
    link_label: str = "Open the lead"
    fields: tuple[tuple[str, str], ...] = ()
    quote: str = ""
    notes: tuple[str, ...] = ()
    deadline: str = ""
    accept_link: str = ""  # an offer's one-click accept link (signed, single use)


@dataclass(frozen=True, slots=True)
class EmailContent:
    to: str
    subject: str
    text: str
    lead_id: str
    html: str = ""
    reply_to: str = ""  # an agent's message to a contact: the answer goes to the agent


@dataclass(frozen=True, slots=True)
class SmsContent:
    to: str
    body: str
    lead_id: str


@dataclass(frozen=True, slots=True)
class PushContent:
    token: str
    title: str
    body: str
    lead_id: str
    link: str
    data: dict[str, str] = field(default_factory=dict)


Content = EmailContent | SmsContent | PushContent

# N1: who hears about what, on which channels. Offers are urgent (a claim window runs),
# so they use every channel; closed offers only push, since the CRM already shows them.
CHANNELS_BY_TYPE: dict[str, frozenset[Channel]] = {
    "LeadOffered": frozenset({Channel.EMAIL, Channel.SMS, Channel.PUSH}),
    "LeadAssigned": frozenset({Channel.EMAIL, Channel.PUSH}),
    # T1: the realtor a brokerage shared a lead with, like an assignment.
    "LeadShared": frozenset({Channel.EMAIL, Channel.PUSH}),
    "LeadFellBack": frozenset({Channel.EMAIL, Channel.PUSH}),
    "ActivityLogged": frozenset({Channel.EMAIL, Channel.PUSH}),
    "OfferExpired": frozenset({Channel.PUSH}),
    "OfferWithdrawn": frozenset({Channel.PUSH}),
    # Its holder left the office: the broker pool's agent, who distributes it by hand.
    "LeadReleased": frozenset({Channel.EMAIL, Channel.PUSH}),
    # T2: the target office's staff (the broker and team-update subscribers), by email.
    "TeamMemberTransferred": frozenset({Channel.EMAIL}),
    # LeadTransferred: nobody now; the target office's next digest lists the lead (T2).
}

# Assignments another event announces: an office transfer's (its target's next digest) and a
# lead share's (the `LeadShared` notice to the realtor).
SILENT_ASSIGNMENTS = frozenset({AssignmentReason.OFFICE_TRANSFER, AssignmentReason.LEAD_SHARING})


def recipient_of(event: RoutingEvent) -> str | None:
    """The one agent an event concerns (N1); None when nobody is told this way.

    An office transfer (T2) tells nobody at once: the lead is new in the target office and
    goes out in its next daily digest, so neither `LeadTransferred` nor the assignment to the
    target's broker pool that may come with it sends an immediate notice. A team member's
    transfer goes to the target's staff (`team_member_email`), not to one agent.

    A lead share (T1) tells the realtor who holds the lead now, through its `LeadShared`; an
    assignment with reason `lead_sharing` (should one come) would repeat it, so it tells nobody.
    """
    if isinstance(event, LeadAssigned) and event.payload.reason in SILENT_ASSIGNMENTS:
        return None
    if isinstance(event, OfferWithdrawn) and event.payload.reason in {
        WithdrawalReason.AGENT_LEFT,
        WithdrawalReason.DECLINED,
    }:
        return None  # the agent left the office, or declined the offer itself: nothing to tell it
    if isinstance(event, LeadReleased):
        return event.payload.broker_agent_id
    if isinstance(event, LeadAssigned | LeadOffered | LeadFellBack | OfferExpired | OfferWithdrawn | LeadShared):
        return event.payload.agent_id
    if isinstance(event, ActivityLogged) and event.payload.action is ActivityAction.INQUIRY:
        return event.payload.agent_id
    return None


def notice_for(
    event: RoutingEvent,
    who: Recipient,
    pages_url: str,
    *,
    accept_link: str = "",
    hide_contact: bool = False,
    routing_info: bool = False,
) -> Notice | None:
    """What `event` tells `who`. An offer carries `accept_link`, and with `hide_contact` shows the
    contact's email and phone only once the lead is claimed (the account's choice). `routing_info`: `who` is
    the office's broker (roster position 1), whose lead released or fallen back (`LeadReleased`, `LeadFellBack`)
    carries the router's whole explanation; nobody else reads it (N5)."""
    if isinstance(event, TeamMemberTransferred):
        return team_member_notice(event, who, pages_url)
    if isinstance(event, RealtorInvited | ContactMessaged | ContactErased):
        return None  # sent to an address of the event's (`invitation_email`, `contact_message`), or nobody
    link = lead_link(pages_url, event.account_id, str(event.payload.lead_id))
    if isinstance(event, LeadOffered):
        return offered_notice(event, who, link, accept_link=accept_link, hide_contact=hide_contact)
    if isinstance(event, LeadAssigned):
        return assigned_notice(event, who, link)
    if isinstance(event, LeadShared):
        return shared_notice(event, who, link)
    if isinstance(event, LeadReleased | LeadFellBack):
        return back_with_the_broker_notice(event, who, link, routing_info=routing_info)
    if isinstance(event, OfferExpired | OfferWithdrawn):
        return offer_closed_notice(event, who, link)
    if isinstance(event, ActivityLogged):
        return inquiry_notice(event, who, link)
    return None


# N5: why an agent was given a lead, in words about itself only, from the assignment's reason. Never the
# router's explanation: it names the other agents who were eligible and why each was passed by (paused, at a
# cap, off hours), routing info for the brokerage's broker and admins (decisions 0062, 0076).
WHY_YOU: dict[AssignmentReason, str] = {
    AssignmentReason.ROSTER_POSITION_1: "you are first on the office's roster, who distributes the leads"
    " round robin does not give out.",
    AssignmentReason.SITE_ATTRIBUTION: "the contact registered on your own site.",
    AssignmentReason.DIRECT_TO_USER: "the inquiry came through your own site or listing.",
    AssignmentReason.PRE_ASSIGNED: "the lead provider assigned the lead to you.",
    AssignmentReason.CLAIMED: "you claimed the lead.",
    AssignmentReason.FALLBACK: "nobody claimed the lead in time, so the broker pool (you) holds it.",
    AssignmentReason.OFFICE_TRANSFER: "the lead moved here from another office, to the broker pool (you).",
    AssignmentReason.LEAD_SHARING: "the brokerage shared the lead with you.",
    AssignmentReason.AGENT_LEFT: "the agent who held the lead left the office, so the broker pool (you) holds it.",
    AssignmentReason.MANUAL: "a broker or admin assigned the lead to you by hand.",
    AssignmentReason.RETURNED: "the agent who held the lead gave it back, so the broker pool (you) holds it.",
}


def assigned_notice(event: LeadAssigned, who: Recipient, link: str) -> Notice:
    """The lead is `who`'s now; why, in words about `who` alone (N5)."""
    c = event.payload.contact
    name = shown_name(c.full_name)
    why = WHY_YOU.get(event.payload.reason)
    return Notice(
        lead_id=str(event.payload.lead_id),
        subject=f"New lead: {name}",
        greeting=f"Hi {who.name},",
        lines=(f"{name} is now your lead ({event.payload.source.name}).",),
        fields=(("Email", c.email or "-"), ("Phone", c.phone or "-")),
        quote=event.payload.message,
        notes=(f"Why you: {why}",) if why else (),
        link=link,
        headline=f"New lead: {name}",
    )


def offered_notice(event: LeadOffered, who: Recipient, link: str, *, accept_link: str, hide_contact: bool) -> Notice:
    """The claim window in the recipient's time zone; the contact's email and phone hidden when asked."""
    o = event.payload
    deadline = f"{shown_in(o.deadline, who.time_zone):%a %d %b %H:%M %Z}"
    race = f" It was offered to {o.race_size} agents: the first to act gets it." if o.race_size > 1 else ""
    name = shown_name(o.contact.full_name)
    return Notice(
        lead_id=str(o.lead_id),
        subject=f"Lead offer: {name}",
        greeting=f"Hi {who.name},",
        lines=(
            f"New lead for you: {name} ({o.source.name}).{race}",
            f"Claim it before {deadline} by accepting it or acting on it (email, call, note, ...);"
            " opening it does not claim it.",
        ),
        fields=(
            (("Email", HIDDEN_UNTIL_CLAIMED), ("Phone", HIDDEN_UNTIL_CLAIMED)) if hide_contact
            else (("Email", o.contact.email or "-"), ("Phone", o.contact.phone or "-"))
        ),
        quote=o.message,
        link=link,
        headline=f"Lead offer: {name}. Claim it before {deadline}",
        deadline=deadline,
        accept_link=accept_link,
    )  # fmt: skip


def shown_in(moment: datetime, time_zone: str) -> datetime:
    """`moment` in `time_zone`; if the zone cannot show it (a date past 9999-12-31 or before year 1 there), in UTC,
    else as the event gives it: never a notice that cannot be written (the contract bounds no deadline)."""
    for zone in (ZoneInfo(time_zone), UTC):
        try:
            return moment.astimezone(zone)
        except OverflowError:
            continue
    return moment


def back_with_the_broker_notice(
    event: LeadReleased | LeadFellBack, who: Recipient, link: str, *, routing_info: bool = False
) -> Notice:
    """The broker pool's agent: its holder left the office (R7), or nobody claimed it in time (R9).

    The router's explanation ("Why: ...") only with `routing_info`, for the office's broker: the broker pool's
    agent may be another agent (position 1 inactive or the one who left) or the one who gave the lead back, and
    the explanation names other agents and why they were passed by (N5). The line says why to anyone."""
    if isinstance(event, LeadReleased) and event.payload.reason == "idle":
        subject, headline = "A lead moved on", "A lead moved on: its agent did not work it in time"
        line = "The agent who held this lead did nothing with it in time, so it is offered to the next agent."
    elif isinstance(event, LeadReleased) and event.payload.reason == "returned":
        subject, headline = "A lead you gave back is unassigned", "A lead you gave back is unassigned"
        line = "You gave this lead back and nobody else in the office can hold it, so nobody holds it now."
    elif isinstance(event, LeadReleased):
        subject, headline = "A lead needs a new agent", "A lead needs a new agent: its agent left the office"
        line = "The agent who held this lead left the office. Nobody holds it now: assign it to an agent."
    else:
        subject, headline = "Lead back in the broker pool", "A lead nobody claimed is back in the broker pool"
        line = "Nobody claimed this lead in time, so it is back with you."
    return Notice(
        lead_id=str(event.payload.lead_id),
        subject=subject,
        greeting=f"Hi {who.name},",
        lines=(line,),
        notes=(f"Why: {event.payload.explanation}",) if routing_info else (),
        link=link,
        headline=headline,
    )


# Why an offer was withdrawn, as (subject, line); any other reason: another agent claimed the lead.
_WITHDRAWN_BECAUSE = {
    WithdrawalReason.OFFICE_TRANSFER: (
        "The lead moved to another office",
        "The lead you were offered moved to another office of the organisation, so your offer was withdrawn.",
    ),
    WithdrawalReason.REASSIGNED: (
        "The lead was distributed by hand",
        "A broker or admin gave the lead you were offered to an agent by hand, so your offer was withdrawn.",
    ),
    WithdrawalReason.LEAD_SHARING: (
        "The brokerage assigned the lead to a realtor",
        "The brokerage assigned the lead you were offered to a realtor, so your offer was withdrawn.",
    ),
}


def offer_closed_notice(event: OfferExpired | OfferWithdrawn, who: Recipient, link: str) -> Notice:
    if isinstance(event, OfferExpired):
        why, line = "Your offer expired", "Your offer expired."
    elif event.payload.reason in _WITHDRAWN_BECAUSE:
        why, line = _WITHDRAWN_BECAUSE[event.payload.reason]
    else:
        why, line = "Another agent claimed the lead", "Another agent claimed the lead."
    return Notice(lead_id=str(event.payload.lead_id), subject=why, greeting=f"Hi {who.name},", lines=(line,),
                  link=link, headline=why)  # fmt: skip


def inquiry_notice(event: ActivityLogged, who: Recipient, link: str) -> Notice | None:
    """R1: the contact of the recipient's lead came back with a new inquiry; other activity tells nobody."""
    a = event.payload
    if a.action is not ActivityAction.INQUIRY or a.summary is None:
        return None
    name = shown_name(a.summary.contact.full_name)
    return Notice(
        lead_id=str(a.lead_id),
        subject=f"Your lead {name} is back",
        greeting=f"Hi {who.name},",
        lines=(f"{name}, your lead, sent a new inquiry ({a.summary.source.name}).",),
        quote=a.summary.message,
        link=link,
        headline=f"Your lead {name} sent a new inquiry",
    )


def shared_notice(event: LeadShared, who: Recipient, link: str) -> Notice:
    """T1: a brokerage shared a lead with the realtor, who holds it now.

    The event carries no contact (the realtor's CRM shows it), so the notice names the
    brokerage and links to the lead.
    """
    by = event.payload.assigned_by
    return Notice(
        lead_id=str(event.payload.lead_id),
        subject=f"{by} assigned you a lead",
        greeting=f"Hi {who.name},",
        lines=(f'{by} assigned you a lead: it is yours now and shows in your CRM labelled "Assigned By: {by}".',),
        fields=(("Assigned by", by),),
        link=link,
        headline=f"{by} assigned you a lead",
    )


def team_member_notice(event: TeamMemberTransferred, who: Recipient, pages_url: str) -> Notice:
    """T2: a team member joined the office from another one; it arrives as Onboarding."""
    t = event.payload
    joined = f"{t.agent_name} joined {t.to_account_name} from {t.from_account_name}"
    return Notice(
        lead_id="",
        subject=f"{joined} (Onboarding)",
        greeting=f"Hi {who.name},",
        lines=(
            f"{t.agent_name} was moved from {t.from_account_name} to {t.to_account_name}.",
            "They arrive with status Onboarding, so they show in your Onboarding queue."
            " Moving a team member is not a new lead: no new-lead notice is sent for them.",
        ),
        fields=(("Team member", t.agent_name), ("From", t.from_account_name), ("Status", "Onboarding")),
        link=team_link(pages_url, event.account_id),
        link_label="Open the team settings",
        headline=f"{joined} (Onboarding)",
    )


def team_member_email(event: TeamMemberTransferred, who: Recipient, pages_url: str) -> EmailContent:
    return email_of(team_member_notice(event, who, pages_url), who.email)


def invitation_email(event: RealtorInvited, pages_url: str) -> EmailContent:
    """T1: a brokerage invites a realtor (maybe no user of leadflow yet) to receive its leads."""
    i = event.payload
    who = i.name or i.email
    notice = Notice(
        lead_id="",
        subject=f"{i.brokerage_name} invites you to receive its leads",
        greeting=f"Hi {who},",
        lines=(
            f"{i.brokerage_name} invites you to work leads it shares with you on leadflow.",
            "Open the invitation to accept or decline it; once you accept, the brokerage can transfer leads to you.",
            f"The invitation can be answered for {INVITATION_VALID_DAYS} days.",
        ),
        link=f"{pages_url.rstrip('/')}/invitations/{i.invitation_id}",
        link_label="Open the invitation",
        headline=f"{i.brokerage_name} invites you to receive its leads",
    )
    return email_of(notice, i.email)


def contact_message(event: ContactMessaged, sender: Recipient | None) -> EmailContent | SmsContent:
    """The holder's own email or text to the contact, signed with its name; replies go to the agent."""
    m = event.payload
    name = sender.name if sender is not None else ""
    if m.channel == "sms":
        return SmsContent(to=m.to, body=_signed_text(m.body, name), lead_id=str(m.lead_id))
    signed = f"{m.body}\n\n{name}" if name else m.body
    return EmailContent(
        to=m.to,
        subject=m.subject or "(no subject)",
        text=signed,
        lead_id=str(m.lead_id),
        reply_to=sender.email if sender is not None else "",
    )


TEXT_LIMIT = 1_600  # what the SMS provider takes (Twilio), in UTF-16 units


def _signed_text(body: str, name: str) -> str:
    """The text signed with the agent's name, the name shortened (or left off) to keep it within the provider's
    limit: crm-api takes bodies that leave room for a signature (`TEXT_MAX`), not for any name."""
    if not name:
        return body
    room = TEXT_LIMIT - _utf16(body) - _utf16("\n- ")
    while name and _utf16(name) > room:
        name = name[:-1]
    return f"{body}\n- {name}" if name.strip() else body


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def email_of(notice: Notice, to: str) -> EmailContent:
    return EmailContent(
        to=to,
        subject=notice.subject,
        text=render("email.txt.j2", notice=notice),
        html=render("email.html.j2", notice=notice),
        lead_id=notice.lead_id,
    )


def sms_of(notice: Notice, to: str) -> SmsContent:
    return SmsContent(to=to, body=render("sms.txt.j2", notice=notice).strip(), lead_id=notice.lead_id)


def push_of(notice: Notice, token: str) -> PushContent:
    return PushContent(
        token=token,
        title=notice.subject,
        body=render("push.txt.j2", notice=notice).strip(),
        lead_id=notice.lead_id,
        link=notice.link,
        data={"lead_id": notice.lead_id, "link": notice.link},
    )


def messages_for(
    event: RoutingEvent,
    who: Recipient,
    pages_url: str,
    *,
    now: datetime,
    accept_link: str = "",
    hide_contact: bool = False,
    routing_info: bool = False,
) -> list[Outgoing]:
    """Every message this event sends `who`, after preferences and quiet hours: one per channel, and
    for push one per registered device. `routing_info`: as for `notice_for`."""
    notice = notice_for(
        event, who, pages_url, accept_link=accept_link, hide_contact=hide_contact, routing_info=routing_info
    )
    if notice is None:
        return []
    channels = CHANNELS_BY_TYPE.get(event.type, frozenset()) & allowed_channels(
        who.preferences, time_zone=who.time_zone, now=now
    )
    out: list[Outgoing] = []
    if Channel.EMAIL in channels:
        out.append(Outgoing(Channel.EMAIL, email_of(notice, who.email)))
    if Channel.SMS in channels and who.phone:
        out.append(Outgoing(Channel.SMS, sms_of(notice, who.phone)))
    if Channel.PUSH in channels:
        out.extend(Outgoing(Channel.PUSH, push_of(notice, d.token), d.device_id) for d in who.push_devices)
    return out


def email_for(event: RoutingEvent, who: Recipient, pages_url: str) -> EmailContent | None:
    notice = notice_for(event, who, pages_url)
    return None if notice is None else email_of(notice, who.email)


def lead_assigned_email(event: LeadAssigned, who: Recipient, pages_url: str) -> EmailContent:
    """The email telling an agent a lead is now theirs."""
    email = email_for(event, who, pages_url)
    assert email is not None  # noqa: S101 (an assignment always has a notice)
    return email


def lead_link(pages_url: str, account_id: str, lead_id: str) -> str:
    """The lead's page in leadflow's web app (`pages_url` is the app's base)."""
    return f"{pages_url.rstrip('/')}/accounts/{account_id}/leads/{lead_id}"


def team_link(pages_url: str, account_id: str) -> str:
    """The account's team page (roster and round robin), where a newcomer is placed."""
    return f"{pages_url.rstrip('/')}/accounts/{account_id}/team"
