"""Account settings (V4): request/response models and the checks that need the account's data.

The stored shapes are those of docs/account-config.md (`accounts`, `agents`) and of the
notifier's `notifier_preferences`. The field rules mirror the router's seed models
(leadflow_router.adapters.account_config) without importing them: crm-api does not depend
on the router package, and tests/unit/test_crm_settings.py checks both agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from leadflow_crm_api.domain.offices import TeamStatus
from leadflow_shared.account_config import ContactDetails as ContactDetails  # re-exported: the API's enum
from leadflow_shared.account_config import known_zone
from leadflow_shared.events.commands import DepartedLeads

AgentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=100)]
# Strict "HH:MM": the router and the notifier parse it with time.fromisoformat / pydantic.
Clock = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["20:00"])]
WEEK_SECONDS = 7 * 24 * 3600

Violation = tuple[tuple[str | int, ...], str]
"""Where (a location under the body) and why a value is refused."""


def _zone(value: str) -> str:
    if known_zone(value) is None:
        raise ValueError("unknown IANA time zone")
    return value


TimeZone = Annotated[str, Field(min_length=1, max_length=64, examples=["America/New_York"]), AfterValidator(_zone)]


T = TypeVar("T")


def _distinct(values: list[T]) -> list[T]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Routing: R5/R6


class RoutingSettings(_Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"round_robin": True, "roster": ["alex-rivera", "blair-chen"]}]}
    )

    round_robin: bool = Field(description="Off (R5): roster position 1 gets new general leads. On (R6): rotation.")
    roster: Annotated[list[AgentId], AfterValidator(_distinct)] = Field(
        min_length=1, max_length=10_000, description="Agent ids of the account, position 1 first."
    )
    departed_agent_leads: DepartedLeads = Field(
        default=DepartedLeads.UNASSIGNED,
        description="Where the leads an agent holds go when it is deactivated or moves to another office: "
        "`unassigned` (a broker or admin distributes them by hand), `broker_pool` (roster position 1 holds "
        "them) or `reroute` (offered again by the routing rules). Its open offers are withdrawn either way.",
    )
    allow_direct_to_user: bool = Field(
        default=True,
        description="Direct-to-user leads (ClientBAY): a lead from an agent's own site (R2) or on an agent's own "
        "listing (R3) goes to that agent. Off: such leads are routed as general leads.",
    )


class DigestSchedule(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"hour": 8, "time_zone": "America/New_York"}]})

    hour: int = Field(
        ge=0, le=23, description="When the daily digest of new leads goes out, in the office's time zone."
    )
    time_zone: str | None = Field(default=None, description="The office's time zone (read only: set with the account).")


class OfferNotices(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"contact_details": "hidden_for_races"}]})

    contact_details: ContactDetails = Field(
        default=ContactDetails.HIDDEN_FOR_RACES,
        description="Whether an offer's email, text and push show the contact's email and phone before the lead is "
        "claimed: `shown`, `hidden` (until claimed), or `hidden_for_races` (hidden when several agents race).",
    )


class RoundRobinApproval(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"approved": True}]})

    approved: bool = Field(description="Approved by the broker for round robin (R6).")


class AgentStatus(_Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "active"}, {"status": "onboarding"}]})

    status: TeamStatus = Field(
        description="`onboarding` is how a team member arrives from another office (T2); only `active` agents "
        "are offered leads."
    )


class AgentRoundRobin(RoundRobinApproval):
    model_config = ConfigDict(json_schema_extra={"examples": [{"agent_id": "blair-chen", "approved": True}]})

    agent_id: str


def check_roster(roster: Sequence[str], account_agents: Iterable[str]) -> list[Violation]:
    known = set(account_agents)
    return [(("roster", i), "not an agent of this account") for i, a in enumerate(roster) if a not in known]


# Lead sources: R3, R6-R8, R11


class LeadSource(_Body):
    name: Name
    kind: Literal["general", "direct"] = "general"
    lead_group: Name | None = Field(default=None, description="Only its members are offered these leads (R6).")
    offices: Annotated[list[Name], AfterValidator(_distinct)] = Field(
        default_factory=list, max_length=100, description="Only agents of these offices are offered its leads (R6); "
        "[]: every office. Each name as the agents' offices have it: one line, no spaces around it (a comma is "
        "part of the name).",
    )  # fmt: skip
    race_count: int = Field(default=1, ge=1, le=50, description="Agents offered at once (R7).")
    claim_window_seconds: int = Field(default=900, ge=10, le=WEEK_SECONDS, description="R8.")
    referral_fee_percent: float = Field(default=0.0, ge=0, le=100, description="R11; direct leads carry none.")
    auto_accept: bool = Field(default=True, description="R3: direct leads land without acceptance.")
    direct_period_seconds: int = Field(default=900, ge=10, le=WEEK_SECONDS, description="R3, auto-accept off.")


class LeadSources(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "sources": [
                        {
                            "name": "Zillow",
                            "kind": "general",
                            "lead_group": "luxury",
                            "offices": ["downtown"],
                            "race_count": 2,
                            "claim_window_seconds": 900,
                            "referral_fee_percent": 25.0,
                            "auto_accept": True,
                            "direct_period_seconds": 900,
                        },
                        {
                            "name": "Agent website",
                            "kind": "direct",
                            "offices": [],
                            "race_count": 1,
                            "claim_window_seconds": 900,
                            "referral_fee_percent": 0.0,
                            "auto_accept": False,
                            "direct_period_seconds": 1800,
                        },
                    ]
                }
            ]
        }
    )

    sources: list[LeadSource] = Field(max_length=500)


def check_sources(sources: Sequence[LeadSource], lead_groups: Iterable[str]) -> list[Violation]:
    found: list[Violation] = []
    groups, names = set(lead_groups), Counter(s.name for s in sources)
    for i, source in enumerate(sources):
        if names[source.name] > 1:
            found.append((("sources", i, "name"), "another source has this name"))
        if source.lead_group is not None and source.lead_group not in groups:
            found.append((("sources", i, "lead_group"), "not a lead group of this account"))
        found += [(("sources", i, "offices", j), ONE_LINE) for j, o in enumerate(source.offices) if not one_line(o)]
    return found


# The web form shows a source's offices one per line (a name may hold a comma): a name it could not give back
# whole is refused on saving (checked here, not on reading, so a source stored before is still shown).
ONE_LINE = "an office's name is one line, without spaces around it"


# A lead group is chosen in a source's one-line "Lead group" field (a browser's text input drops CR and LF), so the
# same holds for its name (helper 139).
GROUP_ONE_LINE = "a lead group's name is one line, without spaces around it"


def one_line(name: str) -> bool:
    return name.splitlines() == [name] and name == name.strip()


# Lead groups: R6


class LeadGroup(_Body):
    name: Name = Field(description="One line, without spaces around it (a source names it in a one-line field).")
    agent_ids: Annotated[list[AgentId], AfterValidator(_distinct)] = Field(max_length=10_000)


class LeadGroups(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "groups": [
                        {"name": "luxury", "agent_ids": ["alex-rivera"]},
                        {"name": "rentals", "agent_ids": ["alex-rivera", "blair-chen"]},
                    ]
                }
            ]
        }
    )

    groups: list[LeadGroup] = Field(max_length=100)


def check_groups(
    groups: Sequence[LeadGroup], account_agents: Iterable[str], sources: Iterable[Mapping[str, Any]]
) -> list[Violation]:
    found: list[Violation] = []
    known, names = set(account_agents), Counter(g.name for g in groups)
    for i, group in enumerate(groups):
        if names[group.name] > 1:
            found.append((("groups", i, "name"), "another group has this name"))
        if not one_line(group.name):
            found.append((("groups", i, "name"), GROUP_ONE_LINE))
        found += [
            (("groups", i, "agent_ids", j), "not an agent of this account")
            for j, agent in enumerate(group.agent_ids)
            if agent not in known
        ]
    # Removing a group a source still names would silently leave that source with no eligible agent.
    kept = set(names)
    found += [
        (("groups",), f"lead source {s['name']!r} uses group {s['lead_group']!r}; change the source first")
        for s in sources
        if s.get("lead_group") is not None and s["lead_group"] not in kept
    ]
    return found


def groups_of(agent_id: str, groups: Sequence[LeadGroup]) -> list[str]:
    """The `lead_groups` field of an agent document, in the groups' order."""
    return [g.name for g in groups if agent_id in g.agent_ids]


