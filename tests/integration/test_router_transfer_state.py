"""Office-to-office transfers (DESIGN T2) through the router's handlers, on the real MongoDB-wire server."""

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
from leadflow_shared.collections import ACCOUNTS, AGENTS, ROUTER_CONTACTS, ROUTER_LEADS
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import (
    TransferLead,
    TransferLeadPayload,
    TransferTeamMember,
    TransferTeamMemberPayload,
)
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import (
    LEAD_EVENT,
    ActivityLogged,
    AssignmentReason,
    ContactErased,
    LeadAssigned,
    LeadOffered,
    LeadTransferred,
    OfferWithdrawn,
    RealtorInvited,
    RoutingEvent,
    TeamMemberTransferred,
    WithdrawalReason,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
NORTH_AGENTS = ["north-broker", "na", "nb", "nc"]
SOUTH_AGENTS = ["south-broker", "sa"]


def office(account_id: str, agents: list[str], *, round_robin: bool) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": f"{account_id.title()} Office",
        "organisation_id": "acme-org",
        "round_robin": round_robin,
        "agents": [{"agent_id": a, "name": f"Agent {a}", "email": f"{a}@acme.example"} for a in agents],
        "roster": agents,
        "sources": [{"name": "Race", "race_count": 2, "claim_window_seconds": 600}],
        "default_source": {"claim_window_seconds": 600},
    }


CONFIG = {
    "accounts": [
        office("north", NORTH_AGENTS, round_robin=True),
        office("south", SOUTH_AGENTS, round_robin=False),
    ]
}


@pytest_asyncio.fixture(loop_scope="session")
async def router(mongo_url: str) -> AsyncIterator[Router]:
    async with router_on(mongo_url, CONFIG, now=T0) as built:
        # An office nobody works in yet (the config loader refuses it; crm-api's settings may not).
        await built.db[ACCOUNTS].insert_one({"_id": "empty", "name": "Empty Office", "roster": []})
        yield built


def received(account_id: str, email: str | None = None, source: str = "Website") -> LeadReceived:
    return lead_received(account_id, at=T0, email=email, source=source)


def transfer(lead_id: uuid.UUID, from_account: str = "north", to_account: str = "south") -> TransferLead:
    return TransferLead.create(
        account_id=from_account,
        occurred_at=T0,
        payload=TransferLeadPayload(lead_id=lead_id, to_account_id=to_account, by_user_id="admin-1"),
    )


def activity(lead_id: uuid.UUID, account_id: str, agent: str) -> LeadActivity:
    return LeadActivity.create(
        account_id=account_id,
        occurred_at=T0,
        payload=LeadActivityPayload(lead_id=lead_id, agent_id=agent, action=ActivityAction.CALL),
    )


async def offered_lead(router: Router, email: str | None = None) -> LeadReceived:
    """A new lead in north, offered to two agents at once, then a clean slate of published events."""
    lead = received("north", email, source="Race")
    await router.service.on_lead_received(lead)
    assert [type(e) for _, e in router.published.events()] == [LeadOffered, LeadOffered]
    router.published.clear()
    return lead


async def test_offered_lead_moves_with_its_events_keyed_by_the_source(router: Router) -> None:
    lead = await offered_lead(router)
    command = transfer(lead.event_id)
    await router.service.on_command(command)

    events = router.published.events()
    assert [type(e) for _, e in events] == [OfferWithdrawn, OfferWithdrawn, LeadTransferred]
    assert {key for key, _ in events} == {"north"}
    assert {e.account_id for _, e in events} == {"north"}
    withdrawn = [e for _, e in events if isinstance(e, OfferWithdrawn)]
    assert {e.payload.reason for e in withdrawn} == {WithdrawalReason.OFFICE_TRANSFER}
    moved = events[-1][1]
    assert isinstance(moved, LeadTransferred)
    assert moved.payload.transfer_id == command.event_id
    assert (moved.payload.from_account_id, moved.payload.to_account_id) == ("north", "south")
    assert (moved.payload.from_account_name, moved.payload.to_account_name) == ("North Office", "South Office")
    assert moved.payload.previous_owner_agent_id is None  # offered, nobody held it
    assert moved.payload.agent_id == "south-broker"
    assert moved.payload.by_user_id == "admin-1"
    assert moved.payload.contact == lead.payload.contact

    doc = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert doc is not None
    assert (doc["account_id"], doc["status"], doc["holder"]) == ("south", "assigned", "south-broker")
    assert doc["reason"] == AssignmentReason.OFFICE_TRANSFER.value
    assert doc["next_deadline_ms"] is None
    assert {o["status"] for o in doc["offers"]} == {"withdrawn"}
    assert doc["outbox"] == []
    assert not doc.get("outbox_keys")
    assert doc["effects"] == {}


