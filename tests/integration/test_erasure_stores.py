"""Erasing a contact (decision 0050) in each service's store, on real servers (nx-27017, Tansu):

- the router resolves the request once, forgets the contact keys, scrubs the lead, publishes one
  ContactErased (the same after a crash), isolates tenants, lets a lead mid-offer go on, and sends a
  lead's unpublished events before the erasure (its first ones and a repeat's in a batch's outbox document,
  which also find a lead whose keys a crash left unwritten, and register no key after);
- crm-api's projection and a rebuild's buffered replay erase alike, a late event does not bring the
  contact back (nor, for a lead erased before it had a row, a copy published after the erasure or its first event
  replayed then), and a rebuild from leads.events.v1 (which still holds the contact) ends without it;
- the notifier forgets digest items and ends open deliveries of the leads unsent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_harness import Doc, Topic, canonical, docs, topic_on
from fakes_crm import Interleaving
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from router_harness import Router, router_on

from leadflow_crm_api.adapters.buffered_views import BufferedViews
from leadflow_crm_api.adapters.leads import (
    LeadViews,
    ScopedLeads,
    ensure_indexes,
    parked_doc,
    realtor_filter,
    scope_filter,
)
from leadflow_crm_api.domain.generations import names_of
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.views import LeadQuery, activity_entry
from leadflow_crm_api.handlers import project
from leadflow_crm_api.rebuild import rebuild_views
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_notifier.adapters.repository import Begin, DeliveryLog, DigestItems, LeadErasure, Leases
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.digest import DigestItem
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_router.adapters.mongo import Erasures
from leadflow_router.domain.contacts import contact_keys, erased_id
from leadflow_router.domain.model import RoutingRejected
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import (
    NOTIFIER_DELIVERIES,
    ROUTER_CONTACTS,
    ROUTER_ERASURES,
    ROUTER_LEADS,
    ROUTER_OUTBOXES,
)
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.commands import LEAD_COMMAND, EraseContact, EraseContactPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    ContactErased,
    ContactErasedPayload,
    ContactMessaged,
    ContactMessagedPayload,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadSummary,
    RoutingEvent,
)
from leadflow_shared.settings import KafkaSettings, MongoSettings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 4, 6, 10, tzinfo=UTC)
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def person(first: str) -> Contact:
    """A contact whose every detail is unique to this run, so a scan for it finds only this test's copies."""
    tag = uuid.uuid4().hex[:8]
    return Contact(first_name=f"{first}{tag}", last_name=f"Roe{tag}", email=f"{first.lower()}.{tag}@example.com",
                   phone=f"+1415{uuid.uuid4().int % 9_000_000 + 1_000_000}")  # fmt: skip


def traces(contact: Contact) -> set[str]:
    return {contact.first_name, contact.last_name, str(contact.email), str(contact.phone)}


async def holders_of(db: AsyncDatabase[Doc], needles: set[str]) -> list[str]:
    """`collection/_id` of every document of the database whose text holds one of `needles`."""
    found = []
    for name in await db.list_collection_names():
        async for doc in db[name].find({}):
            text = repr(doc)
            if any(needle in text for needle in needles):
                found.append(f"{name}/{doc['_id']}")
    return found


# --- the router -------------------------------------------------------------------------------------


def account(account_id: str, agents: list[str]) -> dict[str, Any]:
    return {
        "account_id": account_id, "name": f"{account_id.title()} Realty", "round_robin": True,
        "agents": [{"agent_id": a, "name": f"Agent {a}", "email": f"{a}@{account_id}.example"} for a in agents],
        "roster": agents, "default_source": {"race_count": 1, "claim_window_seconds": 600},
    }  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def router(mongo_url: str) -> AsyncIterator[Router]:
    config = {"accounts": [account("acme", ["acme-broker", "ana", "ben"]), account("other", ["other-broker"])]}
    async with router_on(mongo_url, config, now=T0) as built:
        built.service.erasures = Erasures(built.db)  # the harness predates erasures
        yield built


def received(account_id: str, contact: Contact) -> LeadReceived:
    return LeadReceived.create(account_id=account_id, occurred_at=T0, payload=LeadReceivedPayload(
        contact=contact, source=SOURCE, message=f"Hi, {contact.first_name} here"))  # fmt: skip


