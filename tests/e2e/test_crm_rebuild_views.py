"""Rebuilding crm-api's views from leads.events.v1 while the whole system runs (decision 0045): leads keep
arriving and people keep working them, the API answers throughout, and afterwards every lead reads as it
did, with what people wrote on it, the broken rows repaired, and the leads of the rebuild's time once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.adapters.generations import VIEWS
from leadflow_crm_api.domain.generations import ViewNames, names_of
from leadflow_crm_api.rebuild import rebuild_views
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord, eventually
from leadflow_shared import topics
from leadflow_shared.collections import CRM_META, CRM_REBUILD_LOG
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "acct-rebuild-realty"
HOLDER, OTHER = "acct-rebuild-ann", "acct-rebuild-bo"  # round robin off: roster position 1 gets every lead
LEADS = f"/v1/accounts/{ACCOUNT}/leads"
Doc = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("rebuild") / "accounts.json"
    agents = [{"agent_id": a, "name": a, "email": f"{a}@rebuild.example", "time_zone": "UTC"} for a in (HOLDER, OTHER)]
    path.write_text(json.dumps({"accounts": [{
        "account_id": ACCOUNT, "name": "Rebuild Realty", "round_robin": False, "time_zone": "UTC", "agents": agents,
        "roster": [HOLDER, OTHER], "sources": [{"name": "Website", "claim_window_seconds": 600}],
    }]}))  # fmt: skip
    stack.seed(path)


def crm_settings(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> CrmApiSettings:
    """crm-api's own settings, as an operator runs the tool: with the service's environment."""
    for name, value in stack.service_env("crm-api").items():
        monkeypatch.setenv(name, value)
    return CrmApiSettings()


async def post_lead(stack: Stack, last: str) -> str:
    body = {"account_id": ACCOUNT, "first_name": "Robin", "last_name": last,
            "phone": f"(718) 555-{uuid.uuid4().int % 9000 + 1000}", "email": f"robin.{last}@example.com"}  # fmt: skip
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


async def listed(client: httpx.AsyncClient, headers: dict[str, str], marker: str) -> list[str]:
    page = await client.get(LEADS, headers=headers, params={"q": marker, "limit": "200"})
    assert page.status_code == 200, page.text
    return [item["lead_id"] for item in page.json()["items"]]


async def detail(client: httpx.AsyncClient, headers: dict[str, str], lead: str) -> Doc:
    response = await client.get(f"{LEADS}/{lead}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


_INSTANT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def instants(value: Any) -> Any:
    """Times as aware datetimes: nx-27017 keeps a datetime `$set` on an existing row as naive UTC text, which
    crm-api then prints without an offset; a rebuilt row holds the datetime itself (same instant)."""
    if isinstance(value, dict):
        return {k: instants(v) for k, v in value.items()}
    if isinstance(value, list):
        return [instants(v) for v in value]
    if isinstance(value, str) and _INSTANT.match(value):
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return value


async def active(db: AsyncDatabase[Doc]) -> ViewNames:
    meta = await db[CRM_META].find_one({"_id": VIEWS}) or {}
    return names_of(int(meta.get("active", 0)))


async def test_views_rebuilt_while_leads_arrive_keep_what_people_wrote_and_repair_what_broke(
    stack: Stack, client: httpx.AsyncClient, db: AsyncDatabase[Doc], monkeypatch: pytest.MonkeyPatch,
    wait_for_record: WaitForRecord,
) -> None:  # fmt: skip
    settings = crm_settings(stack, monkeypatch)
    marker = f"rb{uuid.uuid4().hex[:8]}"
    broker, holder = stack.auth("acct-rebuild-broker", "broker", ACCOUNT), stack.auth(HOLDER, "realtor", ACCOUNT)
    worked, noted, corrupted, deleted = [await post_lead(stack, f"{marker}{i}") for i in range(4)]
    await eventually(lambda: _all_in(client, broker, marker, {worked, noted, corrupted, deleted}), what="4 leads")

    # What people wrote, which no event holds: a profile with labels, a note, a CRM status.
    profile = {"company": "Harbor Lofts LLC", "labels": ["Hot", "Relocating"]}
    assert (await client.put(f"{LEADS}/{worked}/profile", headers=broker, json=profile)).status_code == 200
    note = {"action": "note", "text": "Pre-approved; wants a 3-bedroom near the park."}
    assert (await client.post(f"{LEADS}/{noted}/activities", headers=holder, json=note)).status_code == 202
    status = {"status": "contacted"}
    assert (await client.put(f"{LEADS}/{corrupted}/crm-status", headers=holder, json=status)).status_code == 200

    def echo_of_the_note(record: ConsumerRecord[bytes, bytes]) -> bool:
        event = ROUTING_EVENT.validate_json(record.value or b"")
        return isinstance(event, ActivityLogged) and str(event.payload.lead_id) == noted

    echo = ROUTING_EVENT.validate_json((await wait_for_record(topics.LEADS_EVENTS, echo_of_the_note)).value or b"")
    views = await active(db)

    async def echo_projected() -> bool:
        row = await db[views.leads].find_one({"_id": noted}, {"last_event_id": 1})
        return row is not None and row.get("last_event_id") == str(echo.event_id)

    await eventually(echo_projected, what="the router's echo of the note in the view")
    # crm-api writes a row before its timeline entry (the entry goes last): the leads were waited for as rows.
    first_four = [worked, noted, corrupted, deleted]
    before = await assigned_on_the_timeline(client, broker, first_four, of=first_four)
    assert before[worked]["labels"] == ["Hot", "Relocating"]
    assert before[corrupted]["crm_status"] == "contacted"
    assert any(e.get("content", {}) and e["content"].get("text") == note["text"] for e in before[noted]["timeline"])

    # Break the views: a row's contact and status, a row gone, a timeline entry gone.
    await db[views.leads].update_one({"_id": corrupted}, {"$set": {"name": "CORRUPT", "status": "offered"}})
    await db[views.leads].delete_one({"_id": deleted})
    await db[views.timeline].delete_one({"lead_id": worked, "type": "LeadAssigned"})
    assert (await detail(client, broker, corrupted))["name"] == "CORRUPT"
    assert (await client.get(f"{LEADS}/{deleted}", headers=broker)).status_code == 404

    meanwhile = Meanwhile(stack, client, db, broker, marker, worked=worked, noted=noted)
    async with api_listing(client, broker, marker, {worked, noted, corrupted}) as polls:
        report = await rebuild_views(settings, progress=meanwhile)
        done = await asyncio.gather(*meanwhile.background)
    assert polls.count > 5

    late, users = done
    assert users.status_code == 200, users.text
    arrived, during_build = [*meanwhile.arrived, late], meanwhile.during_build
    assert report.generation == report.previous_generation + 1
    assert report.previous_dropped
    assert report.events_caught_up >= 1, report  # the lead of the build's time came through the rebuild log
    assert await active(db) == names_of(report.generation)
    assert await db[CRM_REBUILD_LOG].count_documents({}) == 0
    await eventually(lambda: _all_in(client, broker, marker, {worked, noted, corrupted, deleted, *arrived}),
                     what="every lead, those of the rebuild's time included")  # fmt: skip
    ids = await listed(client, broker, marker)
    assert sorted(ids) == sorted({worked, noted, corrupted, deleted, *arrived}), "each lead once"

    # The leads of the rebuild's time are projected live: their rows listed, their entries maybe not yet written.
    after = await assigned_on_the_timeline(client, broker, ids, of=arrived)
    for lead, shown in after.items():
        entries = [e["event_id"] for e in shown["timeline"]]
        assert len(entries) == len(set(entries)), f"{lead}: an event twice on the timeline"
    assert instants(after[corrupted]) == instants(before[corrupted]), "repaired, its CRM status kept"
    assert instants(after[deleted]) == instants(before[deleted]), "rebuilt from its events"
    # Its profile, labels and the status set meanwhile; its lost timeline entry is back.
    assert instants({**after[worked], "timeline": []}) == instants({**during_build, "timeline": []})
    assert {e["event_id"] for e in after[worked]["timeline"]} == {
        e["event_id"] for e in before[worked]["timeline"] + during_build["timeline"]
    }
    assert after[noted]["assigned_users"] == [OTHER]
    users_set = [e for e in after[noted]["timeline"] if e["type"] == "LeadUsersSet"]
    unchanged = {**after[noted], "assigned_users": [], "timeline": [e for e in after[noted]["timeline"]
                                                                    if e not in users_set]}  # fmt: skip
    assert len(users_set) == 1
    assert instants(unchanged) == instants(before[noted]), "the note kept"

    # Once more, as an operator does (the console command), keeping the previous generation: the
    # views stay the same, back under today's names.
    again = await rebuild_with_the_console(stack)
    assert again["generation"] == report.generation + 1
    assert (await active(db)).leads == "crm_leads", "later modules read crm_leads directly"
    assert names_of(report.generation).leads in await db.list_collection_names(), "kept"
    for lead, shown in after.items():
        assert instants(await detail(client, broker, lead)) == instants(shown)


class Meanwhile:
    """The rebuild's `progress`: leads and people go on. A lead projected during the build (after the
    rebuild's snapshot of the log) and a CRM status set; a lead and a change of users while it switches."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, db: AsyncDatabase[Doc], broker: dict[str, str],
                 marker: str, *, worked: str, noted: str) -> None:  # fmt: skip
        self.stack, self.client, self.db, self.broker, self.marker = stack, client, db, broker, marker
        self.worked, self.noted = worked, noted
        self.arrived: list[str] = []
        self.background: list[asyncio.Task[Any]] = []
        self.during_build: Doc = {}

    async def __call__(self, step: str) -> None:
        if step.startswith("replaying"):
            await self._during_the_build()
        elif step.startswith("switching"):
            self.background.append(asyncio.create_task(post_lead(self.stack, f"{self.marker}s")))
            users = self.client.put(f"{LEADS}/{self.noted}/users", headers=self.broker, json={"user_ids": [OTHER]})
            self.background.append(asyncio.create_task(users))

    async def _during_the_build(self) -> None:
        client, broker, arrived = self.client, self.broker, self.arrived
        arrived.append(await post_lead(self.stack, f"{self.marker}b"))
        await eventually(lambda: _all_in(client, broker, self.marker, set(arrived)), what="a lead during the build")
        logged = [doc async for doc in self.db[CRM_REBUILD_LOG].find({}) if "event" in doc]
        assert logged, "crm-api logs the events it projects during a build"
        assert all(isinstance(doc["offset"], int) for doc in logged), "with their place on the topic"
        changed = {"status": "appointment_set"}
        assert (await client.put(f"{LEADS}/{self.worked}/crm-status", headers=broker, json=changed)).status_code == 200
        self.during_build.update(await detail(client, broker, self.worked))


