"""Every lead event carries its routing record's version after the change that made it (`router_version`,
decision 0093 amended): the events of one change share it, a later change's are higher, and a note about another
lead than the record written (an R1 repeat's ActivityLogged on the lead it merged into) carries none. On the
router's in-memory stores, which keep the documents the real store writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fakes_router import FakeRecords, Published, router_on_fakes, website_lead

from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import ActivityLogged, LeadClaimed, LeadEvent, LeadOffered, OfferExpired

pytestmark = pytest.mark.unit

ACCOUNT = AccountSnapshot(account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B")), round_robin=True)


async def _version(records: FakeRecords, lead_id: str) -> int:
    record = await records.get(lead_id)
    assert record is not None
    return record.version


def _versions(events: list[LeadEvent]) -> set[int | None]:
    return {e.payload.router_version for e in events}


@pytest.mark.asyncio
async def test_the_events_of_one_decision_carry_the_records_new_version_and_later_decisions_higher_ones() -> None:
    now, published, records = [datetime(2026, 5, 4, 15, 0, tzinfo=UTC)], Published(), FakeRecords()
    service = router_on_fakes(ACCOUNT, clock=lambda: now[0], publish=published, records=records)
    lead = website_lead("acme", now[0])
    lead_id = str(lead.event_id)
    assert not await service.on_leads_received([lead])
    (offered,) = published.lead_events()
    assert isinstance(offered, LeadOffered)
    assert offered.payload.router_version == await _version(records, lead_id) == 1

    published.clear()
    now[0] += timedelta(minutes=16)  # the offer expires: one decision, two events (the expiry, the next offer)
    assert await service.sweep_once() == 1
    expiry = published.lead_events()
    assert [type(e) for e in expiry] == [OfferExpired, LeadOffered]
    assert _versions(expiry) == {await _version(records, lead_id)} == {2}

    published.clear()
    second = expiry[1]
    assert isinstance(second, LeadOffered)
    claim = LeadActivity.create(
        account_id="acme",
        occurred_at=now[0],
        payload=LeadActivityPayload(
            lead_id=lead.event_id, agent_id=second.payload.agent_id, action=ActivityAction.ACCEPT
        ),
    )
    await service.on_activity(claim)
    claimed = published.lead_events()
    assert any(isinstance(e, LeadClaimed) for e in claimed)
    assert _versions(claimed) == {await _version(records, lead_id)} == {3}

    published.clear()
    await service.on_activity(claim)  # read again: nothing new, nothing with another version
    assert all(e.payload.router_version == 3 for e in published.lead_events())


@pytest.mark.asyncio
async def test_a_repeats_note_on_the_lead_it_merged_into_carries_no_version() -> None:
    # R1: the repeat's record is written (version 1), the existing lead's is not: its note names no version.
    now, published, records = [datetime(2026, 5, 4, 15, 0, tzinfo=UTC)], Published(), FakeRecords()
    service = router_on_fakes(ACCOUNT, clock=lambda: now[0], publish=published, records=records)
    first = website_lead("acme", now[0])
    assert not await service.on_leads_received([first])
    published.clear()
    now[0] += timedelta(minutes=1)
    assert not await service.on_leads_received([website_lead("acme", now[0])])
    notes = published.lead_events()
    assert notes, "the existing lead is told the contact came back"
    assert all(isinstance(e, ActivityLogged) and e.payload.lead_id == first.event_id for e in notes)
    assert _versions(notes) == {None}
    assert await _version(records, str(first.event_id)) == 1, "the existing lead's record was not written"
