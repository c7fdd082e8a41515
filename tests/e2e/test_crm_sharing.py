"""Lead sharing (T1) and invitations (V4) through the running system: invite, accept, decline,
"My Realtors", transfers to accepted realtors only, all or nothing, retries, tenants and roles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_crm_api.domain.sharing import lead_row_transfer, transfer_entry, transfer_id, transfer_record
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

SHARE = "share-realty"  # round robin off: share-lee (roster position 1) holds every lead (R5)
OTHER = "share-other-realty"
SHARE_NAME = "Share Realty"
T = TypeVar("T")


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def agent(agent_id: str, *, accepted: bool = True) -> dict[str, Any]:
        return {
            "agent_id": agent_id,
            "name": agent_id,
            "email": f"{agent_id}@share.example",
            "invitation_accepted": accepted,
        }

    def account(account_id: str, name: str, agents: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "account_id": account_id,
            "name": name,
            "round_robin": False,
            "agents": agents,
            "roster": [a["agent_id"] for a in agents],
        }

    path = tmp_path_factory.mktemp("sharing") / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    account(
                        SHARE,
                        SHARE_NAME,
                        [
                            agent("share-lee"),
                            agent("share-ria", accepted=False),
                            agent("share-rob", accepted=True),
                            agent("share-dee", accepted=False),
                            agent("share-wes", accepted=False),
                        ],
                    ),
                    account(OTHER, "Other Realty", [agent("other-olga")]),
                ]
            }
        )
    )
    stack.seed(path)


def auth(stack: Stack, sub: str, role: str, account_id: str = SHARE) -> dict[str, str]:
    return stack.auth(sub, role, account_id)


def problem(response: httpx.Response, status: int) -> str:
    """The problem's detail, after checking it is one (decision 0016)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://leadflow.dev/problems/")
    return str(body["detail"])


