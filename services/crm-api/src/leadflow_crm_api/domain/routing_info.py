""" "Why this agent" and the dry-run as crm-api shows them (issue 15, items 6-7): the router's routing
decisions (`leadflow_shared.routing_info.RoutingDecision`) with each agent's name beside its id, and the
lead a dry-run body describes, mapped to what intake would pass on (`LeadSummary`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadflow_crm_api.domain.people import Phone
from leadflow_crm_api.domain.rules_and_availability import RoutingRules
from leadflow_crm_api.domain.text import Email
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary
from leadflow_shared.routing_info import RotationUsed, RoutingDecision, RuleTried

_DECISION_EXAMPLE: dict[str, Any] = {
    "at": "2026-11-24T14:02:11Z",
    "step": "Rule",
    "rule_id": "luxury-austin",
    "rule_name": "Luxury Austin",
    "rules": [
        {"rule_id": "sellers", "name": "Sellers", "matched": False, "why_not": "intent is buy, not sell"},
        {"rule_id": "luxury-austin", "name": "Luxury Austin", "matched": True, "why_not": None},
    ],
    "rules_not_listed": 0,
    "chosen": [{"agent_id": "blair-chen", "name": "Blair Chen"}],
    "skipped": [{"agent_id": "riley-park", "name": "Riley Park", "reason": "at its daily cap (5 of 5)"}],
    "waiting": [{"agent_id": "alex-rivera", "name": "Alex Rivera"}],
    "rotation": {"kind": "rule", "mode": "round_robin", "cursor_before": 4, "cursor_after": 5},
    "explanation": "Routing rules: rule 'Luxury Austin'. Offered to blair-chen; riley-park: at its daily cap.",
}


class NamedAgent(BaseModel):
    agent_id: str
    name: str | None = Field(description="The agent's name; none when the agent is gone or has none.")


class SkippedAgent(NamedAgent):
    reason: str = Field(description="paused, away until ..., outside working hours, at its daily cap (5 of 5)...")


class Decision(BaseModel):
    """One routing decision: what decided, the rules tried, who was chosen, skipped (why) and waiting."""

    at: AwareDatetime
    step: str = Field(description="What decided: R1-R10 (the seeds' rules) or Rule (a routing rule).")
    rule_id: str | None = Field(default=None, description="The routing rule whose pool was used; none: the source's.")
    rule_name: str | None = None
    rules: list[RuleTried] = Field(description="The rules tried, in order, with why each did not apply.")
    rules_not_listed: int = Field(description="Rules tried between those listed, not matched.")
    chosen: list[NamedAgent] = Field(description="Agents offered (or given) the lead.")
    skipped: list[SkippedAgent]
    waiting: list[NamedAgent] = Field(description="Eligible agents not chosen this time (later turns).")
    rotation: RotationUsed | None = Field(description="The rotation used: source or rule, mode, cursor.")
    explanation: str


class LeadRouting(BaseModel):
    """A lead's latest routing decisions (the router keeps five), oldest first, as the timeline."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12", "decisions": [_DECISION_EXAMPLE]}]
        }
    )

    lead_id: str
    decisions: list[Decision]


