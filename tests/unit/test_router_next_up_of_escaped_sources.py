"""Who is next for a lead source whose name has ':', '@' or '%' (its turns kept under `<account>:source:<escaped>`,
`source_key`): the router's "who is next" (`RouterService.next_up`, asked by crm-api's dashboard and
`GET .../next-up`) read `<account>:<name>`, a key nothing wrote any more, and answered the rotation's start whoever
really was next (helper 183's review of the escaping, session 38)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes_router import FakeRotations, Published, router_on_fakes

from leadflow_router.domain.model import AccountSnapshot, Agent, LeadSourceConfig
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import LeadOffered

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _account(source_name: str) -> AccountSnapshot:
    return AccountSnapshot(
        account_id="acme",
        name="Acme",
        roster=(Agent("ana", "Ana"), Agent("bo", "Bo"), Agent("cy", "Cy")),
        round_robin=True,
        time_zone="UTC",
        sources={source_name: LeadSourceConfig(name=source_name, referral_fee_percent=25.0, race_count=1)},
        default_source=LeadSourceConfig(name="default", referral_fee_percent=10.0),
    )


def _lead(source_name: str, n: int) -> LeadReceived:
    return LeadReceived.create(
        account_id="acme",
        occurred_at=NOW,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Pat", email=f"pat{n}@example.com"),
            source=LeadSource(channel=LeadChannel.LEAD_GEN, name=source_name, provider="Zillow"),
        ),
    )


def _offered_to(published: Published) -> list[str]:
    return [e.payload.agent_id for e in published.lead_events() if isinstance(e, LeadOffered)]


@pytest.mark.parametrize("source_name", ["Zillow", "Zillow: Premier", "leads@zillow.com", "100% Buyers"])
async def test_who_is_next_for_a_source_names_the_agent_its_next_lead_is_offered_to(source_name: str) -> None:
    published, rotations = Published(), FakeRotations()
    service = router_on_fakes(_account(source_name), clock=lambda: NOW, publish=published, rotations=rotations)
    await service.on_lead_received(_lead(source_name, 1))
    asked = await service.next_up("acme", source_name)
    await service.on_lead_received(_lead(source_name, 2))
    first, second = _offered_to(published)
    assert first != second, "control: the rotation moved on"
    assert asked.next == (second,), (
        f"next_up for {source_name!r} says {asked.next}, its next lead went to {second!r} "
        f"(rotation keys stored: {sorted(rotations.positions)})"
    )
