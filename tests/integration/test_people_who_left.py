"""People who left (S1, N1; decision 0079): an agent made inactive (T3) or moved to another office (T2) holds a
token of its old office for hours. crm-api's whole app, served over HTTP on the session's Tansu and nx-27017, refuses
that token from its next request on (at most `CRM_API_AUTH__MEMBER_CACHE_SECONDS` later), on the JSON routes, the
web app's session and its live pages alike, while the moved agent's token of its new office works; and the
notifier's digest and new-lead notices reach no subscriber who is an agent no longer active in the account.

Before the change, the old token went on reading and acting on the leads the agent was an assigned user of
(`assigned_users`, which leaving does not clear), and the notifier sent it the office's new leads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fakes_notifier import NoDeadLetters, Recorder
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from routing_world import served

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.handlers import project
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_devstack.servers import MailSink, tansu_consumer_settings
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import Role, bearer, dev_token
from leadflow_notifier.adapters.repository import (
    AccountSchedules,
    AgentDirectory,
    DeliveryLog,
    DigestItems,
    Leases,
    PreferencesDoc,
    ensure_indexes,
)
from leadflow_notifier.adapters.smtp import SmtpMailer
from leadflow_notifier.domain.preferences import Channel
from leadflow_notifier.handlers import DigestSender, Notifier, RetryPolicy
from leadflow_notifier.metrics import NotifierMetrics
from leadflow_shared.collections import ACCOUNTS, AGENTS
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadOffered,
    LeadOfferedPayload,
)
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import all_topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]
GROUP = "pwl-group"  # the organisation of each test's two offices
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
CSRF = re.compile(r'name="csrf" value="([^"]*)"')
NOON = datetime(2024, 1, 10, 12, tzinfo=UTC)


@dataclass
class Site:
    http: httpx.AsyncClient
    db: Db
    settings: CrmApiSettings

    def auth(self, sub: str, role: Role, account_id: str) -> dict[str, str]:
        return bearer(self.token(sub, role, account_id))

    def token(self, sub: str, role: Role, account_id: str, lifetime: timedelta = timedelta(hours=1)) -> str:
        return dev_token(
            sub, role, account_id, key=self.settings.verification_key, organisation_id=GROUP, lifetime=lifetime
        )

    @property
    def within(self) -> float:
        """How long a change of an agent record may take to count: the cache's time and a margin."""
        return self.settings.auth.member_cache_seconds + 3

    @asynccontextmanager
    async def signed_in(self, token: str) -> AsyncIterator[httpx.AsyncClient]:
        """A browser of the web app signed in with `token` through the sign-in form."""
        async with httpx.AsyncClient(base_url=self.http.base_url, follow_redirects=False) as web:
            signed = await sign_in(web, token)
            assert signed.status_code == 303, signed.text
            assert not signed.headers["location"].startswith("/app/sign-in"), signed.headers["location"]
            yield web


