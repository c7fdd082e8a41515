"""Every form of the web app, and its pages' query strings, fed arbitrary input (hypothesis): invalid
UTF-8 and lone surrogates, huge values, unknown and repeated fields, with and without the session's CSRF
token. Whatever comes in, the answer is a page or a redirect, never a server error (issue 12, bad input)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadflow_devstack.stack import Stack

pytestmark = [pytest.mark.e2e]

FUZZ = "web-fuzz-realty"  # its own office: a fuzzed form may really change its settings
OTHER = "web-fuzz-other"
AGENTS = ["fz-broker", "fz-ann", "fz-bo"]
CSRF = re.compile(r'name="csrf" value="([^"]*)"')
FIELDS = [
    "csrf",
    "action",
    "text",
    "call_outcome",
    "task_title",
    "task_due",
    "tz",
    "message_subject",
    "message_body",
    "labels",
    "company",
    "rating",
    "to_account_id",
    "request_id",
    "agent_id",
    "mode",
    "claim_window_seconds",
    "note",
    "return_note",
    "crm_status",
    "lead_ids",
    "all_matching",
    "assign_all_matching",
    "realtor_id",
    "email",
    "name",
    "round_robin",
    "roster",
    "allow_direct_to_user",
    "departed_agent_leads",
    "approved",
    "race_count",
    "referral_fee_percent",
    "lead_group",
    "offices",
    "auto_accept",
    "weekdays",
    "start",
    "end",
    "time_zone",
    "clear",
    "status",
    "channels",
    "quiet_start",
    "quiet_end",
    "digest",
    "user",
    "token",
    "next",
    "q",
    "tab",
    "sort",
    "rules",
    "version",
    "paused",
    "away_start",
    "away_end",
    "remove_away",
    "part",
    "hours_0_start",
    "hours_0_end",
    "hours_0_1_start",
    "hours_0_1_end",
    "holiday",
    "remove_holiday",
    "cap_day",
    "cap_week",
]


@pytest.fixture(scope="module")
def web(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str, str]]:
    """A broker's signed-in client, its CSRF token, and a lead of the office."""

    def account(account_id: str, org: str, agents: list[str]) -> dict[str, Any]:
        return {"account_id": account_id, "name": account_id.title(), "organisation_id": org, "round_robin": True,
                "roster": agents, "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@fuzz.example"}
                                             for a in agents],
                "sources": [{"name": "Website", "race_count": 2}]}  # fmt: skip

    # Agent ids are global (decision 0076): the other office has agents of its own, or the one seeded last would
    # hold them and the first office's tokens would name agents of another office (refused, decision 0079).
    others = [f"{a}-other" for a in AGENTS]
    path = tmp_path_factory.mktemp("web-fuzz") / "accounts.json"
    path.write_text(json.dumps({"accounts": [account(FUZZ, "fuzz-org", AGENTS), account(OTHER, "fuzz-org", others)]}))
    stack.seed(path)
    posted = httpx.post(
        f"{stack.url('intake')}/v1/leads",
        json={"account_id": FUZZ, "first_name": "Fuzz", "email": f"fuzz-{uuid.uuid4().hex[:8]}@example.com"},
    )
    assert posted.status_code == 202
    with httpx.Client(base_url=stack.url("crm-api"), follow_redirects=False, timeout=30) as client:
        page = client.get(f"/app/sign-in?account={FUZZ}")
        nonce = CSRF.search(page.text)
        assert nonce is not None
        signed = client.post("/app/sign-in", data={"csrf": nonce.group(1), "user": f"{FUZZ}|fz-broker|broker"})
        assert signed.status_code == 303
        token = CSRF.search(client.get(f"/app/accounts/{FUZZ}/settings").text)
        assert token is not None
        yield client, token.group(1), str(posted.json()["event_id"])


def routes(lead: str) -> list[str]:
    acc = f"/app/accounts/{FUZZ}"
    return [f"{acc}/leads/{lead}/actions", f"{acc}/leads/{lead}/profile", f"{acc}/leads/{lead}/reassign",
            f"{acc}/leads/{lead}/distribute", f"{acc}/leads/{lead}/return", f"{acc}/leads/{lead}/crm-status",
            f"{acc}/lead-transfers", f"{acc}/distributions", f"{acc}/realtors", f"{acc}/realtors/fz-x/disconnect",
            f"{acc}/settings/routing", f"{acc}/settings/approvals/fz-ann", f"{acc}/settings/sources/0",
            f"{acc}/settings/pause", f"{acc}/team/fz-bo/status", f"{acc}/team/fz-bo/reassign",
            "/app/me/notifications", "/app/me/devices/fz-phone/remove", "/app/invitations/fz-inv/accept",
            "/app/invitations/fz-inv/leave", f"{acc}/invitations/fz-inv/withdraw",
            f"{acc}/settings/routing-rules", "/app/me/availability", f"{acc}/team/fz-ann/availability",
            f"/app/accounts/{OTHER}/settings/routing",
            f"/app/accounts/{FUZZ}/leads/{uuid.uuid4()}/actions", "/app/accounts/..%2f/leads/x/actions"]  # fmt: skip


HUGE = "<70,000 characters>"  # stands for a long value in hypothesis's reports, expanded when sent
_short = st.text(max_size=40) | st.sampled_from(
    ["", "0", "-1", "1e309", "NaN", "25:00", "web-fuzz-other", "fz-ann", "accept", "offer", "on", "1", "\ud800", "\x00"]
)
_text = _short | st.just(HUGE)


