"""What each recipient is told: pure functions from an event to a message."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.routing import ActivityLogged, LeadAssigned, LeadEvent, LeadFellBack, LeadOffered


@dataclass(frozen=True, slots=True)
class Recipient:
    agent_id: str
    name: str
    email: str
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class EmailContent:
    to: str
    subject: str
    text: str
    lead_id: str


def lead_assigned_email(event: LeadAssigned, agent: Recipient, crm_base_url: str) -> EmailContent:
    """The email telling an agent a lead is now theirs."""
    p = event.payload
    contact = p.contact
    lines = [
        f"Hi {agent.name},",
        "",
        f"{contact.full_name} is now your lead ({p.source.name}).",
        "",
        f"Email: {contact.email or '-'}",
        f"Phone: {contact.phone or '-'}",
    ]
    if p.message:
        lines += ["", "Their message:", p.message]
    lines += [
        "",
        f"Why you: {p.explanation}",
        f"Open the lead: {crm_base_url.rstrip('/')}/v1/accounts/{event.account_id}/leads/{p.lead_id}",
        "",
        f"Lead id: {p.lead_id}",
    ]
    return EmailContent(
        to=agent.email, subject=f"New lead: {contact.full_name}", text="\n".join(lines), lead_id=str(p.lead_id)
    )


def lead_offered_email(event: LeadOffered, agent: Recipient, crm_base_url: str) -> EmailContent:
    """The offer: who the lead is, and the claim deadline in the agent's own time zone (R8, N1)."""
    p = event.payload
    deadline = p.deadline.astimezone(ZoneInfo(agent.time_zone))
    race = f" It was offered to {p.race_size} agents: the first to act gets it." if p.race_size > 1 else ""
    lines = [
        f"Hi {agent.name},",
        "",
        f"New lead for you: {p.contact.full_name} ({p.source.name}).{race}",
        f"Claim it before {deadline:%a %d %b %H:%M %Z} by accepting it or acting on it (email, call, note, ...);",
        "opening it does not claim it.",
        "",
        f"Email: {p.contact.email or '-'}",
        f"Phone: {p.contact.phone or '-'}",
        *(["", "Their message:", p.message] if p.message else []),
        "",
        f"Open the lead: {_link(crm_base_url, event.account_id, str(p.lead_id))}",
    ]
    return EmailContent(agent.email, f"Lead offer: {p.contact.full_name}", "\n".join(lines), str(p.lead_id))


def lead_fell_back_email(event: LeadFellBack, broker: Recipient, crm_base_url: str) -> EmailContent:
    """R9: every eligible agent passed; the broker gets the lead back."""
    p = event.payload
    text = "\n".join(
        [
            f"Hi {broker.name},",
            "",
            "Nobody claimed this lead in time, so it is back with you.",
            "",
            f"Why: {p.explanation}",
            f"Open the lead: {_link(crm_base_url, event.account_id, str(p.lead_id))}",
        ]
    )
    return EmailContent(broker.email, "Lead back in the broker pool", text, str(p.lead_id))


def returning_contact_email(event: ActivityLogged, agent: Recipient, crm_base_url: str) -> EmailContent | None:
    """R1: one of the agent's contacts came back with a new inquiry."""
    p = event.payload
    if p.action is not ActivityAction.INQUIRY or p.summary is None:
        return None
    contact = p.summary.contact
    text = "\n".join(
        [
            f"Hi {agent.name},",
            "",
            f"{contact.full_name}, your lead, sent a new inquiry ({p.summary.source.name}).",
            *(["", p.summary.message] if p.summary.message else []),
            "",
            f"Open the lead: {_link(crm_base_url, event.account_id, str(p.lead_id))}",
        ]
    )
    return EmailContent(agent.email, f"Your lead {contact.full_name} is back", text, str(p.lead_id))


def recipient_of(event: LeadEvent) -> str | None:
    """Whom an event's email goes to (N1); None when nobody is emailed."""
    if isinstance(event, LeadAssigned | LeadOffered | LeadFellBack):
        return event.payload.agent_id
    if isinstance(event, ActivityLogged) and event.payload.action is ActivityAction.INQUIRY:
        return event.payload.agent_id
    return None


def email_for(event: LeadEvent, agent: Recipient, crm_base_url: str) -> EmailContent | None:
    if isinstance(event, LeadAssigned):
        return lead_assigned_email(event, agent, crm_base_url)
    if isinstance(event, LeadOffered):
        return lead_offered_email(event, agent, crm_base_url)
    if isinstance(event, LeadFellBack):
        return lead_fell_back_email(event, agent, crm_base_url)
    if isinstance(event, ActivityLogged):
        return returning_contact_email(event, agent, crm_base_url)
    return None


def _link(crm_base_url: str, account_id: str, lead_id: str) -> str:
    return f"{crm_base_url.rstrip('/')}/v1/accounts/{account_id}/leads/{lead_id}"