async def sign_in(web: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await web.get("/app/sign-in")
    nonce = CSRF.search(page.text)
    assert nonce is not None, page.text[:300]
    return await web.post("/app/sign-in", data={"token": token, "csrf": nonce.group(1)})


def crm_settings(mongo_url: str, kafka_bootstrap: str, database: str) -> CrmApiSettings:
    """crm-api's settings on the session's servers: a database and a consumer group of its own, a token's expiry
    exact (test_crm_sessions_end.py), cookies over plain HTTP."""
    return CrmApiSettings.model_validate(
        {"kafka": {"bootstrap_servers": kafka_bootstrap, "producer_idempotence": False, **tansu_consumer_settings()},
         "mongo": {"url": mongo_url, "database": database},
         "consumer_group": f"{database.replace('_', '-')}-{uuid.uuid4().hex[:8]}",
         "auth": {"leeway_seconds": 0},
         "web": {"secure_cookies": False}}
    )  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    """crm-api's app served as its process serves it (one per module: stopping it waits for its consumer's
    fetch), on a database of its own."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"people_who_left_{uuid.uuid4().hex[:12]}"]
    await ensure_topics(kafka_bootstrap, all_topics())  # crm-api publishes a departure's command
    settings = crm_settings(mongo_url, kafka_bootstrap, db.name)
    try:
        async with (
            served(create_app(settings)) as server,
            httpx.AsyncClient(base_url=server.url, follow_redirects=False) as http,
        ):
            yield Site(http, db, settings)
    finally:
        await client.drop_database(db.name)
        await client.close()


@dataclass(frozen=True)
class Office:
    """North (its broker `boss`, who is no agent; agents `holder`, `helper`, `other`) and South (agent `sol`),
    two offices of one organisation: a test's own."""

    north: str
    south: str
    boss: str
    holder: str
    helper: str
    other: str

    def url(self, lead_id: str) -> str:
        return f"/v1/accounts/{self.north}/leads/{lead_id}"


async def office(site: Site) -> Office:
    tag = uuid.uuid4().hex[:6]
    at = Office(f"north-{tag}", f"south-{tag}", f"boss-{tag}", f"holder-{tag}", f"helper-{tag}", f"other-{tag}")
    sol = f"sol-{tag}"
    await site.db[ACCOUNTS].insert_many([
        {"_id": at.north, "name": "North", "organisation_id": GROUP, "roster": [at.holder, at.helper, at.other]},
        {"_id": at.south, "name": "South", "organisation_id": GROUP, "roster": [sol]},
    ])  # fmt: skip
    await site.db[AGENTS].insert_many([
        {"_id": agent, "account_id": account, "name": agent.title(), "email": f"{agent}@pwl.example",
         "status": "active", "active": True}
        for agent, account in ((at.holder, at.north), (at.helper, at.north), (at.other, at.north), (sol, at.south))
    ])  # fmt: skip
    return at


async def lead_worked_by(site: Site, at: Office, user: str) -> str:
    """A lead of North that its holder holds and `user` works with it: its user, set by North's broker."""
    lead = LeadAssigned.create(
        account_id=at.north,
        occurred_at=datetime.now(UTC),
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(), agent_id=at.holder, reason=AssignmentReason.MANUAL, explanation="by hand",
            contact=Contact(first_name="Rae"), source=SOURCE,
        ),
    )  # fmt: skip
    await project(lead, views=LeadViews(site.db))
    lead_id = str(lead.payload.lead_id)
    boss = site.auth(at.boss, "broker", at.north)
    users = await site.http.put(f"{at.url(lead_id)}/users", headers=boss, json={"user_ids": [user]})
    assert users.status_code == 200, users.text
    return lead_id


async def what_it_can_do(site: Site, headers: dict[str, str], url: str) -> list[int]:
    """The statuses of reading the lead at `url` and acting on it (a note, its profile) with `headers`."""
    note = {"action": "note", "text": "Called back."}
    return [
        (await site.http.get(url, headers=headers)).status_code,
        (await site.http.post(f"{url}/activities", headers=headers, json=note)).status_code,
        (await site.http.put(f"{url}/profile", headers=headers, json={"company": "Kept Inc"})).status_code,
    ]


async def refused_soon(site: Site, headers: dict[str, str], url: str) -> None:
    """Refused as an expired token is (401 problem+json, WWW-Authenticate), within the cache's time."""

    async def refused() -> bool:
        return await what_it_can_do(site, headers, url) == [401, 401, 401]

    await eventually(refused, timeout=site.within, what="the old token refused")
    answer = await site.http.get(url, headers=headers)
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Bearer ")
    assert "no longer" in answer.json()["detail"]


async def subscribers(db: Db, account_id: str) -> set[str]:
    """Who the notifier would send `account_id`'s new-lead notices or digest to."""
    directory = AgentDirectory(db)
    found = await directory.new_lead_subscribers(account_id) + await directory.digest_subscribers(account_id)
    return {r.agent_id for r in found}


async def subscribe(site: Site, at: Office, headers: dict[str, str]) -> None:
    """`at.helper` subscribes itself to North's new leads (any agent may, decision 0076)."""
    url = f"/v1/accounts/{at.north}/settings/notifications/{at.helper}"
    wanted = {"channels": ["email"], "digest": True, "new_lead_notices": True}
    assert (await site.http.put(url, headers=headers, json=wanted)).status_code == 200
    assert at.helper in await subscribers(site.db, at.north), "the notifier lists it"


