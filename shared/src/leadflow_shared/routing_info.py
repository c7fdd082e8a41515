""" "Why this agent" (issue 15, item 6): a routing decision as structured data.

The router records one `RoutingDecision` each time it decides who a lead goes to (a new lead, a re-offer
after a deadline, a fallback), keeps a lead's latest ones with its routing record, and serves them to
crm-api (its internal HTTP API), which shows them per lead ("View routing info"). The dry-run answers with
the same shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from leadflow_shared.envelope import Contract

MAX_LISTED = 1000  # agents per list: a roster is at most 10,000, a rule names at most 1,000
RULES_LISTED = 25  # rules tried per decision: the first 24 and the one that decided


class RuleTried(Contract):
    """A routing rule tried for the lead, in order: whether it applied, and why not."""

    rule_id: str
    name: str
    matched: bool
    why_not: str | None = None


class Skipped(Contract):
    agent_id: str
    reason: str = Field(description="paused, at its daily cap (5 of 5), outside working hours, already offered...")


class RotationUsed(Contract):
    """The rotation the choice was made in, and where it stood."""

    kind: Literal["source", "rule"]
    mode: str = Field(description="round_robin, weighted, balanced or random.")
    cursor_before: int
    cursor_after: int


class RoutingDecision(Contract):
    at: AwareDatetime
    step: str = Field(description="What decided: R1-R10 (the seeds' rules) or Rule (a routing rule).")
    rule_id: str | None = Field(default=None, description="The routing rule whose pool was used; none: the source's.")
    rule_name: str | None = None
    rules: list[RuleTried] = Field(
        default_factory=list,
        max_length=250,
        description="The rules tried, in order (at most 25: the first and the last).",
    )
    rules_not_listed: int = Field(default=0, ge=0, description="Rules tried between those listed, not matched.")
    chosen: list[str] = Field(default_factory=list, description="Agents offered (or given) the lead.")
    skipped: list[Skipped] = Field(default_factory=list, max_length=MAX_LISTED)
    waiting: list[str] = Field(
        default_factory=list, max_length=MAX_LISTED, description="Eligible agents not chosen this time (later turns)."
    )
    rotation: RotationUsed | None = None
    explanation: str = Field(max_length=1000)
