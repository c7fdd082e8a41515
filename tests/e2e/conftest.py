"""Fixtures of the end-to-end tests beyond tests/conftest.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

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
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the stack's crm-api (test modules of other services override it). It drops a
    connection idle for 2 s, before the server's 5 s keep-alive closes it: reusing one the server is closing
    at that moment fails the request ("Server disconnected without sending a response")."""
    async with crm_client(stack) as crm:
        yield crm


def crm_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30, limits=httpx.Limits(keepalive_expiry=2))


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