def erase(account_id: str, **who: Any) -> EraseContact:
    payload = EraseContactPayload(by_user_id="acme-broker", reason="ticket 42", **who)
    return EraseContact.create(account_id=account_id, occurred_at=T0, payload=payload)


async def keys_of(router: Router, lead: LeadReceived) -> list[str]:
    return [doc["_id"] async for doc in router.db[ROUTER_CONTACTS].find({"lead_id": str(lead.event_id)})]


async def test_the_router_forgets_a_contact_once_and_its_next_inquiry_is_a_new_lead(router: Router) -> None:
    jane, bob = person("Jane"), person("Bob")
    first = received("acme", jane)
    repeat = received("acme", jane.model_copy(update={"phone": "+14155550142"}))  # R1, by email; a new phone
    others = [received("acme", bob), received("other", jane)]  # another contact; the same person elsewhere
    for lead in [first, repeat, *others]:
        await router.service.on_lead_received(lead)
    assert len(await keys_of(router, first)) == 3, "its email and both phones point at the first lead"
    router.published.clear()
    command = erase("acme", email=jane.email)

    router.published.failing = True  # a crash before ContactErased is out: keys and state are erased by then
    with pytest.raises(ConnectionError):
        await router.service.on_command(command)
    router.published.failing = False
    await router.service.on_command(LEAD_COMMAND.validate_json(command.model_dump_json()))  # redelivered

    [(key, event)] = router.published.events()
    assert isinstance(event, ContactErased)
    assert (key, event.event_id) == ("acme", derived_event_id(command.event_id, "contact-erased"))
    assert event.payload.lead_ids == [first.event_id], "resolved once: the keys were gone on the redelivery"
    assert (event.payload.by_user_id, event.payload.reason) == ("acme-broker", "ticket 42")
    state = await router.record(first)
    assert state["summary"]["contact"] == {"first_name": "", "last_name": "", "email": None, "phone": None}
    assert (state["summary"]["message"], state["erased"], state["status"]) == ("", True, "offered")
    assert state["summary"]["source"]["name"] == "Website"
    assert await keys_of(router, first) == []
    assert len(await keys_of(router, others[0])) == 2
    assert len(await keys_of(router, others[1])) == 2, "the same email in another account is another contact"
    assert (await router.record(others[1]))["summary"]["contact"]["email"] == jane.email
    record = await router.db[ROUTER_ERASURES].find_one({"_id": str(command.event_id)})
    assert record is not None
    assert (record["status"], record["lead_ids"], record["account_id"]) == ("done", [str(first.event_id)], "acme")
    assert not any(trace in repr(record) for trace in traces(jane)), "the audit record holds no personal data"
    elsewhere = {f"router_leads/{others[1].event_id}", f"router_contacts/other:email:{jane.email}",
                 f"router_contacts/other:phone:{jane.phone}"}  # fmt: skip
    assert set(await holders_of(router.db, traces(jane))) == elsewhere, "only the other account's lead"

    router.published.clear()
    await router.service.on_command(command)  # once more, after it was done: nothing
    assert router.published.records == []

    # The offer goes on: the agent offered the lead claims it by id.
    agent = state["offers"][0]["agent_id"]
    await router.service.on_activity(LeadActivity.create(account_id="acme", occurred_at=T0, payload=(
        LeadActivityPayload(lead_id=first.event_id, agent_id=agent, action=ActivityAction.CALL))))  # fmt: skip
    claimed = [e for _, e in router.published.events() if isinstance(e, LeadClaimed)]
    assert [e.payload.agent_id for e in claimed] == [agent]
    # The contact comes back: a new lead, not an inquiry on the erased one (R1 forgot it).
    router.published.clear()
    again = received("acme", jane)
    await router.service.on_lead_received(again)
    [(_, offered)] = router.published.events()
    assert isinstance(offered, LeadOffered)
    assert (offered.payload.lead_id, offered.payload.contact) == (again.event_id, jane)


