"""crm-api against a real router, for the tests of what crm-api asks the router (issue 15: routing info, the
dry-run, who is next per rule, asking a missed offer back): the router's use cases on the MongoDB-wire server
behind its own internal HTTP app, served on a free port by the services' HTTP server, and crm-api's side on
the same database, its views the router's events projected as its consumer projects them (`World`); with
crm-api's whole app in-process on the session's Tansu (`Site`: its web pages and JSON routes).

Imported by the test modules beside it (pytest puts this folder on sys.path; it holds no tests).
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from router_harness import Router, router_on

from leadflow_crm_api.adapters.leads import LeadViews, ensure_indexes
from leadflow_crm_api.adapters.router_api import RouterApi
from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.domain.routing_info import DryRunRequest, LeadRouting
from leadflow_crm_api.handlers import project
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.use_cases import routing_info as uc
from leadflow_crm_api.use_cases.leads import account_leads
from leadflow_devstack.processes import free_port
from leadflow_devstack.servers import tansu_consumer_settings
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import Role as TokenRole
from leadflow_devstack.tokens import bearer, dev_token
from leadflow_router.entrypoints.http import ServiceTokens, install
from leadflow_shared import http
from leadflow_shared.collections import CRM_LEADS, CRM_TIMELINE
from leadflow_shared.events.criteria import LeadCriteria
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

Db = AsyncDatabase[dict[str, Any]]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNT, OTHER = "oak", "elm"
BROKER, ADMIN = Principal("oak-boss", Role.BROKER, ACCOUNT), Principal("oak-admin", Role.ADMIN, ACCOUNT)
OUTSIDER = Principal("elm-boss", Role.BROKER, OTHER)
# The router's service token for this test run, given to the router and to crm-api (decision 0082).
ROUTER_TOKEN = SecretStr(secrets.token_urlsafe(32))
NAMES = {"oak-boss": "Olive Boss", "villa1": "Vera Villa", "villa2": "Vic Villa", "let1": "Lena Let", "gen": "Gus Gen"}
RULES: dict[str, Any] = {
    "rules": [
        {"id": "villas", "name": "Villas", "criteria": {"price_min": 1_000_000},
         "action": {"kind": "rotation", "agents": ["villa1", "villa2"], "claim_window_seconds": 300}},
        {"id": "lettings", "name": "Lettings", "criteria": {"intents": ["rent"]},
         "action": {"kind": "agent", "agent_id": "let1"}},
    ]
}  # fmt: skip


def config(
    rules: dict[str, Any] = RULES, names: dict[str, str] = NAMES, availability: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The seed file: ACCOUNT with `names` on its roster and `rules` (an agent's `availability`: paused...),
    and OTHER with its broker."""

    def account(account_id: str, names: dict[str, str], **more: Any) -> dict[str, Any]:
        agents = [
            {"agent_id": a, "name": n, "email": f"{a}@{account_id}.example", **(availability or {}).get(a, {})}
            for a, n in names.items()
        ]
        return {"account_id": account_id, "name": account_id.title(), "round_robin": True, "agents": agents,
                "roster": list(names), **more}  # fmt: skip

    return {"accounts": [account(ACCOUNT, names, routing_rules=rules), account(OTHER, {"elm-boss": "Eli"})]}


