"""What an action on a lead will do about claiming it (R8), told to the caller when it acts.

The router alone decides claims; crm-api answers from its view, which can trail the router
by a moment. So the answer says what the action asks for: a claim the router will decide
(the caller holds an open offer), activity by the holder, or activity that claims nothing,
with why (the offer ended at ..., held by ...). A pure `accept` that can claim nothing is
refused (409) and nothing is written; any other action is work worth logging either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from leadflow_crm_api.domain.lead_row import LeadRow, OfferLink, TimelineEntry

_OFFER_TYPES = ("LeadOffered", "OfferExpired", "OfferWithdrawn", "LeadClaimed")


class ClaimOutlook(StrEnum):
    REQUESTED = "requested"  # the caller holds an open offer: the action claims unless someone was faster
    HOLDER = "holder"  # the caller holds the lead: activity only
    NONE = "none"  # no offer, or it ended: activity that claims nothing
    NOT_A_CLAIM = "not_a_claim"  # a view


class LinkClaim(BaseModel):
    """What an accept link's use did: the claim is handed to the router (the lead's timeline shows who won)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "claim": "requested",
                    "detail": "Your offer is open until 2026-11-24 14:35 UTC. "
                    "The lead is yours unless another agent claimed it first.",
                }
            ]
        }
    )

    claim: ClaimOutlook
    detail: str


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    outlook: ClaimOutlook
    detail: str | None = None
    # REQUESTED: the round of the open offer the caller acts on, for its LeadActivity (decision 0087).
    offer_round: int | None = None


def claim_answer(
    row: LeadRow,
    timeline: list[TimelineEntry],
    *,
    caller: str,
    claims: bool,
    now: datetime,
    names: dict[str, str],
) -> ClaimAnswer:
    """The outlook of `caller`'s action on the lead `row` (crm-api's list row) at `now`.

    `timeline` is needed only when the caller holds no live offer (to say how its offer ended);
    `names` maps agent ids to names for the detail.
    """
    if not claims:
        return ClaimAnswer(ClaimOutlook.NOT_A_CLAIM)
    holder = row.owner_agent_id
    if holder == caller:
        return ClaimAnswer(ClaimOutlook.HOLDER)
    live = [o for o in row.open_offers if o.agent_id == caller and o.open_at(now)]
    if live:
        deadline = min(o.deadline for o in live)
        acted_on = max(o.offer_round for o in live)
        return ClaimAnswer(ClaimOutlook.REQUESTED, f"Your offer is open until {_at(deadline)}.", acted_on)
    held = f"the lead is held by {names.get(holder, holder)}" if holder else "nobody holds the lead now"
    return ClaimAnswer(ClaimOutlook.NONE, f"{_how_it_ended(row, timeline, caller)}; {held}.")


def link_offer_ended(row: LeadRow, link: OfferLink, now: datetime) -> bool:
    """Whether the link's own offer is no longer open: the link ends with its offer, so an old text or email claims
    nothing even when its agent holds a newer offer of the lead, of a later round or of the same one (asked back while
    the race went on: helper 144). An open offer stored without its link's id (before session 32) is known by its agent
    and round alone."""
    return not any(
        o.agent_id == link.agent_id
        and o.offer_round == link.offer_round
        and o.link_id in (None, link.link_id)
        and o.open_at(now)
        for o in row.open_offers
    )


def _how_it_ended(row: LeadRow, timeline: list[TimelineEntry], caller: str) -> str:
    overdue = [o for o in row.open_offers if o.agent_id == caller]
    if overdue:  # past its deadline; the router's sweeper has not expired it yet
        return f"Your offer ended at {_at(max(o.deadline for o in overdue))}"
    mine = [e for e in timeline if e.type in _OFFER_TYPES and e.agent_id == caller]
    if not mine:
        return "You were not offered this lead"
    last = mine[-1]
    if last.type == "OfferExpired":
        return f"Your offer expired at {_at(last.occurred_at)}"
    if last.type == "OfferWithdrawn":
        return f"Your offer was withdrawn at {_at(last.occurred_at)}"
    if last.type == "LeadClaimed":
        return "You claimed this lead before and no longer hold it"
    return "Your offer ended"  # offered, and the end is not in the view yet


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