async def test_redelivered_transfer_publishes_the_same_ids_and_changes_nothing(router: Router) -> None:
    lead = await offered_lead(router)
    command = transfer(lead.event_id)
    await router.service.on_command(command)
    first = list(router.published.records)
    before = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    router.published.clear()
    router.clock.now = T0 + timedelta(seconds=30)

    await router.service.on_command(command)
    await router.service.on_command(TransferLead.model_validate_json(command.model_dump_json()))

    after = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert after == before
    assert router.published.records == []  # flushed already: nothing left to send
    assert len(first) == 3


async def test_crash_between_store_and_publish_is_repaired_with_the_source_key(router: Router) -> None:
    lead = await offered_lead(router)
    command = transfer(lead.event_id)
    router.published.failing = True
    with pytest.raises(ConnectionError):
        await router.service.on_command(command)
    stored = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert stored is not None
    assert stored["account_id"] == "south"
    assert stored["outbox_keys"] == ["north", "north", "north"]

    # Before the command comes back, the new holder acts on the lead in its new office.
    router.published.failing = False
    await router.service.on_activity(activity(lead.event_id, "south", "south-broker"))
    # Then the command is redelivered (its offset was never committed).
    await router.service.on_command(command)

    events = router.published.events()
    kinds = [(key, type(e).__name__) for key, e in events]
    assert kinds[:4] == [
        ("north", "OfferWithdrawn"),
        ("north", "OfferWithdrawn"),
        ("north", "LeadTransferred"),
        ("south", "ActivityLogged"),
    ]
    assert all(key == e.account_id for key, e in events)
    assert {e.event_id for _, e in events[4:]} <= {e.event_id for _, e in events[:4]}  # a replay, same ids
    repaired = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert repaired is not None
    assert repaired["outbox"] == []
    assert not repaired.get("outbox_keys")