def _encode(pairs: list[tuple[str, str]]) -> bytes:
    """A form body; lone surrogates become the invalid UTF-8 bytes a careless client would send."""

    def part(text: str) -> str:
        return quote(("a" * 70_000 if text == HUGE else text).encode("utf-8", "surrogatepass"))

    return "&".join(f"{part(k)}={part(v)}" for k, v in pairs).encode()


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_arbitrary_forms_to_every_web_action_get_a_page_never_a_server_error(
    web: tuple[httpx.Client, str, str],
) -> None:
    client, token, lead = web
    seen: set[int] = set()

    pause = f"/app/accounts/{FUZZ}/settings/pause"

    @SETTINGS
    # Always among the examples, whatever the random ones draw: one refused, one checked, one done.
    @example(route=pause, with_token=False, pairs=[], raw=None)
    @example(route=pause, with_token=True, pairs=[("start", "20:00"), ("end", "08:00")], raw=None)  # no day
    @example(route=pause, with_token=True, pairs=[("time_zone", "America/New_York")], raw=None)
    @given(
        route=st.sampled_from(routes(lead)),
        with_token=st.booleans(),
        pairs=st.lists(st.tuples(st.sampled_from(FIELDS) | st.text(max_size=10), _text), max_size=8),
        raw=st.none() | st.binary(max_size=200),
    )
    def fuzz(route: str, with_token: bool, pairs: list[tuple[str, str]], raw: bytes | None) -> None:
        body = raw if raw is not None else _encode(([("csrf", token)] if with_token else []) + pairs)
        response = client.post(route, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        seen.add(response.status_code)
        assert response.status_code < 500, (route, response.status_code, response.text[:300])

    fuzz()
    assert {303, 403, 422} <= seen, seen  # refused, checked, and done: the fuzz reached the use cases


def test_arbitrary_query_strings_on_every_page_get_a_page_never_a_server_error(
    web: tuple[httpx.Client, str, str],
) -> None:
    client, _, lead = web
    pages = [
        f"/app/accounts/{FUZZ}/leads",
        f"/app/accounts/{FUZZ}/leads/{lead}",
        f"/app/accounts/{FUZZ}/team",
        f"/app/accounts/{FUZZ}/team/fz-ann/availability",
        f"/app/accounts/{FUZZ}/ponds",
        f"/app/accounts/{FUZZ}/settings",
        f"/app/accounts/{FUZZ}/dashboard",
        f"/app/accounts/{FUZZ}/realtors",
        "/app/me",
        "/app/sign-in",
        "/app/my/leads",
    ]

    @SETTINGS
    @given(
        page=st.sampled_from(pages),
        pairs=st.lists(
            st.tuples(
                st.sampled_from(["q", "status", "sort", "tab", "cursor", "role", "next", "why", "account"])
                | st.text(max_size=10),
                _short,
            ),
            max_size=5,
        ),
    )
    def fuzz(page: str, pairs: list[tuple[str, str]]) -> None:
        query = _encode(pairs).decode()
        response = client.get(f"{page}?{query}")
        assert response.status_code < 500, (page, query[:200], response.status_code, response.text[:300])

    fuzz()


RAW_IDS = ("..%2f", "%00")  # ids sent as escapes, not escaped again


def _first_events(response: httpx.Response, *, until: str, seconds: float) -> str:
    """What a live page's stream sent until `until` appeared in it, or its deadline passed."""
    received, deadline = "", time.monotonic() + seconds
    for chunk in response.iter_text():
        received += chunk
        if until in received or time.monotonic() > deadline:
            break
    return received


def test_arbitrary_ids_and_marks_to_the_live_pages_streams_get_events_or_a_refusal(
    web: tuple[httpx.Client, str, str],
) -> None:
    """A live page's stream (server-sent events) starts with its retry line; one told it was built from a mark
    that is not the data's current one announces a change at once; an id that names nothing of the caller's is
    a refusal before the stream starts, never a server error or a stream that breaks."""
    client, _, lead = web
    ids = st.sampled_from([FUZZ, OTHER, lead, str(uuid.uuid4()), *RAW_IDS, "a" * 300]) | st.text(max_size=12)

    @settings(SETTINGS, max_examples=40)
    @example(kind="lead", account=FUZZ, lead_id=lead, since="stale")  # the lead's page, built from an old mark
    @example(kind="account", account=FUZZ, lead_id=lead, since=None)
    @example(kind="account", account="%\x1f", lead_id=lead, since=None)  # a text with "%" is quoted like any other
    @given(
        kind=st.sampled_from(["account", "lead", "my"]),
        account=ids,
        lead_id=ids,
        since=st.none() | _short | st.just("s" * 20_000),  # a URL a client sends (httpx stops at 64 KiB)
    )
    def fuzz(kind: str, account: str, lead_id: str, since: str | None) -> None:
        def part(text: str) -> str:  # the two escaped ids as sent (a path's own escapes), anything else quoted
            return text if text in RAW_IDS else quote(text.encode("utf-8", "surrogatepass"), safe="")

        path = {"account": f"/app/accounts/{part(account)}/live", "my": "/app/my/live",
                "lead": f"/app/accounts/{part(account)}/leads/{part(lead_id)}/live"}[kind]  # fmt: skip
        query = "" if since is None else "?" + _encode([("since", since)]).decode()
        # A mark that cannot be the data's ("" and "gone" can: an empty list, a lead not there).
        stale = since is not None and since not in {"", "gone"}
        with client.stream("GET", path + query, timeout=10) as response:
            if response.status_code != 200:
                response.read()
                assert response.status_code in {403, 404}, (path, response.status_code, response.text[:300])
                return
            assert response.headers["content-type"].startswith("text/event-stream")
            sent = _first_events(response, until="event: changed" if stale else "retry:", seconds=5)
        assert sent.startswith("retry: 1000\n\n"), (path, sent[:200])
        if stale:
            assert "event: changed\n" in sent, (path, (since or "")[:40], sent[:200])

    fuzz()
