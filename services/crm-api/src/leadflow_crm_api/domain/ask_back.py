"""What became of an agent's ask for a missed offer (issue 15, item 5), from the lead's timeline: pure, no I/O.

crm-api records each ask (a `LeadActivity` entry, action `ask_back`, at crm-api's time); the router answers
each one it takes exactly once, at its own time: a new offer to the agent (`LeadOffered`, explained as asked
back) or a refusal (`ActivityLogged`, action `ask_back`, with the reason). The answer names its ask
(`answers_activity_id`, the ask's event id, kept on the timeline entry as `TimelineEntry.answers`; decision
0067), so an ask is matched to ITS answer by id: no clock is compared, and an answer to an older ask is never
taken for a newer one. An ask with no answer naming it is pending: the router has not answered yet, or never
will (the ask was dead-lettered; crm-api then lets the agent ask again after a while, `use_cases.ask_back`).
The agent holding an open offer of the lead now says "offered" whatever the answers.

Answers written before the field existed (history; an answer projected by a crm-api a version behind) name no
ask. Only for those the old way remains, among the asks no named answer answers: matched by count (two clocks),
so once there are as many such answers as such asks, the latest one is the latest ask's; answers in the same
router millisecond are put in the order the router must have written them (`_written`): a refusal saying the
agent's offer "is still open" follows the asked-back offer that opened it, any other refusal precedes it, and
offers follow their round. Never by the answers' own ids, which are random run to run.
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
    ask_id: str | None = None  # the latest ask's event id


def ask_back_outcome(
    row: LeadRow, offers: Sequence[TimelineEntry], asks: Sequence[TimelineEntry], agent_id: str, *, now: datetime
) -> AskBackOutcome | None:
    """The outcome of the agent's latest ask; None when it never asked.

    `offers`: the agent's offer entries of the lead (`adapters.leads.lost_offer`'s); `asks`: its asks and the
    router's refusals of them (`adapters.leads.ask_back_entries`'s), each oldest first."""
    asked = [e for e in asks if e.type == "LeadActivity"]
    if not asked:
        return None
    latest = asked[-1]
    answers = [
        *(e for e in asks if e.type == "ActivityLogged"),
        *(e for e in offers if e.type == "LeadOffered" and (e.answers is not None or ASKED_BACK in e.summary)),
    ]
    answer = answer_of(latest, asked, answers)
    asked_at, ask_id = latest.occurred_at, latest.entry_id
    open_until = max((o.deadline for o in row.open_offers if o.agent_id == agent_id and o.open_at(now)), default=None)
    if open_until is not None:
        answered = answer.occurred_at if answer is not None and answer.type == "LeadOffered" else None
        return AskBackOutcome(AskBackStatus.OFFERED, asked_at, answered, offered_until=open_until, ask_id=ask_id)
    if answer is None:
        return AskBackOutcome(AskBackStatus.PENDING, asked_at, ask_id=ask_id)
    if answer.type == "LeadOffered":  # offered again; that offer ended since (how it ended is on the timeline)
        return AskBackOutcome(AskBackStatus.OFFERED, asked_at, answer.occurred_at, ask_id=ask_id)
    reason = answer.summary.partition(REFUSED_PREFIX)[2] or answer.summary
    return AskBackOutcome(AskBackStatus.REFUSED, asked_at, answer.occurred_at, reason=reason, ask_id=ask_id)


def answer_of(
    ask: TimelineEntry, asked: Sequence[TimelineEntry], answers: Sequence[TimelineEntry]
) -> TimelineEntry | None:
    """The router's answer to `ask` (one of `asked`), or None while it has none.

    The answer naming it, if any (the first the router wrote, should a long-delayed redelivery have been answered
    twice). Else only answers naming no ask can be its own (written before answers named their asks): counted
    against the asks no answer names, the latest of them once there are as many (the module's docstring)."""
    named = sorted((a for a in answers if a.answers == ask.entry_id), key=_written)
    if named:
        return named[0]
    answered = {a.answers for a in answers if a.answers is not None}
    unnamed = [a for a in asked if a.entry_id not in answered]
    legacy = sorted((a for a in answers if a.answers is None), key=_written)
    return legacy[-1] if legacy and len(legacy) >= len(unnamed) else None


def _written(answer: TimelineEntry) -> tuple[int, int, int, str]:
    """The order the router wrote its answers in: by its clock, and within one millisecond a refusal before an
    asked-back offer, that offer (by round) before a refusal saying the agent's offer is still open; last, the
    refusal's words (two refusals of one millisecond with different reasons: rare; one order, whatever the ids)."""
    if answer.type == "LeadOffered":
        found = ROUND.search(answer.summary)
        return answer.occurred_ms, 1, int(found.group(1)) if found else 0, ""
    return answer.occurred_ms, 2 if STILL_OPEN in answer.summary else 0, 0, answer.summary
