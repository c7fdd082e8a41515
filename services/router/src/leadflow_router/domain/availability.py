"""Whether an agent can take a lead now (issue 15, items 3 and 4), and why not. Pure.

The settings are `leadflow_shared.availability`; the leads an agent has are counted by the router
(`counted`: the agents a lead is offered to or was claimed by), their times read back per agent
(`Usage`) when a pool is formed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from leadflow_router.domain.frozen import fast_init
from leadflow_router.domain.model import Agent, LeadState, PauseWindow
from leadflow_router.domain.schedule import pause_end
from leadflow_shared.availability import Caps
from leadflow_shared.clock import from_epoch_ms
from leadflow_shared.events.routing import AssignmentReason


@fast_init
@dataclass(frozen=True, slots=True)
class Usage:
    """The leads an agent has counted against its caps this day, week and month."""

    day: int = 0
    week: int = 0
    month: int = 0

    def plus(self, leads: int) -> Usage:
        return Usage(self.day + leads, self.week + leads, self.month + leads)

    def minus(self, other: Usage) -> Usage:
        return Usage(self.day - other.day, self.week - other.week, self.month - other.month)


NO_USAGE = Usage()


@fast_init
@dataclass(frozen=True, slots=True)
class Gate:
    """What decides, besides an agent's own settings, whether it can take a lead: the moment, the
    office's holidays (dates of the office's calendar: its `time_zone`; None, `now`'s own), and each
    agent's usage (None: not known, caps not checked)."""

    now: datetime | None = None
    holidays: frozenset[date] = frozenset()
    usage: Mapping[str, Usage] | None = None
    time_zone: str | None = None

    def refuses(self, agent: Agent) -> str | None:
        """Why `agent` cannot take a lead now, or None."""
        if agent.free:
            return None
        settings = agent.availability
        if settings is None:
            return "availability settings cannot be read"
        if settings.paused:
            return "paused"
        if self.now is not None and (why := _away_or_off(agent, self.now, self._office_holiday())):
            return why
        if self.usage is not None and settings.caps is not None:
            return over_cap(settings.caps, self.usage.get(agent.agent_id, NO_USAGE))
        return None

    def _office_holiday(self) -> bool:
        if not self.holidays or self.now is None:
            return False
        office = self.now if self.time_zone is None else self.now.astimezone(ZoneInfo(self.time_zone))
        return office.date() in self.holidays


OPEN = Gate()  # no time, no usage: only the settings that need neither (paused, unreadable)


def _away_or_off(agent: Agent, now: datetime, office_holiday: bool) -> str | None:
    """Away, on its own holiday (its calendar), or, for an agent with working hours, on the office's
    holiday (the office's calendar) or outside them."""
    settings = agent.availability
    assert settings is not None  # noqa: S101 (checked by the caller)
    for away in settings.away:
        if away.start <= now < away.end:
            return f"away until {away.end.astimezone(ZoneInfo(agent.time_zone)):%Y-%m-%d %H:%M}"
    local = now.astimezone(ZoneInfo(agent.time_zone))
    if local.date() in settings.holidays:
        return "on a holiday"
    if not settings.working_hours:
        return None
    if office_holiday:
        return "on a holiday"
    hours = tuple(PauseWindow(frozenset(w.weekdays), w.start, w.end) for w in settings.working_hours)
    if pause_end(now, hours, agent.time_zone) is None:  # no working window covers this moment
        return f"outside working hours ({local:%a %H:%M})"
    return None


def over_cap(caps: Caps, usage: Usage) -> str | None:
    for period, cap, used in (("daily", caps.day, usage.day), ("weekly", caps.week, usage.week),
                              ("monthly", caps.month, usage.month)):  # fmt: skip
        if cap is not None and used >= cap:
            return f"at its {period} cap ({used} of {cap})"
    return None


def past_cap(caps: Caps, usage: Usage) -> bool:
    """Whether `usage` (the lead just counted in it) is past a cap: two deciders gave the agent its last slot."""
    return any(cap is not None and used > cap for cap, used in ((caps.day, usage.day), (caps.week, usage.week),
                                                                 (caps.month, usage.month)))  # fmt: skip


class Place(NamedTuple):
    """Where a lead stands in an agent's line: counted from `at_ms`, held for good (`by` None: its stored record
    counts it) or pending (`by`: the decider that holds it while its change is being stored)."""

    at_ms: int
    by: str | None = None

    def rank(self, lead_id: str) -> tuple[int, int, str, str]:
        """Held for good first, by when each was counted, then lead id; then the pending holds, each decider's
        together, by when it held them, then its token: one order over every agent, so two deciders contending for
        several agents never each stand first at one of them (decision 0061, amended in session 33)."""
        return (0, self.at_ms, "", lead_id) if self.by is None else (1, self.at_ms, self.by, lead_id)


