"""Erasing a contact through the whole system (decision 0050): a broker asks crm-api (or an operator runs
`leadflow-ops contact erase`), the router forgets the contact and tells the notifier and crm-api, and
afterwards no document of any collection in MongoDB holds the contact's name, email, phone or words,
while the leads keep their ids, status and history and the contact's next inquiry is a new lead."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, holders_of

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RUN = uuid.uuid4().hex[:6]
ACCOUNT = f"acct-erase-{RUN}"
OTHER = f"acct-erase-other-{RUN}"
BROKER, AGENT = f"erase-bea-{RUN}", f"erase-ana-{RUN}"
OPS = str(Path(sys.executable).parent / "leadflow-ops")


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def account(account_id: str, agents: list[str]) -> dict[str, Any]:
        return {"account_id": account_id, "name": f"Erase {account_id}", "round_robin": True, "time_zone": "UTC",
                "agents": [{"agent_id": a, "name": a, "email": f"{a}@erase.example"} for a in agents],
                "roster": agents, "default_source": {"race_count": 1, "claim_window_seconds": 900}}  # fmt: skip

    path = tmp_path_factory.mktemp("erase") / "accounts.json"
    config = {"accounts": [account(ACCOUNT, [BROKER, AGENT]), account(OTHER, [f"erase-otto-{RUN}"])]}
    path.write_text(json.dumps(config))
    stack.seed(path)


@dataclass(frozen=True)
class Person:
    """A contact whose every detail is unique to this run (a scan of the database finds only its copies)."""

    first: str
    last: str
    email: str
    phone: str  # E.164
    words: str  # what it wrote

    @classmethod
    def new(cls, first: str) -> Person:
        tag = uuid.uuid4().hex[:8]
        phone = f"+1720{random.randint(200, 999)}{random.randint(0, 9999):04d}"  # noqa: S311 (test data)
        return cls(f"{first}{tag}", f"Quill{tag}", f"{first.lower()}.{tag}@mail.example", phone,
                   f"Looking for a loft, ref {tag}")  # fmt: skip

    @property
    def traces(self) -> set[str]:
        """Every form the details are stored in: as given, lower-cased for search, the phone's digits."""
        return {self.first, self.last, self.email, self.phone, self.phone[1:], self.words, self.first.lower(),
                self.last.lower(), self.email.split("@")[0]}  # fmt: skip


async def post_lead(stack: Stack, who: Person, account_id: str = ACCOUNT, phone: str | None = None) -> str:
    body = {"account_id": account_id, "first_name": who.first, "last_name": who.last, "email": who.email.upper(),
            "phone": phone or who.phone, "message": who.words}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def crm(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=10)


async def lead_detail(stack: Stack, lead_id: str, account_id: str = ACCOUNT) -> dict[str, Any] | None:
    async with crm(stack) as client:
        response = await client.get(f"/v1/accounts/{account_id}/leads/{lead_id}",
                                    headers=stack.auth(broker_of(account_id), "broker", account_id))  # fmt: skip
    return dict(response.json()) if response.status_code == 200 else None


def broker_of(account_id: str) -> str:
    """A broker of the office (a token of one office for another's agent is refused, decision 0079)."""
    return BROKER if account_id == ACCOUNT else f"erase-otto-{RUN}"


async def projected(stack: Stack, lead_id: str, account_id: str = ACCOUNT) -> dict[str, Any]:
    found = await eventually(lambda: lead_detail(stack, lead_id, account_id), what=f"crm-api's view of {lead_id}")
    assert found is not None
    return dict(found)


async def request_erasure(stack: Stack, body: dict[str, Any], *, key: str | None = None) -> str:
    headers = stack.auth(BROKER, "broker", ACCOUNT) | ({"Idempotency-Key": key} if key else {})
    async with crm(stack) as client:
        response = await client.post(f"/v1/accounts/{ACCOUNT}/erasures", json=body, headers=headers)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["account_id"] == ACCOUNT
    return str(answer["erasure_id"])


async def erasure_done(db: AsyncDatabase[dict[str, Any]], erasure_id: str) -> dict[str, Any]:
    """The router's record of the erasure, once it is done."""
    found = await eventually(lambda: db["router_erasures"].find_one({"_id": erasure_id, "status": "done"}),
                             what=f"erasure {erasure_id} done")  # fmt: skip
    return dict(found)


async def search(stack: Stack, text: str) -> list[str]:
    async with crm(stack) as client:
        page = await client.get(f"/v1/accounts/{ACCOUNT}/leads", params={"q": text, "limit": "200"},
                                headers=stack.auth(BROKER, "broker", ACCOUNT))  # fmt: skip
    assert page.status_code == 200, page.text
    return [row["lead_id"] for row in page.json()["items"]]


