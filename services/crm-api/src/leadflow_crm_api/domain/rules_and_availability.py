"""Routing rules and agent availability as crm-api changes them (issue 15): the bodies (the shared shapes,
with the examples the OpenAPI document shows), the checks that need the account's data, and the audit
entry every change leaves.

The shapes and their rules are leadflow_shared's (`RuleSet`, `AgentAvailability`): what crm-api accepts
is exactly what the router reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadflow_crm_api.domain.settings import Violation
from leadflow_shared.availability import FIELDS, AgentAvailability, Caps, WorkWindow, availability_of
from leadflow_shared.routing_rules import RuleSet, rule_set_of
from leadflow_shared.times import wall_clock

RULES_SETTING = "routing_rules"  # the account's field, and the audit's name for the setting
AVAILABILITY_SETTING = "availability"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_RULES_EXAMPLE: dict[str, Any] = {
    "version": 3,
    "rules": [
        {
            "id": "sellers",
            "name": "Sellers",
            "enabled": True,
            "match": "exact",
            "criteria": {"intents": ["sell"]},
            "action": {"kind": "agent", "agent_id": "alex-rivera", "claim_window_seconds": 600},
        },
        {
            "id": "luxury-austin",
            "name": "Luxury Austin",
            "enabled": True,
            "match": "empty_or_match",
            "criteria": {"price_min": 1000000, "cities": ["Austin", "Round Rock"]},
            "action": {
                "kind": "rotation",
                "agents": ["blair-chen", "riley-park"],
                "mode": "weighted",
                "weights": {"blair-chen": 3},
                "leads_per_round": 1,
                "race": 2,
            },
        },
    ],
    "default": {"action": {"kind": "source_rotation"}},
}


class RoutingRules(RuleSet):
    """The account's routing rule set (docs/routing-rules.md). A PUT carries the `version` it was based on."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RULES_EXAMPLE]})


class Availability(AgentAvailability):
    """When an agent takes new leads: paused, time away, working hours (its time zone), days off, lead caps."""

    @field_validator("working_hours")
    @classmethod
    def _wall_clock_times(cls, windows: list[WorkWindow]) -> list[WorkWindow]:
        # Working hours are read in the agent's time zone: an offset would be ignored by the router and
        # would make the windows incomparable (a sort or an overlap check of mixed times fails).
        # The check is the shared one (`WallClock`), here at the list, so that the hours stored with an offset before
        # it still read as `WorkWindow`s (the pages show them; the router drops the offset).
        for i, window in enumerate(windows):
            try:
                wall_clock(window.start)
                wall_clock(window.end)
            except ValueError as exc:
                raise ValueError(f"window {i}: {exc}") from None
        return windows

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "paused": False,
                    "away": [{"start": "2026-08-01T00:00:00-04:00", "end": "2026-08-15T00:00:00-04:00"}],
                    "working_hours": [{"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "18:00"}],
                    "holidays": ["2026-12-24"],
                    "caps": {"day": 5, "week": 20},
                }
            ]
        }
    )


# Routing rules: versions

_MISSING = object()


@dataclass(frozen=True, slots=True)
class StoredRules:
    """The rule set on an account document, and how to change it only while it is still this one."""

    rules: RuleSet  # what the router routes by: the default rule alone when none is stored or it is unreadable
    readable: bool
    version: int  # what a change must say it is based on
    guard: dict[str, Any]  # a filter matching the account only while its stored version is still this one


def stored_rules(account: Mapping[str, Any]) -> StoredRules:
    """The account's rule set and version. A version that is missing or not a count (written by hand) reads
    as 0; the guard then matches it as stored, so a change can still replace it."""
    stored = account.get(RULES_SETTING)
    raw = stored.get("version", _MISSING) if isinstance(stored, Mapping) else _MISSING
    guard = {f"{RULES_SETTING}.version": {"$exists": False} if raw is _MISSING else raw}
    version = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else 0
    rules = rule_set_of(account)
    return StoredRules(rules or RuleSet(), rules is not None, version, guard)


