"""What each recipient is told: pure functions from an event to a message."""

from __future__ import annotations

from dataclasses import dataclass

from leadflow_shared.events.routing import LeadAssigned


@dataclass(frozen=True, slots=True)
class Recipient:
    agent_id: str
    name: str
    email: str


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
