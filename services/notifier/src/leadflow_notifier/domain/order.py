"""What the order of the events tells the notifier: erased contacts, and offers a batch already ends (N1, 0094).

Events of one lead can reach the notifier after its `ContactErased` (decision 0050): on another partition (an
office transfer's events are keyed by the office the lead left), read again after a rebalance, or replayed from
a dead letter. Such an event is read as the router would publish it now, with the contact blank
(`without_contact`): nothing of the person is stored or sent again.

A notifier catching up (after an outage, a rebalance, a backlog) can read an offer together with what ended
it. `ended_in_batch` names the offers the batch itself ends later: those are not announced, but their ends are
(the offer may have been told already, in a batch read before this one was read again).
"""

from __future__ import annotations

from collections.abc import Sequence

from leadflow_shared.events.intake import Contact
from leadflow_shared.events.routing import (
    ActivityLogged,
    ContactMessaged,
    LeadAssigned,
    LeadClaimed,
    LeadHeld,
    LeadOffered,
    LeadSummary,
    LeadTransferred,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
)

NOBODY = Contact(first_name="")  # as the router blanks an erased lead's contact

WithContact = LeadAssigned | LeadOffered | LeadHeld | LeadTransferred


def lead_of(event: RoutingEvent) -> str | None:
    """The lead an event is about; None for an event about no one lead (an erasure, a team member, an invitation)."""
    lead_id = getattr(event.payload, "lead_id", None)
    return None if lead_id is None else str(lead_id)


def carries_contact(event: RoutingEvent) -> bool:
    """Whether the event holds anything of its lead's contact: a name, an address, what the person wrote, or a
    message to them. The router publishes an erased lead's later events blank: those hold nothing."""
    if isinstance(event, ContactMessaged):
        return True
    if isinstance(event, WithContact):
        return event.payload.contact != NOBODY or bool(getattr(event.payload, "message", ""))
    if isinstance(event, ActivityLogged):
        summary = event.payload.summary
        return summary is not None and (summary.contact != NOBODY or bool(summary.message))
    return False


def published_blank(event: RoutingEvent) -> bool:
    """Whether the router published the event with its lead's contact blank: it does so only after an erasure
    (intake accepts no lead without a name, an email or a phone), so such an event is an erased lead's wherever
    the batch was cut (decision 0094)."""
    return isinstance(event, WithContact) and event.payload.contact == NOBODY


def without_contact(event: RoutingEvent) -> RoutingEvent | None:
    """`event` of an erased lead, as the router would publish it now: the contact blank, no message, no
    criteria; None for a message to the contact (it is not sent). The same event when it holds nothing of it."""
    if not carries_contact(event):
        return event
    if isinstance(event, ContactMessaged):
        return None
    if isinstance(event, ActivityLogged):
        summary = event.payload.summary
        blank = None if summary is None else LeadSummary(contact=NOBODY, source=summary.source)
        return event.model_copy(update={"payload": event.payload.model_copy(update={"summary": blank})})
    blanked: dict[str, object] = {"contact": NOBODY}
    if not isinstance(event, LeadTransferred):
        blanked["message"] = ""
    if isinstance(event, LeadAssigned | LeadOffered):
        blanked["criteria"] = None
    return event.model_copy(update={"payload": event.payload.model_copy(update=blanked)})


Offer = tuple[str, str, int]  # (lead, agent, round)


def ended_in_batch(events: Sequence[RoutingEvent]) -> set[int]:
    """The positions of the offers (`LeadOffered`) a later event of `events` ends: a claim of the lead in the
    offer's round or a later one (by any agent: a claimer acted on the lead already), or the offer's own
    `OfferWithdrawn` or `OfferExpired`. The ends themselves are told: a batch read again after a rebalance holds
    offers told before it."""
    quiet: set[int] = set()
    open_at: dict[Offer, list[int]] = {}  # a redelivery in the batch: one offer at two positions
    for position, event in enumerate(events):
        if isinstance(event, LeadOffered):
            p = event.payload
            open_at.setdefault((str(p.lead_id), p.agent_id, p.offer_round), []).append(position)
        elif isinstance(event, LeadClaimed):
            lead, round_ = str(event.payload.lead_id), event.payload.offer_round
            for offer in [o for o in open_at if o[0] == lead and o[2] <= round_]:
                quiet.update(open_at.pop(offer))
        elif isinstance(event, OfferExpired | OfferWithdrawn):
            c = event.payload
            quiet.update(open_at.pop((str(c.lead_id), c.agent_id, c.offer_round), ()))
    return quiet
