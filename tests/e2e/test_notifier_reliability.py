"""N3 on the real processes: a notifier SIGKILLed three times while 1,000 leads are routed still sends
every expected email exactly once, as the SMTP server sees it (decision 0021).

The account has long claim windows, so each lead yields one email-bearing event: an offer (round robin)
or, for every fourth lead, an assignment (pre-assigned by a lead-generation provider, R4). A resend in
the window between the SMTP server's acceptance and the delivery record's mark is the one duplicate
SMTP allows: it must carry the same Message-ID and come from a delivery taken over after a crash.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually, publish_envelopes
from leadflow_notifier.settings import SmtpSettings
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, LeadAssigned, LeadOffered

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

log = logging.getLogger(__name__)

LEADS, PRE_ASSIGNED_EVERY, KILLS = 1000, 4, 3
SMTP_CONNECTIONS = SmtpSettings().pool_size  # SMTP transactions a notifier can have open at a kill
# Which email an event is, independent of its Message-ID: (lead id, recipient address, subject prefix).
Mail = tuple[str, str, str]


@dataclass(frozen=True)
class Account:
    account_id: str
    agents: tuple[str, ...]

    def address(self, agent_id: str) -> str:
        return f"{agent_id}@notifier-crash.example"


@pytest.fixture
def account(stack: Stack, tmp_path: Path) -> Account:
    """Round robin over three agents with email; 15-minute claim windows, so no offer expires mid-test."""
    run = uuid.uuid4().hex[:6]
    found = Account(f"nk-{run}-realty", tuple(f"nk-{run}-{name}" for name in ("ana", "ben", "cy")))
    config = {
        "accounts": [
            {
                "account_id": found.account_id,
                "name": "Notifier Crash Realty",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a, "email": found.address(a)} for a in found.agents],
                "roster": list(found.agents),
                "default_source": {"claim_window_seconds": 900},
            }
        ]
    }
    path = tmp_path / "notifier-crash.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    return found


def new_lead(account: Account, n: int) -> LeadReceived:
    if n % PRE_ASSIGNED_EVERY == 0:  # R4: an assignment email instead of an offer email
        source = LeadSource(
            channel=LeadChannel.LEAD_GEN,
            name="Zillow",
            provider="zillow",
            assigned_agent_id=account.agents[n % len(account.agents)],
        )
    else:
        source = LeadSource(channel=LeadChannel.PARTNER, name="Partner")
    return LeadReceived.create(
        account_id=account.account_id,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Crash", last_name=f"Test{n}", email=f"crash-{n}@example.com"), source=source
        ),
    )


def expected_mail(account: Account, raw: bytes) -> tuple[Mail, str] | None:
    """The email one event must send, with its delivery key; None for events that send no email here."""
    event = ROUTING_EVENT.validate_json(raw)
    if event.account_id != account.account_id:
        return None
    if isinstance(event, LeadOffered):
        kind = "Lead offer: "
    elif isinstance(event, LeadAssigned):
        kind = "New lead: "
    else:
        return None
    agent = event.payload.agent_id
    return (str(event.payload.lead_id), account.address(agent), kind), f"{event.event_id}:email:{agent}"


def received(stack: Stack, account: Account) -> list[EmailMessage]:
    assert stack.mail is not None
    ours = {account.address(a) for a in account.agents}
    return [m for m in stack.mail.received() if m["X-Envelope-To"] in ours]


def mail_of(message: EmailMessage) -> Mail:
    subject = str(message["Subject"])
    return str(message["X-Leadflow-Lead-Id"]), str(message["X-Envelope-To"]), subject[: subject.index(": ") + 2]


async def test_notifier_sigkilled_three_times_sends_every_expected_email_once(stack: Stack, account: Account) -> None:
    started = time.monotonic()
    await publish_envelopes(stack.bootstrap, topics.LEADS_INTAKE, [new_lead(account, n) for n in range(LEADS)])

    kills: list[float] = []
    restarts: list[float] = []
    for k in range(1, KILLS + 1):
        # Killed while emails flow: each kill cuts the deliveries in flight at that moment.
        threshold = k * LEADS // (KILLS + 1)
        await eventually(
            lambda: len(received(stack, account)) >= threshold,  # noqa: B023 (awaited at once)
            timeout=90,
            what=f"emails flowing before kill {k}",
        )
        stack.services["notifier"].kill()
        kills.append(time.monotonic())
        stack.start_service("notifier")
        stack.wait_ready("notifier", timeout=90)
        restarts.append(time.monotonic() - kills[-1])
    assert len(received(stack, account)) < LEADS, "the notifier finished before the last kill"

    expected: dict[Mail, str] = {}
    async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as events:

        async def every_lead_routed() -> bool:
            for raw in await events.poll():
                if (found := expected_mail(account, raw)) is not None:
                    expected[found[0]] = found[1]
            return len({lead for lead, _, _ in expected}) == LEADS

        await eventually(every_lead_routed, timeout=60, what="an offer or assignment for every lead")

    def all_arrived() -> bool:
        return set(expected) <= {mail_of(m) for m in received(stack, account)}

    try:
        await eventually(all_arrived, timeout=60, what="every expected email at the SMTP server")
    except AssertionError:
        missing = set(expected) - {mail_of(m) for m in received(stack, account)}
        pytest.fail(f"{len(missing)} of {len(expected)} expected emails never arrived")
    arrived = time.monotonic()

    # Nothing can send any more once every delivery record is `sent`: only then are copies counted.
    records = await _settled(stack, set(expected.values()))

    by_mail: dict[Mail, list[str]] = defaultdict(list)
    for message in received(stack, account):
        by_mail[mail_of(message)].append(str(message["Message-ID"]))
    assert set(by_mail) == set(expected), "an email nobody expected"
    assert all(len(set(ids)) == 1 for ids in by_mail.values()), "one (event, recipient) got two different emails"
    resent = {mail: len(ids) - 1 for mail, ids in by_mail.items() if len(ids) > 1}
    # The one duplicate SMTP allows: accepted by the server, then killed before the mark; the copy
    # comes from a delivery driven again after the crash, at most one per open SMTP connection per kill.
    assert all(records[expected[mail]].get("drives", 1) >= 2 for mail in resent), "a resend without a crash"
    assert sum(resent.values()) <= KILLS * SMTP_CONNECTIONS
    log.info(
        "notifier crash test: %d emails, %d resent (same Message-ID), %d taken over after a crash; last kill to"
        " last email %.1f s; restarts %s s; total %.1f s",
        len(expected),
        sum(resent.values()),
        sum(1 for r in records.values() if r.get("drives", 1) >= 2),
        arrived - kills[-1],
        [round(r, 1) for r in restarts],
        time.monotonic() - started,
    )


async def _settled(stack: Stack, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The delivery records of `keys` once every one is `sent` (fails after a deadline)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        deliveries = client["leadflow"]["notifier_deliveries"]

        async def all_sent() -> dict[str, dict[str, Any]]:
            found = {str(d["_id"]): d async for d in deliveries.find({"_id": {"$in": sorted(keys)}})}
            statuses = Counter(d["status"] for d in found.values())
            return found if len(found) == len(keys) and statuses["sent"] == len(keys) else {}

        return await eventually(all_sent, timeout=30, what="every delivery record marked sent")
    finally:
        await client.close()