def rule_refusals(rules: RuleSet, roster: Sequence[str]) -> list[Violation]:
    """`RuleSet.refusals` against the roster, each at the rule or pond it is about (`rules.2`, `default`,
    `ponds.0`). Each part is checked alone in a set built without validation: a rule that puts leads in a pond
    is no set of its own (its pond is declared beside it), and `refusals` reads only the parts."""
    found: list[Violation] = [
        (("rules", i), reason)
        for i, rule in enumerate(rules.rules)
        for reason in RuleSet.model_construct(rules=[rule], ponds=[]).refusals(roster)
    ]
    found += [(("default",), r) for r in RuleSet.model_construct(default=rules.default, ponds=[]).refusals(roster)]
    found += [
        (("ponds", i), reason)
        for i, pond in enumerate(rules.ponds)
        for reason in RuleSet.model_construct(rules=[], ponds=[pond]).refusals(roster)
    ]
    return found


# Availability


def stored_availability(agent: Mapping[str, Any]) -> Availability:
    """An agent's availability as stored; a field the router cannot read shows as its default (a PUT replaces it)."""
    whole = availability_of(agent)
    if whole is None:
        readable: dict[str, Any] = {}
        for name in FIELDS:
            try:
                readable |= AgentAvailability.model_validate({name: agent[name]}).model_dump(include={name})
            except (ValidationError, KeyError):
                continue
        whole = AgentAvailability.model_validate(readable)
    # As the router reads it: a change's own checks (no UTC offsets) are not applied to what is stored.
    return Availability.model_construct(**dict(whole))


def availability_fields(body: AgentAvailability) -> dict[str, Any]:
    """The five fields as the agent document stores them, every one set (JSON types: nx-27017 keeps a datetime
    that `$set` writes as naive text, decision 0045)."""
    return body.model_dump(mode="json")


def zero_cap(caps: Caps | None) -> str | None:
    """The first period capped at 0 (no lead at all), if any."""
    if caps is None:
        return None
    return next((period for period in ("day", "week", "month") if getattr(caps, period) == 0), None)


def _takes_leads(agent: Mapping[str, Any], roster: Collection[str]) -> bool:
    """On the roster, active and approved for round robin, as the router and the configuration loader read it."""
    return agent["_id"] in roster and bool(agent.get("active", True)) and bool(agent.get("round_robin", True))


def _capped_to_zero(agent: Mapping[str, Any]) -> bool:
    settings = availability_of(agent)
    return settings is not None and zero_cap(settings.caps) is not None


def capacity_refusals(
    agent_id: str, body: AgentAvailability, agents: Iterable[Mapping[str, Any]], roster: Collection[str]
) -> list[Violation]:
    """A cap of 0 is refused when it would leave every agent who takes round-robin leads with a cap of 0
    (the configuration loader refuses the same)."""
    period = zero_cap(body.caps)
    if period is None:
        return []
    listed = list(agents)
    subject = next((a for a in listed if a["_id"] == agent_id), None)
    others = [a for a in listed if a["_id"] != agent_id and _takes_leads(a, roster)]
    if subject is None or not _takes_leads(subject, roster) or not all(_capped_to_zero(a) for a in others):
        return []
    return [(("caps", period), ALL_CAPPED)]


ALL_CAPPED = (
    "every agent who takes round-robin leads (on the roster, active, approved) would have a cap of 0: "
    "no lead could be offered"
)


# Working hours: no two windows overlap (decision 0066)

_DAY_US = 86_400_000_000
_WEEK_US = 7 * _DAY_US


def clock_text(moment: time) -> str:
    """A time of day as HH:MM, with the seconds (and their fraction) only when it has them."""
    if moment.microsecond:
        return moment.isoformat()
    return moment.isoformat(timespec="seconds" if moment.second else "minutes")