async def set_status(site: Site, at: Office, status: str) -> None:
    """North's broker sets its helper's status (T3: anything but active is a departure)."""
    url = f"/v1/accounts/{at.north}/agents/{at.helper}/status"
    done = await site.http.put(url, headers=site.auth(at.boss, "broker", at.north), json={"status": status})
    assert done.status_code == 200, done.text


async def test_an_agent_made_inactive_loses_the_leads_it_worked_and_the_offices_new_leads(site: Site) -> None:
    at = await office(site)
    lead_id = await lead_worked_by(site, at, at.helper)
    old, url = site.auth(at.helper, "realtor", at.north), at.url(lead_id)
    assert await what_it_can_do(site, old, url) == [200, 202, 200], "an assigned user works the lead"
    await subscribe(site, at, old)
    token, page = site.token(at.helper, "realtor", at.north), f"/app/accounts/{at.north}/leads/{lead_id}"
    async with site.signed_in(token) as web:
        assert (await web.get(page)).status_code == 200

        await set_status(site, at, "inactive")

        await refused_soon(site, old, url)
        gone = await web.get(page)
        assert (gone.status_code, gone.headers["location"].split("?")[0]) == (303, "/app/sign-in"), "signed out"
        again = await sign_in(web, token)
        assert again.headers["location"].startswith("/app/sign-in?"), "the token no longer signs in"
    assert at.helper not in await subscribers(site.db, at.north)

    # The others are as they were: the broker (no agent record) and an active agent read and work the lead.
    boss = site.auth(at.boss, "broker", at.north)
    assert (await site.http.get(url, headers=boss)).status_code == 200
    assert (await site.http.put(f"{url}/users", headers=boss, json={"user_ids": [at.other]})).status_code == 200
    assert await what_it_can_do(site, site.auth(at.other, "realtor", at.north), url) == [200, 202, 200]
    # Made active again, its token works again.
    await set_status(site, at, "active")

    async def admitted() -> bool:
        return (await site.http.get("/v1/realtors/me/leads", headers=old)).status_code == 200

    await eventually(admitted, timeout=site.within, what="the token admitted again")


async def test_an_agent_moved_to_another_office_loses_the_old_offices_leads_and_works_in_the_new(site: Site) -> None:
    at = await office(site)
    lead_id = await lead_worked_by(site, at, at.helper)
    old, new, url = (
        site.auth(at.helper, "realtor", at.north),
        site.auth(at.helper, "realtor", at.south),
        at.url(lead_id),
    )
    assert await what_it_can_do(site, old, url) == [200, 202, 200]
    assert (await site.http.get("/v1/realtors/me/leads", headers=new)).status_code == 401, "not South's yet"
    await subscribe(site, at, old)

    moved = await site.http.post(
        f"/v1/accounts/{at.north}/office-transfers",
        headers=site.auth(at.boss, "broker", at.north),
        json={"agent_id": at.helper, "to_account_id": at.south},
    )
    assert moved.status_code == 202, moved.text

    await refused_soon(site, old, url)
    # Its token of South works there, as the Onboarding member it arrived as: its own leads (none) and settings.
    mine = await site.http.get("/v1/realtors/me/leads", headers=new)
    assert (mine.status_code, mine.json()["items"]) == (200, [])
    settings = await site.http.get(f"/v1/accounts/{at.south}/settings/notifications/{at.helper}", headers=new)
    assert settings.status_code == 200, settings.text
    assert (await site.http.get(url, headers=new)).status_code == 404, "North's lead is not South's"
    # Neither office's new leads reach it: its subscription moved with it, and it is not active in South yet.
    assert at.helper not in await subscribers(site.db, at.north) | await subscribers(site.db, at.south)


