"""Browser windows for the web app's walks in Chromium (tests/e2e/test_web_browser_*.py): a phone's or a
desk's, the development sign-in as a person uses it, the offices the walks seed, and a network cable to cut."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Page

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 900}


async def window(browser: Browser, *, phone: bool = False) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(viewport=PHONE if phone else DESK)  # type: ignore[arg-type]
    return context, await context.new_page()


async def sign_in_as(page: Page, stack: Stack, account_id: str, user: str, role: str) -> None:
    """The development sign-in page's sample user, as a person would pick it."""
    await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={account_id}")
    await page.locator(f'form:has(input[name="user"][value="{account_id}|{user}|{role}"]) button').click()
    await page.wait_for_load_state()


async def post_a_lead(stack: Stack, last_name: str, account: str) -> str:
    """A website lead of `account` posted to intake (Paula `last_name`, an address of her own): its event id."""
    body = {
        "account_id": account,
        "first_name": "Paula",
        "last_name": last_name,
        "email": f"paula-{uuid.uuid4().hex[:8]}@example.com",
    }
    async with httpx.AsyncClient() as intake:
        posted = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    return str(posted.json()["event_id"])


async def routed(stack: Stack, account: str, lead_id: str, broker: str) -> None:
    """Wait until crm-api has the lead (routed and projected), so its page exists."""
    headers = stack.auth(broker, "broker", account)

    async def known() -> bool:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
            return (await api.get(f"/v1/accounts/{account}/leads/{lead_id}", headers=headers)).status_code == 200

    await eventually(known, what="the lead in crm-api")


def office(account_id: str, roster: list[str], names: dict[str, str], **more: Any) -> dict[str, Any]:
    """An office of the seed file: round robin off (its first agent holds new leads), UTC, each roster
    member an agent named from `names`, emailed at the office's own example domain."""
    domain = f"{account_id}.example"
    agents = [{"agent_id": a, "name": names[a], "email": f"{a}@{domain}"} for a in roster]
    return {"account_id": account_id, "name": account_id, "round_robin": False, "time_zone": "UTC",
            "roster": roster, "agents": agents, **more}  # fmt: skip


class Cable:
    """The network between a browser and a server on this machine, as a TCP relay a test can cut (every open
    connection dropped; new ones reset, or answered with an error as a proxy whose server is down answers) and
    mend: a page's connection lost and found again. Open the pages at `url`; cookies are the host's, so a sign-in
    at the server's own address holds here too."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut = False
        self._answer = b""

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Cable:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self, *, status: int | None = None) -> None:
        """Drop every open connection; until `mend`, reset each new one, or answer its request with `status`."""
        self._cut = True
        reason = b"Service Unavailable"
        self._answer = b"" if status is None else (
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, reason, len(reason), reason)
        )  # fmt: skip
        for writer in list(self._open):
            writer.transport.abort()

    def mend(self) -> None:
        self._cut = False

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        if self._cut:
            if self._answer:  # the request's head read, then the proxy's answer
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    await client_in.readuntil(b"\r\n\r\n")
                    client_out.write(self._answer)
                    await client_out.drain()
                    client_out.close()
                    return
            client_out.transport.abort()
            return
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self._port)
        except OSError:
            client_out.transport.abort()
            return
        self._open |= {client_out, server_out}
        try:
            await asyncio.gather(self._pump(client_in, server_out), self._pump(server_in, client_out))
        finally:
            self._open -= {client_out, server_out}

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.transport.abort()


async def pressed(page: Page, button: str) -> int:
    """Click `button` and wait for the page the server answers with (after a redirect, where it leads); its status."""
    async with page.expect_navigation() as arrived:
        await page.get_by_role("button", name=button, exact=True).click()
    answer = await arrived.value
    return answer.status if answer is not None else 0