@dataclass
class Polls:
    count: int = 0


@contextlib.asynccontextmanager
async def api_listing(
    client: httpx.AsyncClient, headers: dict[str, str], marker: str, leads: set[str]
) -> AsyncIterator[Polls]:
    """The API answers throughout, and lists `leads` every time it is asked."""
    polls, serving = Polls(), True

    async def serve() -> None:
        while serving:
            assert leads <= set(await listed(client, headers, marker))
            polls.count += 1
            await asyncio.sleep(0.05)  # pacing the requests, not waiting for anything

    server = asyncio.create_task(serve())
    try:
        yield polls
    finally:
        serving = False
        await server


async def rebuild_with_the_console(stack: Stack) -> Doc:
    """`leadflow-ops crm rebuild-views --keep-old`, as an operator runs it; its JSON report."""
    env = {**os.environ, "OPS_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap, "OPS_MONGO__URL": stack.mongo_url}
    command = [str(Path(sys.executable).parent / "leadflow-ops"), "crm", "rebuild-views", "--keep-old", "--json"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    ran = await asyncio.to_thread(run)
    assert ran.returncode == 0, ran.stderr
    return dict(json.loads(ran.stdout))


async def assigned_on_the_timeline(
    client: httpx.AsyncClient, headers: dict[str, str], leads: list[str], *, of: list[str]
) -> dict[str, Doc]:
    """Each lead's detail, once the leads `of` show their LeadAssigned on the timeline."""

    async def shown() -> dict[str, Doc] | None:
        found = {lead: await detail(client, headers, lead) for lead in leads}
        ready = all(any(e["type"] == "LeadAssigned" for e in found[lead]["timeline"]) for lead in of)
        return found if ready else None

    found = await eventually(shown, what=f"LeadAssigned on the timeline of {len(of)} lead(s)")
    assert found is not None
    return found


async def _all_in(client: httpx.AsyncClient, headers: dict[str, str], marker: str, leads: set[str]) -> bool:
    return leads <= set(await listed(client, headers, marker))
