"""What became of an agent's ask for a missed offer (issue 15, item 5), from the lead's timeline: pure, no I/O.

crm-api records each ask (a `LeadActivity` entry, action `ask_back`, at crm-api's time); the router answers
each one exactly once, at its own time: a new offer to the agent (`LeadOffered`, explained as asked back) or a
refusal (`ActivityLogged`, action `ask_back`, with the reason). Asks and answers are stamped by two clocks, so
they are matched by count, not by time: once there are as many answers as asks, the latest answer is the
latest ask's. The agent holding an open offer of the lead now says "offered" whatever the count.

Not by id: the router derives an answer's event id from the ask's (`derived_event_id(ask, "v{version}:{i}")`,
router handlers `_outbox`), but with its routing record's version, which no event carries, so crm-api cannot
recompute it. crm-api takes one ask at a time (a new one is refused while the latest is pending), so answers come
in the order of the asks; answers in the same router millisecond (its clock, so a tie is common under a test's
frozen clock and possible in real life) are put in the order the router must have written them (`_written`):
a refusal saying the agent's offer "is still open" follows the asked-back offer that opened it, any other
refusal precedes it (an asked-back offer leaves the agent an open offer, so the next ask of that millisecond is
refused as "still open"), and offers follow their round. Never by the answers' ids, which are random run to run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry

REFUSED_PREFIX = "cannot ask it back: "  # the router's words before each reason (router/domain/decisions.py)
ASKED_BACK = "asked back the offer it missed"  # the explanation of the router's new offer (on_ask_back there)
STILL_OPEN = "its offer is still open"  # the router's refusal of an ask while the agent's offer is open (there)
ROUND = re.compile(r"\(round (\d+)\)")  # an offer entry's round ("Offered to ana (round 2), ...": domain/views.py)


class AskBackStatus(StrEnum):
    PENDING = "pending"  # the router has not answered the latest ask yet
    OFFERED = "offered"  # the agent was offered the lead again
    REFUSED = "refused"  # the router said why not (`reason`)


@dataclass(frozen=True, slots=True)
class AskBackOutcome:
    status: AskBackStatus
    asked_at: datetime  # the latest ask
    answered_at: datetime | None = None  # the router's answer to it (its clock)
    reason: str | None = None  # a refusal's reason, without the router's "cannot ask it back: "
    offered_until: datetime | None = None  # the agent's open offer of the lead, while it is open


def ask_back_outcome(
    row: LeadRow, offers: Sequence[TimelineEntry], asks: Sequence[TimelineEntry], agent_id: str, *, now: datetime
) -> AskBackOutcome | None:
    """The outcome of the agent's latest ask; None when it never asked.

    `offers`: the agent's offer entries of the lead (`adapters.leads.lost_offer`'s); `asks`: its asks and the
    router's refusals of them (`adapters.leads.ask_back_entries`'s), each oldest first."""
    asked = [e for e in asks if e.type == "LeadActivity"]
    if not asked:
        return None
    refusals = [e for e in asks if e.type == "ActivityLogged"]
    answers = sorted(
        [*refusals, *(e for e in offers if e.type == "LeadOffered" and ASKED_BACK in e.summary)], key=_written
    )
    asked_at = asked[-1].occurred_at
    open_until = max((o.deadline for o in row.open_offers if o.agent_id == agent_id and o.deadline > now), default=None)
    if open_until is not None:
        answered = answers[-1].occurred_at if answers and answers[-1].type == "LeadOffered" else None
        return AskBackOutcome(AskBackStatus.OFFERED, asked_at, answered, offered_until=open_until)
    if len(answers) < len(asked):
        return AskBackOutcome(AskBackStatus.PENDING, asked_at)
    answer = answers[-1]
    if answer.type == "LeadOffered":  # offered again; that offer ended since (how it ended is on the timeline)
        return AskBackOutcome(AskBackStatus.OFFERED, asked_at, answer.occurred_at)
    reason = answer.summary.partition(REFUSED_PREFIX)[2] or answer.summary
    return AskBackOutcome(AskBackStatus.REFUSED, asked_at, answer.occurred_at, reason=reason)


def _written(answer: TimelineEntry) -> tuple[int, int, int, str]:
    """The order the router wrote its answers in: by its clock, and within one millisecond a refusal before an
    asked-back offer, that offer (by round) before a refusal saying the agent's offer is still open; last, the
    refusal's words (two refusals of one millisecond with different reasons: rare; one order, whatever the ids)."""
    if answer.type == "LeadOffered":
        found = ROUND.search(answer.summary)
        return answer.occurred_ms, 1, int(found.group(1)) if found else 0, ""
    return answer.occurred_ms, 2 if STILL_OPEN in answer.summary else 0, 0, answer.summary
