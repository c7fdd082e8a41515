"""crm-api through the running system: bearer auth, tenant and realtor scoping, problem details,
the V1 list's filters/search/sort/cursors, V3 detail with offers and timeline, V2, claim actions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord, eventually, publish_envelopes, records_to_end
from leadflow_devstack.tokens import bearer, dev_token
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

RACE = "crm-race-realty"  # round robin on, two agents race for each lead
LIST = "crm-list-realty"  # round robin off: roster position 1 gets every lead (R5)
RACE_AGENTS = ("crm-ana", "crm-ben", "crm-cy")
CLAIMS = "crm-claims-realty"  # round robin on, two agents race; agents with names
NAMES = {"crm-dee": "Dee Fox", "crm-eli": "Eli Gray"}


def _account(account_id: str, agents: tuple[str, ...], *, round_robin: bool) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": account_id,
        "round_robin": round_robin,
        "time_zone": "UTC",
        "agents": [{"agent_id": a, "name": a, "email": f"{a}@crm.example", "time_zone": "UTC"} for a in agents],
        "roster": list(agents),
        "sources": [{"name": "Website", "race_count": 2, "claim_window_seconds": 600}],
    }


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("crm") / "accounts.json"
    config = {
        "accounts": [
            _account(RACE, RACE_AGENTS, round_robin=True),
            _account(LIST, ("crm-lee", "crm-max"), round_robin=False),
            _account(CLAIMS, tuple(NAMES), round_robin=True)
            | {"agents": [{"agent_id": a, "name": n, "email": f"{a}@crm.example"} for a, n in NAMES.items()]},
        ]
    }
    path.write_text(json.dumps(config))
    stack.seed(path)


async def post_lead(stack: Stack, account_id: str, first: str, last: str, phone: str) -> str:
    body = {
        "account_id": account_id,
        "first_name": first,
        "last_name": last,
        "phone": phone,
        "email": f"{first}.{last}@Example.com",
    }
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://leadflow.dev/problems/")
    assert problem["title"]
    assert problem["detail"]
    return problem


async def detail_when(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], what: str, ready: Any
) -> dict[str, Any]:
    async def poll() -> dict[str, Any] | None:
        response = await client.get(url, headers=headers)
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return body if body and ready(body) else None

    found = await eventually(poll, what=what)
    assert found is not None
    return dict(found)


async def test_requests_without_a_valid_token_get_401_with_www_authenticate(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    url = f"/v1/accounts/{LIST}/leads"
    tokens = {
        "none": None,
        "garbage": "not.a.jwt",
        "expired": dev_token("b", "broker", LIST, key=stack.signing_key, now=now - timedelta(hours=2)),
        "wrong audience": dev_token("b", "broker", LIST, key=stack.signing_key, audience="someone-else"),
        "bad signature": dev_token("b", "broker", LIST, key="another-key-of-at-least-32-bytes-long"),
        "unknown role": dev_token("b", "owner", LIST, key=stack.signing_key),  # type: ignore[arg-type]
    }
    for why, token in tokens.items():
        response = await client.get(url, headers=bearer(token) if token else {})
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer "), why
    ok = await client.get(url, headers=stack.auth("b", "broker", LIST))
    assert ok.status_code == 200, "the same request with a valid token must pass, or the 401s prove nothing"


async def test_other_tenants_and_other_realtors_get_403_or_404_and_no_data(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex[:8]
    lead_id = await post_lead(stack, LIST, "Iso", f"late-{marker}", f"(212) 555-{uuid.uuid4().int % 9000 + 1000}")
    detail_url = f"/v1/accounts/{LIST}/leads/{lead_id}"
    broker = stack.auth("crm-broker", "broker", LIST)
    lead = await detail_when(client, detail_url, broker, "the lead in the brokerage view", lambda _d: True)
    holder = lead["owner_agent_id"]
    assert holder == "crm-lee"  # roster position 1

    holder_realtor = stack.auth(holder, "realtor", LIST)
    assert (await client.get(detail_url, headers=holder_realtor)).status_code == 200
    mine = (await client.get("/v1/realtors/me/leads?limit=200", headers=holder_realtor)).json()
    assert lead_id in [i["lead_id"] for i in mine["items"]]

    # A token naming an account its agent is not of is no valid sign-in at all (401, decision 0079); the others
    # are signed in, and refused what is not theirs.
    strangers = {
        "broker of another account": (stack.auth("x-broker", "broker", "other-realty"), {403, 404}),
        "admin of another account": (stack.auth("x-admin", "admin", "other-realty"), {403, 404}),
        "the agent with another account's token": (stack.auth(holder, "realtor", "other-realty"), {401}),
        "another realtor of the account": (stack.auth("crm-max", "realtor", LIST), {403, 404}),
    }
    calls = {
        "list": ("GET", f"/v1/accounts/{LIST}/leads?limit=200", None),
        "detail": ("GET", detail_url, None),
        "activity": ("POST", f"{detail_url}/activities", {"action": "note"}),
        "profile": ("PUT", f"{detail_url}/profile", {"company": "Stolen Inc"}),
        "labels": ("GET", f"/v1/accounts/{LIST}/labels", None),
        "offices": ("GET", f"/v1/accounts/{LIST}/offices", None),
        "office transfer": (
            "POST",
            f"/v1/accounts/{LIST}/office-transfers",
            {"lead_id": lead_id, "to_account_id": "other-realty"},
        ),
    }
    for who, (headers, refused) in strangers.items():
        for name, (method, url, body) in calls.items():
            response = await client.request(method, url, headers=headers, json=body)
            assert response.status_code in refused, f"{who} / {name}: {response.status_code}"
            assert_problem(response, response.status_code)
            assert lead_id not in response.text, f"{who} / {name} leaked the lead"
            assert marker not in response.text, f"{who} / {name} leaked the contact"
        own = await client.get("/v1/realtors/me/leads?limit=200", headers=headers)
        assert lead_id not in own.text, f"{who}: /v1/realtors/me/leads leaked the lead"
    # The brokerage list is for brokers and admins of the account, not for its realtors.
    assert_problem(await client.get(f"/v1/accounts/{LIST}/leads", headers=holder_realtor), 403)


async def test_list_filters_search_sort_and_cursor_pages(stack: Stack, client: httpx.AsyncClient) -> None:
    marker = uuid.uuid4().hex[:6]
    phones = [f"(646) 555-{uuid.uuid4().int % 9000 + 1000}" for _ in range(5)]
    started = datetime.now(UTC) - timedelta(seconds=1)
    ids = [await post_lead(stack, LIST, f"Pat{i}", f"Zed{marker}", phones[i]) for i in range(5)]
    broker = stack.auth("crm-broker", "broker", LIST)
    base = f"/v1/accounts/{LIST}/leads"

    async def rows(params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await client.get(base, headers=broker, params={**params, **({"cursor": cursor} if cursor else {})})
            assert page.status_code == 200, page.text
            body = page.json()
            items += body["items"]
            if not (cursor := body["next_cursor"]):
                return items

    async def found(params: dict[str, str]) -> list[str]:
        return [row["lead_id"] for row in await rows(params)]

    search = {"q": f"ZED{marker}".lower().upper(), "limit": "2"}  # case-insensitive substring of the last name
    await eventually(lambda: _all_listed(found, search, ids), what="five leads found by name")
    # Keyset pages in every order: each lead once, in (sort key, id) order, even when leads
    # routed in one batch share a millisecond.
    orders = [
        ("created_asc", "created_at", "2"),
        ("created_desc", "created_at", "2"),
        ("last_activity_desc", "last_activity_at", "1"),
        ("last_activity_asc", "last_activity_at", "3"),
    ]
    for sort, key, limit in orders:
        listed = await rows({**search, "sort": sort, "limit": limit})
        assert sorted(r["lead_id"] for r in listed) == sorted(ids), sort
        keys = [(datetime.fromisoformat(r[key]), r["lead_id"]) for r in listed]
        assert keys == sorted(keys, reverse=sort.endswith("desc")), sort
    newest_first = await found(search)
    assert await found({"q": f"pat3.zed{marker}@ex"}) == [ids[3]], "email prefix"
    digits = "".join(ch for ch in phones[2] if ch.isdigit())[-7:]
    assert ids[2] in await found({"q": digits}), "phone digits"
    assert await found({**search, "status": "assigned", "owner": "crm-lee"}) == newest_first
    assert await found({**search, "owner": "crm-max"}) == []
    assert await found({**search, "status": "offered"}) == []
    assert await found({**search, "source": "Website"}) == newest_first
    assert await found({**search, "created_from": started.isoformat()}) == newest_first
    assert await found({**search, "created_to": started.isoformat()}) == []
    assert await found({**search, "tab": "mine"}) == newest_first

    first = (await client.get(base, headers=broker, params={**search, "sort": "created_asc"})).json()
    other_order = await client.get(base, headers=broker, params={**search, "cursor": first["next_cursor"]})
    assert_problem(other_order, 422)
    invalid = await client.get(base, headers=broker, params={"limit": "0", "created_from": "2024-01-01"})
    bad = assert_problem(invalid, 422)
    assert {p["name"] for p in bad["invalid_params"]} == {"query.limit", "query.created_from"}
    assert all(p["reason"] for p in bad["invalid_params"])
    assert_problem(await client.get("/v1/nothing-here", headers=broker), 404)


async def _all_listed(found: Any, params: dict[str, str], ids: list[str]) -> bool:
    return sorted(await found(params)) == sorted(ids)


async def test_offer_detail_activities_claim_and_timeline(
    stack: Stack, client: httpx.AsyncClient, wait_for_record: WaitForRecord
) -> None:
    lead_id = await post_lead(stack, RACE, "Rae", f"race-{uuid.uuid4().hex[:6]}", "(312) 555-0199")
    detail_url = f"/v1/accounts/{RACE}/leads/{lead_id}"
    broker = stack.auth("crm-race-broker", "broker", RACE)
    offered = await detail_when(client, detail_url, broker, "two open offers", lambda d: len(d["open_offers"]) == 2)
    assert offered["status"] == "offered"
    assert offered["owner_agent_id"] is None
    racers = sorted(o["agent_id"] for o in offered["open_offers"])
    assert all(datetime.fromisoformat(o["deadline"]) > datetime.now(UTC) for o in offered["open_offers"])
    outsider = next(a for a in RACE_AGENTS if a not in racers)
    winner, loser = racers
    as_winner, as_loser = stack.auth(winner, "realtor", RACE), stack.auth(loser, "realtor", RACE)
    assert (await client.get(detail_url, headers=stack.auth(outsider, "realtor", RACE))).status_code == 404
    mine = (await client.get("/v1/realtors/me/leads?status=offered&limit=200", headers=as_loser)).json()
    assert lead_id in [i["lead_id"] for i in mine["items"]], "an offered realtor sees the lead it may claim"

    # A view is recorded and published, but claims nothing.
    viewed = await client.post(f"{detail_url}/activities", headers=as_loser, json={"action": "view"})
    assert viewed.status_code == 202, viewed.text
    view_id = viewed.json()["event_id"]

    def is_view(record: ConsumerRecord[bytes, bytes]) -> bool:
        return bool(json.loads(record.value)["event_id"] == view_id)

    record = await wait_for_record(topics.LEADS_ACTIVITY, is_view)
    assert record.key == RACE.encode()
    activity = LeadActivity.model_validate_json(record.value)
    payload = activity.payload
    assert (str(payload.lead_id), payload.agent_id, payload.action) == (lead_id, loser, "view")
    after_view = (await client.get(detail_url, headers=broker)).json()
    assert after_view["status"] == "offered"
    assert any(e["event_id"] == view_id and e["action"] == "view" for e in after_view["timeline"])
    bad = assert_problem(
        await client.post(f"{detail_url}/activities", headers=as_winner, json={"action": "inquiry"}), 422
    )
    assert bad["invalid_params"][0]["name"] == "body.action"

    called = await client.post(f"{detail_url}/activities", headers=as_winner, json={"action": "call"})
    assert called.status_code == 202, called.text

    def claim_projected(detail: dict[str, Any]) -> bool:
        # crm-api writes an event's row change before its timeline entry (the entry marks the event projected,
        # so it goes last), and projects LeadClaimed before the loser's OfferWithdrawn: the row can show the
        # owner before the withdrawal is on the timeline.
        withdrawn = any(e["type"] == "OfferWithdrawn" for e in detail["timeline"])
        return bool(detail["owner_agent_id"] == winner and withdrawn)

    claimed = await detail_when(client, detail_url, broker, "the claim and the withdrawal", claim_projected)
    assert claimed["status"] == "assigned"
    assert claimed["open_offers"] == []
    types = [e["type"] for e in claimed["timeline"]]
    assert types.count("LeadOffered") == 2
    assert {"LeadActivity", "LeadClaimed", "OfferWithdrawn"} <= set(types)
    times = [e["occurred_at"] for e in claimed["timeline"]]
    assert times == sorted(times), "oldest first"
    assert (await client.get(detail_url, headers=as_winner)).status_code == 200
    assert (await client.get(detail_url, headers=as_loser)).status_code == 404, "the withdrawn offer hides the lead"


async def test_actions_that_cannot_claim_are_answered_and_logged_never_dead_lettered(
    stack: Stack, client: httpx.AsyncClient, wait_for_record: WaitForRecord
) -> None:
    lead_id = await post_lead(stack, CLAIMS, "Cal", f"claims-{uuid.uuid4().hex[:6]}", "(312) 555-0142")
    url = f"/v1/accounts/{CLAIMS}/leads/{lead_id}"
    broker = stack.auth("crm-claims-broker", "broker", CLAIMS)
    offered = await detail_when(client, url, broker, "two open offers", lambda d: len(d["open_offers"]) == 2)
    winner, loser = sorted(o["agent_id"] for o in offered["open_offers"])
    as_winner, as_loser = stack.auth(winner, "realtor", CLAIMS), stack.auth(loser, "realtor", CLAIMS)

    async def act(headers: dict[str, str], action: str) -> httpx.Response:
        return await client.post(f"{url}/activities", headers=headers, json={"action": action})

    # The broker's note while the lead is offered: logged, claims nothing, and says so.
    note = await act(broker, "note")
    assert note.status_code == 202, note.text
    answer = note.json()
    assert (answer["claim"], answer["detail"]) == ("none", "You were not offered this lead; nobody holds the lead now.")
    called = await act(as_winner, "call")
    assert called.status_code == 202, called.text
    assert called.json()["claim"] == "requested"
    assert called.json()["detail"].startswith("Your offer is open until ")

    def claim_projected(detail: dict[str, Any]) -> bool:
        # The loser's answer below says how its offer ended, which crm-api reads from the timeline: the row can
        # show the owner before the loser's OfferWithdrawn is on the timeline (see the test above).
        withdrawn = any(e["type"] == "OfferWithdrawn" and e["agent_id"] == loser for e in detail["timeline"])
        return bool(detail["owner_agent_id"] == winner and withdrawn)

    await detail_when(client, url, broker, "the claim and the loser's withdrawal on the timeline", claim_projected)

    # The loser's offer was withdrawn: an accept is answered with how it ended and who holds the lead.
    lost = assert_problem(await act(as_loser, "accept"), 409)
    assert lost["type"].endswith("/claim-not-possible")
    assert lost["detail"].startswith("This lead is no longer yours to work: Your offer was withdrawn at ")
    assert lost["detail"].endswith(f"; the lead is held by {NAMES[winner]}.")
    nothing = assert_problem(await act(broker, "accept"), 409)
    not_offered = f"You were not offered this lead; the lead is held by {NAMES[winner]}."
    assert nothing["detail"] == f"Nothing to accept: {not_offered}"
    held = await act(as_winner, "note")
    assert (held.status_code, held.json()["claim"]) == (202, "holder")

    # A claim that reaches the router after the offer ended (crm-api's view trailing it): the router
    # logs it with the reason, crm-api shows that on the timeline, and nothing is dead-lettered.
    late = LeadActivity.create(
        account_id=CLAIMS,
        occurred_at=datetime.now(UTC),
        payload=LeadActivityPayload(lead_id=uuid.UUID(lead_id), agent_id=loser, action=ActivityAction.CALL),
    )
    await publish_envelopes(stack.bootstrap, topics.LEADS_ACTIVITY, [late])
    refused = f"call by {loser} claimed nothing: the offer to {loser} was withdrawn; the lead is held by {winner}"
    detail = await detail_when(
        client,
        url,
        broker,
        "the refused claim on the timeline",
        lambda d: any(e["summary"] == refused for e in d["timeline"]),
    )
    assert detail["owner_agent_id"] == winner
    broker_note = note.json()["event_id"]
    assert [e["summary"] for e in detail["timeline"] if e["event_id"] == broker_note] == ["note by crm-claims-broker"]

    def broker_note_logged(record: ConsumerRecord[bytes, bytes]) -> bool:
        event = ROUTING_EVENT.validate_json(record.value or b"")
        return (
            isinstance(event, ActivityLogged)
            and str(event.payload.lead_id) == lead_id
            and (event.payload.by_agent_id == "crm-claims-broker")
        )

    await wait_for_record(topics.LEADS_EVENTS, broker_note_logged)
    dead = await records_to_end(stack.bootstrap, topics.dlq(topics.LEADS_ACTIVITY))
    assert not [r for r in dead if lead_id.encode() in (r.value or b"")], "an action on the lead was dead-lettered"


async def test_the_lead_page_has_what_the_lead_said_who_holds_it_and_the_work_done_on_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    body = {
        "account_id": CLAIMS,
        "first_name": "Page",
        "email": f"page-{uuid.uuid4().hex[:8]}@example.com",
        "message": "Looking for a 3-bedroom near the park.",
        "site_host": "www.claims.example",
        "utm": {"utm_source": "newsletter", "utm_campaign": "spring"},
    }
    async with httpx.AsyncClient() as intake:
        posted = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["event_id"])
    url = f"/v1/accounts/{CLAIMS}/leads/{lead_id}"
    broker = stack.auth("crm-claims-broker", "broker", CLAIMS)
    offered = await detail_when(client, url, broker, "the race", lambda d: len(d["open_offers"]) == 2)
    assert (offered["message"], offered["site_host"]) == (body["message"], "www.claims.example")
    assert offered["utm"] == {"utm_source": "newsletter", "utm_campaign": "spring"}
    assert (offered["crm_status"], offered["owner_name"]) == ("new", None)
    holder = offered["open_offers"][0]["agent_id"]
    other = next(a for a in NAMES if a != holder)
    as_holder = stack.auth(holder, "realtor", CLAIMS)

    async def act(payload: dict[str, Any]) -> httpx.Response:
        return await client.post(f"{url}/activities", headers=as_holder, json=payload)

    called = await act({"action": "call", "call_outcome": "left_voicemail", "text": "Asked for a callback."})
    assert called.status_code == 202, called.text
    held = await detail_when(client, url, broker, "the claim", lambda d: d["owner_agent_id"] == holder)
    assert held["owner_name"] == NAMES[holder], "Assigned To by name"
    due = "2026-12-01T17:00:00-05:00"
    assert (await act({"action": "note", "text": "Pre-approved for $600k."})).status_code == 202
    assert (await act({"action": "task", "task": {"title": "Send comps", "due_at": due}})).status_code == 202
    bad = await act({"action": "note", "call_outcome": "connected"})
    assert bad.status_code == 422
    assert (await act({"action": "task", "task": {"title": "x", "due_at": "tomorrow"}})).status_code == 422

    # RealHub's qualifying actions: an email to the contact, sent by leadflow, replies going to the agent.
    wrote = await act({"action": "email", "message": {"subject": "Your viewing", "body": "Saturday at 10?"}})
    assert wrote.status_code == 202, wrote.text

    def to_contact() -> list[Any]:
        assert stack.mail is not None
        return [m for m in stack.mail.received() if m["X-Envelope-To"] == body["email"]]

    [mail] = await eventually(to_contact, what="the agent's email to the contact")
    assert (mail["Subject"], mail["Reply-To"]) == ("Your viewing", f"{holder}@crm.example")
    assert "Saturday at 10?" in mail.get_body(("plain",)).get_content()
    no_text = await act({"action": "sms", "message": {"body": "Hi"}})
    assert no_text.status_code == 422, "the contact gave no phone"
    outsider = await client.post(
        f"{url}/activities", headers=broker, json={"action": "email", "message": {"body": "Hello"}}
    )
    assert outsider.status_code == 409, "only the holder writes to the contact"

    set_status = await client.put(f"{url}/crm-status", headers=as_holder, json={"status": "appointment_set"})
    assert set_status.status_code == 200, set_status.text
    not_holder = await client.put(
        f"{url}/crm-status", headers=stack.auth(other, "realtor", CLAIMS), json={"status": "lost"}
    )
    assert not_holder.status_code in {403, 404}
    assert (await client.put(f"{url}/crm-status", headers=broker, json={"status": "sold"})).status_code == 422

    page = (await client.get(url, headers=broker)).json()
    assert page["crm_status"] == "appointment_set", "the holder's status is on its own lead (not another it holds)"
    summaries = [e["summary"] for e in page["timeline"]]
    assert f"call by {holder} (left voicemail): Asked for a callback." in summaries
    assert f"note by {holder}: Pre-approved for $600k." in summaries
    assert f"task by {holder}: Send comps, due 2026-12-01 22:00 UTC" in summaries
    assert f"CRM status set to appointment set by {holder}" in summaries
    [task] = [e for e in page["timeline"] if e.get("action") == "task"]
    assert task["content"]["task"]["title"] == "Send comps"
    listed = (await client.get(f"/v1/accounts/{CLAIMS}/leads", headers=broker, params={"limit": "200"})).json()
    row = next(r for r in listed["items"] if r["lead_id"] == lead_id)
    assert (row["owner_name"], row["crm_status"]) == (NAMES[holder], "appointment_set")
    assert row["referral_fee_percent"] == 0.0

    # ClientBAY's lead users: the owner assigns another agent, who then sees and works the lead.
    users_url = f"{url}/users"
    as_other = stack.auth(other, "realtor", CLAIMS)
    assert (await client.get(url, headers=as_other)).status_code == 404
    refused_users = await client.put(users_url, headers=as_other, json={"user_ids": [other]})
    assert refused_users.status_code in {403, 404}
    unknown = await client.put(users_url, headers=as_holder, json={"user_ids": [other, "nobody-here"]})
    assert unknown.json()["invalid_params"] == [{"name": "body.user_ids.1", "reason": "not a user of this account"}]
    assigned = await client.put(users_url, headers=as_holder, json={"user_ids": [other]})
    assert (assigned.status_code, assigned.json()) == (200, {"user_ids": [other]})
    seen = (await client.get(url, headers=as_other)).json()
    assert (seen["assigned_users"], seen["owner_agent_id"]) == ([other], holder)
    note = {"action": "note", "text": "Called the bank."}
    helped = await client.post(f"{url}/activities", headers=as_other, json=note)
    assert (helped.status_code, helped.json()["claim"]) == (202, "none"), "a lead user works it; the owner keeps it"
