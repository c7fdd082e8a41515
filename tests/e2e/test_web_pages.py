"""The web app's pages over HTTP, as an attacker or a careless user would meet them (issue 12, bad input):
sign-in and its CSRF, forged or missing form tokens, expired sessions, other tenants' ids in URLs, open
redirects, and form errors shown next to the field. The browser flows are in test_web_browser.py."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from leadflow_crm_api.answer_headers import PAGE_POLICY
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

WEB = "web-realty"  # round robin on: two agents race for each lead
OTHER = "web-other-realty"
AGENTS = {"web-broker": "Wen Broker", "web-ann": "Ann Web", "web-bo": "Bo Web"}


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    def account(account_id: str, agents: dict[str, str]) -> dict[str, Any]:
        return {"account_id": account_id, "name": account_id.replace("-", " ").title(), "round_robin": True,
                # The broker takes no round-robin leads: the racers are always the two agents.
                "agents": [{"agent_id": a, "name": n, "email": f"{a}@web.example",
                            "round_robin": not a.endswith("broker")} for a, n in agents.items()],
                "roster": list(agents),
                "staff": [{"user_id": f"{account_id}-ada", "name": "Ada Admin", "email": f"ada@{account_id}.example",
                           "role": "admin"}],
                "sources": [{"name": "Website", "race_count": 2, "claim_window_seconds": 3600}]}  # fmt: skip

    path = tmp_path_factory.mktemp("web") / "accounts.json"
    path.write_text(json.dumps({"accounts": [account(WEB, AGENTS), account(OTHER, {"web-otto": "Otto"})]}))
    stack.seed(path)


@pytest_asyncio.fixture
async def browser_like(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps cookies and does not follow redirects, so each step is visible."""
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), follow_redirects=False, timeout=30) as client:
        yield client


CSRF = re.compile(r'name="csrf" value="([^"]*)"')
CODES = {"sign_in", "session_ended", "token_expired", "token_refused"}  # why the sign-in page opened (S4)


async def sign_in(client: httpx.AsyncClient, account_id: str, user: str, role: str) -> None:
    page = await client.get(f"/app/sign-in?account={account_id}")
    assert page.status_code == 200
    nonce = CSRF.search(page.text)
    assert nonce is not None
    signed = await client.post("/app/sign-in", data={"csrf": nonce.group(1), "user": f"{account_id}|{user}|{role}"})
    assert signed.status_code == 303, signed.text
    assert "leadflow_session" in signed.cookies


async def post_lead(stack: Stack, account_id: str = WEB) -> str:
    body = {
        "account_id": account_id,
        "first_name": "Wendy",
        "last_name": f"Q{uuid.uuid4().hex[:6]}",
        "email": f"wendy-{uuid.uuid4().hex[:8]}@example.com",
    }
    async with httpx.AsyncClient() as intake:
        posted = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    return str(posted.json()["event_id"])


async def detail_now(stack: Stack, lead_id: str, account_id: str = WEB) -> dict[str, Any]:
    headers = stack.auth("web-broker" if account_id == WEB else "web-otto", "broker", account_id)  # one of the office
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
        found: dict[str, Any] = (await api.get(f"/v1/accounts/{account_id}/leads/{lead_id}", headers=headers)).json()
    return found


async def offered(stack: Stack, lead_id: str, account_id: str = WEB, racers: int = 2) -> dict[str, Any]:
    """The lead once offered to all its racers, in the row and on the timeline (written one after the other)."""

    async def settled() -> dict[str, Any] | None:
        found = await detail_now(stack, lead_id, account_id)
        types = [e["type"] for e in found.get("timeline", [])]
        return found if len(found.get("open_offers", [])) == racers and types == ["LeadOffered"] * racers else None

    return await eventually(settled, what="the lead offered to its racers")  # type: ignore[no-any-return]


async def test_without_a_session_a_page_sends_you_to_sign_in_and_back(browser_like: httpx.AsyncClient) -> None:
    target = f"/app/accounts/{WEB}/leads"
    bounced = await browser_like.get(target)
    assert bounced.status_code == 303
    assert bounced.headers["location"].startswith("/app/sign-in?next=%2Fapp%2Faccounts%2Fweb-realty%2Fleads")
    page = await browser_like.get(bounced.headers["location"] + f"&account={WEB}")
    nonce = CSRF.search(page.text)
    assert nonce is not None
    assert "Wen Broker" in page.text, "the development sign-in lists the sample users"
    assert f'value="{WEB}|{WEB}-ada|admin"' in page.text, "and the account's admins"
    signed = await browser_like.post(
        "/app/sign-in", data={"csrf": nonce.group(1), "next": target, "user": f"{WEB}|web-broker|broker"}
    )
    assert signed.headers["location"] == target
    listed = await browser_like.get(target)
    assert listed.status_code == 200
    assert "All Leads" in listed.text
    everyone = await browser_like.get("/app/sign-in")  # the first accounts' users: admins among them are no 500
    assert everyone.status_code == 200


