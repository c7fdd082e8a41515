"""The search text `q` of the lead lists never sends MongoDB a `$regex` holding a NUL (helper 177's review; each
test failed before).

`search_patterns` (domain/views.py) escapes the text with `re.escape`, which leaves a NUL as it is (it is no regex
metacharacter), and `_search_matches` (adapters/leads.py) sends it as `{"$regex": ...}`. The edge lets it through:
the JSON lists' `q` is any 1-100 characters (routes/leads.py `lead_query`), the web lists' any text (web/leads.py
`_list_query`), a bulk request's filter any 1-100 characters (`LeadFilter.q`, domain/distribution.py). MongoDB refuses
such a pattern for every query it is in (`RegexMatchExpression`: uassert BadValue "Regular expression cannot contain
an embedded null byte"), an `OperationFailure` that `answer_outages` does not take for an outage, so the request is a
500: any caller (a broker, a realtor, a signed-in page) answered 500 by one `%00` in a search box or a link. nx-27017
compiles the pattern with Python's `re`, which takes a NUL, so the suite never saw it: these tests watch what the app
sends the server (its own command listener) and fail while a `$regex` with a NUL is sent.

Now `search_patterns` leaves control characters out of a search (none is part of a name or an email): the NUL is
never sent; not a pattern the database refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from pymongo import monitoring
from routing_world import ACCOUNT, Site, config, site_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _regexes(value: Any) -> Iterator[str]:
    """Every `$regex` pattern in a command's filter."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$regex" and isinstance(item, str):
                yield item
            else:
                yield from _regexes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _regexes(item)


class Patterns:
    """The `$regex` patterns of the `find` commands the app sends (its runtime's command listener, wrapped)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def wrap(self, listener: monitoring.CommandListener) -> None:
        started = listener.started

        def seen(event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "find":
                self.sent += list(_regexes(event.command.get("filter")))
            started(event)

        listener.started = seen  # type: ignore[method-assign]

    def with_nul(self) -> list[str]:
        return [p for p in self.sent if "\x00" in p]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[Site, Patterns]]:
    async with site_on(mongo_url, kafka_bootstrap, config(), now=datetime.now(UTC)) as site:
        app: Any = site.web._transport.app  # type: ignore[attr-defined]  # the ASGI app the client calls
        patterns = Patterns()
        patterns.wrap(app.state.runtime._command_counter)  # what reaches the server
        yield site, patterns


async def test_a_nul_in_the_brokerage_list_s_search_never_reaches_mongodb(site: tuple[Site, Patterns]) -> None:
    web, patterns = site
    patterns.sent.clear()
    # GET /v1/accounts/oak/leads?q=ann%00 as the office's broker.
    answer = await web.web.get(f"/v1/accounts/{ACCOUNT}/leads", params={"q": "ann\x00"}, headers=web.auth(
        "oak-boss", "broker"))  # fmt: skip
    assert answer.status_code < 500, answer.text
    assert patterns.sent or answer.status_code == 422, "the search ran (a find with a $regex), or q was refused"
    assert patterns.with_nul() == [], f"{answer.status_code}: MongoDB refuses these patterns (a 500 there)"


async def test_a_nul_in_the_realtor_s_search_never_reaches_mongodb(site: tuple[Site, Patterns]) -> None:
    web, patterns = site
    patterns.sent.clear()
    # GET /v1/realtors/me/leads?q=%00 as a realtor.
    answer = await web.web.get("/v1/realtors/me/leads", params={"q": "\x00"}, headers=web.auth("villa1", "realtor"))
    assert answer.status_code < 500, answer.text
    assert patterns.with_nul() == [], f"{answer.status_code}: MongoDB refuses these patterns (a 500 there)"


async def test_a_nul_in_the_web_list_s_search_never_reaches_mongodb(site: tuple[Site, Patterns]) -> None:
    web, patterns = site
    browser = await web.sign_in(f"{ACCOUNT}|oak-boss|broker")
    patterns.sent.clear()
    # GET /app/accounts/oak/leads?q=%00: a link anyone can send a signed-in broker.
    page = await browser.get(f"/app/accounts/{ACCOUNT}/leads", params={"q": "\x00"})
    assert page.status_code < 500, page.text[:300]
    assert patterns.with_nul() == [], f"{page.status_code}: MongoDB refuses these patterns (a 500 there)"


async def test_a_nul_in_a_bulk_request_s_filter_never_reaches_mongodb(site: tuple[Site, Patterns]) -> None:
    web, patterns = site
    patterns.sent.clear()
    # POST /v1/accounts/oak/distributions {"agent_id": "villa1", "mode": "assign", "filter": {"q": "\u0000"}}.
    body = {"agent_id": "villa1", "mode": "assign", "filter": {"q": "\x00"}}
    answer = await web.web.post(
        f"/v1/accounts/{ACCOUNT}/distributions", json=body, headers=web.auth("oak-boss", "broker")
    )
    assert answer.status_code < 500, answer.text
    assert patterns.with_nul() == [], f"{answer.status_code}: MongoDB refuses these patterns (a 500 there)"
