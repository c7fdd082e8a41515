"""Who can take a lead now (issue 15, items 3 and 4): pauses, time away, working hours, holidays and lead
caps, each skipping the agent with its reason; and how the leads an agent has are counted. Pure."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_router.domain.availability import Gate, Usage, counted, period_start, usage_of
from leadflow_router.domain.decisions import NewLead, Outcome, RoutingContext, on_activity, route_new_lead
from leadflow_router.domain.model import AccountSnapshot, Activity, Agent, LeadState, LeadStatus
from leadflow_shared.availability import AgentAvailability, availability_of, holidays_of
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadSummary

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday, 10:00 in New York, 07:00 in Los Angeles
NEW_YORK = ZoneInfo("America/New_York")
SUMMARY = LeadSummary(
    contact=Contact(first_name="Jo", email="jo@example.com"),
    source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
)


def agent(agent_id: str, time_zone: str = "UTC", **availability: Any) -> Agent:
    return Agent(agent_id, agent_id.title(), time_zone=time_zone, availability=AgentAvailability(**availability))


def account(*agents: Agent, holidays: frozenset[date] = frozenset()) -> AccountSnapshot:
    return AccountSnapshot(
        "acme",
        "Acme",
        (Agent("broker", "B"), *agents),
        round_robin=True,
        time_zone="America/New_York",
        holidays=holidays,
    )


def route(snapshot: AccountSnapshot, at: datetime = NOW, usage: dict[str, Usage] | None = None) -> Outcome:
    lead = NewLead(str(uuid.uuid4()), "acme", SUMMARY)
    return route_new_lead(lead, snapshot, RoutingContext(rotation=1, usage=usage), at)


def offered(outcome: Outcome) -> list[str]:
    return [e.payload.agent_id for e in outcome.events if e.kind is LeadOffered]  # type: ignore[attr-defined]


def test_a_paused_agent_is_skipped_and_the_explanation_says_so() -> None:
    outcome = route(account(agent("a", paused=True), agent("b")))
    assert offered(outcome) == ["b"]
    assert "a: paused" in outcome.explanation


def test_an_agent_away_is_skipped_until_its_time_away_ends() -> None:
    away = [{"start": NOW - timedelta(days=1), "end": NOW + timedelta(hours=2)}]
    snapshot = account(agent("a", away=away), agent("b"))
    during = route(snapshot)
    assert offered(during) == ["b"]
    assert "a: away until 2026-03-02 17:00" in during.explanation
    assert offered(route(snapshot, NOW + timedelta(hours=2))) == ["a"]


def test_working_hours_are_the_agent_s_own_clock() -> None:
    nine_to_five = [{"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}]
    snapshot = account(agent("west", "America/Los_Angeles", working_hours=nine_to_five), agent("b"))
    early = route(snapshot)  # 07:00 in Los Angeles
    assert offered(early) == ["b"]
    assert "west: outside working hours (Mon 07:00)" in early.explanation
    assert offered(route(snapshot, NOW + timedelta(hours=2))) == ["west"]  # 09:00 there


def test_holidays_of_the_agent_and_of_the_office_are_days_off() -> None:
    always = [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "00:00"}]
    own = account(agent("a", working_hours=always, holidays=[date(2026, 3, 2)]), agent("b"))
    office = account(agent("a", working_hours=always), agent("b"), holidays=frozenset({date(2026, 3, 2)}))
    for snapshot in (own, office):
        outcome = route(snapshot)
        assert offered(outcome) == ["b"]
        assert "a: on a holiday" in outcome.explanation


def test_an_agent_on_its_own_holiday_is_offered_no_lead_even_without_working_hours() -> None:
    """Review (helper 73): an agent's own day off (its time zone) applies whether or not it set working hours;
    the office's apply to agents with working hours (account-config.md)."""
    on_leave = agent("a", holidays=[date(2026, 3, 2)])  # no working hours: any time, but not today
    outcome = route(account(on_leave, agent("b")))
    assert Gate(NOW).refuses(on_leave) == "on a holiday"
    assert offered(outcome) == ["b"], outcome.explanation
    assert "a: on a holiday" in outcome.explanation
    assert offered(route(account(agent("a"), agent("b")), NOW)) == ["a"]  # without the holiday: a's turn
    no_hours = account(agent("a"), agent("b"), holidays=frozenset({date(2026, 3, 2)}))
    assert offered(route(no_hours)) == ["a"], "the office's holiday is for agents with working hours"