def known_group_names(account: Mapping[str, Any], agents: Iterable[Mapping[str, Any]]) -> list[str]:
    """The account's lead groups: `lead_group_names` once set here; before that (seeded accounts),
    every group an agent or a source names."""
    if "lead_group_names" in account:
        return list(account["lead_group_names"])
    names = {g for a in agents for g in a.get("lead_groups", [])}
    names |= {s["lead_group"] for s in account.get("sources", []) if s.get("lead_group")}
    return sorted(names)


# Pause schedule: R10


class PauseWindow(_Body):
    weekdays: Annotated[list[Annotated[int, Field(ge=0, le=6)]], AfterValidator(_distinct)] = Field(
        min_length=1, max_length=7, description="0 = Monday .. 6 = Sunday."
    )
    start: Clock
    end: Clock = Field(description="`end <= start` crosses midnight.")


class PauseSchedule(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "time_zone": "America/New_York",
                    "windows": [
                        {"weekdays": [0, 1, 2, 3, 4], "start": "20:00", "end": "08:00"},
                        {"weekdays": [5, 6], "start": "18:00", "end": "10:00"},
                    ],
                }
            ]
        }
    )

    time_zone: TimeZone | None = Field(default=None, description="The account's zone; unchanged when left out.")
    windows: list[PauseWindow] = Field(max_length=50)