def received(n: int, account_id: str = ACCOUNT, **criteria: Any) -> LeadReceived:
    payload = LeadReceivedPayload(
        contact=Contact(first_name="Lead", email=f"lead{n}-{uuid.uuid4().hex[:6]}@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        criteria=LeadCriteria.model_validate(criteria) if criteria else None,
    )
    return LeadReceived.create(account_id=account_id, payload=payload, occurred_at=NOW)


class Served:
    """An app on a local port by the server the services run (shared.http.QuietServer); stopped and started
    again on the same port, it is a service that went down and came back."""

    def __init__(self, app: FastAPI) -> None:
        self.app, self.port = app, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: http.QuietServer | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, http="h11")
        server = self._server = http.QuietServer(config)
        self._serving = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, timeout=10, what="the server to start")

    async def stop(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._serving, timeout=10)
        self._server = self._serving = None


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[Served]:
    server = Served(app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class World:
    """The router (its service, its HTTP app served) and crm-api's side on the same database."""

    def __init__(self, router: Router, crm_db: Db, server: Served, mongo_url: str) -> None:
        self.router, self.db, self.server, self.mongo_url = router, crm_db, server, mongo_url
        self.api = RouterApi(server.url, token=ROUTER_TOKEN)

    async def route(self, *leads: LeadReceived) -> None:
        """Route the leads and project what the router published into crm-api's views."""
        await self.router.service.on_leads_received(list(leads))
        await self.project()

    async def project(self) -> None:
        for _, event in self.router.published.events():
            await project(event, views=LeadViews(self.db))
        self.router.published.clear()

    async def routing(self, lead_id: str, caller: Principal = BROKER, account_id: str = ACCOUNT) -> LeadRouting:
        leads = account_leads(caller, self.db, account_id)
        return await uc.lead_routing(account_id, leads, caller, self.db, self.api, lead_id)

    async def dry_run(self, caller: Principal = BROKER, account_id: str = ACCOUNT, **body: Any) -> Any:
        return await uc.dry_run(account_id, caller, self.db, self.api, DryRunRequest.model_validate(body))

    async def everything(self) -> dict[str, list[dict[str, Any]]]:
        names = sorted(await self.db.list_collection_names())
        return {name: [d async for d in self.db[name].find({}).sort("_id", 1)] for name in names}


@asynccontextmanager
async def world_on(mongo_url: str, seed: dict[str, Any], *, now: datetime = NOW) -> AsyncIterator[World]:
    """A world over the seed file `seed` (`config()`), the router's clock at `now`."""
    async with router_on(mongo_url, seed, now=now) as router:
        app = FastAPI()
        install(app, lambda: router.service, tokens=ServiceTokens([ROUTER_TOKEN.get_secret_value()]))
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
        try:
            crm_db = client[router.db.name]
            await ensure_indexes(crm_db)
            async with served(app) as server:
                yield World(router, crm_db, server, mongo_url)
        finally:
            await client.close()


def broken_router(answer: Callable[[], Any]) -> FastAPI:
    """A stand-in for the router answering `answer()` to every internal call."""
    app = FastAPI()

    @app.api_route("/internal/v1/{path:path}", methods=["GET", "POST"])
    async def anything(path: str) -> Any:
        del path
        return answer()

    return app


# The web app and the JSON routes: crm-api in-process (its own lifespan, on the session's Tansu and the world's
# database). One app per test module: stopping it waits for its consumer's fetch (5 s).

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


class Site:
    """crm-api's app asking the world's router: `web` signs in as one user at a time; `auth` is a bearer token's
    header for the JSON routes."""

    def __init__(self, world: World, web: httpx.AsyncClient, settings: CrmApiSettings) -> None:
        self.world, self.web, self.settings = world, web, settings

    async def stored(self) -> dict[str, list[dict[str, Any]]]:
        """The world's `everything()`, but the views of other modules' leads: this crm-api consumes the shared
        leads.events.v1 as any crm-api does, so their rows and timelines arrive at any moment."""
        ours = {ACCOUNT, OTHER}
        return {
            name: [d for d in docs if name not in {CRM_LEADS, CRM_TIMELINE} or d.get("account_id") in ours]
            for name, docs in (await self.world.everything()).items()
        }

    async def sign_in(self, user: str) -> httpx.AsyncClient:
        """Signed in as `user` ("account|id|role"), instead of whoever was."""
        page = await self.web.get(f"/app/sign-in?account={user.split('|')[0]}")
        signed = await self.web.post("/app/sign-in", data={"user": user, "csrf": csrf_of(page)})
        assert signed.status_code == 303, signed.text
        return self.web

    def auth(self, sub: str, role: TokenRole, account_id: str = ACCOUNT) -> dict[str, str]:
        return bearer(dev_token(sub, role, account_id, key=self.settings.verification_key))

    @asynccontextmanager
    async def router_down(self) -> AsyncIterator[None]:
        await self.world.server.stop()
        try:
            yield
        finally:
            await self.world.server.start()


@asynccontextmanager
async def site_on(
    mongo_url: str, kafka_bootstrap: str, seed: dict[str, Any], *, now: datetime = NOW
) -> AsyncIterator[Site]:
    async with world_on(mongo_url, seed, now=now) as world:
        settings = CrmApiSettings.model_validate(
            {"kafka": {"bootstrap_servers": kafka_bootstrap, "producer_idempotence": False,
                       **tansu_consumer_settings()},
             "mongo": {"url": mongo_url, "database": world.db.name}, "router_url": world.server.url,
             "router_token": ROUTER_TOKEN,
             "consumer_group": f"routing-info-{uuid.uuid4().hex[:8]}",
             "web": {"dev_sign_in": True, "secure_cookies": False}}
        )  # fmt: skip
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://crm", follow_redirects=False) as web:
                yield Site(world, web, settings)


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def text_of(page: httpx.Response) -> str:
    """The page's text without tags, spaces collapsed (what a reader sees)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.text)).split())


@dataclass
class Sent:
    """What crm-api's publishers were given (app.state's, wrapped): keyed by account, body."""

    records: list[tuple[str, bytes]] = field(default_factory=list)

    def wrap(self, publish: Callable[[str, bytes], Awaitable[None]]) -> Callable[[str, bytes], Awaitable[None]]:
        async def recorded(key: str, body: bytes) -> None:
            self.records.append((key, body))
            await publish(key, body)

        return recorded


@dataclass
class Web:
    """crm-api's app on the site with one routed lead, its publishers counted."""

    site: Site
    sent: Sent
    lead: str


@asynccontextmanager
async def web_with_a_lead(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Web]:
    """`site_on` with one lead routed and crm-api's activity and command publishers wrapped in a `Sent`."""
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        lead = received(1)
        await site.world.route(lead)
        app: Any = site.web._transport.app  # type: ignore[attr-defined]  # the ASGI app the client calls
        sent = Sent()
        app.state.publish_activity = sent.wrap(app.state.publish_activity)
        app.state.publish_command = sent.wrap(app.state.publish_command)
        yield Web(site, sent, str(lead.event_id))