async def test_a_live_page_s_stream_ends_once_its_agent_is_made_inactive(site: Site) -> None:
    at = await office(site)
    lead_id = await lead_worked_by(site, at, at.helper)
    async with (
        site.signed_in(site.token(at.helper, "realtor", at.north)) as web,
        web.stream("GET", f"/app/accounts/{at.north}/leads/{lead_id}/live") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await anext(lines) == "retry: 1000", "the stream is open"
        await set_status(site, at, "inactive")

        async def rest() -> list[str]:
            return [line async for line in lines]

        # The stream would last 5 minutes; it ends within the cache's time instead, announcing nothing.
        assert not [line for line in await asyncio.wait_for(rest(), timeout=site.within) if line.startswith("event")]


# The notifier: who of an office hears of its new leads.


@pytest_asyncio.fixture(loop_scope="session")
async def notifier_db(mongo_url: str) -> AsyncIterator[Db]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = client[f"people_who_left_notifier_{uuid.uuid4().hex[:12]}"]
    await ensure_indexes(db)
    yield db
    await client.drop_database(db.name)
    await client.close()


async def test_only_staff_and_active_agents_of_the_office_get_its_digest_and_new_lead_notices(
    notifier_db: Db, sink: MailSink, mailer: SmtpMailer
) -> None:
    db, tag = notifier_db, uuid.uuid4().hex[:6]
    account, elsewhere = f"office-{tag}", f"elsewhere-{tag}"
    staying, left, moved, staff, racer = (f"{who}-{tag}" for who in ("staying", "left", "moved", "staff", "racer"))
    await db[AGENTS].insert_many([
        {"_id": agent, "account_id": account, "name": agent, "email": f"{agent}@pwl.example", "active": True,
         "status": "active"}
        for agent in (staying, left, moved, racer)
    ])  # fmt: skip
    # As crm-api writes a departure (`$set`, which nx-27017 stores as 0 for false), and a move whose last write,
    # the preferences', did not happen: they still name the office the agent left.
    await db[AGENTS].update_one({"_id": left}, {"$set": {"status": "inactive", "active": False}})
    await db[AGENTS].update_one(
        {"_id": moved}, {"$set": {"account_id": elsewhere, "status": "onboarding", "active": False}}
    )
    directory = AgentDirectory(db)
    for who in (staying, left, moved):
        await directory.save_preferences(who, PreferencesDoc(account_id=account, digest=True, new_lead_notices=True))
    await directory.save_preferences(
        staff, PreferencesDoc(account_id=account, digest=True, new_lead_notices=True, email=f"{staff}@pwl.example")
    )

    # A new lead: the notices at once.
    offered = LeadOffered.create(
        account_id=account,
        occurred_at=NOON,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(), agent_id=racer, offer_round=1, race_size=1, deadline=NOON + timedelta(minutes=15),
            explanation="rr", contact=Contact(first_name="Nia"), source=SOURCE,
        ),
    )  # fmt: skip
    notifier = Notifier(
        directory=directory,
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        senders={Channel.EMAIL: mailer, Channel.SMS: Recorder()},
        dead_letters=NoDeadLetters(),
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        clock=lambda: NOON,
        retry=RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02),
    )
    notifier = dataclasses.replace(notifier, digest=DigestItems(db), staff=directory)
    await notifier.notify(offered, offered.model_dump_json().encode())

    def told(who: str) -> list[str]:
        return [str(m["Subject"]) for m in sink.received() if m["X-Envelope-To"] == f"{who}@pwl.example"]

    assert told(staff) == told(staying) == ["New lead: Nia"]
    assert told(left) == told(moved) == []

    # The next morning's digest.
    sender = DigestSender(
        items=DigestItems(db),
        subscribers=directory,
        schedules=AccountSchedules(db),
        deliveries=DeliveryLog(db, leases=Leases(lease_ms=60_000)),
        mailer=mailer,
        metrics=NotifierMetrics(CollectorRegistry()),
        pages_url="https://crm",
        default_hour=7,
        clock=lambda: NOON + timedelta(days=1),
    )
    assert await sender.run_once() == 2
    assert told(staff) == told(staying) == ["New lead: Nia", "1 new lead on Thu 11 Jan"]
    assert told(left) == told(moved) == []
