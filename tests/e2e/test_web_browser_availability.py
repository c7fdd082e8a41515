"""An agent's availability forms in a real browser (Chromium through Playwright, as test_web_browser.py starts it),
against the whole running system (issue 15, item 4): on its own page an agent sets working hours, adds a holiday
and caps its leads, sees each saved (in the form, in its recent changes and through the API), and a cap the API
refuses comes back next to its field with the reason, what was typed kept. An agent saves a split shift (two
windows on a day) and finds both after a reload; its broker, changing it from the Team page into two windows that
overlap, is refused with the reason beside the day, and nothing is saved. A broker removes an agent's holidays one at
a time and its caps one field at a time, and finds each removal stored and shown after a reload.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from browser_windows import pressed
from playwright.async_api import Browser, Page, expect

from leadflow_devstack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ACCOUNT, AGENT = "wba-realty", "wba-ann"
ZONE = "America/New_York"


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    people = {"wba-broker": "Wes Broker", AGENT: "Ann Avail", "wba-bo": "Bo Avail", "wba-cy": "Cy Avail"}
    config = {"account_id": ACCOUNT, "name": "Avail Realty", "round_robin": True, "time_zone": "UTC",
              "roster": list(people),
              "agents": [{"agent_id": a, "name": n, "email": f"{a}@wba.example", "time_zone": ZONE}
                         for a, n in people.items()]}  # fmt: skip
    path = tmp_path_factory.mktemp("web-availability") / "accounts.json"
    path.write_text(json.dumps({"accounts": [config]}))
    stack.seed(path)


@contextlib.asynccontextmanager
async def signed_in(browser: Browser, stack: Stack, user: str, role: str) -> AsyncIterator[Page]:
    """A browser window signed in as `user`, on the page signing in leads to."""
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={ACCOUNT}")
    await page.locator(f'form:has(input[name="user"][value="{ACCOUNT}|{user}|{role}"]) button').click()
    await page.wait_for_load_state()
    try:
        yield page
    finally:
        await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def agent_page(browser: Browser, stack: Stack) -> AsyncIterator[Page]:
    """A browser window signed in as the agent on the sign-in page."""
    async with signed_in(browser, stack, AGENT, "realtor") as page:
        yield page


async def test_an_agent_sets_its_working_hours_a_holiday_and_a_cap_and_a_refused_cap_shows_why(
    agent_page: Page, stack: Stack
) -> None:
    page = agent_page
    await page.get_by_role("link", name="My notifications").click()
    await expect(page.get_by_role("heading", name="My availability")).to_be_visible()
    await expect(page.locator("#availability-h + p")).to_contain_text(ZONE)
    flash = page.get_by_role("status")

    for day in ("Monday", "Tuesday"):
        await page.get_by_label(f"{day} from").fill("09:00")
        await page.get_by_label(f"{day} until").fill("17:30")
    assert await pressed(page, "Save working hours") == 200
    await expect(flash).to_have_text("Working hours saved.")
    await expect(page.get_by_label("Tuesday until")).to_have_value("17:30")
    await expect(page.get_by_label("Wednesday from")).to_have_value("")

    await page.get_by_label("A day off").fill("2026-12-24")
    assert await pressed(page, "Add holiday") == 200
    await expect(flash).to_have_text("Holidays saved.")
    await expect(page.locator('ul.holidays li[data-holiday="2026-12-24"]')).to_contain_text("2026-12-24 (Thursday)")

    week = page.get_by_label("A week (Monday to Sunday)")
    await week.fill("15")
    assert await pressed(page, "Save caps") == 200
    await expect(flash).to_have_text("Lead caps saved.")
    await expect(week).to_have_value("15")

    # A negative daily cap: the API's use case refuses it, and the page says why beside the field.
    day_cap = page.get_by_label("A day", exact=True)
    await day_cap.fill("-1")
    assert await pressed(page, "Save caps") == 422
    await expect(page.locator("#availability_caps_day-error")).to_have_text(
        "Input should be greater than or equal to 0"
    )
    await expect(day_cap).to_have_attribute("aria-describedby", "availability_caps_day-error")
    await expect(day_cap).to_have_value("-1")  # as typed
    await expect(week).to_have_value("15")

    # The last changes, newest first, each said by what it changed.
    await page.goto(f"{stack.url('crm-api')}/app/me")
    changes = page.locator("ol.changes li")
    await expect(changes).to_have_count(3)
    await expect(changes.nth(0)).to_contain_text("by you: caps: 15 a week")
    await expect(changes.nth(1)).to_contain_text("by you: holidays: 2026-12-24")
    await expect(changes.nth(2)).to_contain_text("working hours: Mon, Tue 09:00–17:30")
    await expect(page.get_by_label("A day", exact=True)).to_have_value("")  # the refused cap was not saved

    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        stored = await crm.get("/v1/agents/me/availability", headers=stack.auth(AGENT, "realtor", ACCOUNT))
    assert stored.json() == {
        "paused": False, "away": [], "holidays": ["2026-12-24"], "caps": {"day": None, "week": 15, "month": None},
        "working_hours": [{"weekdays": [0, 1], "start": "09:00:00", "end": "17:30:00"}],
    }  # fmt: skip


async def test_an_agent_saves_a_split_shift_and_a_broker_is_refused_an_overlap_with_the_reason(
    browser: Browser, stack: Stack
) -> None:
    bo = "wba-bo"
    async with signed_in(browser, stack, bo, "realtor") as page:
        await page.get_by_role("link", name="My notifications").click()
        await expect(page.get_by_role("heading", name="My availability")).to_be_visible()
        for label, at in (("Monday from", "09:00"), ("Monday until", "12:00"), ("Monday, window 2, from", "13:00"),
                          ("Monday, window 2, until", "17:00")):  # fmt: skip
            await page.get_by_label(label, exact=True).fill(at)
        assert await pressed(page, "Save working hours") == 200
        await expect(page.get_by_role("status")).to_have_text("Working hours saved.")

        await page.reload()
        for label, at in (("Monday from", "09:00"), ("Monday until", "12:00"), ("Monday, window 2, from", "13:00"),
                          ("Monday, window 2, until", "17:00"), ("Monday, window 3, from", ""),
                          ("Tuesday from", ""), ("Tuesday, window 2, from", "")):  # fmt: skip
            await expect(page.get_by_label(label, exact=True)).to_have_value(at)
        await expect(page.locator("ol.changes li").first).to_contain_text(
            "working hours: Mon 09:00–12:00; Mon 13:00–17:00"
        )

    reason = "Monday 11:00–17:00 overlaps Monday 09:00–12:00"
    async with signed_in(browser, stack, "wba-broker", "broker") as page:
        await page.get_by_role("link", name="Team").click()
        await page.get_by_role("link", name="Availability of Bo Avail").click()
        await expect(page.get_by_role("heading", name="Availability of Bo Avail")).to_be_visible()
        second = page.get_by_label("Monday, window 2, from", exact=True)
        await expect(second).to_have_value("13:00")  # the agent's split shift, as saved
        await second.fill("11:00")
        assert await pressed(page, "Save working hours") == 422
        error = page.locator("#availability_hours_0-error")
        await expect(error).to_have_text(reason)
        await expect(second).to_have_attribute("aria-describedby", "availability_hours_0-error")
        await expect(second).to_have_value("11:00")  # as typed
        await expect(page.locator('tbody[data-day="0"]')).to_contain_text(reason)  # beside Monday's windows

    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        stored = await crm.get("/v1/agents/me/availability", headers=stack.auth(bo, "realtor", ACCOUNT))
    assert stored.json()["working_hours"] == [
        {"weekdays": [0], "start": "09:00:00", "end": "12:00:00"},
        {"weekdays": [0], "start": "13:00:00", "end": "17:00:00"},
    ], "nothing saved"


async def test_a_broker_removes_an_agent_s_holidays_and_caps_and_each_removal_is_stored_and_shown(
    browser: Browser, stack: Stack
) -> None:
    cy = "wba-cy"

    async def stored() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
            found = await crm.get(
                f"/v1/accounts/{ACCOUNT}/agents/{cy}/availability", headers=stack.auth("wba-broker", "broker", ACCOUNT)
            )
        assert found.status_code == 200, found.text
        return dict(found.json())

    async with signed_in(browser, stack, "wba-broker", "broker") as page:
        await page.get_by_role("link", name="Team").click()
        await page.get_by_role("link", name="Availability of Cy Avail").click()
        flash, holidays = page.get_by_role("status"), page.locator("ul.holidays li")
        for day in ("2026-12-24", "2026-12-31"):
            await page.get_by_label("A day off").fill(day)
            assert await pressed(page, "Add holiday") == 200
        day_cap, week_cap = page.get_by_label("A day", exact=True), page.get_by_label("A week (Monday to Sunday)")
        await day_cap.fill("3")
        await week_cap.fill("10")
        assert await pressed(page, "Save caps") == 200
        assert ((await stored())["holidays"], (await stored())["caps"]) == (
            ["2026-12-24", "2026-12-31"], {"day": 3, "week": 10, "month": None}
        )  # fmt: skip

        # One holiday removed: the other stays, stored and shown.
        async with page.expect_navigation():
            await page.get_by_role("button", name="Remove the holiday 2026-12-24").click()
        await expect(flash).to_have_text("Holidays saved.")
        await expect(holidays).to_have_count(1)
        await expect(holidays.first).to_have_attribute("data-holiday", "2026-12-31")
        assert (await stored())["holidays"] == ["2026-12-31"]

        # The day's cap emptied: no limit a day, the week's kept.
        await day_cap.fill("")
        assert await pressed(page, "Save caps") == 200
        await expect(flash).to_have_text("Lead caps saved.")
        await expect(day_cap).to_have_value("")
        await expect(week_cap).to_have_value("10")
        assert (await stored())["caps"] == {"day": None, "week": 10, "month": None}

        # The last cap and the last holiday removed: no caps at all, no holidays of the agent's own.
        await week_cap.fill("")
        assert await pressed(page, "Save caps") == 200
        async with page.expect_navigation():
            await page.get_by_role("button", name="Remove the holiday 2026-12-31").click()
        await expect(holidays).to_have_text(["No holidays (the office’s still apply)."])
        after = await stored()
        assert (after["holidays"], after["caps"]) == ([], None), after

        # As stored after a reload, and the recent changes say each removal, by whom.
        await page.reload()
        await expect(holidays).to_have_text(["No holidays (the office’s still apply)."])
        for period in ("A day", "A week (Monday to Sunday)", "A month"):
            await expect(page.get_by_label(period, exact=True)).to_have_value("")
        changes = page.locator("ol.changes li")
        await expect(changes.nth(0)).to_contain_text("by you: holidays: none")
        await expect(changes.nth(1)).to_contain_text("by you: caps: none")
        await expect(changes.nth(2)).to_contain_text("by you: caps: 10 a week")
        await expect(changes.nth(3)).to_contain_text("by you: holidays: 2026-12-31")
