"""Helper 187's regression review of session 38's notifier commits (f9e00bd, 7e8be8b, 6769a8e); each test failed on
the code as reviewed, fixed by `AgentDirectory.broker_of` (position 1 as stored, for N5) beside `pool_holder_of`
(team updates), and `_departed` asked only of the events only an office's own people hear:

- f9e00bd made `AgentDirectory.broker_of` return the next active agent when roster position 1 is inactive (for team
  updates), but `Notifier._reads_routing_info` uses it for N5 too: the stand-in, an ordinary agent, now reads the
  router's whole explanation (other agents, and why each was passed by: paused, at a cap), which N5 keeps to
  position 1 ("the broker pool's agent may be another agent (position 1 inactive ...)") and crm-api answers 403 for.
- 7e8be8b/6769a8e drop every notice to a recipient whose agent record is not `active`, whatever the event: a realtor
  (T1) whose own office record is `onboarding` (crm-api's `move_member` writes `active: False` for a member who
  arrives by T2; S1 admits it) is no longer told of a lead shared with it, nor of its contact's inquiry on a shared
  lead it holds (T3 leaves T1 leads with the realtor).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
import pytest_asyncio
from fakes_notifier import NoDeadLetters, Recorder, plain
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.servers import MailSink
from leadflow_devstack.testing import eventually
from leadflow_notifier.adapters.repository import AgentDirectory, DeliveryLog, Leases
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadFellBack,
    LeadFellBackPayload,
    LeadShared,
    LeadSharedPayload,
    LeadSummary,
    RoutingEvent,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    name = f"review188_{uuid.uuid4().hex[:12]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


def notifier(db: AsyncDatabase[dict[str, Any]], mailer: SmtpMailer, registry: CollectorRegistry) -> Notifier:
    return Notifier(
        directory=AgentDirectory(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: Recorder()},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(registry),
        pages_url="https://crm",
        clock=lambda: NOON,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
    )


async def mails_about(sink: MailSink, leads: dict[str, uuid.UUID]) -> dict[str, EmailMessage]:
    async def sent() -> dict[str, EmailMessage]:
        by_lead = {m["X-Leadflow-Lead-Id"]: m for m in sink.received() if m["X-Leadflow-Lead-Id"]}
        found = {name: by_lead[str(lead)] for name, lead in leads.items() if str(lead) in by_lead}
        return found if len(found) == len(leads) else {}

    return await eventually(sent, what="the emails at the SMTP server")


async def test_a_stand_in_for_an_inactive_broker_does_not_read_the_routers_explanation(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # Roster position 1 (the broker) left (inactive, still on the roster): the router's pool holder is the next
    # active agent, Ana, an ordinary agent. A lead falls back to her (R9) with the router's explanation naming her
    # rivals and why they were passed by. N5: only position 1 reads that line; Ana's notice says why in words.
    tag = uuid.uuid4().hex[:6]
    account, boss, ana = f"n5-{tag}", f"boss-{tag}", f"ana-{tag}"
    rivals = [f"bo-{tag}", f"cy-{tag}"]
    await db["accounts"].insert_one({"_id": account, "roster": [boss, ana, *rivals]})
    await db["agents"].insert_many([
        {"_id": boss, "account_id": account, "name": boss, "email": f"{boss}@example.com", "active": False,
         "status": "inactive"},
        {"_id": ana, "account_id": account, "name": ana, "email": f"{ana}@example.com", "active": True},
        *({"_id": r, "account_id": account, "name": r, "email": f"{r}@example.com", "active": True} for r in rivals),
    ])  # fmt: skip
    why = (f"R9: no agent claimed the lead; eligible: {rivals[0]}; skipped {rivals[1]}: paused until "
           f"2024-01-11T09:00:00+00:00; the broker pool ({ana}) holds it.")  # fmt: skip
    lead = uuid.uuid4()
    fell = LeadFellBack.create(account_id=account, occurred_at=NOON, payload=LeadFellBackPayload(
        lead_id=lead, agent_id=ana, explanation=why,
    ))  # fmt: skip
    told = dataclasses.replace(notifier(db, mailer, CollectorRegistry()), brokers=AgentDirectory(db))
    await told.notify(fell, fell.model_dump_json().encode())

    mail = (await mails_about(sink, {"fell back": lead}))["fell back"]
    assert mail["X-Envelope-To"] == f"{ana}@example.com"
    html = mail.get_body(("html",))
    seen = (str(mail["Subject"]), plain(mail), "" if html is None else str(html.get_content()))
    named = [r for r in rivals if any(r in part for part in seen)]
    assert named == [], f"the stand-in read other agents' routing info (N5): {named} in {seen[1]!r}"


async def test_a_realtor_onboarding_in_its_own_office_is_told_of_a_share_and_of_its_contacts_inquiry(
    db: AsyncDatabase[dict[str, Any]], sink: MailSink, mailer: SmtpMailer
) -> None:
    # Rita is an agent of south-realty who has just arrived there by a move (T2): crm-api's `move_member` writes
    # status onboarding, active False; S1 admits her (she signs in to set herself up). Acme shares a lead with her
    # (T1; she accepted its invitation), and later its contact inquires again (R1): both are hers to hear, as they
    # were before 7e8be8b. A T1 lead also stays with a realtor whose office moves it (T3's note).
    tag = uuid.uuid4().hex[:6]
    brokerage, office, rita = f"acme-{tag}", f"south-{tag}", f"rita-{tag}"
    await db["agents"].insert_one({
        "_id": rita, "account_id": office, "name": "Rita", "email": f"{rita}@example.com", "status": "onboarding",
        "active": False, "round_robin": False, "offices": [], "lead_groups": [],
    })  # fmt: skip
    leads = {"shared": uuid.uuid4(), "inquiry": uuid.uuid4()}
    contact = Contact.model_validate({"first_name": "Nia", "email": "nia@example.com"})
    source = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
    events: list[RoutingEvent] = [
        LeadShared.create(account_id=brokerage, occurred_at=NOON, payload=LeadSharedPayload(
            lead_id=leads["shared"], share_id=uuid.uuid4(), agent_id=rita, realtor_name="Rita",
            assigned_by="Acme Realty", by_user_id=f"boss-{tag}",
        )),
        ActivityLogged.create(account_id=brokerage, occurred_at=NOON, payload=ActivityLoggedPayload(
            lead_id=leads["inquiry"], agent_id=rita, action=ActivityAction.INQUIRY,
            summary=LeadSummary(contact=contact, source=source, message="Still looking"),
        )),
    ]  # fmt: skip
    registry = CollectorRegistry()
    told = notifier(db, mailer, registry)
    for event in events:
        await told.notify(event, event.model_dump_json().encode())
    dropped = registry.get_sample_value("notifier_recipients_departed_total", {"type": "LeadShared"}) or 0.0
    dropped += registry.get_sample_value("notifier_recipients_departed_total", {"type": "ActivityLogged"}) or 0.0
    assert dropped == 0, "a share and an inquiry to a realtor who is onboarding in its own office were dropped"
    mails = await mails_about(sink, leads)
    assert [m["X-Envelope-To"] for m in mails.values()] == [f"{rita}@example.com"] * 2
