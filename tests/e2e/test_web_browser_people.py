"""The people pages in a real browser (Chromium through Playwright), against the whole running system:

- Team: a broker filters the team by role (staff, admins), sets an agent inactive, and the agent's open page
  (a phone's) sends it to sign in again, saying its session ended; set active again, the agent signs back in;
- My Realtors: a refused invitation keeps what was typed; a realtor of another brokerage declines, is invited
  again and accepts; the broker transfers one lead, which leaves the brokerage's "My Leads" tab; the realtor sees
  that lead and no other of the brokerage's (not by its URL either), works it, and keeps it when the broker
  disconnects it;
- My notifications, on a phone: a refused save keeps what was chosen; a push device is removed; a time away is
  added and removed; an admin (staff, no agent) sets its own notices.

The browser and how it is started are those of test_web_browser.py (its helpers cannot be imported here: the
type checker does not see tests/e2e as a module path).
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from browser_windows import office, sign_in_as, window
from playwright.async_api import Browser, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

TEAM, RAE = "wbt-realty", "wbt-rae-homes"  # a brokerage, and a realtor on an account of its own
NAMES = {"wbt-boss": "Tess Boss", "wbt-kim": "Kim Team", "wbt-lou": "Lou Team", "wbt-rae-office": "Rae's Office",
         "wbt-rae": "Rae Homes"}  # fmt: skip
LIVE_MS = 10_000  # a change shows on an open page within about a second; routing and projection come first


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    staff = [{"user_id": "wbt-ada", "name": "Ada Admin", "email": "ada@wbt.example", "role": "admin"},
             {"user_id": "wbt-sam", "name": "Sam Staff", "email": "sam@wbt.example", "role": "staff"}]  # fmt: skip
    path = tmp_path_factory.mktemp("web-people") / "accounts.json"
    path.write_text(json.dumps({"accounts": [office(TEAM, ["wbt-boss", "wbt-kim", "wbt-lou"], NAMES, staff=staff),
                                             office(RAE, ["wbt-rae-office", "wbt-rae"], NAMES)]}))  # fmt: skip
    stack.seed(path)


async def post_lead(stack: Stack, last_name: str) -> str:
    """A website lead of the brokerage (round robin off: its broker holds it), once crm-api lists it."""
    body = {"account_id": TEAM, "first_name": "Paula", "last_name": last_name,
            "email": f"paula-{uuid.uuid4().hex[:10]}@example.com"}  # fmt: skip
    async with httpx.AsyncClient() as client:
        posted = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["event_id"])

    async def listed() -> bool:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
            url, headers = f"/v1/accounts/{TEAM}/leads/{lead_id}", stack.auth("wbt-boss", "broker", TEAM)
            return (await crm.get(url, headers=headers)).status_code == 200

    await eventually(listed, what="the lead in crm-api")
    return lead_id


async def test_a_broker_filters_the_team_and_an_agent_set_inactive_is_signed_out_of_its_open_page(
    browser: Browser, stack: Stack
) -> None:
    broker_context, broker = await window(browser)
    agent_context, agent = await window(browser, phone=True)
    try:
        await sign_in_as(agent, stack, TEAM, "wbt-kim", "realtor")
        await expect(agent.get_by_role("heading", name="My Leads")).to_be_visible()

        await sign_in_as(broker, stack, TEAM, "wbt-boss", "broker")
        await broker.get_by_role("link", name="Team").click()
        members = broker.locator("tr[data-member]")
        for role, who in (("staff", "wbt-sam"), ("admin", "wbt-ada")):
            await broker.get_by_label("Role").select_option(role)
            await broker.get_by_role("button", name="Apply").click()
            await expect(members).to_have_count(1)
            await expect(broker.locator(f'tr[data-member="{who}"] [data-label="Role"]')).to_have_text(role)
            await expect(members.get_by_role("button")).to_have_count(0)  # nothing to set for staff or admins
        await broker.get_by_label("Role").select_option("agent")
        await broker.get_by_role("button", name="Apply").click()
        await expect(members).to_have_count(3)

        kim = broker.locator('tr[data-member="wbt-kim"]')
        await kim.get_by_label("Status of Kim Team").select_option("inactive")
        await kim.get_by_role("button", name="Set status").click()
        await expect(broker.get_by_role("status")).to_have_text("wbt-kim is inactive now.")
        await expect(kim.locator('[data-label="Status"]')).to_have_text("inactive")
        await expect(broker.get_by_label("Role")).to_have_value("agent")  # the list as it was filtered

        # The agent's open page: its live stream ends, and the page sends it to sign in again, saying why.
        await expect(agent).to_have_url(re.compile(r"/app/sign-in\?"), timeout=LIVE_MS)
        await expect(agent.get_by_role("alert")).to_have_text("Your session has ended; sign in again.")

        await kim.get_by_label("Status of Kim Team").select_option("active")
        await kim.get_by_role("button", name="Set status").click()
        await expect(broker.get_by_role("status")).to_have_text("wbt-kim is active now.")
        await sign_in_as(agent, stack, TEAM, "wbt-kim", "realtor")
        await expect(agent.get_by_role("heading", name="My Leads")).to_be_visible()
    finally:
        await broker_context.close()
        await agent_context.close()


async def test_a_realtor_declines_then_accepts_works_the_one_lead_transferred_and_keeps_it_when_disconnected(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Rae{uuid.uuid4().hex[:6]}"
    shared, kept = await post_lead(stack, marker), await post_lead(stack, marker)
    crm = stack.url("crm-api")
    broker_context, broker = await window(browser)
    realtor_context, realtor = await window(browser, phone=True)
    try:
        await sign_in_as(broker, stack, TEAM, "wbt-boss", "broker")
        await sign_in_as(realtor, stack, RAE, "wbt-rae", "realtor")
        await broker.get_by_role("link", name="My Realtors").click()
        await broker.get_by_label("Realtor's user id").fill("wbt-rae")
        await broker.get_by_label("Email Address").fill("rae@")
        await broker.get_by_label("Name").fill("Rae Homes")
        await broker.get_by_role("button", name="Invite").click()
        await expect(broker.locator("#email-error")).to_be_visible()
        await expect(broker.get_by_label("Realtor's user id")).to_have_value("wbt-rae")  # as typed
        await expect(broker.get_by_label("Name")).to_have_value("Rae Homes")
        await broker.get_by_label("Email Address").fill("rae@wbt.example")
        await broker.get_by_role("button", name="Invite").click()
        await expect(broker.get_by_role("status")).to_have_text("Invitation sent to Rae Homes.")
        row = broker.locator('tr[data-realtor="wbt-rae"] [data-label="Status"]')
        await expect(row).to_have_text("pending")

        await realtor.reload()
        invitation = realtor.locator("section.invitations li", has_text=TEAM)
        await invitation.get_by_role("button", name="Decline").click()
        await expect(realtor.get_by_role("status")).to_have_text(f"You declined the invitation ({TEAM}).")
        await expect(realtor.locator("section.invitations")).to_have_count(0)
        await broker.reload()
        await expect(row).to_have_text("declined")

        await broker.get_by_label("Realtor's user id").fill("wbt-rae")
        await broker.get_by_label("Email Address").fill("rae@wbt.example")
        await broker.get_by_label("Name").fill("Rae Homes")
        await broker.get_by_role("button", name="Invite").click()
        await expect(broker.get_by_role("status")).to_have_text("Invitation sent to Rae Homes.")  # again
        await expect(row).to_have_text("pending")
        await realtor.reload()
        await invitation.get_by_role("button", name="Accept").click()
        await expect(realtor.get_by_role("status")).to_have_text(f"You accepted the invitation ({TEAM}).")

        # One of the two leads transferred: it leaves the brokerage's "My Leads" tab, the other stays.
        await broker.get_by_role("link", name="Brokerage CRM").click()
        await broker.get_by_label("Search").fill(marker)
        await broker.get_by_role("button", name="Apply").click()
        await broker.locator(f'tr[data-lead="{shared}"] input[type="checkbox"]').check()
        await broker.get_by_text("More", exact=True).click()
        await broker.get_by_role("button", name="Lead Transfer").click()
        dialog = broker.get_by_role("dialog", name="Lead Transfer")
        await dialog.get_by_role("button", name="Submit").click()  # no realtor chosen: refused, the lead still selected
        await expect(dialog.get_by_role("alert")).to_have_text("Select the realtor who will receive the leads.")
        await expect(broker.locator(f'tr[data-lead="{shared}"] input[type="checkbox"]')).to_be_checked()
        await dialog.get_by_label("Rae Homes").check()
        await dialog.get_by_role("button", name="Submit").click()
        await expect(broker.get_by_role("status")).to_contain_text("1 lead to Rae Homes")
        await broker.get_by_role("link", name="My Leads").click()
        await expect(broker.locator(f'tr[data-lead="{kept}"]')).to_be_visible()
        await expect(broker.locator(f'tr[data-lead="{shared}"]')).to_have_count(0, timeout=LIVE_MS)

        # The realtor: the shared lead, and no other lead of the brokerage's, in its list or by its URL.
        await expect(realtor.locator(f'tr[data-lead="{shared}"]')).to_contain_text(f"Paula {marker}", timeout=LIVE_MS)
        await expect(realtor.locator(f'tr[data-lead="{kept}"]')).to_have_count(0)
        answer = await realtor.goto(f"{crm}/app/accounts/{TEAM}/leads/{kept}")
        assert answer is not None
        assert answer.status in {403, 404}, answer.status
        await expect(realtor.locator("main")).not_to_contain_text(marker)
        await realtor.goto(f"{crm}/app/accounts/{TEAM}/leads/{shared}")
        await realtor.get_by_label("Note or words about it").fill("Booked a viewing")
        await realtor.get_by_role("button", name="Save", exact=True).click()
        await expect(realtor.get_by_role("status")).to_contain_text("Saved.")
        await expect(realtor.locator("ol.timeline")).to_contain_text("Booked a viewing")

        # Disconnected, the realtor keeps the lead it was given.
        await broker.get_by_role("link", name="My Realtors").click()
        await broker.locator('tr[data-realtor="wbt-rae"]').get_by_role("button", name="Disconnect").click()
        await expect(broker.get_by_role("status")).to_contain_text("Rae Homes is disconnected")
        await expect(row).to_have_text("disconnected")
        await realtor.get_by_role("link", name="My Leads").click()
        await expect(realtor.locator(f'tr[data-lead="{shared}"]')).to_be_visible()
    finally:
        await broker_context.close()
        await realtor_context.close()


async def test_my_notifications_keep_a_refused_choice_remove_a_device_and_plan_time_away(
    browser: Browser, stack: Stack
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        url, headers = f"/v1/accounts/{TEAM}/users/wbt-lou/devices", stack.auth("wbt-lou", "realtor", TEAM)
        registered = await crm.put(f"{url}/lou-phone", headers=headers, json={"token": "fcm-lou", "platform": "ios"})
        assert registered.status_code in {200, 201}, registered.text
    context, page = await window(browser, phone=True)
    try:
        await sign_in_as(page, stack, TEAM, "wbt-lou", "realtor")
        await page.get_by_role("link", name="My notifications").click()
        text, push = (page.get_by_role("checkbox", name=n) for n in ("Text message", "Push notification"))
        await text.uncheck()
        await push.check()
        await page.get_by_label("Daily digest of new leads").check()
        await page.get_by_label("Quiet hours from").fill("25:00")
        await page.get_by_label("Quiet hours until").fill("07:00")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#quiet_hours-error")).to_be_visible()
        # What was chosen is still chosen: only the refused time needs changing.
        await expect(text).not_to_be_checked()
        await expect(push).to_be_checked()
        await expect(page.get_by_label("Daily digest of new leads")).to_be_checked()
        await expect(page.get_by_label("Quiet hours from")).to_have_value("25:00")
        await page.get_by_label("Quiet hours from").fill("21:30")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status")).to_have_text("Notification preferences saved.")
        await page.reload()
        await expect(text).not_to_be_checked()
        await expect(push).to_be_checked()
        await expect(page.get_by_label("Quiet hours from")).to_have_value("21:30")

        device = page.locator('li[data-device="lou-phone"]')
        await expect(device).to_contain_text("lou-phone (ios)")
        await device.get_by_role("button", name="Remove").click()
        await expect(page.get_by_role("status")).to_have_text("lou-phone no longer gets push notifications.")
        await expect(page.locator("li[data-device]")).to_have_count(0)
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
            assert (await crm.get(url, headers=headers)).json()["items"] == []

        await page.get_by_label("From", exact=True).fill("2026-12-24T09:00")
        await page.get_by_label("Until", exact=True).fill("2026-12-26T18:00")
        await page.get_by_role("button", name="Save availability").click()
        await expect(page.get_by_role("status")).to_have_text("Availability saved.")
        away = page.locator("ul.away li")
        await expect(away).to_have_text(re.compile(r"Away 2026-12-24 09:00 – 2026-12-26 18:00"))
        await page.get_by_role("button", name="Remove the time away").click()
        await expect(away).to_have_text("No time away planned.")
    finally:
        await context.close()

    # An admin (staff, no agent) has the notices, and no availability of its own.
    context, page = await window(browser)
    try:
        await sign_in_as(page, stack, TEAM, "wbt-ada", "admin")
        await page.get_by_role("link", name="My notifications").click()
        await expect(page.get_by_role("heading", name="My availability")).to_have_count(0)
        await page.get_by_label("An email for every new lead").check()
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status")).to_have_text("Notification preferences saved.")
        await expect(page.get_by_label("An email for every new lead")).to_be_checked()
    finally:
        await context.close()