class DryRunAnswer(BaseModel):
    """How the lead would be routed now; nothing was changed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "decision": _DECISION_EXAMPLE,
                    "status": "offered",
                    "holder": None,
                    "offered_to": [{"agent_id": "blair-chen", "name": "Blair Chen"}],
                }
            ]
        }
    )

    decision: Decision
    status: str = Field(description="What the lead would be: offered, assigned, fell_back, or merged (a duplicate).")
    holder: NamedAgent | None = Field(description="Who would hold it (an assignment).")
    offered_to: list[NamedAgent]


# The dry-run's body


class DryRunLead(BaseModel):
    """A lead as a website form gives it; all optional (a dry-run lead needs no contact)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    first_name: str = Field(default="", max_length=100, examples=["Jane"])
    last_name: str = Field(default="", max_length=100)
    email: Email | None = Field(default=None, description="A contact the account has already: the lead merges.")
    phone: Phone | None = Field(default=None, description="International form (+ and country code).")
    source: str = Field(default="Website", min_length=1, max_length=100, description="The lead source's name.")
    channel: LeadChannel = Field(default=LeadChannel.BROKERAGE_SITE, description="Where it came in (R2-R4).")
    site_host: str | None = Field(default=None, min_length=1, max_length=253, description="The site's host (R2).")
    message: str = Field(default="", max_length=5000)
    criteria: LeadCriteria | None = Field(default=None, description="What the lead is about, as intake takes it.")

    def summary(self) -> LeadSummary:
        """What intake would pass on: the email lower-cased, the criteria normalized (tags lower-cased...)."""
        return LeadSummary(
            contact=Contact(
                first_name=self.first_name,
                last_name=self.last_name,
                email=self.email.lower() if self.email else None,
                phone=self.phone,
            ),
            source=LeadSource(channel=self.channel, name=self.source, site_host=self.site_host),
            message=self.message,
            criteria=self.criteria.normalized() if self.criteria is not None else None,
        )


class DryRunRequest(BaseModel):
    """A lead (or a past lead's id) and, optionally, a draft rule set to decide it by instead of the saved one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "lead": {
                        "first_name": "Jane",
                        "source": "Zillow",
                        "criteria": {"intent": "buy", "price": {"min": 1200000}, "place": {"city": "Austin"}},
                    },
                    "rules": {
                        "rules": [
                            {
                                "id": "luxury-austin",
                                "name": "Luxury Austin",
                                "criteria": {"price_min": 1000000, "cities": ["Austin"]},
                                "action": {"kind": "rotation", "agents": ["blair-chen", "riley-park"]},
                            }
                        ]
                    },
                },
                {"lead_id": "0b8e6c1e-3f55-5d7a-9c1e-2f4a6b8c0d12"},
            ]
        },
    )

    lead: DryRunLead | None = None
    lead_id: uuid.UUID | None = Field(default=None, description="A past lead of the account, with its criteria.")
    rules: RoutingRules | None = Field(default=None, description="A draft rule set; none: the saved one.")

    @model_validator(mode="after")
    def _one_lead(self) -> Self:
        if (self.lead is None) == (self.lead_id is None):
            raise ValueError("give either lead or lead_id")
        return self


# From the router's answers


def agents_named(decisions: Iterable[RoutingDecision]) -> set[str]:
    """Every agent a decision names (chosen, skipped, waiting): whose names to look up."""
    return {a for d in decisions for a in (*d.chosen, *d.waiting, *(s.agent_id for s in d.skipped))}


def decision_of(stored: Mapping[str, Any]) -> RoutingDecision:
    """A decision as the router serves it; fields a newer router adds are ignored (decision 0056).
    ValueError when it is not one."""
    try:
        return RoutingDecision.model_validate(stored, extra="ignore")
    except ValidationError as exc:
        raise ValueError("not a routing decision") from exc


def shown(decision: RoutingDecision, names: Mapping[str, str]) -> Decision:
    """The decision with each agent's name beside its id."""
    return Decision(
        at=decision.at,
        step=decision.step,
        rule_id=decision.rule_id,
        rule_name=decision.rule_name,
        rules=list(decision.rules),
        rules_not_listed=decision.rules_not_listed,
        chosen=[NamedAgent(agent_id=a, name=names.get(a)) for a in decision.chosen],
        skipped=[
            SkippedAgent(agent_id=s.agent_id, name=names.get(s.agent_id), reason=s.reason) for s in decision.skipped
        ],
        waiting=[NamedAgent(agent_id=a, name=names.get(a)) for a in decision.waiting],
        rotation=decision.rotation,
        explanation=decision.explanation,
    )