def in_line(caps: Caps, line: Mapping[str, Place], mine: set[str], now: datetime, time_zone: str) -> bool:
    """Whether the leads `mine` are among the first of an agent's counted leads (`line`: lead -> its place) that
    each cap it is past allows, in the order of `Place.rank`."""
    order = sorted(line, key=lambda lead: line[lead].rank(lead))
    periods = {lead: usage_of((from_epoch_ms(line[lead].at_ms),), now, time_zone) for lead in order}  # 1 per period
    for cap, field in ((caps.day, "day"), (caps.week, "week"), (caps.month, "month")):
        period = [lead for lead in order if getattr(periods[lead], field)]
        if cap is not None and len(period) > cap and not mine <= set(period[:cap]):
            return False
    return True


def usage_of(times: Iterable[datetime], now: datetime, time_zone: str) -> Usage:
    """An agent's usage from the times its counted leads were offered, by the account's calendar."""
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    week_start = today - timedelta(days=today.weekday())
    day = week = month = 0
    for moment in times:
        local = moment.astimezone(zone).date()
        day += local == today
        week += week_start <= local <= today
        month += (local.year, local.month) == (today.year, today.month) and local <= today
    return Usage(day, week, month)


@dataclass(slots=True)
class CountedLeads:
    """The leads an account's capped agents count against their caps (agent -> lead -> when it was counted from, as
    `CapacityLog.places` reads them from the start of this week or month: held for good or pending) and the usage
    they make at `now`, kept current through a batch: a lead that starts counting counts from `now`; one that stops
    is taken off exactly the periods its count was in (a lead counted yesterday frees no slot of today's cap).
    `held`: the (agent, lead) counted for good (the rest are pending holds)."""

    now: datetime
    time_zone: str
    leads: dict[str, dict[str, datetime]]
    usage: dict[str, Usage]
    held: set[tuple[str, str]]

    @classmethod
    def of(cls, places: Mapping[str, Mapping[str, Place]], now: datetime, time_zone: str) -> CountedLeads:
        kept = {agent: {lead: from_epoch_ms(p.at_ms) for lead, p in line.items()} for agent, line in places.items()}
        held = {(agent, lead) for agent, line in places.items() for lead, p in line.items() if p.by is None}
        usage = {agent: usage_of(by_lead.values(), now, time_zone) for agent, by_lead in kept.items()}
        return cls(now, time_zone, kept, usage, held)

    def count(self, agent_id: str, lead_id: str) -> None:
        """The lead counts against the agent from now on. One counted for good keeps its time, as stored (and as
        `hold_many` keeps it); one only pending (a crash's leftover, a rival's hold) counts from now, as its count
        will be written: a leftover of yesterday does not leave today's slot free (helper 163)."""
        if (agent_id, lead_id) in self.held:
            return
        self.credit(agent_id, lead_id)
        self.leads.setdefault(agent_id, {})[lead_id] = self.now
        self.usage[agent_id] = self.usage.get(agent_id, NO_USAGE).plus(1)

    def credit(self, agent_id: str, lead_id: str) -> None:
        """The lead no longer counts against the agent: its slot is freed in the periods it was counted in, none
        when it was counted before this week and month (not read) or not at all."""
        at = self.leads.get(agent_id, {}).pop(lead_id, None)
        self.held.discard((agent_id, lead_id))
        if at is not None:
            self.usage[agent_id] = self.usage.get(agent_id, NO_USAGE).minus(usage_of((at,), self.now, self.time_zone))

    def seen_by(self, lead_id: str) -> dict[str, Usage]:
        """The usage a decision of the lead `lead_id` itself reads: without that lead, which counts once wherever it
        goes (a slot it holds is its own to keep, and a hold a crash left of it is not another lead: decision 0061).
        Every other lead counts, a pending hold too, as the agent's line for its slots has them (`in_line`)."""
        usage: dict[str, Usage] | None = None
        for agent_id, by_lead in self.leads.items():
            if (at := by_lead.get(lead_id)) is not None:
                usage = dict(self.usage) if usage is None else usage
                usage[agent_id] = usage.get(agent_id, NO_USAGE).minus(usage_of((at,), self.now, self.time_zone))
        return self.usage if usage is None else usage


def period_start(now: datetime, time_zone: str) -> datetime:
    """The earliest moment a lead counted now can have been offered: this week's or this month's start."""
    zone = ZoneInfo(time_zone)
    today = now.astimezone(zone).date()
    first = min(today - timedelta(days=today.weekday()), today.replace(day=1))
    return datetime.combine(first, datetime.min.time(), zone)


def counted(state: LeadState | None) -> frozenset[str]:
    """The agents a lead counts against: those it is open to (not in a pond: its agents' caps are checked
    when one claims it), and the holder who claimed it."""
    if state is None:
        return frozenset()
    claimed = {state.holder} if state.holder is not None and state.reason is AssignmentReason.CLAIMED else set()
    offered = set() if state.pond is not None else {o.agent_id for o in state.open_offers}  # a pond's: not yet
    return frozenset(offered | claimed)