def clock(stored: str) -> str:
    """Stored times may carry seconds (the seed writes "20:00:00"); the API speaks "HH:MM"."""
    return time.fromisoformat(stored).strftime("%H:%M")


# Notification preferences (the notifier's `notifier_preferences`)


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class QuietHours(_Body):
    start: Clock
    end: Clock = Field(description="In the recipient's time zone; `end <= start` crosses midnight.")


class NotificationPreferences(_Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "channels": ["email", "push"],
                    "quiet_hours": {"start": "21:00", "end": "07:00"},
                    "digest": True,
                    "team_updates": False,
                }
            ]
        }
    )

    channels: Annotated[list[Channel], AfterValidator(_distinct)] = Field(
        max_length=3, description="Channels for lead notifications; quiet hours hold back SMS and push."
    )
    quiet_hours: QuietHours | None = None
    digest: bool = Field(default=False, description="Daily digest of new leads (admins and staff).")
    team_updates: bool = Field(
        default=False, description="Email when a team member joins the account from another office (T2; staff)."
    )
    new_lead_notices: bool = Field(
        default=False, description="An email at once for every new lead of the account (admins and staff; N1)."
    )


DEFAULT_PREFERENCES = NotificationPreferences(channels=list(Channel))


def holds_for(doc: Mapping[str, Any], account_id: str) -> bool:
    """Whether a stored preferences document counts for `account_id`, the account its user belongs to (as the
    notifier reads it, decision 0076): one another account wrote (for an id that was nobody's then) has no hold
    on this account's user; one with no account (written before crm-api recorded it) counts."""
    return doc.get("account_id") in {None, account_id}


def preferences_from(doc: Mapping[str, Any] | None) -> NotificationPreferences:
    """The API view of a stored preferences document (the notifier's defaults when there is none)."""
    if doc is None:
        return DEFAULT_PREFERENCES
    quiet = doc.get("quiet_hours")
    return NotificationPreferences(
        channels=[Channel(c) for c in doc.get("channels", list(Channel))],
        quiet_hours=QuietHours(start=clock(quiet["start"]), end=clock(quiet["end"])) if quiet else None,
        digest=bool(doc.get("digest", False)),
        team_updates=bool(doc.get("team_updates", False)),
        new_lead_notices=bool(doc.get("new_lead_notices", False)),
    )