@dataclass(frozen=True, slots=True)
class _Stretch:
    """One weekday of a window on the week's clock, in microseconds from Monday 00:00 (a window crossing
    midnight ends on the next day; Sunday's past the week's end)."""

    at: tuple[int, int]  # the window's position, and the weekday's in its `weekdays`
    start: int
    end: int
    text: str  # the weekday and the hours, as a refusal says them


def _since_midnight(moment: time) -> int:
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000 + moment.microsecond


def _stretches(windows: Sequence[WorkWindow]) -> list[_Stretch]:
    found: list[_Stretch] = []
    for i, window in enumerate(windows):
        start, end = _since_midnight(window.start), _since_midnight(window.end)
        length = end - start if end > start else end - start + _DAY_US  # `end <= start` runs past midnight
        hours = f"{clock_text(window.start)}–{clock_text(window.end)}"
        for p, day in enumerate(window.weekdays):
            at = day * _DAY_US + start
            found.append(_Stretch((i, p), at, at + length, f"{WEEKDAYS[day]} {hours}"))
    return found


def _overlap(a: _Stretch, b: _Stretch) -> bool:
    """Whether the two share a moment of the week (an end is not in its window: back to back is no overlap)."""
    return any(max(a.start, b.start + shift) < min(a.end, b.end + shift) for shift in (-_WEEK_US, 0, _WEEK_US))


def window_refusals(body: AgentAvailability, stored: AgentAvailability) -> list[Violation]:
    """Each weekday of a working-hours window that overlaps an earlier window (or repeats it), at that weekday
    (`working_hours.1.weekdays.0`) with both windows in words. Hours saved unchanged are not checked again (stored
    before this check, they stay savable with the other fields)."""
    if body.working_hours == stored.working_hours:
        return []
    stretches = _stretches(body.working_hours)
    found: list[Violation] = []
    for n, this in enumerate(stretches):
        other = next((o for o in stretches[:n] if _overlap(this, o)), None)
        if other is None:
            continue
        reason = f"{this.text} is given twice" if other.text == this.text else f"{this.text} overlaps {other.text}"
        found.append((("working_hours", this.at[0], "weekdays", this.at[1]), reason))
    return found


# The audit of changes (`crm_settings_audit`)


class SettingsChange(BaseModel):
    setting: Literal["routing_rules", "availability"]
    agent_id: str | None = Field(default=None, description="Whose availability changed.")
    by_user_id: str = Field(description="Who changed it.")
    at: datetime
    version_before: int | None = Field(default=None, description="Routing rules: the version the change replaced.")
    version_after: int | None = Field(default=None, description="Routing rules: the version it stored.")
    document: dict[str, Any] = Field(description="The setting as the change stored it.")


class SettingsHistory(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "setting": "routing_rules",
                            "by_user_id": "morgan-broker",
                            "at": "2026-11-24T15:04:05Z",
                            "version_before": 2,
                            "version_after": 3,
                            "document": _RULES_EXAMPLE,
                        }
                    ]
                }
            ]
        }
    )

    items: list[SettingsChange] = Field(description="Newest first.")


class AvailabilityHistory(SettingsHistory):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "setting": "availability",
                            "agent_id": "alex-rivera",
                            "by_user_id": "morgan-broker",
                            "at": "2026-11-24T15:04:05Z",
                            "document": {
                                "paused": False,
                                "away": [],
                                "working_hours": [
                                    {"weekdays": [0, 1, 2, 3, 4], "start": "09:00:00", "end": "18:00:00"}
                                ],
                                "holidays": ["2026-12-24"],
                                "caps": {"day": 5, "week": 20, "month": None},
                            },
                        }
                    ]
                }
            ]
        }
    )


def change_of(doc: Mapping[str, Any]) -> SettingsChange:
    return SettingsChange.model_validate({k: doc.get(k) for k in SettingsChange.model_fields})
