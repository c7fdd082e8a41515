"""Fixtures of the end-to-end tests beyond tests/conftest.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, async_playwright
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.stack import Stack

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest_asyncio.fixture
async def db(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """The stack's database, as its services use it (datetimes read back aware)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    try:
        yield client["leadflow"]
    finally:
        await client.close()


@pytest_asyncio.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the stack's crm-api (test modules of other services override it). httpx's defaults, as a
    partner's: it drops an idle connection after 5 s, before the services' keep-alive (75 s) closes it (decision
    0103; when the server closed first, a request sent at that moment failed: "Server disconnected")."""
    async with crm_client(stack) as crm:
        yield crm


def crm_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30)


@pytest_asyncio.fixture
async def crm(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The same client for the stack's crm-api, under the name modules that also post to intake use."""
    async with crm_client(stack) as client:
        yield client


def chromium_path() -> str:
    found = os.environ.get("LEADFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:  # a missing browser fails the browser tests, never skips them
        pytest.fail(
            "browser tests need Chromium: install Debian's 'chromium' package (python3 dev.py test does "
            "this when run as root) or set LEADFLOW_CHROMIUM to its path"
        )
    return found


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium through Playwright, started once for every browser test (each opens its own context)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture(autouse=True)
def nothing_refused_by_the_pages_policy(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every browser test fails if Chromium refused anything a page of leadflow loads or runs under its
    Content-Security-Policy (decision 0092): a script, a style, a request, a form post. Chromium says so on the
    page's console. A frame refused by `frame-ancestors` is what the framing test wants, so it does not count."""
    if "browser" not in request.fixturenames:
        yield
        return
    browser: Browser = request.getfixturevalue("browser")
    refused: list[str] = []
    opened = browser.new_context

    def heard(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text and "frame-ancestors" not in message.text:
            refused.append(f"{message.location.get('url', '?')}: {message.text}")

    async def new_context(*args: Any, **kwargs: Any) -> BrowserContext:
        context = await opened(*args, **kwargs)
        context.on("console", heard)
        return context

    monkeypatch.setattr(browser, "new_context", new_context)
    yield
    assert refused == [], f"the pages' policy refused: {refused}"
