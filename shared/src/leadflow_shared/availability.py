"""When an agent takes new leads (issue 15, items 3 and 4): pauses, time away, working hours, holidays
and lead caps, stored on the agent's document (`agents`) and read by the router, which skips an agent
who cannot take a lead now and says why.

- `paused`: the agent paused itself, or a broker paused it, until it resumes.
- `away`: date-time ranges (a vacation), start included, end not.
- `working_hours`: weekly windows in the agent's time zone (`end <= start` crosses midnight); none: any
  time. `holidays`: the agent's days off, in its time zone (the account's holidays apply too).
- `caps`: at most this many leads a day, a week (Monday to Sunday) and a month, counted in the
  account's time zone: a lead counts from the moment it is offered to the agent, and is credited back
  when the offer ends unclaimed or the agent no longer holds the lead (returned, reassigned, moved).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from leadflow_shared.times import KeptInstant

Weekday = Annotated[int, Field(ge=0, le=6, description="0 = Monday.")]
Cap = Annotated[int, Field(ge=0, le=100_000)]
FIELDS = ("paused", "away", "working_hours", "holidays", "caps")  # where they are on an agent's document


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Away(_Strict):
    start: KeptInstant
    end: KeptInstant

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError("end is not after start")
        return self


class WorkWindow(_Strict):
    weekdays: list[Weekday] = Field(min_length=1, max_length=7)
    start: time
    end: time


class Caps(_Strict):
    day: Cap | None = None
    week: Cap | None = None
    month: Cap | None = None


class AgentAvailability(_Strict):
    paused: bool = False
    away: list[Away] = Field(default_factory=list, max_length=50)
    working_hours: list[WorkWindow] = Field(default_factory=list, max_length=50)
    holidays: list[date] = Field(default_factory=list, max_length=400)
    caps: Caps | None = None


_HOLIDAYS: TypeAdapter[list[date]] = TypeAdapter(list[date])


def holidays_of(account: Mapping[str, Any]) -> frozenset[date]:
    """The office's days off (`holidays` on the account): none when missing or unreadable."""
    try:
        return frozenset(_HOLIDAYS.validate_python(account.get("holidays") or []))
    except ValidationError:
        return frozenset()


def availability_of(agent: Mapping[str, Any]) -> AgentAvailability | None:
    """The availability stored on an agent's document; None when it cannot be read (the router then
    offers that agent nothing and says why, rather than guess a cap or a pause away)."""
    try:
        return AgentAvailability.model_validate({k: agent[k] for k in FIELDS if agent.get(k) is not None})
    except ValidationError:
        return None