async def on_db(stack: Stack, work: Callable[[AsyncDatabase[dict[str, Any]]], Awaitable[T]]) -> T:
    """Run `work` on the stack's database directly (to read what the router reads, or to stage a crash)."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    try:
        return await work(mongo["leadflow"])
    finally:
        await mongo.close()


async def agent_flag(stack: Stack, agent_id: str) -> bool:
    """The `invitation_accepted` the router reads for R6, straight from the shared `agents` collection.

    nx-27017 stores a `$set` bool as 1/0 (MongoDB keeps the bool; decision 0018); the router reads it
    as a truth value, so this does too, after checking it is one of those four values.
    """
    doc = await on_db(stack, lambda db: db["agents"].find_one({"_id": agent_id}))
    assert doc is not None
    flag = doc["invitation_accepted"]
    assert type(flag) in {bool, int}
    assert flag in {0, 1}
    return bool(flag)


async def new_leads(stack: Stack, client: httpx.AsyncClient, count: int) -> list[str]:
    """`count` fresh leads of SHARE, once crm-api shows them held by share-lee."""
    marker = uuid.uuid4().hex[:8]
    ids: list[str] = []
    async with httpx.AsyncClient() as intake:
        for i in range(count):
            body = {
                "account_id": SHARE,
                "first_name": f"Sam{i}",
                "last_name": f"Share{marker}",
                "email": f"sam{i}.{marker}@example.com",
                "phone": f"(415) 555-{uuid.uuid4().int % 9000 + 1000}",
            }
            response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
            assert response.status_code == 202, response.text
            ids.append(str(response.json()["event_id"]))
    broker = auth(stack, "share-broker", "broker")

    async def all_held() -> bool:
        rows = await listed(client, f"/v1/accounts/{SHARE}/leads", broker, q=f"share{marker}")
        return sorted(rows) == sorted(ids) and all(r["owner_agent_id"] == "share-lee" for r in rows.values())

    await eventually(all_held, what=f"{count} leads held by share-lee in crm-api")
    return ids


async def listed(client: httpx.AsyncClient, url: str, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = await client.get(url, headers=headers, params={"limit": "200", **params})
    assert response.status_code == 200, response.text
    return {row["lead_id"]: row for row in response.json()["items"]}


async def invite(stack: Stack, client: httpx.AsyncClient, realtor_id: str, *, answer: str | None) -> str:
    broker = auth(stack, "share-broker", "broker")
    body = {"realtor_id": realtor_id, "email": f"{realtor_id}@share.example", "name": f"Realtor {realtor_id}"}
    invited = await client.post(f"/v1/accounts/{SHARE}/invitations", headers=broker, json=body)
    assert invited.status_code == 201, invited.text
    invitation_id = str(invited.json()["invitation_id"])
    if answer is not None:
        answered = await client.post(
            f"/v1/invitations/{invitation_id}/{answer}", headers=auth(stack, realtor_id, "realtor")
        )
        assert answered.status_code == 200, answered.text
    return invitation_id


async def test_invite_accept_decline_and_my_realtors(stack: Stack, client: httpx.AsyncClient) -> None:
    broker, base = auth(stack, "share-broker", "broker"), f"/v1/accounts/{SHARE}"
    ria, rob = auth(stack, "share-ria", "realtor"), auth(stack, "share-rob", "realtor")
    body = {"realtor_id": "share-ria", "email": "ria@share.example", "name": "Ria Lopez"}
    first = await client.post(f"{base}/invitations", headers=broker, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "pending"
    invitation = first.json()["invitation_id"]
    again = await client.post(f"{base}/invitations", headers=broker, json=body)
    assert (again.status_code, again.json()["invitation_id"]) == (200, invitation), "a repeated invite is the same"
    assert "share-ria" not in (await client.get(f"{base}/realtors", headers=broker)).text, "pending is not a realtor"

    # Only the invited realtor answers; others learn nothing.
    problem(await client.post(f"/v1/invitations/{invitation}/accept", headers=rob), 404)
    problem(await client.post(f"/v1/invitations/{invitation}/accept", headers=broker), 403)
    problem(await client.post(f"/v1/invitations/{uuid.uuid4()}/accept", headers=ria), 404)
    assert await agent_flag(stack, "share-ria") is False

    accepted = await client.post(f"/v1/invitations/{invitation}/accept", headers=ria)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["answered_at"]
    assert (await client.post(f"/v1/invitations/{invitation}/accept", headers=ria)).status_code == 200, "a retry"
    assert "already accepted" in problem(await client.post(f"/v1/invitations/{invitation}/decline", headers=ria), 422)
    assert "already accepted" in problem(await client.post(f"{base}/invitations", headers=broker, json=body), 422)
    assert await agent_flag(stack, "share-ria") is True, "the router's R6 eligibility flag follows the acceptance"

    declined_id = await invite(stack, client, "share-rob", answer="decline")
    assert await agent_flag(stack, "share-rob") is False
    pending_id = await invite(stack, client, "share-dee", answer=None)

    realtors = (await client.get(f"{base}/realtors", headers=broker)).json()["items"]
    assert [(r["realtor_id"], r["name"], r["email"]) for r in realtors] == [
        ("share-ria", "Ria Lopez", "ria@share.example")
    ]
    statuses = {
        i["invitation_id"]: i["status"]
        for i in (await client.get(f"{base}/invitations", headers=broker)).json()["items"]
    }
    assert statuses == {invitation: "accepted", declined_id: "declined", pending_id: "pending"}

    reinvited = await client.post(
        f"{base}/invitations", headers=broker, json={"realtor_id": "share-rob", "email": "rob@share.example"}
    )
    assert (reinvited.status_code, reinvited.json()["status"]) == (201, "pending"), "invited again after a decline"
    assert reinvited.json()["name"] == "Realtor share-rob", "invited again without a name: the name it had stays"

    for who, headers in {
        "realtor": ria,
        "broker of another account": auth(stack, "o-broker", "broker", OTHER),
        "admin of another account": auth(stack, "o-admin", "admin", OTHER),
    }.items():
        for url in (f"{base}/invitations", f"{base}/realtors"):
            response = await client.get(url, headers=headers)
            problem(response, 403)
            assert "share-ria" not in response.text, who
        problem(await client.post(f"{base}/invitations", headers=headers, json=body), 403)


async def test_transfer_to_an_accepted_realtor_labels_both_sides_and_a_retry_applies_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    leads = await new_leads(stack, client, 2)
    realtor = f"share-r-{uuid.uuid4().hex[:6]}"
    await invite(stack, client, realtor, answer="accept")
    broker, base = auth(stack, "share-broker", "broker"), f"/v1/accounts/{SHARE}"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"lead_ids": [*leads, leads[0]], "realtor_id": realtor}  # a repeat in the selection counts once

    done = await client.post(f"{base}/lead-transfers", headers={**broker, **key}, json=body)
    assert done.status_code == 200, done.text
    result = done.json()
    assert (result["realtor_id"], result["assigned_by"], result["transferred"]) == (realtor, SHARE_NAME, 2)

    everything = await listed(client, f"{base}/leads", broker)
    assert all(everything[i]["assigned_to"] == realtor and everything[i]["transferred_at"] for i in leads), (
        'All Leads keeps them, labelled "Assigned To"'
    )
    assert not set(leads) & set(await listed(client, f"{base}/leads", broker, tab="mine")), "they leave My Leads"
    assert set(leads) <= set(await listed(client, f"{base}/leads", broker, assigned_to=realtor))
    as_realtor = auth(stack, realtor, "realtor")
    theirs = await listed(client, "/v1/realtors/me/leads", as_realtor)
    assert set(theirs) == set(leads), "the realtor's CRM has exactly the shared leads"
    assert all(theirs[i]["assigned_by"] == SHARE_NAME for i in leads), 'labelled "Assigned By"'

    detail = await client.get(f"{base}/leads/{leads[0]}", headers=as_realtor)
    assert detail.status_code == 200, "the realtor manages a shared lead like its own"
    transfers = [e for e in detail.json()["timeline"] if e["type"] == "LeadShared"]
    assert [e["summary"] for e in transfers] == [f"Transferred to Realtor {realtor} ({realtor}) by {SHARE_NAME}"]

    # The router heard of it (ShareLead): the realtor holds the lead, and its actions are the holder's.
    async def held_by_realtor() -> bool:
        rows = await listed(client, f"{base}/leads", broker, assigned_to=realtor)
        return all(rows[i]["owner_agent_id"] == realtor for i in leads)

    await eventually(held_by_realtor, what="the shared leads held by the realtor")
    acted = await client.post(f"{base}/leads/{leads[0]}/activities", headers=as_realtor, json={"action": "note"})
    assert acted.status_code == 202, acted.text

    async def logged_by_the_router() -> bool:
        record = await on_db(stack, lambda db: db["router_leads"].find_one({"_id": leads[0]}))
        return record is not None and acted.json()["event_id"] in record.get("inputs", [])

    await eventually(logged_by_the_router, what="the realtor's note applied by the router, not dead-lettered")

    retry = await client.post(f"{base}/lead-transfers", headers={**broker, **key}, json=body)
    assert retry.status_code == 200, retry.text
    assert retry.json() == result, "the same Idempotency-Key is the same transfer"
    timeline = (await client.get(f"{base}/leads/{leads[0]}", headers=broker)).json()["timeline"]
    assert len([e for e in timeline if e["type"] == "LeadShared"]) == 1, "a retry records nothing twice"
    other = await client.post(
        f"{base}/lead-transfers", headers={**broker, **key}, json={"lead_ids": leads[:1], "realtor_id": realtor}
    )
    assert "Idempotency-Key" in problem(other, 422)


async def test_refused_transfers_change_nothing(stack: Stack, client: httpx.AsyncClient) -> None:
    leads = await new_leads(stack, client, 2)
    tag = uuid.uuid4().hex[:6]
    accepted, pending, declined = f"share-a-{tag}", f"share-p-{tag}", f"share-d-{tag}"
    await invite(stack, client, accepted, answer="accept")
    await invite(stack, client, pending, answer=None)
    await invite(stack, client, declined, answer="decline")
    broker, url = auth(stack, "share-broker", "broker"), f"/v1/accounts/{SHARE}/lead-transfers"

    refusals = {pending: "has not accepted", declined: "declined", f"share-u-{tag}": "never invited"}
    for realtor, reason in refusals.items():
        detail = problem(await client.post(url, headers=broker, json={"lead_ids": leads, "realtor_id": realtor}), 422)
        assert detail.startswith("realtor_id: "), detail
        assert reason in detail, detail
    unknown = str(uuid.uuid4())
    detail = problem(
        await client.post(
            url, headers=broker, json={"lead_ids": [leads[0], unknown, leads[1]], "realtor_id": accepted}
        ),
        422,
    )
    assert detail.startswith("lead_ids: 1 not found")
    assert unknown in detail
    assert leads[0] not in detail
    strangers = {
        "broker of another account": auth(stack, "o-broker", "broker", OTHER),
        "admin of another account": auth(stack, "o-admin", "admin", OTHER),
        "the accepted realtor itself": auth(stack, accepted, "realtor"),
        "a realtor holding the leads": auth(stack, "share-lee", "realtor"),
    }
    for who, headers in strangers.items():
        response = await client.post(url, headers=headers, json={"lead_ids": leads, "realtor_id": accepted})
        assert response.status_code in {403, 404}, f"{who}: {response.status_code}"
        problem(response, response.status_code)
    bad = await client.post(url, headers=broker, json={"lead_ids": [], "realtor_id": accepted})
    problem(bad, 422)
    assert bad.json()["invalid_params"][0]["name"] == "body.lead_ids"

    # Nothing changed: held by the brokerage, in My Leads, unlabelled, no transfer on the timelines.
    base = f"/v1/accounts/{SHARE}"
    assert set(leads) <= set(await listed(client, f"{base}/leads", broker, tab="mine"))
    for realtor in (accepted, pending, declined, f"share-u-{tag}"):
        assert not await listed(client, "/v1/realtors/me/leads", auth(stack, realtor, "realtor")), realtor
    for lead_id in leads:
        row = (await client.get(f"{base}/leads/{lead_id}", headers=broker)).json()
        assert (row["owner_agent_id"], row["assigned_to"], row["assigned_by"]) == ("share-lee", None, None)
        assert not [e for e in row["timeline"] if e["type"] == "LeadShared"]

    # The control: the same leads do go to the accepted realtor, so the refusals above were the rules at work.
    control = await client.post(url, headers=broker, json={"lead_ids": leads, "realtor_id": accepted})
    assert control.status_code == 200, control.text
    assert set(await listed(client, "/v1/realtors/me/leads", auth(stack, accepted, "realtor"))) == set(leads)


async def test_a_transfer_that_crashed_half_way_is_finished_by_its_retry(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    leads = await new_leads(stack, client, 3)
    realtor = f"share-c-{uuid.uuid4().hex[:6]}"
    await invite(stack, client, realtor, answer="accept")
    key = uuid.uuid4().hex
    # Stage what a crash after the first lead leaves: the record (not done), one row and one timeline entry.
    record = transfer_record(
        transfer_id=transfer_id(SHARE, key),
        account_id=SHARE,
        realtor_id=realtor,
        realtor_name=realtor,
        lead_ids=leads,
        assigned_by=SHARE_NAME,
        by="share-broker",
        at=datetime.now(UTC),
    )

    async def crash(db: AsyncDatabase[dict[str, Any]]) -> None:
        await db["crm_transfers"].insert_one(record)
        await db["crm_leads"].update_one({"_id": leads[0]}, {"$set": lead_row_transfer(record)})
        await db["crm_timeline"].insert_one(transfer_entry(record, leads[0]))

    await on_db(stack, crash)
    broker, base = auth(stack, "share-broker", "broker"), f"/v1/accounts/{SHARE}"
    retry = await client.post(
        f"{base}/lead-transfers",
        headers={**broker, "Idempotency-Key": key},
        json={"lead_ids": leads, "realtor_id": realtor},
    )
    assert retry.status_code == 200, retry.text
    assert (retry.json()["transfer_id"], retry.json()["transferred"]) == (record["_id"], 3)
    assert datetime.fromisoformat(retry.json()["transferred_at"]) == record["at"]
    theirs = await listed(client, "/v1/realtors/me/leads", auth(stack, realtor, "realtor"))
    assert set(theirs) == set(leads), "the retry finished the leads the crash left"
    for lead_id in leads:
        timeline = (await client.get(f"{base}/leads/{lead_id}", headers=broker)).json()["timeline"]
        assert len([e for e in timeline if e["type"] == "LeadShared"]) == 1, lead_id
    stored = await on_db(stack, lambda db: db["crm_transfers"].find_one({"_id": record["_id"]}))
    assert stored is not None
    assert stored["done"]


async def test_a_realtor_on_its_own_account_is_emailed_answers_works_shared_leads_and_can_be_disconnected(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    # AgentRoof: the realtor has its own account; the brokerage invites it by email.
    realtor = f"solo-{uuid.uuid4().hex[:6]}"
    own = auth(stack, realtor, "realtor", f"{realtor}-realty")
    broker = auth(stack, "share-broker", "broker")
    address = f"{realtor}@solo.example"
    invited = await client.post(
        f"/v1/accounts/{SHARE}/invitations",
        headers=broker,
        json={"realtor_id": realtor, "email": address, "name": "Sol Oh"},
    )
    assert invited.status_code == 201, invited.text
    invitation = invited.json()["invitation_id"]

    def emailed() -> list[Any]:
        assert stack.mail is not None
        return [m for m in stack.mail.received() if m["X-Envelope-To"] == address]

    [mail] = await eventually(emailed, what="the invitation email")
    assert mail["Subject"] == f"{SHARE_NAME} invites you to receive its leads"
    body = mail.get_body(("plain",))
    assert body is not None
    assert f"/app/invitations/{invitation}" in body.get_content()

    pending = (await client.get("/v1/realtors/me/invitations", headers=own)).json()["items"]
    assert [(i["invitation_id"], i["status"]) for i in pending] == [(invitation, "pending")]
    accepted = await client.post(f"/v1/invitations/{invitation}/accept", headers=own)
    assert accepted.status_code == 200, accepted.text

    [lead_id] = await new_leads(stack, client, 1)
    moved = await client.post(
        f"/v1/accounts/{SHARE}/lead-transfers", headers=broker, json={"lead_ids": [lead_id], "realtor_id": realtor}
    )
    assert moved.status_code == 200, moved.text
    url = f"/v1/accounts/{SHARE}/leads/{lead_id}"

    async def held() -> dict[str, Any] | None:
        response = await client.get(url, headers=own)  # the brokerage's lead, from the realtor's own account
        return response.json() if response.status_code == 200 and response.json()["owner_agent_id"] == realtor else None

    opened = await eventually(held, what="the shared lead, opened by the realtor from its own account")
    assert opened["assigned_to"] == realtor
    noted = await client.post(f"{url}/activities", headers=own, json={"action": "note"})
    assert (noted.status_code, noted.json()["claim"]) == (202, "holder")
    others = await new_leads(stack, client, 1)
    assert (await client.get(f"/v1/accounts/{SHARE}/leads/{others[0]}", headers=own)).status_code == 404
    assert (await client.get(f"/v1/accounts/{SHARE}/leads", headers=own)).status_code == 403
    brokerage_view = (await client.get(url, headers=broker)).json()
    assert (brokerage_view["assigned_to"], brokerage_view["owner_agent_id"]) == (realtor, realtor)

    # The realtor fills in the lead's profile, but the brokerage's labels are the brokerage's: a new one is refused
    # (it would be created in the brokerage's account), and the labels the lead has stay as they are (S4).
    label = f"From {realtor}"
    refused_label = await client.put(f"{url}/profile", headers=own, json={"labels": [label], "company": "Sol Co"})
    assert "account change its labels" in problem(refused_label, 403)
    labels = (await client.get(f"/v1/accounts/{SHARE}/labels", headers=broker)).json()["items"]
    assert label not in [item["name"] for item in labels], "no label was created in the brokerage's account"
    kept = await client.put(f"{url}/profile", headers=own, json={"labels": opened["labels"], "company": "Sol Co"})
    assert kept.status_code == 200, kept.text
    assert (await client.get(url, headers=broker)).json()["company"] == "Sol Co"

    # Disconnected: no more transfers; the lead already handed over stays the realtor's.
    gone = await client.delete(f"/v1/accounts/{SHARE}/realtors/{realtor}", headers=broker)
    assert (gone.status_code, gone.json()["status"]) == (200, "disconnected")
    refused = await client.post(
        f"/v1/accounts/{SHARE}/lead-transfers", headers=broker, json={"lead_ids": others, "realtor_id": realtor}
    )
    assert "disconnected" in problem(refused, 422)
    assert (await client.get(url, headers=own)).status_code == 200
    again = await client.post(
        f"/v1/accounts/{SHARE}/invitations", headers=broker, json={"realtor_id": realtor, "email": address}
    )
    assert (again.status_code, again.json()["status"]) == (201, "pending")
    await eventually(lambda: len(emailed()) == 2, what="the second invitation's email")


async def test_a_brokerage_withdraws_an_unanswered_invitation_and_a_realtor_who_joined_leaves(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    # Decision 0108, over HTTP: each ends the router's R6 flag; the brokerage may invite again.
    broker, wes = auth(stack, "share-broker", "broker"), auth(stack, "share-wes", "realtor")
    first = await invite(stack, client, "share-wes", answer=None)
    other_office = await client.delete(
        f"/v1/accounts/{OTHER}/invitations/{first}", headers=auth(stack, "other-broker", "broker", OTHER)
    )
    assert problem(other_office, 404) == "No such invitation."
    withdrawn = await client.delete(f"/v1/accounts/{SHARE}/invitations/{first}", headers=broker)
    assert (withdrawn.status_code, withdrawn.json()["status"]) == (200, "withdrawn"), withdrawn.text
    assert "withdrew" in problem(await client.post(f"/v1/invitations/{first}/accept", headers=wes), 422)
    assert await agent_flag(stack, "share-wes") is False

    again = await invite(stack, client, "share-wes", answer="accept")
    assert again == first, "one invitation per brokerage and realtor, sent afresh"

    def emailed() -> list[str]:
        assert stack.mail is not None
        return [
            body.get_content()
            for m in stack.mail.received()
            if m["X-Envelope-To"] == "share-wes@share.example" and (body := m.get_body(("plain",))) is not None
        ]

    await eventually(lambda: len(emailed()) == 2, what="both invitations' emails")
    assert all("answered for 30 days" in text for text in emailed())
    assert await agent_flag(stack, "share-wes") is True
    assert "accepted" in problem(await client.delete(f"/v1/accounts/{SHARE}/invitations/{first}", headers=broker), 422)

    left = await client.post(f"/v1/invitations/{first}/leave", headers=wes)
    assert (left.status_code, left.json()["status"]) == (200, "left"), left.text
    assert await agent_flag(stack, "share-wes") is False
    realtors = (await client.get(f"/v1/accounts/{SHARE}/realtors", headers=broker)).json()["items"]
    assert "share-wes" not in [r["realtor_id"] for r in realtors]
    [lead_id] = await new_leads(stack, client, 1)
    refused = await client.post(
        f"/v1/accounts/{SHARE}/lead-transfers", headers=broker, json={"lead_ids": [lead_id], "realtor_id": "share-wes"}
    )
    assert "left this brokerage" in problem(refused, 422)