def test_the_office_s_holiday_is_a_day_of_the_office_s_calendar_for_an_agent_in_another_time_zone() -> None:
    """Review (helper 73): the office's holidays are dates on the account's clock (as its rules read them),
    not on the agent's: Christmas in New York starts at 21:00 on the 24th in Los Angeles."""
    always = [{"weekdays": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "00:00"}]
    west = agent("west", "America/Los_Angeles", working_hours=always)
    snapshot = account(west, agent("b"), holidays=frozenset({date(2026, 12, 25)}))
    christmas_in_new_york = datetime(2026, 12, 25, 0, 30, tzinfo=NEW_YORK)  # 21:30 on the 24th in Los Angeles
    boxing_day_in_new_york = datetime(2026, 12, 26, 1, 0, tzinfo=NEW_YORK)  # 22:00 on the 25th in Los Angeles
    assert Gate(christmas_in_new_york, snapshot.holidays).refuses(west) == "on a holiday"
    assert Gate(boxing_day_in_new_york, snapshot.holidays).refuses(west) is None
    # As the router asks: the moment in UTC, the office's time zone named.
    office = "America/New_York"
    assert Gate(christmas_in_new_york.astimezone(UTC), snapshot.holidays, None, office).refuses(west) == "on a holiday"
    assert Gate(boxing_day_in_new_york.astimezone(UTC), snapshot.holidays, None, office).refuses(west) is None
    routed = route(snapshot, christmas_in_new_york.astimezone(UTC))
    assert offered(routed) == ["b"], routed.explanation
    assert "west: on a holiday" in routed.explanation
    assert "west" in offered(route(snapshot, boxing_day_in_new_york.astimezone(UTC)))


def test_working_hours_ending_in_the_spring_forward_gap_end_when_the_agent_s_clock_passes_their_end() -> None:
    """Review (helper 73): a window 01:30-02:30 on the day New York springs forward (02:00 -> 03:00) ends when
    the clock jumps (02:30 does not exist; the first time after it is 03:00 EDT), not at 02:30 EST = 03:30 EDT."""
    sunday_early = [{"weekdays": [6], "start": "01:30", "end": "02:30"}]
    night_owl = agent("owl", "America/New_York", working_hours=sunday_early)
    snapshot = account(night_owl, agent("b"))
    after_its_hours = datetime(2026, 3, 8, 3, 15, tzinfo=NEW_YORK)  # Sunday 03:15 EDT, the agent's clock
    assert after_its_hours.utcoffset() == timedelta(hours=-4)
    outcome = route(snapshot, after_its_hours.astimezone(UTC))
    assert offered(outcome) == ["b"], outcome.explanation
    assert "owl: outside working hours (Sun 03:15)" in outcome.explanation
    assert offered(route(snapshot, datetime(2026, 3, 8, 1, 59, tzinfo=NEW_YORK).astimezone(UTC))) == ["owl"]


@pytest.mark.parametrize(
    ("caps", "usage", "why"),
    [
        ({"day": 2}, Usage(2, 2, 2), "at its daily cap (2 of 2)"),
        ({"week": 5}, Usage(0, 5, 9), "at its weekly cap (5 of 5)"),
        ({"month": 20}, Usage(1, 1, 20), "at its monthly cap (20 of 20)"),
        ({"day": 0}, Usage(), "at its daily cap (0 of 0)"),
    ],
)
def test_an_agent_at_a_cap_is_skipped_with_the_cap(caps: dict[str, int], usage: Usage, why: str) -> None:
    outcome = route(account(agent("a", caps=caps), agent("b")), usage={"a": usage})
    assert offered(outcome) == ["b"]
    assert f"a: {why}" in outcome.explanation


