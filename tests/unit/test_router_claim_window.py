"""The claim window on the router (docs/rules.md R8). A claim counts by when the agent made it, however late the
router reads it (decision 0087). A deadline is stored and swept in whole milliseconds rounded up (decision 0004):
an offer whose stated deadline has a fraction of a millisecond never expires before it. A clean-clone run
saw an OfferExpired 85 us before its LeadOffered's deadline when deadlines were floored; a claim in
that gap would have been refused. On the router's in-memory stores, which keep the documents the real
store writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import Published, router_on_fakes, website_lead
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.handlers import RouterService
from leadflow_shared.clock import epoch_ms, epoch_ms_ceil, from_epoch_ms
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import ActivityLogged, LeadClaimed, LeadOffered, OfferExpired

pytestmark = pytest.mark.unit

MS = timedelta(milliseconds=1)
ACCOUNT = AccountSnapshot(account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B")), round_robin=True)


@settings(database=None, deadline=None)
@given(st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)))  # noqa: DTZ001 (naive bounds)
def test_a_deadline_in_whole_milliseconds_is_the_first_one_at_or_after_it(moment: datetime) -> None:
    stored = from_epoch_ms(epoch_ms_ceil(moment))
    assert moment <= stored < moment + MS
    assert (epoch_ms_ceil(moment) == epoch_ms(moment)) == (moment.microsecond % 1000 == 0)


@pytest.mark.asyncio
@pytest.mark.parametrize("fraction_us", [1, 85, 500, 999])
async def test_an_offer_stated_with_a_fraction_of_a_millisecond_is_not_expired_before_its_deadline(
    fraction_us: int,
) -> None:
    offered_at = datetime(2026, 5, 4, 15, 0, tzinfo=UTC) + timedelta(microseconds=fraction_us)
    now = [offered_at]
    published = Published()
    account = AccountSnapshot(
        account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B")), round_robin=True
    )
    service = router_on_fakes(account, clock=lambda: now[0], publish=published)
    lead = website_lead("acme", offered_at)
    assert not await service.on_leads_received([lead])
    (offer,) = [e for e in published.lead_events() if isinstance(e, LeadOffered)]
    deadline = offer.payload.deadline
    assert deadline == offered_at + timedelta(minutes=15), "the stated deadline is the window, to the microsecond"

    for before in (deadline - MS, deadline - timedelta(microseconds=1)):
        now[0] = before
        await service.sweep_once()
        assert not [e for e in published.lead_events() if isinstance(e, OfferExpired)], f"expired at {before}"

    now[0] = from_epoch_ms(epoch_ms_ceil(deadline))  # the first whole millisecond at or after it
    assert await service.sweep_once() == 1
    (expired,) = [e for e in published.lead_events() if isinstance(e, OfferExpired)]
    assert deadline <= expired.occurred_at < deadline + MS


@pytest.mark.asyncio
async def test_a_claim_made_in_time_and_read_after_the_deadline_claims_before_the_sweeper_fires() -> None:
    # An accept a second before the deadline, read 200 ms after it (the activity topic's lag): the lead is the
    # agent's, not the next agent's (helper 63's review).
    now = [datetime(2026, 5, 4, 15, 0, tzinfo=UTC)]
    published = Published()
    service = router_on_fakes(ACCOUNT, clock=lambda: now[0], publish=published)
    lead = website_lead("acme", now[0])
    assert not await service.on_leads_received([lead])
    (offer,) = [e for e in published.lead_events() if isinstance(e, LeadOffered)]
    claim = LeadActivity.create(
        account_id="acme",
        occurred_at=offer.payload.deadline - timedelta(seconds=1),
        payload=LeadActivityPayload(
            lead_id=lead.event_id, agent_id=offer.payload.agent_id, action=ActivityAction.ACCEPT
        ),
    )
    now[0] = offer.payload.deadline + timedelta(milliseconds=200)
    await service.on_activity(claim)
    (claimed,) = [e for e in published.lead_events() if isinstance(e, LeadClaimed)]
    assert claimed.payload.agent_id == offer.payload.agent_id
    assert await service.sweep_once() == 0, "nothing left to expire"


async def _offered_again_in_round_3(now: list[datetime], published: Published) -> tuple[RouterService, LeadReceived]:
    """A lead offered to `a` (round 1), expired to `b` (round 2), fallen back and asked back by `a` (round 3)."""
    service = router_on_fakes(ACCOUNT, clock=lambda: now[0], publish=published)
    lead = website_lead("acme", now[0])
    assert not await service.on_leads_received([lead])
    for _ in range(2):
        now[0] += timedelta(minutes=16)
        assert await service.sweep_once() == 1
    ask = LeadActivity.create(
        account_id="acme",
        occurred_at=now[0],
        payload=LeadActivityPayload(lead_id=lead.event_id, agent_id="a", action=ActivityAction.ASK_BACK),
    )
    await service.on_activity(ask)
    offers = [
        (e.payload.agent_id, e.payload.offer_round) for e in published.lead_events() if isinstance(e, LeadOffered)
    ]
    assert offers == [("a", 1), ("b", 2), ("a", 3)]
    published.clear()
    return service, lead


def _activity(lead: LeadReceived, action: ActivityAction, made_at: datetime, offer_round: int | None) -> LeadActivity:
    payload = LeadActivityPayload(lead_id=lead.event_id, agent_id="a", action=action, offer_round=offer_round)
    return LeadActivity.create(account_id="acme", occurred_at=made_at, payload=payload)


@pytest.mark.asyncio
@pytest.mark.parametrize("action", [ActivityAction.ACCEPT, ActivityAction.NOTE, ActivityAction.DECLINE])
async def test_an_action_on_round_1_read_late_acts_on_nothing_when_the_agent_holds_round_3(
    action: ActivityAction,
) -> None:
    # `a` acted on its round-1 offer in time; the activity topic's lag delivers it while `a` holds its round-3 offer
    # (asked back): it counts as activity on the ended offer and claims, or declines, nothing (decision 0087).
    start = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
    now, published = [start], Published()
    service, lead = await _offered_again_in_round_3(now, published)

    await service.on_activity(_activity(lead, action, start + timedelta(minutes=10), offer_round=1))
    (logged,) = published.lead_events()
    assert isinstance(logged, ActivityLogged)
    assert logged.payload.by_agent_id == "a"
    assert logged.payload.action is action
    assert logged.payload.claim_refused is not None
    assert "round-1 offer to a" in logged.payload.claim_refused
    assert "round-3 offer is open" in logged.payload.claim_refused

    published.clear()
    await service.on_activity(_activity(lead, ActivityAction.ACCEPT, now[0], offer_round=3))
    (claimed,) = published.lead_events()
    assert isinstance(claimed, LeadClaimed), "the round-3 offer was still open"
    assert (claimed.payload.agent_id, claimed.payload.offer_round) == ("a", 3)


@pytest.mark.asyncio
async def test_an_action_naming_no_round_acts_on_the_open_offer_as_before() -> None:
    # An event written before LeadActivity named its round (v1 stays compatible): the agent's open offer, any round.
    start = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
    now, published = [start], Published()
    service, lead = await _offered_again_in_round_3(now, published)
    await service.on_activity(_activity(lead, ActivityAction.NOTE, now[0], offer_round=None))
    (claimed,) = published.lead_events()
    assert isinstance(claimed, LeadClaimed)
    assert (claimed.payload.agent_id, claimed.payload.offer_round) == ("a", 3)