async def test_contacts_move_to_the_target_office(router: Router) -> None:
    email = f"moving-{uuid.uuid4().hex}@example.com"
    lead = await offered_lead(router, email)
    await router.service.on_command(transfer(lead.event_id))
    keys = {d["_id"]: d["lead_id"] async for d in router.db[ROUTER_CONTACTS].find({"lead_id": str(lead.event_id)})}
    assert keys == {"south:email:" + email: str(lead.event_id), "south:phone:+15555550123": str(lead.event_id)}
    router.published.clear()

    again_in_south = received("south", email)
    await router.service.on_lead_received(again_in_south)
    [(key, logged)] = router.published.events()
    assert key == "south"
    assert isinstance(logged, ActivityLogged)  # R1 on the transferred lead, its new holder told
    assert logged.payload.lead_id == lead.event_id
    assert logged.payload.agent_id == "south-broker"
    router.published.clear()

    # The phone is shared by every lead of this module: only a unique email shows the source side.
    again_in_north = LeadReceived.create(
        account_id="north",
        occurred_at=T0,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Lead", email=email),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )
    await router.service.on_lead_received(again_in_north)
    kinds = {type(e) for _, e in router.published.events()}
    assert ActivityLogged not in kinds
    new = [LEAD_EVENT.validate_json(body) for _, body in router.published.records]
    assert new  # a new lead of its own: offered or assigned in north
    assert all(e.payload.lead_id == again_in_north.event_id for e in new)


async def test_contacts_come_back_when_the_lead_does(router: Router) -> None:
    email = f"return-{uuid.uuid4().hex}@example.com"
    lead = received("north", email)
    await router.service.on_lead_received(lead)
    await router.service.on_command(transfer(lead.event_id))
    await router.service.on_command(transfer(lead.event_id, "south", "north"))
    keys = {d["_id"] async for d in router.db[ROUTER_CONTACTS].find({"lead_id": str(lead.event_id)})}
    assert f"north:email:{email}" in keys
    assert not any(k.startswith("south:") for k in keys)
    doc = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert doc is not None
    assert (doc["account_id"], doc["holder"]) == ("north", "north-broker")


async def test_impossible_transfers_are_rejected_and_change_nothing(router: Router) -> None:
    lead = await offered_lead(router)
    before = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_command(transfer(uuid.uuid4()))
    with pytest.raises(RoutingRejected, match="own office"):
        await router.service.on_command(transfer(lead.event_id, "north", "north"))
    with pytest.raises(RoutingRejected, match="unknown account"):
        await router.service.on_command(transfer(lead.event_id, "north", "nowhere"))
    with pytest.raises(RoutingRejected, match="empty roster"):
        await router.service.on_command(transfer(lead.event_id, "north", "empty"))
    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_command(transfer(lead.event_id, "south", "empty"))  # not south's lead
    after = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert after == before
    assert router.published.records == []


async def test_merged_lead_cannot_be_transferred(router: Router) -> None:
    email = f"merged-{uuid.uuid4().hex}@example.com"
    await router.service.on_lead_received(received("north", email))
    repeat = received("north", email)
    await router.service.on_lead_received(repeat)  # R1: logged on the first one
    with pytest.raises(RoutingRejected, match="merged"):
        await router.service.on_command(transfer(repeat.event_id))


async def test_the_source_office_cannot_act_on_a_transferred_lead(router: Router) -> None:
    lead = await offered_lead(router)
    doc = await router.db[ROUTER_LEADS].find_one({"_id": str(lead.event_id)})
    assert doc is not None
    racer = doc["offers"][0]["agent_id"]
    await router.service.on_command(transfer(lead.event_id))
    router.published.clear()

    with pytest.raises(RoutingRejected, match="unknown lead"):
        await router.service.on_activity(activity(lead.event_id, "north", racer))  # its offer was withdrawn
    await router.service.on_activity(activity(lead.event_id, "south", "sa"))  # held: nothing to claim, logged
    [(key, logged)] = router.published.events()
    assert isinstance(logged, ActivityLogged)
    assert (key, logged.payload.by_agent_id, logged.payload.claim_refused) == ("south", "sa", None)
    router.published.clear()
    await router.service.on_activity(activity(lead.event_id, "south", "south-broker"))
    [(key, logged)] = router.published.events()
    assert key == "south"
    assert isinstance(logged, ActivityLogged)
    assert logged.account_id == "south"


async def _events_of(router: Router, lead: LeadReceived) -> list[tuple[str, RoutingEvent]]:
    return [
        (key, e)
        for key, e in router.published.events()
        if not isinstance(e, TeamMemberTransferred | RealtorInvited | ContactErased)
        and e.payload.lead_id == lead.event_id
    ]


async def test_assigned_lead_names_its_previous_owner(router: Router) -> None:
    lead = received("south")  # round robin off: roster position 1 holds it
    await router.service.on_lead_received(lead)
    assert any(isinstance(e, LeadAssigned) for _, e in await _events_of(router, lead))
    router.published.clear()
    await router.service.on_command(transfer(lead.event_id, "south", "north"))
    [(key, moved)] = router.published.events()
    assert key == "south"
    assert isinstance(moved, LeadTransferred)
    assert (moved.payload.previous_owner_agent_id, moved.payload.previous_owner_name) == (
        "south-broker",
        "Agent south-broker",
    )
    assert moved.payload.agent_id == "north-broker"


async def test_team_member_transfer_is_relayed_to_the_target_office(router: Router) -> None:
    command = TransferTeamMember.create(
        account_id="north",
        occurred_at=T0,
        payload=TransferTeamMemberPayload(
            agent_id="nc", agent_name="Agent nc", to_account_id="south", by_user_id="admin-1"
        ),
    )
    await router.service.on_command(command)
    await router.service.on_command(command)  # a redelivery: the same event
    [(key, first), (key_again, second)] = router.published.events()
    assert first == second
    assert key == key_again == "south"
    assert isinstance(first, TeamMemberTransferred)
    assert first.account_id == "south"
    assert first.event_id == derived_event_id(command.event_id, "team-member")
    assert first.correlation_id == command.correlation_id
    assert first.payload.transfer_id == command.event_id
    assert (first.payload.agent_id, first.payload.agent_name) == ("nc", "Agent nc")
    assert (first.payload.from_account_id, first.payload.from_account_name) == ("north", "North Office")
    assert first.payload.to_account_name == "South Office"
    router.published.clear()

    for source, target in (("north", "nowhere"), ("nowhere", "south")):
        bad = TransferTeamMember.create(
            account_id=source,
            occurred_at=T0,
            payload=TransferTeamMemberPayload(
                agent_id="nc", agent_name="Agent nc", to_account_id=target, by_user_id="admin-1"
            ),
        )
        with pytest.raises(RoutingRejected, match="unknown account"):
            await router.service.on_command(bad)
    assert router.published.records == []


def inquiry(account_id: str, email: str | None, phone: str | None, source: str = "Website") -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=T0,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Lead", email=email, phone=phone),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name=source),
        ),
    )