async def test_a_sign_in_without_its_forms_token_is_refused_and_an_outside_next_is_ignored(
    browser_like: httpx.AsyncClient,
) -> None:
    refused = await browser_like.post("/app/sign-in", data={"csrf": "guess", "user": f"{WEB}|web-broker|broker"})
    assert refused.status_code == 403
    assert "leadflow_session" not in refused.cookies
    assert "sign-in form expired" in refused.text
    for outside in ("https://evil.example/", "//evil.example/app/", "/app/\\evil"):
        page = await browser_like.get("/app/sign-in")  # each sign-in uses up its form's token
        nonce = CSRF.search(page.text)
        assert nonce is not None
        signed = await browser_like.post(
            "/app/sign-in", data={"csrf": nonce.group(1), "next": outside, "user": f"{WEB}|web-broker|broker"}
        )
        assert signed.headers["location"] == f"/app/accounts/{WEB}/leads", outside


async def test_a_forged_or_missing_form_token_changes_nothing(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    lead_id = await post_lead(stack)
    detail = await offered(stack, lead_id)
    agent = detail["open_offers"][0]["agent_id"]
    await sign_in(browser_like, WEB, agent, "realtor")
    url = f"/app/accounts/{WEB}/leads/{lead_id}/actions"
    for form in ({"action": "accept"}, {"action": "accept", "csrf": "0" * 40}):
        refused = await browser_like.post(url, data=form)
        assert refused.status_code == 403, refused.text
        assert "did not come from leadflow" in refused.text
    after = await detail_now(stack, lead_id)
    assert [e["type"] for e in after["timeline"]] == [e["type"] for e in detail["timeline"]], "nothing written"


async def test_an_expired_session_signs_in_again(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    old = jwt.encode(
        {
            "sub": "web-broker",
            "role": "broker",
            "account_id": WEB,
            "aud": "leadflow-crm-api",
            "exp": datetime.now(UTC) - timedelta(hours=1),
        },
        stack.signing_key,
        algorithm="HS256",
    )
    browser_like.cookies.set("leadflow_session", old, path="/app")
    bounced = await browser_like.get(f"/app/accounts/{WEB}/leads")
    assert bounced.status_code == 303
    assert bounced.headers["location"].endswith("&why=session_ended"), "a code, never words, in the link (S4)"
    page = await browser_like.get(bounced.headers["location"])
    assert '<p class="error" role="alert">Your session has ended; sign in again.</p>' in page.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/app/accounts/{OTHER}/leads", 403),  # another tenant's list
        (f"/app/accounts/{WEB}/leads/{uuid.UUID(int=7)}", 404),  # no such lead (a fixed id: the same test on every run)
        (f"/app/accounts/{WEB}/leads/not%20an%20id", 404),
        ("/app/no-such-page", 404),
    ],
)
async def test_other_tenants_and_unknown_ids_get_a_page_never_data_or_a_500(
    browser_like: httpx.AsyncClient, path: str, status: int
) -> None:
    await sign_in(browser_like, WEB, "web-broker", "broker")
    response = await browser_like.get(path)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>" in response.text