async def test_a_broker_erases_a_contact_from_every_collection_and_its_next_inquiry_is_a_new_lead(
    stack: Stack, db: AsyncDatabase[dict[str, Any]]
) -> None:
    jane, bob = Person.new("Jane"), Person.new("Bob")
    first = await post_lead(stack, jane)
    await projected(stack, first)
    new_phone = f"+1720{random.randint(200, 999)}{random.randint(0, 9999):04d}"  # noqa: S311 (test data)
    await post_lead(stack, jane, phone=new_phone)  # R1 by email: logged on the first lead, its phone now a key too
    traces = jane.traces | {new_phone, new_phone[1:]}
    kept = await post_lead(stack, bob)
    await projected(stack, kept)

    async def inquiry_logged() -> bool:
        timeline = (await lead_detail(stack, first) or {}).get("timeline", [])
        return any(e["type"] == "ActivityLogged" for e in timeline)

    await eventually(inquiry_logged, what="the repeat logged on the first lead (R1)")
    headers = stack.auth(BROKER, "broker", ACCOUNT)
    async with crm(stack) as client:
        profile = await client.put(f"/v1/accounts/{ACCOUNT}/leads/{first}/profile", headers=headers,
                                   json={"company": f"{jane.last} Lofts", "labels": ["Privacy"]})  # fmt: skip
        assert profile.status_code == 200, profile.text
        noted = await client.post(f"/v1/accounts/{ACCOUNT}/leads/{first}/activities", headers=headers,
                                  json={"action": "note", "text": f"{jane.first} prefers mornings"})  # fmt: skip
        assert noted.status_code in {200, 202}, noted.text
    await eventually(lambda: db["notifier_digest_items"].find_one({"lead_id": first}), what="the digest item")
    assert len(await holders_of(db, traces)) >= 4, "the contact is stored before the erasure"

    key = f"privacy-{RUN}"
    erasure = await request_erasure(stack, {"email": jane.email.title(), "reason": "Privacy request 1"}, key=key)
    assert await request_erasure(stack, {"email": jane.email, "reason": "Privacy request 1"}, key=key) == erasure
    record = await erasure_done(db, erasure)
    assert (record["lead_ids"], record["by_user_id"], record["reason"]) == ([first], BROKER, "Privacy request 1")

    async def notifier_forgot() -> bool:
        return await db["notifier_digest_items"].find_one({"lead_id": first}) is None

    await eventually(notifier_forgot, what="the notifier's digest item of the erased lead gone")
    # crm-api erases the row before it writes the erasure's timeline entry (the entry goes last): wait for both.
    detail = await eventually(lambda: _erased(stack, first, entry=True), what="the view erased, on the timeline too")
    assert (detail["name"], detail["email"], detail["phone"], detail["message"], detail["company"]) == (
        "", None, None, "", None)  # fmt: skip
    assert detail["status"] in {"offered", "assigned"}  # the broker's note claims it if it was offered the lead
    assert detail["labels"] == ["Privacy"], "the brokerage's own labels stay"
    summaries = [e["summary"] for e in detail["timeline"]]
    assert f"note by {BROKER}" in summaries
    assert f"Contact details erased at the request of {BROKER} (Privacy request 1)" in summaries
    assert await holders_of(db, traces) == [], "no collection holds the erased contact"
    assert len(await holders_of(db, bob.traces)) >= 3, "the other contact: router, crm-api, notifier"
    router_state = await db["router_leads"].find_one({"_id": first})
    assert router_state is not None
    assert (router_state["status"], router_state["erased"]) == (detail["status"], True)
    for text in (jane.email, jane.last, jane.phone[-7:]):
        assert await search(stack, text) == [], "search no longer finds it"
    assert first in await _listed(stack), "the erased lead is still listed, by id"
    kept_detail = await lead_detail(stack, kept)
    assert kept_detail is not None
    assert (kept_detail["email"], kept_detail["erased"]) == (bob.email, False)

    # Asked again (no key: another request): nothing left to find by email; the lead by id, as it is.
    again = await request_erasure(stack, {"email": jane.email, "lead_ids": [first], "reason": "Privacy request 1"})
    assert (await erasure_done(db, again))["lead_ids"] == [first]
    assert await holders_of(db, traces) == []
    # The contact writes again: a new lead, since the contact index forgot the address.
    comeback = await post_lead(stack, jane)
    detail = await projected(stack, comeback)
    assert (detail["name"], detail["email"], detail["erased"]) == (f"{jane.first} {jane.last}", jane.email, False)
    assert comeback in await search(stack, jane.email)