async def test_an_inquiry_made_before_an_erasure_is_taken_unrouted_on_the_wire(router: Router) -> None:
    """Decision 0106 on nx-27017: the erasure's marks (hashes of the contact's keys) beside the keys, read with them
    in one command; an inquiry made before the erasure (a replayed dead letter) is taken unrouted, one made after is
    a new lead; a second erasure of the same contact moves the mark on; the marks are no keys."""
    kim = person("Kim")
    first = received("acme", kim)
    await router.service.on_lead_received(first)
    late = received("acme", kim).model_copy(update={"occurred_at": T0 - timedelta(minutes=5)})
    await router.service.on_command(erase("acme", email=kim.email))
    router.published.clear()

    await router.service.on_lead_received(late)
    assert router.published.records == [], "routed: the person is back"
    assert await router.db[ROUTER_LEADS].find_one({"_id": str(late.event_id)}) is None
    ids = [erased_id(k) for k in contact_keys("acme", kim.email, kim.phone)]
    marks = [doc async for doc in router.db[ROUTER_CONTACTS].find({"_id": {"$in": ids}})]
    assert len(marks) == 2, "its email's and its phone's"
    mark = marks[0]
    assert mark["erased_ms"] == epoch_ms(T0)
    assert mark["forget_at"].replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(days=30), "past the DLQs' 30 days"
    assert not any(trace in repr(mark) for trace in traces(kim)), "a hash: the mark names nobody"
    assert await router.service.contacts.find(contact_keys("acme", kim.email, kim.phone)) == {}, "no key"

    await router.service.on_command(erase("acme", email=kim.email).model_copy(
        update={"occurred_at": T0 + timedelta(hours=1), "event_id": uuid.uuid4()}))  # fmt: skip
    moved = await router.db[ROUTER_CONTACTS].find_one({"_id": erased_id(f"acme:email:{kim.email}")})
    assert moved is not None
    assert moved["erased_ms"] == epoch_ms(T0 + timedelta(hours=1)), "a later erasure of the contact moves it on"
    after = received("acme", kim).model_copy(update={"occurred_at": T0 + timedelta(hours=2)})
    router.published.clear()
    await router.service.on_lead_received(after)
    [(_, offered)] = router.published.events()
    assert isinstance(offered, LeadOffered), "an inquiry made after the erasure is a new lead (0050)"


async def test_an_erasure_touches_only_its_own_accounts_leads_and_unknown_contacts_are_nothing(
    router: Router,
) -> None:
    ours, theirs = received("acme", person("Uma")), received("other", person("Theo"))
    for lead in (ours, theirs):
        await router.service.on_lead_received(lead)
    router.published.clear()
    for command in (
        erase("other", lead_ids=[ours.event_id]),  # another account's lead, by id
        erase("acme", lead_ids=[theirs.event_id], phone=theirs.payload.contact.phone),  # theirs, from acme
        erase("acme", email=f"nobody-{uuid.uuid4().hex[:6]}@example.com", lead_ids=[uuid.uuid4()]),
    ):
        await router.service.on_command(command)
    erased = [e for _, e in router.published.events() if isinstance(e, ContactErased)]
    assert [e.payload.lead_ids for e in erased] == [[], [], []], "each request is answered, erasing nothing"
    for lead in (ours, theirs):
        state = await router.record(lead)
        assert state["summary"]["contact"] == lead.payload.contact.model_dump(mode="json")
        assert "erased" not in state
    with pytest.raises(RoutingRejected):
        await router.service.on_command(erase("no-such-account", email="x@example.com"))


async def test_a_leads_unpublished_events_go_out_before_its_erasure(router: Router) -> None:
    lead = received("acme", person("Otto"))
    router.published.clear()
    router.published.failing = True
    with pytest.raises(ConnectionError):
        await router.service.on_lead_received(lead)  # decided and stored, not published
    router.published.failing = False
    await router.service.on_command(erase("acme", lead_ids=[lead.event_id]))
    events = [e for _, e in router.published.events()]
    assert [type(e) for e in events] == [LeadOffered, ContactErased]
    assert (await router.record(lead))["erased"] is True
    assert (await router.record(lead))["outbox"] == []


async def crashed_before_effects(router: Router, lead: LeadReceived, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lead's batch is stored with its outbox document; the process dies before any of its effects (its
    contact keys) and events: decision 0068's document waits."""

    tried = asyncio.Event()

    async def down(_lead_by_key: dict[str, str]) -> None:
        tried.set()
        raise ConnectionError("mongo down")

    with monkeypatch.context() as patch:
        patch.setattr(router.service.contacts, "register", down)
        router.published.failing = True
        with pytest.raises(ConnectionError):
            await router.service.on_lead_received(lead)
        # The flush applies effects beside publishing: the failed publish ends the call while the effects are
        # still on their way to the (patched) contact index, which must see them before it is mended.
        await asyncio.wait_for(tried.wait(), timeout=10)
        router.published.failing = False
    assert await router.db[ROUTER_OUTBOXES].count_documents({"leads.lead_id": str(lead.event_id)}) == 1