async def test_another_offices_lead_in_the_url_is_not_shown(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    foreign = await post_lead(stack, OTHER)
    await offered(stack, foreign, OTHER, racers=1)
    await sign_in(browser_like, WEB, "web-broker", "broker")
    for path in (f"/app/accounts/{OTHER}/leads/{foreign}", f"/app/accounts/{WEB}/leads/{foreign}"):
        response = await browser_like.get(path)
        assert response.status_code in {403, 404}, path
        assert "Wendy" not in response.text


async def test_a_form_error_is_shown_next_to_its_field_and_nothing_is_written(
    stack: Stack, browser_like: httpx.AsyncClient
) -> None:
    lead_id = await post_lead(stack)
    detail = await offered(stack, lead_id)
    agent = detail["open_offers"][0]["agent_id"]
    await sign_in(browser_like, WEB, agent, "realtor")
    page = await browser_like.get(f"/app/accounts/{WEB}/leads/{lead_id}")
    token = CSRF.search(page.text)
    assert token is not None
    form = {"csrf": token.group(1), "action": "task", "task_title": "", "task_due": "2026-12-01T10:00", "tz": "UTC"}
    refused = await browser_like.post(f"/app/accounts/{WEB}/leads/{lead_id}/actions", data=form)
    assert refused.status_code == 422
    assert 'id="task_title-error"' in refused.text
    after = await detail_now(stack, lead_id)
    assert len(after["timeline"]) == len(detail["timeline"]), "nothing written"
    assert after["open_offers"], "and nothing claimed"


async def test_a_settings_form_is_checked_like_the_api_and_a_refusal_saves_nothing(
    stack: Stack, browser_like: httpx.AsyncClient
) -> None:
    await sign_in(browser_like, WEB, "web-broker", "broker")
    page = await browser_like.get(f"/app/accounts/{WEB}/settings")
    assert page.status_code == 200
    token = CSRF.search(page.text)
    assert token is not None
    refused = await browser_like.post(
        f"/app/accounts/{WEB}/settings/routing",
        data={"csrf": token.group(1), "round_robin": "on", "roster": "web-ann\nnobody"},
    )
    assert refused.status_code == 422
    assert 'id="routing-roster-error"' in refused.text
    assert "not an agent of this account" in refused.text
    headers = stack.auth("web-broker", "broker", WEB)
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
        routing = (await api.get(f"/v1/accounts/{WEB}/settings/routing", headers=headers)).json()
    assert routing["roster"] == list(AGENTS), "nothing saved"
    # A realtor of the account gets the 403 page, not the settings.
    await sign_in(browser_like, WEB, "web-ann", "realtor")
    denied = await browser_like.get(f"/app/accounts/{WEB}/settings")
    assert denied.status_code == 403
    assert "brokers and admins" in denied.text


async def test_my_notifications_are_saved_through_the_api_rules(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    await sign_in(browser_like, WEB, "web-bo", "realtor")
    page = await browser_like.get("/app/me")
    assert page.status_code == 200
    token = CSRF.search(page.text)
    assert token is not None
    form = {"csrf": token.group(1), "channels": ["email", "push"], "quiet_start": "25:00", "quiet_end": "07:00"}
    refused = await browser_like.post("/app/me/notifications", data=form)
    assert refused.status_code == 422
    assert 'id="quiet_hours-error"' in refused.text
    saved = await browser_like.post("/app/me/notifications", data=form | {"quiet_start": "21:00", "digest": "on"})
    assert saved.status_code == 303
    headers = stack.auth("web-bo", "realtor", WEB)
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
        prefs = (await api.get(f"/v1/accounts/{WEB}/settings/notifications/web-bo", headers=headers)).json()
    assert prefs["channels"] == ["email", "push"]
    assert prefs["quiet_hours"] == {"start": "21:00", "end": "07:00"}
    assert prefs["digest"] is True


async def test_pause_windows_are_added_and_removed_one_at_a_time(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    await sign_in(browser_like, WEB, "web-broker", "broker")
    page = await browser_like.get(f"/app/accounts/{WEB}/settings")
    token = CSRF.search(page.text)
    assert token is not None
    url = f"/app/accounts/{WEB}/settings/pause"
    base = {"csrf": token.group(1), "time_zone": "America/Chicago"}
    refused = await browser_like.post(url, data=base | {"start": "20:00", "end": "08:00"})  # no day chosen
    assert refused.status_code == 422
    assert 'id="pause-windows-error"' in refused.text
    for days, start, end in ((["0", "1", "2", "3", "4"], "20:00", "08:00"), (["5", "6"], "18:00", "10:00")):
        added = await browser_like.post(url, data=base | {"weekdays": days, "start": start, "end": end})
        assert added.status_code == 303
    removed = await browser_like.post(url, data=base | {"remove": "0"})
    assert removed.status_code == 303
    headers = stack.auth("web-broker", "broker", WEB)
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
        schedule = (await api.get(f"/v1/accounts/{WEB}/settings/pause-schedule", headers=headers)).json()
        await api.put(f"/v1/accounts/{WEB}/settings/pause-schedule", headers=headers, json={"windows": []})
    assert schedule == {
        "time_zone": "America/Chicago",
        "windows": [{"weekdays": [5, 6], "start": "18:00", "end": "10:00"}],
    }


async def test_signing_in_with_a_pasted_token_and_with_a_bad_one(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    # The production path: a token from the identity provider, pasted or posted to the sign-in form.
    expired = jwt.encode(
        {"sub": "web-broker", "role": "broker", "account_id": WEB, "aud": "leadflow-crm-api",
         "exp": datetime.now(UTC) - timedelta(hours=1)},
        stack.signing_key,
        algorithm="HS256",
    )  # fmt: skip
    for token, lands, says in (
        (stack.token("web-broker", "broker", WEB), f"/app/accounts/{WEB}/leads", None),
        ("not-a-token", "/app/sign-in?why=token_refused", "That access token was not accepted"),
        (expired, "/app/sign-in?why=token_expired", "That access token has expired"),
    ):
        page = await browser_like.get("/app/sign-in")
        nonce = CSRF.search(page.text)
        assert nonce is not None
        signed = await browser_like.post("/app/sign-in", data={"csrf": nonce.group(1), "token": token})
        assert signed.status_code == 303
        assert signed.headers["location"] == lands
        assert ("leadflow_session" in signed.cookies) == (says is None)
        if says is not None:
            assert says in (await browser_like.get(lands)).text


async def test_the_sign_in_page_says_only_leadflow_s_own_words(stack: Stack) -> None:
    # A link anyone can send: /app/sign-in?why=<text>. The page once showed that text (escaped) as its alert,
    # so a phishing mail could make leadflow's sign-in page say "Your account is locked: call +1 555 ...".
    # `why` is a code now: one the app sends shows its own words, anything else shows nothing (S4).
    alert = re.compile(r'role="alert">([^<]*)<')
    with httpx.Client(base_url=stack.url("crm-api"), timeout=30) as client:

        def shown(why: str) -> list[str]:
            page = client.get("/app/sign-in", params={"why": why})
            assert page.status_code == 200, page.text[:300]
            return alert.findall(page.text)

        assert shown("session_ended") == ["Your session has ended; sign in again."]
        assert shown("sign_in") == ["Sign in to continue."]

        @settings(max_examples=60, deadline=None, database=None)
        @example("Your account is locked. Call +1 555 0100 to unlock it.")
        @example("Session_Ended")
        @given(st.text(max_size=300).filter(lambda t: t not in CODES))
        def nothing_for(why: str) -> None:
            assert shown(why) == [], why

        nothing_for()


async def test_no_answer_of_crm_api_may_be_framed(stack: Stack, browser_like: httpx.AsyncClient) -> None:
    # Clickjacking: another site shows leadflow's page in an invisible frame over its own and makes the person
    # click Claim, Submit or Reassign. Every answer forbids being framed: the web app's pages (and its error
    # pages and redirects), the offer links' page, and the JSON API alike, where it changes nothing (S4). Each
    # carries the one policy (crm-api's own files only, decision 0092) and says its type is the one it has.
    answers = [await browser_like.get("/app/sign-in"), await browser_like.get(f"/app/accounts/{WEB}/leads")]
    answers.append(await browser_like.post("/app/sign-in", data={"csrf": "guess", "user": f"{WEB}|web-broker|broker"}))
    await sign_in(browser_like, WEB, "web-broker", "broker")
    answers += [await browser_like.get(path) for path in (f"/app/accounts/{WEB}/leads", "/app/no-such-page")]
    answers += [await browser_like.get("/app/static/app.css"), await browser_like.get(f"/v1/offer-links/{'x' * 43}")]
    headers = stack.auth("web-broker", "broker", WEB)
    answers += [
        await browser_like.get(f"/v1/accounts/{WEB}/leads", headers=headers),
        await browser_like.get("/v1/accounts/x/leads"),
    ]
    assert [a.status_code for a in answers] == [200, 303, 403, 200, 404, 200, 200, 200, 401]
    for answer in answers:
        where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
        policies = answer.headers.get_list("content-security-policy")
        assert (policies, answer.headers.get("x-frame-options")) == ([PAGE_POLICY], "DENY"), where
        assert "frame-ancestors 'none'" in PAGE_POLICY.split("; ")
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], where


async def test_a_broker_invites_then_disconnects_a_realtor_from_my_realtors(
    stack: Stack, browser_like: httpx.AsyncClient
) -> None:
    await sign_in(browser_like, WEB, "web-broker", "broker")
    page = await browser_like.get(f"/app/accounts/{WEB}/realtors")
    token = CSRF.search(page.text)
    assert token is not None
    invited = await browser_like.post(
        f"/app/accounts/{WEB}/realtors",
        data={"csrf": token.group(1), "realtor_id": "web-rae", "email": "rae@web.example", "name": "Rae Web"},
    )
    assert invited.status_code == 303
    refused = await browser_like.post(
        f"/app/accounts/{WEB}/realtors", data={"csrf": token.group(1), "realtor_id": "web-rae", "email": "not an email"}
    )
    assert refused.status_code == 422
    assert 'id="email-error"' in refused.text
    headers = stack.auth("web-rae", "realtor", WEB)
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
        [invitation] = [
            i
            for i in (await api.get("/v1/realtors/me/invitations", headers=headers)).json()["items"]
            if i["account_id"] == WEB
        ]
        accepted = await api.post(f"/v1/invitations/{invitation['invitation_id']}/accept", headers=headers)
        assert accepted.status_code == 200
    ended = await browser_like.post(f"/app/accounts/{WEB}/realtors/web-rae/disconnect", data={"csrf": token.group(1)})
    assert ended.status_code == 303
    listed = await browser_like.get(f"/app/accounts/{WEB}/realtors")
    assert "disconnected" in listed.text
    assert "Rae Web" in listed.text