async def _erased(stack: Stack, lead_id: str, *, entry: bool = False) -> dict[str, Any] | None:
    """The lead's detail once erased (`entry`: and the erasure's entry on its timeline)."""
    detail = await lead_detail(stack, lead_id)
    if not detail or not detail["erased"]:
        return None
    return detail if not entry or any(e["type"] == "ContactErased" for e in detail["timeline"]) else None


async def _listed(stack: Stack) -> list[str]:
    async with crm(stack) as client:
        page = await client.get(f"/v1/accounts/{ACCOUNT}/leads", params={"limit": "200"},
                                headers=stack.auth(BROKER, "broker", ACCOUNT))  # fmt: skip
    assert page.status_code == 200, page.text
    return [row["lead_id"] for row in page.json()["items"]]


async def test_only_the_accounts_brokers_ask_and_nothing_outside_the_account_is_erased(
    stack: Stack, db: AsyncDatabase[dict[str, Any]]
) -> None:
    theo = Person.new("Theo")
    theirs = await post_lead(stack, theo, account_id=OTHER)
    await projected(stack, theirs, OTHER)
    url = f"/v1/accounts/{ACCOUNT}/erasures"
    body = {"email": theo.email, "reason": "Privacy request 2"}
    async with crm(stack) as client:
        for who, headers in {
            "a realtor of the account": stack.auth(AGENT, "realtor", ACCOUNT),
            "a broker of another account": stack.auth(f"erase-otto-{RUN}", "broker", OTHER),
        }.items():
            refused = await client.post(url, json=body, headers=headers)
            assert refused.status_code == 403, who
        assert (await client.post(url, json=body)).status_code == 401
        headers = stack.auth(BROKER, "broker", ACCOUNT)
        for invalid in ({"reason": "nobody named"}, {"phone": "720 555 0100", "reason": "no country code"},
                        {"email": theo.email}, {"lead_ids": ["not-a-uuid"], "reason": "r"}):  # fmt: skip
            response = await client.post(url, json=invalid, headers=headers)
            assert response.status_code == 422, invalid
            assert theo.email not in response.text, "a 422 does not echo the contact"

    unknown = await request_erasure(stack, {"email": f"nobody-{RUN}@mail.example", "reason": "Privacy request 3"})
    foreign = await request_erasure(stack, {"lead_ids": [theirs], "phone": theo.phone, "reason": "Privacy request 4"})
    assert (await erasure_done(db, unknown))["lead_ids"] == []
    assert (await erasure_done(db, foreign))["lead_ids"] == [], "another account's lead, by id or phone"
    detail = await lead_detail(stack, theirs, OTHER)
    assert detail is not None
    assert (detail["email"], detail["erased"]) == (theo.email, False)


async def test_an_operator_erases_with_leadflow_ops(stack: Stack, db: AsyncDatabase[dict[str, Any]]) -> None:
    cleo = Person.new("Cleo")
    lead = await post_lead(stack, cleo)
    await projected(stack, lead)
    env = {name: value for name, value in os.environ.items() if not name.startswith("OPS_")}
    env |= {"OPS_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap, "OPS_KAFKA__PRODUCER_IDEMPOTENCE": "false",
            "OPS_MONGO__URL": stack.mongo_url}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        OPS, "contact", "erase", "--account", ACCOUNT, "--phone", cleo.phone, "--reason", "OPS-77", "--wait", "60",
        "--json", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert (report["status"], report["lead_ids"], report["account_id"]) == ("done", [lead], ACCOUNT)
    assert report["published_to"].startswith("leads.commands.v1[")
    record = await erasure_done(db, report["erasure_id"])
    assert record["by_user_id"].startswith("ops:")
    await eventually(lambda: _erased(stack, lead), what="crm-api's view erased")

    async def digest_item_gone() -> bool:
        return await db["notifier_digest_items"].find_one({"lead_id": lead}) is None

    await eventually(digest_item_gone, what="the digest item gone")
    assert await holders_of(db, cleo.traces) == []
    assert cleo.phone not in out.decode() + err.decode(), "the tool prints no personal data"

    refused = await asyncio.create_subprocess_exec(
        OPS, "contact", "erase", "--account", ACCOUNT, "--reason", "nobody", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(refused.communicate(), timeout=60)
    assert refused.returncode == 2
    assert "--email, --phone or --lead" in err.decode()