async def test_a_lead_a_crash_left_without_keys_is_found_by_its_document_and_erased_first(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    carl = person("Carl")
    lead = received("acme", carl)
    await crashed_before_effects(router, lead, monkeypatch)
    assert await keys_of(router, lead) == []
    router.published.clear()

    await router.service.on_command(erase("acme", phone=carl.phone))  # found through its outbox document
    await router.service.on_lead_received(lead)  # the crashed batch's redelivery, after the erasure
    events = [e for _, e in router.published.events()]
    assert [type(e) for e in events] == [LeadOffered, ContactErased], "its first offer before, nothing after"
    assert isinstance(events[1], ContactErased)
    assert events[1].payload.lead_ids == [lead.event_id]
    assert await keys_of(router, lead) == [], "not registered again by its document"
    assert (await router.record(lead))["erased"] is True
    assert await router.db[ROUTER_OUTBOXES].count_documents({"leads.lead_id": str(lead.event_id)}) == 0


async def test_a_repeat_a_crash_left_unapplied_goes_out_before_its_leads_erasure_and_registers_nothing_after(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    dora = person("Dora")
    first = received("acme", dora)
    await router.service.on_lead_received(first)
    repeat = received("acme", dora.model_copy(update={"phone": "+14155550177"}))  # R1 by email, a new phone
    await crashed_before_effects(router, repeat, monkeypatch)
    router.published.clear()

    await router.service.on_command(erase("acme", lead_ids=[first.event_id]))
    await router.service.on_lead_received(repeat)  # the crashed batch's redelivery
    assert [type(e) for _, e in router.published.events()] == [ActivityLogged, ContactErased]
    assert await keys_of(router, first) == [], "neither the email nor the repeat's phone points at it"


# --- crm-api ----------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def crm(mongo_url: str) -> AsyncIterator[tuple[AsyncDatabase[Doc], str]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"crm_erase_{uuid.uuid4().hex[:10]}"
    await ensure_indexes(client[name])
    yield client[name], name
    await client.drop_database(name)
    await client.close()


def offered(lead: uuid.UUID, contact: Contact, at: datetime) -> LeadOffered:
    return LeadOffered.create(account_id="acme", occurred_at=at, payload=LeadOfferedPayload(
        lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=at + timedelta(minutes=15),
        explanation="R6", contact=contact, source=SOURCE, message=f"I am {contact.first_name}"))  # fmt: skip


def assigned(lead: uuid.UUID, contact: Contact, at: datetime) -> LeadAssigned:
    return LeadAssigned.create(account_id="acme", occurred_at=at, payload=LeadAssignedPayload(
        lead_id=lead, agent_id="ana", reason=AssignmentReason.ROSTER_POSITION_1, explanation="R5", contact=contact,
        source=SOURCE, message=f"I am {contact.first_name}"))  # fmt: skip


def claim(lead: uuid.UUID, at: datetime) -> LeadClaimed:
    return LeadClaimed.create(account_id="acme", occurred_at=at, payload=LeadClaimedPayload(
        lead_id=lead, agent_id="ana", action=ActivityAction.CALL, offer_round=1))  # fmt: skip


def erased(*leads: uuid.UUID, at: datetime) -> ContactErased:
    return ContactErased.create(account_id="acme", occurred_at=at, payload=ContactErasedPayload(
        erasure_id=uuid.uuid4(), lead_ids=list(leads), by_user_id="bea", reason="ticket 7"))  # fmt: skip


def note(lead: uuid.UUID, text: str, at: datetime) -> Doc:
    return activity_entry(event_id=str(uuid.uuid4()), lead_id=str(lead), account_id="acme", agent_id="ana",
                          action="note", occurred_at=at, content={"text": text})  # fmt: skip


async def test_the_projection_and_a_buffered_replay_erase_alike(crm: tuple[AsyncDatabase[Doc], str]) -> None:
    db, _ = crm
    jane, bob = person("Jane"), person("Bob")
    gone, kept = uuid.uuid4(), uuid.uuid4()
    t = [T0 + timedelta(minutes=i) for i in range(6)]
    events: list[RoutingEvent] = [
        offered(gone, jane, t[0]),
        offered(kept, bob, t[0]),
        claim(gone, t[1]),
        erased(gone, at=t[2]),
        assigned(gone, jane, t[3]),  # from before the erasure, delivered late (a replayed dead letter)
        claim(kept, t[4]),
        erased(gone, at=t[5]),  # a second request for the same lead
    ]
    direct, buffered = names_of(0), names_of(1)
    notes = [note(gone, f"{jane.first_name} wants a loft", t[1]), note(kept, f"{bob.first_name} wants a yard", t[1])]
    for names in (direct, buffered):  # what people wrote on the timeline: in both, as a rebuild copies it
        await db[names.timeline].insert_many([dict(n) for n in notes])
    for event in events:
        await project(event, views=LeadViews(db, direct), side_effects=False)
    buffer = BufferedViews(db, buffered)
    for start in range(0, len(events), 3):  # batch boundaries between the offer, the erasure and the late event
        batch = events[start : start + 3]
        await buffer.load({str(i) for e in batch if (i := getattr(e.payload, "lead_id", None))}, set())
        for event in batch:
            await project(event, views=buffer, side_effects=False)
        await buffer.flush()

    for names in (direct, buffered):
        row = await db[names.leads].find_one({"_id": str(gone)})
        assert row is not None
        assert (row["name"], row["email"], row["phone"], row["message"]) == ("", None, None, "")
        assert row["search_name"] == row["search_email"] == row["search_phone"] == ""
        assert (bool(row["erased"]), row["status"], row["owner_agent_id"]) == (True, "assigned", "ana")
        other = await db[names.leads].find_one({"_id": str(kept)})
        assert other is not None
        assert (other["email"], other.get("erased")) == (bob.email, None)
        entries = [e async for e in db[names.timeline].find({"lead_id": str(gone)})]
        assert [e["summary"] for e in entries if e["type"] == "LeadActivity"] == ["note by ana"]
        assert len([e for e in entries if e["type"] == "ContactErased"]) == 2  # one per request
    assert await holders_of(db, traces(jane)) == []
    assert len(await holders_of(db, traces(bob))) == 4, "the other contact's rows and notes, in both"
    assert canonical(await docs(db, direct.leads)) == canonical(await docs(db, buffered.leads))
    assert canonical(await docs(db, direct.timeline)) == canonical(await docs(db, buffered.timeline))


def inquiry(lead: uuid.UUID, contact: Contact, at: datetime) -> ActivityLogged:
    return ActivityLogged.create(account_id="acme", occurred_at=at, payload=ActivityLoggedPayload(
        lead_id=lead, agent_id=None, action=ActivityAction.INQUIRY,
        summary=LeadSummary(contact=contact, source=SOURCE, message=f"I am {contact.first_name}")))  # fmt: skip


def wrote(lead: uuid.UUID, contact: Contact, at: datetime) -> ContactMessaged:
    return ContactMessaged.create(account_id="acme", occurred_at=at, payload=ContactMessagedPayload(
        lead_id=lead, agent_id="ana", channel="email", to=str(contact.email),
        body=f"Hi {contact.first_name}"))  # fmt: skip


def again(event: RoutingEvent) -> RoutingEvent:
    """A copy the router publishes again after the erasure (a paused writer or sweeper), or a dead letter replayed:
    the same bytes, the same id."""
    return ROUTING_EVENT.validate_json(event.model_dump_json())


async def test_leads_erased_without_a_row_take_no_copy_or_replayed_first_event_with_the_person(
    crm: tuple[AsyncDatabase[Doc], str],
) -> None:
    """Decision 0050, session 28: three leads crm-api has no row of when Jane is erased, their first events dead
    letters (`late`: an offer, `by_hand`: an assignment; `never`: none comes), their later events parked. After
    ContactErased the router publishes copies of those (the inquiry carries Jane, the message her address) and the
    dead letters are replayed: the live projection and a rebuild's buffered replay (any batch boundaries) park the
    copies without Jane, make `late`'s and `by_hand`'s rows without her (their state projected: ana holds them), and
    leave of `never` a marker no reader lists. Nothing of Jane is anywhere in the database."""
    db, _ = crm
    jane = person("Jane")
    late, by_hand, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t = [T0 + timedelta(minutes=i) for i in range(6)]
    parked: list[RoutingEvent] = [
        inquiry(late, jane, t[1]), claim(late, t[2]), wrote(by_hand, jane, t[2]), inquiry(never, jane, t[1]),
    ]  # fmt: skip
    events: list[RoutingEvent] = [
        *parked,
        erased(late, by_hand, never, at=t[5]),
        *[again(e) for e in parked],
        again(offered(late, jane, t[0])),  # the dead letters, replayed after the erasure
        again(assigned(by_hand, jane, t[0])),
        again(parked[0]),  # a copy once more, after the row
    ]
    direct = names_of(0)
    for event in events:
        await project(event, views=LeadViews(db, direct), side_effects=False)
    rebuilt = [names_of(1), names_of(2), names_of(3)]
    for names, size in zip(rebuilt, (1, 2, 4), strict=True):
        buffer = BufferedViews(db, names)
        for start in range(0, len(events), size):
            batch = events[start : start + size]
            await buffer.load({str(i) for e in batch if (i := getattr(e.payload, "lead_id", None))}, set())
            for event in batch:
                await project(event, views=buffer, side_effects=False)
            await buffer.flush()

    assert await holders_of(db, traces(jane)) == [], "a copy or a replayed first event brought Jane back"
    for names in (direct, *rebuilt):
        for lead in (late, by_hand):
            row = await db[names.leads].find_one({"_id": str(lead)})
            assert row is not None
            assert (row["name"], row["email"], row["message"], bool(row["erased"])) == ("", None, "", True)
            assert (row["account_id"], row["status"], row["owner_agent_id"]) == ("acme", "assigned", "ana")
            assert "erased_before_row" not in row
        assert await db[names.leads].find_one({"_id": str(never)}) == {
            "_id": str(never), "erased": True, "erased_before_row": True
        }  # fmt: skip
        held = [doc["_id"] async for doc in db[names.parked].find({})]
        assert held == [str(parked[3].event_id)], "only `never`'s inquiry waits for a row, without Jane"
        assert canonical(await docs(db, names.leads)) == canonical(await docs(db, direct.leads))
        assert canonical(await docs(db, names.timeline)) == canonical(await docs(db, direct.timeline))

    broker = ScopedLeads(db, scope_filter(Principal("bea", Role.BROKER, "acme"), "acme"))
    listed = {row.lead_id for row in await broker.find_page(LeadQuery(), limit=50, after=None)}
    assert listed == {str(late), str(by_hand)}, "the marker is no lead"
    assert await broker.get(str(never)) is None
    assert await broker.get_many([str(never), str(late)]) == {str(late): await broker.get(str(late))}
    ana = Principal("ana", Role.REALTOR, "acme")
    mine = ScopedLeads(db, realtor_filter(ana), realtor="ana")
    assert {row.lead_id for row in await mine.find_page(LeadQuery(), limit=50, after=None)} == listed


class Meanwhile(Interleaving, LeadViews):
    """`LeadViews` running `then` (another partition's consumer) once, when the projection first makes call `at`."""

    def __init__(self, db: AsyncDatabase[Doc], at: str, then: Callable[[], Awaitable[None]]) -> None:
        super().__init__(db, names_of(0))
        self.at, self.meanwhile = at, then


async def test_an_erasure_racing_a_leads_first_event_leaves_no_person_and_keeps_its_parked_events(
    crm: tuple[AsyncDatabase[Doc], str],
) -> None:
    """Helper 113's review, on nx-27017: `by_hand`'s assignment reads "no row" and its parked claim, then an erasure
    stores its marker: the assignment's insert fails on it and the row is made over it without Jane. `late`'s erasure
    reads "no row", then its first offer inserts the row with Jane: the marker's insert fails and the erasure scrubs
    that row. `waiting`'s inquiry, parked before session 28 with Jane, is scrubbed in place and kept for its row."""
    db, _ = crm
    jane = person("Jane")
    by_hand, late, waiting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    direct = LeadViews(db, names_of(0))
    await project(claim(by_hand, T0 + timedelta(minutes=2)), views=direct, side_effects=False)  # parked: no row
    legacy = inquiry(waiting, jane, T0 + timedelta(minutes=1))
    await db[names_of(0).parked].insert_one(parked_doc(legacy))  # as parked before session 28: with Jane

    async def erase(*leads: uuid.UUID) -> None:
        await project(erased(*leads, at=T0 + timedelta(hours=1)), views=direct, side_effects=False)

    async def offer_late() -> None:
        await project(offered(late, jane, T0), views=direct, side_effects=False)

    racing = Meanwhile(db, "parked", lambda: erase(by_hand))
    await project(assigned(by_hand, jane, T0), views=racing, side_effects=False)
    assert racing.ran(), "the interleaving did not happen"
    racing = Meanwhile(db, "state", offer_late)
    await project(erased(late, waiting, at=T0 + timedelta(hours=1)), views=racing, side_effects=False)
    assert racing.ran(), "the interleaving did not happen"

    assert await holders_of(db, traces(jane)) == [], "the race left Jane in the views"
    for lead in (by_hand, late):
        row = await db[names_of(0).leads].find_one({"_id": str(lead)})
        assert row is not None
        assert "erased_before_row" not in row
        assert (row["name"], row["email"], row["phone"], bool(row["erased"])) == ("", None, None, True)
    claimed = await db[names_of(0).timeline].find_one({"lead_id": str(by_hand), "type": "LeadClaimed"})
    assert claimed is not None, "the claim parked before the erasure was applied to the row made over the marker"
    kept = [doc async for doc in db[names_of(0).parked].find({"lead_id": str(waiting)})]
    assert [doc["_id"] for doc in kept] == [str(legacy.event_id)], "the inquiry parked before the erasure is kept"


async def test_an_erasure_between_an_assignments_read_of_its_row_and_its_upsert_is_not_undone(
    crm: tuple[AsyncDatabase[Doc], str],
) -> None:
    """On nx-27017: the lead has a row with Jane (its offer); an assignment reads that row, another partition's
    consumer projects Jane's erasure, and the assignment's upsert, decided for the row it read, `$set`s her name,
    email and phone back. The assignment reads the row again after its upsert and scrubs it again."""
    db, _ = crm
    jane = person("Jane")
    lead = uuid.uuid4()
    direct = LeadViews(db, names_of(0))
    await project(offered(lead, jane, T0), views=direct, side_effects=False)

    async def erase() -> None:
        await project(erased(lead, at=T0 + timedelta(hours=1)), views=direct, side_effects=False)

    racing = Meanwhile(db, "state", erase)
    await project(assigned(lead, jane, T0 + timedelta(minutes=1)), views=racing, side_effects=False)
    assert racing.ran(), "the interleaving did not happen"

    assert await holders_of(db, traces(jane)) == [], "the assignment put Jane back on the erased row"
    row = await db[names_of(0).leads].find_one({"_id": str(lead)})
    assert row is not None
    assert (row["name"], row["email"], row["phone"], bool(row["erased"])) == ("", None, None, True)
    assert row["owner_agent_id"] == "ana"


@pytest_asyncio.fixture(loop_scope="session")
async def topic(kafka_bootstrap: str) -> AsyncIterator[Topic]:
    async with topic_on(kafka_bootstrap, "crm-erase") as log:
        yield log


async def test_a_rebuild_replays_the_erasure_and_brings_back_no_erased_contact(
    crm: tuple[AsyncDatabase[Doc], str], topic: Topic, kafka_bootstrap: str, mongo_url: str
) -> None:
    db, name = crm
    jane, bob = person("Jane"), person("Bob")
    gone, kept = uuid.uuid4(), uuid.uuid4()
    await topic.live(db, assigned(gone, jane, T0))
    await topic.live(db, assigned(kept, bob, T0))
    leads = ScopedLeads(db, scope_filter(Principal("bea", Role.BROKER, "acme"), "acme"))
    assert await leads.set_profile(
        str(gone),
        {
            "company": f"{jane.last_name} Lofts",
            "home_address": "1 Elm St",
            "labels": ["Hot"],
            "search_labels": ["hot"],
            "crm_status": "contacted",
        },
    )
    await leads.record(note(gone, f"Called {jane.first_name} at {jane.phone}", T0 + timedelta(minutes=5)))
    await topic.live(db, erased(gone, at=T0 + timedelta(minutes=10)))
    assert await holders_of(db, traces(jane)) == [], "the live projection erased it"

    settings = CrmApiSettings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, producer_idempotence=False),
                              mongo=MongoSettings(url=SecretStr(mongo_url), database=name))  # fmt: skip
    report = await rebuild_views(settings, topic=topic.name)

    assert (report.events_replayed, report.leads) == (3, 2)
    new = names_of(report.generation)
    row = await db[new.leads].find_one({"_id": str(gone)})
    assert row is not None
    assert (row["name"], row["email"], row["company"], row["home_address"]) == ("", None, None, None)
    assert (bool(row["erased"]), row["labels"], row["crm_status"]) == (True, ["Hot"], "contacted")
    entries = {e["type"]: e async for e in db[new.timeline].find({"lead_id": str(gone)})}
    assert entries["LeadActivity"]["summary"] == "note by ana"
    assert entries["ContactErased"]["summary"] == "Contact details erased at the request of bea (ticket 7)"
    assert await holders_of(db, traces(jane)) == [], "the replayed events held the contact; the erasure came after"
    other = await db[new.leads].find_one({"_id": str(kept)})
    assert other is not None
    assert other["email"] == bob.email


