"""Fixtures of the end-to-end tests beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from leadflow_devstack.stack import Stack


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
