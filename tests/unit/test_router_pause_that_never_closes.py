"""R10 under a pause of the whole week (every weekday, 00:00-00:00: a schedule crm-api's `PUT .../pause-schedule`
accepts, e.g. a broker stopping the office's routing for a vacation), from helper 188's review (session 38).

`pause_end` cuts a pause that has not closed 60 days after the moment asked "so a misconfiguration cannot stall a
lead forever", but `on_deadline` asked it again at the cut and waited 60 days more, again and again: a lead whose
offer expired was offered to nobody, ever. And a lead waiting for such a pause kept its 60-day deadline when the
broker lifted the pause a week later. Now a waiting lead looks at the schedule again within the hour
(`PAUSE_RECHECK`) and goes on once it has waited `PAUSE_LIMIT` for a pause that still does not close (`_waited_out`).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest

from leadflow_router.domain.decisions import NewLead, RoutingContext, on_deadline, route_new_lead
from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig, LeadStatus, PauseWindow
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadSummary

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday
WHOLE_WEEK = (PauseWindow(frozenset(range(7)), time(0), time(0)),)


def office(pause: tuple[PauseWindow, ...]) -> AccountSnapshot:
    return AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=tuple(Agent(agent_id=i, name=i.title()) for i in ("broker", "a", "b")),
        round_robin=True,
        time_zone="America/New_York",
        sources={},
        default_source=LeadSourceConfig(name="default"),
        pause=pause,
    )


def new_lead() -> NewLead:
    summary = LeadSummary(
        contact=Contact(first_name="Jane", email="jane@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
    )
    return NewLead(lead_id=str(uuid.uuid4()), account_id="acme", summary=summary)


def test_a_lead_under_a_pause_that_never_closes_goes_on_after_the_60_day_cut() -> None:
    paused = office(WHOLE_WEEK)
    first = route_new_lead(new_lead(), paused, RoutingContext(rotation=1), NOW)
    state = first.state
    assert state is not None
    assert state.status is LeadStatus.OFFERED  # the first offer at once (R10)
    statuses = []
    for _ in range(24 * 62):  # two months of sweeps, each at the lead's deadline (hourly while it waits)
        assert state.next_deadline is not None, state
        at = state.next_deadline
        outcome = on_deadline(state, paused, 2, at)
        assert outcome.state is not None
        state = outcome.state
        statuses.append((state.status.value, (at - NOW).days))
        if state.status is not LeadStatus.WAITING:
            break
    assert state.status is not LeadStatus.WAITING, f"never offered on nor fallen back: {statuses[-3:]}"
    began = next(day for status, day in statuses if status == "waiting")
    assert statuses[-1][1] - began in {60, 61}, f"it went on at the cut, not before: {statuses[:2]}, {statuses[-3:]}"


def test_a_lead_waiting_for_a_whole_week_pause_goes_on_soon_after_the_pause_is_lifted() -> None:
    paused = office(WHOLE_WEEK)
    first = route_new_lead(new_lead(), paused, RoutingContext(rotation=1), NOW)
    assert first.state is not None
    # Its offer's deadline passes inside the pause (the schedule was set after the offer, say): it waits.
    expired_at = NOW + timedelta(minutes=15)
    state = dataclasses.replace(
        first.state,
        offers=tuple(dataclasses.replace(o, deadline=expired_at) for o in first.state.offers),
        next_deadline=expired_at,
    )
    waiting = on_deadline(state, paused, 2, expired_at).state
    assert waiting is not None
    assert waiting.status is LeadStatus.WAITING
    # A week later the broker lifts the pause (PUT pause-schedule with no windows). The sweeper fires what is due.
    lifted = office(())
    a_day_after = NOW + timedelta(days=8)
    assert waiting.next_deadline is not None
    assert waiting.next_deadline <= a_day_after, (
        f"the pause was lifted on day 7; the lead waits for nobody until {waiting.next_deadline.isoformat()}"
    )
    assert on_deadline(waiting, lifted, 2, a_day_after).state.status is LeadStatus.OFFERED  # type: ignore[union-attr]