# --- the notifier -----------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def notifier_db(mongo_url: str) -> AsyncIterator[AsyncDatabase[Doc]]:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo_url)
    name = f"notifier_erase_{uuid.uuid4().hex[:10]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


def delivery(lead: str, contact: Contact, *, key: str | None = None, lead_ids: tuple[str, ...] | None = None,
             event: bytes | None = None) -> Delivery:  # fmt: skip
    content = EmailContent(to="ana@example.com", subject=f"New lead: {contact.first_name}", text=str(contact.email),
                           lead_id=lead)  # fmt: skip
    return Delivery(key=key or f"{uuid.uuid4()}:email:ana", channel=Channel.EMAIL, agent_id="ana", account_id="acme",
                    event_type="LeadOffered", content=content, event=event or b"{}",
                    lead_ids=(lead,) if lead_ids is None else lead_ids)  # fmt: skip


async def test_the_notifier_forgets_digest_items_and_ends_open_deliveries_unsent(
    notifier_db: AsyncDatabase[Doc],
) -> None:
    db = notifier_db
    jane, bob = person("Jane"), person("Bob")
    gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
    items, log = DigestItems(db), DeliveryLog(db, leases=Leases(lease_ms=60_000))
    for lead, contact in ((gone, jane), (kept, bob)):
        await items.add(DigestItem(account_id="acme", lead_id=lead, name=contact.first_name, source="Website",
                                   created_ms=1))  # fmt: skip
    pending, other = delivery(gone, jane), delivery(kept, bob)
    old_style = delivery(gone, jane, lead_ids=(), event=offered(uuid.UUID(gone), jane, T0).model_dump_json().encode())
    failed, sent = delivery(gone, jane), delivery(gone, jane)
    digest = delivery(kept, bob, key="digest:acme:2026-04-06:email:ana", lead_ids=(kept, gone))
    for started in (pending, other, old_style, failed, sent, digest):
        assert await log.begin(started, now_ms=1_000) is Begin.SEND
    await log.failed(failed.key, reason="rejected", now_ms=2_000)
    await log.sent(sent.key, now_ms=2_000)

    ended = await LeadErasure(db).erase([gone], now_ms=3_000)

    assert ended == 4  # pending, the one started before records had lead ids, the failed one, the digest
    status = {d["_id"]: d["status"] async for d in db[NOTIFIER_DELIVERIES].find({})}
    assert {k: status[k] for k in (pending.key, old_style.key, failed.key, digest.key)} == dict.fromkeys(
        (pending.key, old_style.key, failed.key, digest.key), "erased")  # fmt: skip
    assert (status[sent.key], status[other.key]) == ("sent", "pending")
    assert await holders_of(db, traces(jane)) == []
    assert len(await holders_of(db, traces(bob))) == 2, "the other lead's digest item and pending delivery"
    assert await log.begin(pending, now_ms=4_000) is Begin.DONE, "a redelivered event sends nothing"
    assert len((await log.claim_due(now_ms=10**12, limit=10)).deliveries) == 1, "only the other lead's"
    assert not await log.reopen(failed, marker="dlq/0:1", now_ms=5_000), "a replayed dead letter sends nothing"
    assert await LeadErasure(db).erase([gone], now_ms=6_000) == 0