def test_below_its_caps_an_agent_takes_leads_and_at_a_cap_the_next_one_does() -> None:
    snapshot = account(agent("a", caps={"day": 2}), agent("b", caps={"day": 1}))
    assert offered(route(snapshot, usage={"a": Usage(1, 1, 1)})) == ["a"]
    full = route(snapshot, usage={"a": Usage(2, 2, 2), "b": Usage(1, 1, 1)})
    assert offered(full) == ["broker"]  # position 1 takes turns too, without a cap


def test_unreadable_availability_takes_no_leads() -> None:
    unreadable = dataclasses.replace(agent("a"), availability=None)
    outcome = route(account(unreadable, agent("b")))
    assert offered(outcome) == ["b"]
    assert "a: availability settings cannot be read" in outcome.explanation
    assert availability_of({"caps": {"day": -1}}) is None
    assert availability_of({"paused": None, "caps": {"day": 3}}) == AgentAvailability.model_validate(
        {"caps": {"day": 3}}
    )
    assert holidays_of({"holidays": ["2026-12-25", "nonsense"]}) == frozenset()
    assert holidays_of({"holidays": ["2026-12-25"]}) == {date(2026, 12, 25)}


def test_usage_counts_by_the_account_s_calendar() -> None:
    zone = "America/New_York"
    times = [
        datetime(2026, 3, 2, 14, 0, tzinfo=UTC),  # Monday 09:00 local: today
        datetime(2026, 3, 2, 3, 0, tzinfo=UTC),  # Sunday 22:00 local: last week, this month
        datetime(2026, 2, 28, 12, 0, tzinfo=UTC),  # last month
    ]
    assert usage_of(times, NOW, zone) == Usage(day=1, week=1, month=2)
    assert period_start(NOW, zone) == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)  # March 1st, local midnight


def test_a_lead_counts_against_whom_it_is_open_to_and_who_claimed_it() -> None:
    outcome = route(account(agent("a"), agent("b")))
    state = outcome.state
    assert state is not None
    assert counted(state) == {"a"}
    claimed = on_activity(state, Activity("a", ActivityAction.CALL), NOW).state
    assert counted(claimed) == {"a"}
    assert counted(LeadState("l", "acme", SUMMARY, LeadStatus.FELL_BACK, holder="broker")) == frozenset()
    assert counted(None) == frozenset()


@settings(max_examples=150, deadline=None)
@given(
    agents=st.lists(
        st.tuples(st.booleans(), st.booleans(), st.integers(0, 3), st.integers(0, 4)), min_size=1, max_size=6
    ),
    hour=st.integers(0, 23),
)
def test_no_lead_goes_to_a_paused_away_off_hours_or_capped_agent(
    agents: list[tuple[bool, bool, int, int]], hour: int
) -> None:
    at = NOW.replace(hour=hour)
    roster, usage = [], {}
    for i, (paused, away, cap, used) in enumerate(agents):
        away_list = [{"start": at - timedelta(hours=1), "end": at + timedelta(hours=1)}] if away else []
        hours = [{"weekdays": [0], "start": "08:00", "end": "18:00"}] if i % 2 else []
        roster.append(agent(f"x{i}", paused=paused, away=away_list, caps={"day": cap}, working_hours=hours))
        usage[f"x{i}"] = Usage(used, used, used)
    snapshot = account(*roster)
    gate = Gate(at, frozenset(), usage)
    outcome = route(snapshot, at, usage)
    for agent_id in set(offered(outcome)) - {"broker"}:
        candidate = snapshot.agent(agent_id)
        assert candidate is not None
        assert gate.refuses(candidate) is None
        assert candidate.availability is not None
        assert not candidate.availability.paused
        day_cap = candidate.availability.caps.day if candidate.availability.caps else None
        assert day_cap is None or usage[agent_id].day < day_cap