async def test_a_returning_contact_with_a_new_phone_or_email_stays_one_lead(router: Router) -> None:
    # R1: the contact writes again with a new email (same phone), then by that email alone, then
    # in one batch with a new phone and by that phone alone. Every inquiry is activity on the first lead.
    tag = uuid.uuid4().hex[:8]
    phone, second_phone = f"+1212555{int(tag[:4], 16) % 10000:04d}", f"+1646555{int(tag[4:], 16) % 10000:04d}"
    first = inquiry("north", f"first-{tag}@example.com", phone)
    await router.service.on_lead_received(first)
    await router.service.on_lead_received(inquiry("north", f"second-{tag}@example.com", phone))
    await router.service.on_lead_received(inquiry("north", f"second-{tag}@example.com", None))
    assert not await router.service.on_leads_received(
        [inquiry("north", f"second-{tag}@example.com", second_phone), inquiry("north", None, second_phone)]
    )
    leads = {e.payload.lead_id for _, e in router.published.events() if isinstance(e, LeadOffered | LeadAssigned)}
    assert leads == {first.event_id}, "a repeat became a lead of its own"
    logged = [e for _, e in router.published.events() if isinstance(e, ActivityLogged)]
    assert [e.payload.lead_id for e in logged] == [first.event_id] * 4
    keys = {d["_id"] async for d in router.db[ROUTER_CONTACTS].find({"lead_id": str(first.event_id)})}
    assert keys == {f"north:email:first-{tag}@example.com", f"north:phone:{phone}",
                    f"north:email:second-{tag}@example.com", f"north:phone:{second_phone}"}  # fmt: skip

    # T2: every email and phone the contact used moves with the lead.
    await router.service.on_command(transfer(first.event_id))
    moved = {d["_id"] async for d in router.db[ROUTER_CONTACTS].find({"lead_id": str(first.event_id)})}
    assert moved == {key.replace("north:", "south:", 1) for key in keys}
    router.published.clear()
    await router.service.on_lead_received(inquiry("south", None, second_phone))
    [(_, back)] = router.published.events()
    assert isinstance(back, ActivityLogged)
    assert back.payload.lead_id == first.event_id


async def test_a_team_member_who_moves_leaves_its_offers_and_leads_in_the_old_office(router: Router) -> None:
    async def race() -> LeadReceived:  # a new contact each time (received() shares one phone)
        lead = inquiry("north", f"m-{uuid.uuid4().hex}@example.com", None, source="Race")
        await router.service.on_lead_received(lead)
        return lead

    held = await race()
    mover = (await router.record(held))["offers"][0]["agent_id"]
    await router.service.on_activity(activity(held.event_id, "north", mover))
    assert (await router.record(held))["holder"] == mover
    raced = None
    for _ in range(3):  # rotation: a later race includes the mover again
        candidate = await race()
        if mover in {o["agent_id"] for o in (await router.record(candidate))["offers"]}:
            raced = candidate
            break
    assert raced is not None
    router.published.clear()

    # crm-api moves the member's record to its new office before it sends the command (`move_member`).
    await router.db[AGENTS].update_one({"_id": mover}, {"$set": {"account_id": "south"}})
    command = TransferTeamMember.create(
        account_id="north",
        occurred_at=T0,
        payload=TransferTeamMemberPayload(
            agent_id=mover, agent_name="Mover", to_account_id="south", by_user_id="admin-1"
        ),
    )
    await router.service.on_command(command)
    released = await router.record(held)
    assert (released["status"], released["holder"]) == ("unassigned", None)
    offers = (await router.record(raced))["offers"]
    assert [(o["agent_id"], o["status"]) for o in offers if o["agent_id"] == mover] == [(mover, "withdrawn")]
    assert [o["status"] for o in offers if o["agent_id"] != mover] == ["open"], "the race goes on"
    events = router.published.events()
    kinds = sorted(type(e).__name__ for _, e in events)
    assert kinds == ["LeadReleased", "OfferWithdrawn", "TeamMemberTransferred"]
    withdrawn = next(e for _, e in events if isinstance(e, OfferWithdrawn))
    assert withdrawn.payload.reason is WithdrawalReason.AGENT_LEFT
    assert {key for key, e in events if not isinstance(e, TeamMemberTransferred)} == {"north"}

    router.published.clear()
    await router.service.on_command(command)  # a redelivery changes nothing more
    assert [type(e).__name__ for _, e in router.published.events()] == ["TeamMemberTransferred"]
    router.published.clear()
    await router.service.on_activity(activity(raced.event_id, "north", mover))
    [(_, late)] = router.published.events()
    assert isinstance(late, ActivityLogged)
    assert late.payload.claim_refused == f"the offer to {mover} was withdrawn; nobody holds the lead now"
