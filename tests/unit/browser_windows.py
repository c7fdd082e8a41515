"""Browser windows for the web app's walks in Chromium (tests/e2e/test_web_browser_*.py): a phone's or a
desk's, the development sign-in as a person uses it, and the offices the walks seed."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, BrowserContext, Page

from leadflow_devstack.stack import Stack

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


def office(account_id: str, roster: list[str], names: dict[str, str], **more: Any) -> dict[str, Any]:
    """An office of the seed file: round robin off (its first agent holds new leads), UTC, each roster
    member an agent named from `names`, emailed at the office's own example domain."""
    domain = f"{account_id}.example"
    agents = [{"agent_id": a, "name": names[a], "email": f"{a}@{domain}"} for a in roster]
    return {"account_id": account_id, "name": account_id, "round_robin": False, "time_zone": "UTC",
            "roster": roster, "agents": agents, **more}  # fmt: skip
