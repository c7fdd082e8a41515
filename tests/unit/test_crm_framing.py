"""No answer of crm-api may be framed by another site (clickjacking, S4, decision 0080): the policy merge, and
the one page no middleware of the app sees, the 500 page. Every other answer, over a real process and in
Chromium: tests/e2e/test_web_pages.py, tests/e2e/test_web_browser.py."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.datastructures import MutableHeaders

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.framing import FRAME_ANCESTORS, deny_framing, with_frame_ancestors
from leadflow_crm_api.settings import CrmApiSettings

pytestmark = [pytest.mark.unit]

NAMES = ["default-src", "script-src", "img-src", "frame-ancestors", "Frame-Ancestors", "upgrade-insecure-requests"]
VALUES = ["'self'", "'none'", "*", "https://evil.example", "data:", ""]
directive = st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from(VALUES), max_size=3)).map(
    lambda d: " ".join([d[0], *d[1]]).strip()
)


def directives(policy: str) -> list[str]:
    return [d.strip() for d in policy.split(";") if d.strip()]


@settings(database=None, deadline=None)
@example(parts=[], separator="; ")
@example(parts=["frame-ancestors https://partner.example", "default-src 'self'"], separator=";")
@given(st.lists(directive, max_size=6), st.sampled_from(["; ", ";", " ; "]))
def test_a_policy_keeps_its_directives_and_frames_nowhere(parts: list[str], separator: str) -> None:
    merged = directives(with_frame_ancestors(separator.join(parts)))
    assert [d for d in merged if d.split()[0].lower() == "frame-ancestors"] == [FRAME_ANCESTORS]
    assert merged[:-1] == [d for d in parts if d.split()[0].lower() != "frame-ancestors"], "the rest as it was"


def test_both_headers_are_set_once_whatever_was_there() -> None:
    headers = MutableHeaders(
        raw=[
            (b"content-security-policy", b"default-src 'self'; frame-ancestors *"),
            (b"x-frame-options", b"SAMEORIGIN"),
        ]
    )
    deny_framing(headers)
    deny_framing(headers)  # a page `render` framed passes the middleware too
    assert headers.getlist("content-security-policy") == [f"default-src 'self'; {FRAME_ANCESTORS}"]
    assert headers.getlist("x-frame-options") == ["DENY"]


@pytest.fixture
def app() -> FastAPI:
    built = create_app(CrmApiSettings())

    @built.get("/app/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    return built


@pytest.mark.asyncio
async def test_the_500_page_is_not_framed_either(app: FastAPI) -> None:
    # Starlette sends it from its outermost middleware, past the app's own: `render` sets the headers itself.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://crm-api") as client:
        page = await client.get("/app/broken")
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers.get_list("content-security-policy") == [FRAME_ANCESTORS]
    assert page.headers["x-frame-options"] == "DENY"
