"""What every answer of crm-api tells the browser (S4, decisions 0080, 0092): the policy whatever a route set, the
paths whose answers are never stored, and the one page no middleware of the app sees, the 500 page. Every other
answer, in-process on real servers, over a real process and in Chromium: tests/integration/test_web_answers.py,
tests/e2e/test_web_pages.py, tests/e2e/test_web_browser.py."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders

from leadflow_crm_api.answer_headers import FRAME_ANCESTORS, PAGE_POLICY, answer_policy, stored_nowhere
from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.settings import CrmApiSettings

pytestmark = [pytest.mark.unit]

NAMES = ["content-security-policy", "x-frame-options", "cache-control", "content-type", "x-content-type-options"]
VALUES = ["default-src *", "frame-ancestors https://partner.example", "SAMEORIGIN", "max-age=3600", "text/html", ""]
PATHS = ["/v1/", "/app", "/app/", "/app/static/", "/health/", "/metrics", "/openapi.json", "/", "/v1", "/apps/"]


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if words := part.split():
            found.setdefault(words[0].lower(), words[1:])
    return found


@settings(database=None, deadline=None)
@example(raw=[("content-security-policy", "default-src *"), ("content-security-policy", "")], path="/v1/x")
@example(raw=[("cache-control", "max-age=3600")], path="/app/static/app.js")
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=6),
    st.tuples(st.sampled_from(PATHS), st.text(alphabet="ab/.-", max_size=8)).map("".join),
)
def test_every_answer_gets_the_one_policy_and_personal_answers_are_not_stored(
    raw: list[tuple[str, str]], path: str
) -> None:
    headers = MutableHeaders(raw=[(n.encode(), v.encode()) for n, v in raw])
    answer_policy({"type": "http", "path": path}, headers)
    answer_policy({"type": "http", "path": path}, headers)  # twice changes nothing
    assert headers.getlist("content-security-policy") == [PAGE_POLICY], "whatever a route set"
    assert headers.getlist("x-frame-options") == ["DENY"]
    personal = path == "/app" or (path.startswith(("/v1/", "/app/")) and not path.startswith("/app/static/"))
    assert stored_nowhere(path) is personal
    if personal:
        assert headers.getlist("cache-control") == ["no-store"]
    else:
        assert headers.getlist("cache-control") == [v for n, v in raw if n == "cache-control"], "left as it was"


def test_the_pages_policy_allows_only_crm_api_s_own_files_and_forms() -> None:
    policy = directives(PAGE_POLICY)
    assert policy["default-src"] == ["'none'"]
    for kind in ("script-src", "style-src", "img-src", "connect-src", "form-action"):
        assert policy[kind] == ["'self'"], kind
    assert policy["object-src"] == policy["base-uri"] == ["'none'"]
    assert f"frame-ancestors {' '.join(policy['frame-ancestors'])}" == FRAME_ANCESTORS


@pytest.fixture
def app() -> FastAPI:
    built = create_app(CrmApiSettings())

    @built.get("/app/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return built


@pytest.mark.asyncio
async def test_the_500_page_gets_the_headers_too(app: FastAPI) -> None:
    # Starlette sends it from its outermost middleware, past the app's own: `ServiceApp` sets them around it.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm-api") as client:
        page = await client.get("/app/broken")
        docs = [await client.get(path) for path in ("/docs", "/redoc", "/openapi.json")]
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers.get_list("content-security-policy") == [PAGE_POLICY]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    # FastAPI's documentation pages (a CDN's scripts, inline ones) are not served: the document is (0092).
    assert [d.status_code for d in docs] == [404, 404, 200]
