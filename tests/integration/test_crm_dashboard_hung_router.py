"""crm-api's dashboard with a router that accepts connections and never answers (a hung event loop, a pod whose
packets are dropped): shown in bounded time, with a notice. It asked "who is next" for every lead source of the
account one after the other, each with the JSON API's 5 s timeout, going on after each failure: N sources, N x 5 s
before a broker saw the page (helper 175's review; 20.3 s with four sources). Now a few at a time with the page's
timeout (PAGE_ROUTER_TIMEOUT, 2 s), none after the first failure (`next_up.next_per_source`), as the lead page and
the Settings page do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from routing_world import ACCOUNT, BROKER, Site, config, site_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SOURCES = ["Website", "Zillow", "Realtor.com", "Referral"]
BOUND_SECONDS = 8.0  # the lead page's 2 s timeout, one 5 s call at most, and room for the page itself


@pytest_asyncio.fixture(loop_scope="session")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        yield site


@pytest_asyncio.fixture(loop_scope="session")
async def hung_router() -> AsyncIterator[str]:
    """A TCP server that takes every connection and the request, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_the_dashboard_with_a_router_that_never_answers_is_shown_in_bounded_time(
    site: Site, hung_router: str
) -> None:
    headers = site.auth("oak-boss", "broker")
    put = await site.web.put(
        f"/v1/accounts/{ACCOUNT}/settings/lead-sources",
        json={"sources": [{"name": name, "offices": []} for name in SOURCES]},
        headers=headers,
    )
    assert put.status_code == 200, put.text
    app = site.web._transport.app  # type: ignore[attr-defined]  # the ASGI app the client calls
    runtime = app.state.runtime
    real = runtime.settings
    runtime.settings = real.model_copy(update={"router_url": hung_router})
    try:
        web = await site.sign_in(f"{ACCOUNT}|{BROKER.sub}|broker")
        started = time.monotonic()
        page = await web.get(f"/app/accounts/{ACCOUNT}/dashboard", timeout=120)
        took = time.monotonic() - started
    finally:
        runtime.settings = real
    assert page.status_code == 200, page.text[:500]
    assert "The router did not answer" in page.text
    assert took < BOUND_SECONDS, (
        f"the dashboard took {took:.1f} s with a router that never answers ({len(SOURCES)} lead sources, one "
        f"5 s timeout each, one after the other)"
    )
