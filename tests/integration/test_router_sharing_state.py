"""Lead sharing (DESIGN T1) through the router's handlers, on the real MongoDB-wire server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from router_harness import Router, router_on
from router_leads import lead_received

from leadflow_router.domain.model import RoutingRejected
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import LEAD_COMMAND, ShareLead, ShareLeadPayload
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    ActivityLogged,
    AssignmentReason,
    LeadOffered,
    LeadShared,
    OfferWithdrawn,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACME_AGENTS = ["acme-broker", "aa", "ab", "ac"]
SHARE_ID = uuid.UUID("6f1b2a7e-0000-4000-8000-000000000001")


def account(account_id: str, agents: list[str], *, round_robin: bool) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": f"{account_id.title()} Realty",
        "round_robin": round_robin,
        "agents": [{"agent_id": a, "name": f"Agent {a}", "email": f"{a}@{account_id}.example"} for a in agents],
        "roster": agents,
        "sources": [{"name": "Race", "race_count": 2, "claim_window_seconds": 600}],
        "default_source": {"claim_window_seconds": 600},
    }


CONFIG = {
    "accounts": [
        account("acme", ACME_AGENTS, round_robin=True),
        account("other", ["other-broker"], round_robin=False),
    ]
}


@pytest_asyncio.fixture(loop_scope="session")
async def router(mongo_url: str) -> AsyncIterator[Router]:
    async with router_on(mongo_url, CONFIG, now=T0) as built:
        yield built


def received(account_id: str = "acme", email: str | None = None, source: str = "Website") -> LeadReceived:
    return lead_received(account_id, at=T0, email=email, source=source)


def share(
    lead_id: uuid.UUID, realtor: str = "realtor-1", share_id: uuid.UUID = SHARE_ID, account_id: str = "acme"
) -> ShareLead:
    return ShareLead.create(
        account_id=account_id,
        occurred_at=T0,
        event_id=derived_event_id(share_id, str(lead_id)),  # one command per (share, lead), as crm-api does
        payload=ShareLeadPayload(
            lead_id=lead_id,
            share_id=share_id,
            realtor_id=realtor,
            realtor_name=f"Realtor {realtor}",
            assigned_by="Acme Realty",
            by_user_id="acme-admin",
        ),
    )


def activity(lead_id: uuid.UUID, agent: str, account_id: str = "acme") -> LeadActivity:
    return LeadActivity.create(
        account_id=account_id,
        occurred_at=T0,
        payload=LeadActivityPayload(lead_id=lead_id, agent_id=agent, action=ActivityAction.CALL),
    )


async def offered_lead(router: Router, email: str | None = None) -> tuple[LeadReceived, list[str]]:
    """A new lead in acme, offered to two agents at once (a race); the racers, then a clean slate."""
    lead = received(email=email, source="Race")
    await router.service.on_lead_received(lead)
    events = router.published.events()
    assert [type(e) for _, e in events] == [LeadOffered, LeadOffered]
    racers = [e.payload.agent_id for _, e in events if isinstance(e, LeadOffered)]
    router.published.clear()
    return lead, racers


async def test_shared_race_lead_withdraws_offers_and_the_realtor_holds_it(router: Router) -> None:
    lead, racers = await offered_lead(router)
    command = share(lead.event_id)
    await router.service.on_command(LEAD_COMMAND.validate_json(command.model_dump_json()))  # as consumed

    events = router.published.events()
    assert [type(e) for _, e in events] == [OfferWithdrawn, OfferWithdrawn, LeadShared]
    assert {key for key, _ in events} == {"acme"}
    assert {e.account_id for _, e in events} == {"acme"}
    assert {e.correlation_id for _, e in events} == {lead.correlation_id}
    withdrawn = [e for _, e in events if isinstance(e, OfferWithdrawn)]
    assert sorted(e.payload.agent_id for e in withdrawn) == sorted(racers)
    assert {e.payload.reason for e in withdrawn} == {WithdrawalReason.LEAD_SHARING}
    shared = events[-1][1]
    assert isinstance(shared, LeadShared)
    assert shared.payload.lead_id == lead.event_id
    assert shared.payload.share_id == SHARE_ID
    assert (shared.payload.agent_id, shared.payload.realtor_name) == ("realtor-1", "Realtor realtor-1")
    assert shared.payload.assigned_by == "Acme Realty"
    assert shared.payload.previous_owner_agent_id is None  # offered: nobody held it
    assert shared.payload.by_user_id == "acme-admin"

    doc = await router.record(lead)
    assert (doc["account_id"], doc["status"], doc["holder"]) == ("acme", "assigned", "realtor-1")
    assert doc["reason"] == AssignmentReason.LEAD_SHARING.value
    assert doc["share_id"] == str(SHARE_ID)
    assert doc["next_deadline_ms"] is None
    assert {o["status"] for o in doc["offers"]} == {"withdrawn"}
    assert doc["outbox"] == []
    assert not doc.get("outbox_keys")
    assert doc["effects"] == {}
    assert str(command.event_id) in doc["inputs"]
    assert router.transfers_counted("share") == 1

    # Long after the claim window: the sweeper has nothing to fire for it.
    router.published.clear()
    router.clock.now = T0 + timedelta(hours=2)
    assert await router.service.sweep_once() == 0
    assert router.published.records == []
    assert await router.record(lead) == doc


async def test_redelivered_share_publishes_the_same_ids_and_changes_nothing(router: Router) -> None:
    lead, _ = await offered_lead(router)
    command = share(lead.event_id)
    await router.service.on_command(command)
    first = list(router.published.records)
    before = await router.record(lead)
    router.published.clear()
    router.clock.now = T0 + timedelta(seconds=30)

    await router.service.on_command(command)
    await router.service.on_command(ShareLead.model_validate_json(command.model_dump_json()))

    assert await router.record(lead) == before
    assert router.published.records == []  # flushed already: nothing left to send
    assert len(first) == 3
    assert router.transfers_counted("share") == 1


async def test_crash_between_store_and_publish_is_repaired_with_the_same_ids(router: Router) -> None:
    lead, _ = await offered_lead(router)
    command = share(lead.event_id)
    router.published.failing = True
    with pytest.raises(ConnectionError):
        await router.service.on_command(command)
    stored = await router.record(lead)
    assert stored["holder"] == "realtor-1"
    assert len(stored["outbox"]) == 3
    ids = [ROUTING_EVENT.validate_json(raw).event_id for raw in stored["outbox"]]

    router.published.failing = False
    await router.service.on_command(command)  # redelivered: its offset was never committed
    assert [e.event_id for _, e in router.published.events()] == ids
    assert [key for key, _ in router.published.records] == ["acme"] * 3
    repaired = await router.record(lead)
    assert repaired["outbox"] == []
    assert repaired["version"] == stored["version"]


async def test_realtor_acts_as_the_holder_and_withdrawn_racers_claim_nothing(router: Router) -> None:
    lead, racers = await offered_lead(router)
    await router.service.on_command(share(lead.event_id))
    router.published.clear()

    action = activity(lead.event_id, "realtor-1")
    await router.service.on_activity(action)
    [(key, logged)] = router.published.events()
    assert key == "acme"
    assert isinstance(logged, ActivityLogged)
    assert logged.account_id == "acme"
    assert (logged.payload.agent_id, logged.payload.by_agent_id) == ("realtor-1", "realtor-1")
    assert logged.payload.action is ActivityAction.CALL
    held = await router.record(lead)
    assert held["holder"] == "realtor-1"
    router.published.clear()

    for racer in racers:
        await router.service.on_activity(activity(lead.event_id, racer))
    await router.service.on_activity(activity(lead.event_id, "acme-broker"))
    await router.service.on_activity(activity(lead.event_id, "never-offered"))
    refusals = [(e.payload.by_agent_id, e.payload.claim_refused) for _, e in router.published.events()]  # type: ignore[union-attr]
    assert refusals == [
        *((r, f"the offer to {r} was withdrawn; the lead is held by realtor-1") for r in racers),
        ("acme-broker", "the offer to acme-broker was withdrawn; the lead is held by realtor-1"),
        ("never-offered", None),  # plain activity
    ]
    assert (await router.record(lead))["holder"] == "realtor-1"


async def test_an_inquiry_of_the_same_contact_tells_the_realtor(router: Router) -> None:
    email = f"shared-{uuid.uuid4().hex}@example.com"
    lead, _ = await offered_lead(router, email)
    await router.service.on_command(share(lead.event_id))
    router.published.clear()

    again = received(email=email)
    await router.service.on_lead_received(again)
    [(key, logged)] = router.published.events()
    assert key == "acme"
    assert isinstance(logged, ActivityLogged)  # R1 on the shared lead
    assert logged.payload.lead_id == lead.event_id
    assert logged.payload.agent_id == "realtor-1"
    assert logged.payload.action is ActivityAction.INQUIRY


async def test_sharing_again_moves_the_lead_to_a_second_realtor(router: Router) -> None:
    lead, _ = await offered_lead(router)
    await router.service.on_command(share(lead.event_id, "realtor-1"))
    router.published.clear()

    second = uuid.UUID("6f1b2a7e-0000-4000-8000-000000000002")
    await router.service.on_command(share(lead.event_id, "realtor-2", second))
    [(key, shared)] = router.published.events()
    assert key == "acme"
    assert isinstance(shared, LeadShared)
    assert (shared.payload.agent_id, shared.payload.previous_owner_agent_id) == ("realtor-2", "realtor-1")
    assert shared.payload.share_id == second
    doc = await router.record(lead)
    assert (doc["holder"], doc["share_id"], doc["reason"]) == ("realtor-2", str(second), "lead_sharing")
    assert router.transfers_counted("share") == 2
    router.published.clear()

    await router.service.on_activity(activity(lead.event_id, "realtor-1"))  # no longer holds it: logged only
    await router.service.on_activity(activity(lead.event_id, "realtor-2"))
    [(_, before), (_, logged)] = router.published.events()
    assert isinstance(before, ActivityLogged)
    assert (before.payload.agent_id, before.payload.by_agent_id) == ("realtor-2", "realtor-1")
    assert isinstance(logged, ActivityLogged)
    assert logged.payload.agent_id == "realtor-2"
    assert (await router.record(lead))["holder"] == "realtor-2"


async def test_held_lead_names_its_previous_owner(router: Router) -> None:
    lead = received("other")  # round robin off: roster position 1 holds it
    await router.service.on_lead_received(lead)
    router.published.clear()
    await router.service.on_command(share(lead.event_id, account_id="other"))
    [(key, shared)] = router.published.events()
    assert key == "other"
    assert isinstance(shared, LeadShared)
    assert (shared.payload.previous_owner_agent_id, shared.payload.agent_id) == ("other-broker", "realtor-1")


async def test_impossible_shares_are_rejected_and_change_nothing(router: Router) -> None:
    lead, _ = await offered_lead(router)
    before = await router.record(lead)
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_command(share(uuid.uuid4()))
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_command(share(lead.event_id, account_id="other"))  # not other's lead
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_command(share(lead.event_id, account_id="nowhere"))
    assert await router.record(lead) == before
    assert router.published.records == []
    assert router.transfers_counted("share") == 0


async def test_merged_lead_cannot_be_shared(router: Router) -> None:
    email = f"merged-{uuid.uuid4().hex}@example.com"
    await router.service.on_lead_received(received(email=email))
    repeat = received(email=email)
    await router.service.on_lead_received(repeat)  # R1: logged on the first one
    router.published.clear()
    with pytest.raises(RoutingRejected, match="merged"):
        await router.service.on_command(share(repeat.event_id))
    assert router.published.records == []
