"""The lead lists and a lead's page in a real browser (Chromium through Playwright), against the whole running system:

- an admin signs in with a pasted token (a refused one says why), searches, pages and sorts Brokerage CRM, offers
  two selected leads to an agent from More, filters by status, meets "Select one or more leads" in the dialog,
  never sees another office's lead (in the list or by its URL), and signs out;
- a broker offers a lead from its page; the agent, on a phone, finds it in My Leads by status, is not offered a CRM
  status it may not set, claims it by logging a call, sets its CRM status, writes to the contact (the email
  reaches the contact), is refused a text to a contact without a phone with what it typed kept, and the broker's
  open page shows the lead held by the agent.

The browser and how it is started are those of test_web_browser.py (its helpers cannot be imported here: the
type checker does not see tests/e2e as a module path).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from browser_windows import office, sign_in_as, window
from playwright.async_api import Browser, Page, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIST, OTHER, WORK = "wbl-list-realty", "wbl-other-realty", "wbl-work-realty"
NAMES = {"wbl-boss": "Bea Boss", "wbl-amy": "Amy List", "wbl-cal": "Cal List", "wbl-otto": "Otto Other",
         "wbl-wb": "Will Broker", "wbl-wa": "Wan Work"}  # fmt: skip
PAGE_SIZE = 50  # web/leads.py's: one lead more makes a second page
LIVE_MS = 10_000  # a change shows on an open page within about a second; routing and projection come first


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    admin = {"user_id": "wbl-ada", "name": "Ada Admin", "email": "ada@wbl.example", "role": "admin"}
    configs = [
        office(LIST, ["wbl-boss", "wbl-amy", "wbl-cal"], NAMES, staff=[admin]),  # the broker holds new leads
        office(OTHER, ["wbl-otto"], NAMES),
        office(WORK, ["wbl-wb", "wbl-wa"], NAMES),
    ]
    path = tmp_path_factory.mktemp("web-leads") / "accounts.json"
    path.write_text(json.dumps({"accounts": configs}))
    stack.seed(path)


async def post_leads(stack: Stack, account_id: str, last_name: str, count: int, **more: Any) -> list[str]:
    """`count` website leads posted to intake at once; their lead ids."""

    async def one(client: httpx.AsyncClient) -> str:
        body = {"account_id": account_id, "first_name": "Paula", "last_name": last_name,
                "email": f"paula-{uuid.uuid4().hex[:10]}@example.com", **more}  # fmt: skip
        posted = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
        assert posted.status_code == 202, posted.text
        return str(posted.json()["event_id"])

    async with httpx.AsyncClient(timeout=30) as client:
        return list(await asyncio.gather(*(one(client) for _ in range(count))))


async def lead_json(stack: Stack, account_id: str, lead_id: str, broker: str) -> dict[str, Any]:
    headers = stack.auth(broker, "broker", account_id)
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        found = await crm.get(f"/v1/accounts/{account_id}/leads/{lead_id}", headers=headers)
    return found.json() if found.status_code == 200 else {}


async def rows(page: Page) -> list[str]:
    """The lead ids of the list's rows, top to bottom."""
    return [str(await row.get_attribute("data-lead")) for row in await page.locator("tr[data-lead]").all()]


async def test_an_admin_searches_pages_sorts_and_offers_leads_from_the_list_and_never_sees_another_office(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Page{uuid.uuid4().hex[:6]}"
    leads = await post_leads(stack, LIST, marker, PAGE_SIZE + 1)
    [foreign] = await post_leads(stack, OTHER, marker, 1)  # another office's lead, named alike
    await eventually(lambda: lead_json(stack, OTHER, foreign, "wbl-otto"), what="the other office's lead")
    context, page = await window(browser)
    crm = stack.url("crm-api")
    try:
        # Signed out, the list sends to sign-in; a refused token says so; the admin's token leads back to the list.
        await page.goto(f"{crm}/app/accounts/{LIST}/leads")
        await expect(page.get_by_role("alert")).to_have_text("Sign in to continue.")
        await page.get_by_label("Access token from your brokerage's sign-in").fill("not-a-token")
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("alert")).to_contain_text("That access token was not accepted")
        await page.goto(f"{crm}/app/accounts/{LIST}/leads")
        admin_token = stack.token("wbl-ada", "admin", LIST)  # as the brokerage's identity provider would issue it
        await page.get_by_label("Access token from your brokerage's sign-in").fill(admin_token)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page).to_have_url(f"{crm}/app/accounts/{LIST}/leads")
        await expect(page.locator(".who")).to_contain_text("wbl-ada · admin")

        # Search: the first page of 50, then the next; each lead once; the other office's never.
        await page.get_by_label("Search").fill(marker)

        async def all_listed() -> bool:
            await page.get_by_role("button", name="Apply").click()
            return await page.get_by_role("link", name="Next page").count() == 1

        await eventually(all_listed, what="the 51 leads routed and listed")
        first = await rows(page)
        assert len(first) == PAGE_SIZE, first
        await page.get_by_role("link", name="Next page").click()
        second = await rows(page)
        await expect(page.get_by_label("Search")).to_have_value(marker)  # the filters go with the page
        assert sorted(first + second) == sorted(leads), "every lead once over the two pages"
        assert foreign not in first + second
        await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
        # Oldest first: the newest page's last lead comes first.
        await page.get_by_label("Sort").select_option(label="Oldest")
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("tr[data-lead]").first).to_have_attribute("data-lead", second[-1])
        await expect(page.get_by_label("Sort")).to_have_value("created_asc")

        # Another office's lead by its URL, or its pages: a page that says no, without its data.
        others = [f"leads/{foreign}", "leads", "dashboard", "team", "settings", "realtors", "ponds"]
        for url in [f"/app/accounts/{LIST}/leads/{foreign}", *(f"/app/accounts/{OTHER}/{p}" for p in others)]:
            answer = await page.goto(crm + url)
            assert answer is not None, url
            assert answer.status in {403, 404}, (url, answer.status)
            await expect(page.locator("main")).not_to_contain_text(marker)
            await expect(page.locator("main")).not_to_contain_text(NAMES["wbl-otto"])
        await page.get_by_role("link", name="Back to leadflow").click()  # home: the admin's list
        await expect(page).to_have_url(f"{crm}/app/accounts/{LIST}/leads")

        # More -> Assign to an agent with nothing selected: the dialog says what is missing, and keeps the agent.
        await page.goto(f"{crm}/app/accounts/{LIST}/leads?q={marker}")
        await page.get_by_text("More", exact=True).click()
        await page.get_by_role("button", name="Assign to an agent").click()
        dialog = page.get_by_role("dialog", name="Assign to an agent")
        await dialog.get_by_label("Agent", exact=True).select_option(label="Amy List")
        await dialog.get_by_role("button", name="Assign").click()
        await expect(dialog.get_by_role("alert")).to_have_text("Select one or more leads.")
        await expect(dialog.get_by_label("Agent", exact=True)).to_have_value("wbl-amy")

        # Two leads selected but no agent: refused, the two still selected; then offered to Amy.
        await page.goto(f"{crm}/app/accounts/{LIST}/leads?q={marker}")
        chosen = (await rows(page))[:2]
        for lead_id in chosen:
            await page.locator(f'tr[data-lead="{lead_id}"] input[type="checkbox"]').check()
        await page.get_by_text("More", exact=True).click()
        await page.get_by_role("button", name="Assign to an agent").click()
        await dialog.get_by_label("Offer: the agent claims each lead within the window").check()
        await dialog.get_by_label("Claim window for an offer").fill("3600")
        await dialog.get_by_role("button", name="Assign").click()
        await expect(dialog.get_by_role("alert")).to_have_text("Select an agent.")
        await expect(dialog.get_by_label("Offer: the agent claims each lead within the window")).to_be_checked()
        await expect(dialog.get_by_label("Claim window for an offer")).to_have_value("3600")
        for lead_id in chosen:
            await expect(page.locator(f'tr[data-lead="{lead_id}"] input[type="checkbox"]')).to_be_checked()
        await dialog.get_by_label("Agent", exact=True).select_option(label="Amy List")
        await dialog.get_by_role("button", name="Assign").click()
        await expect(page.get_by_role("status")).to_have_text("2 leads are going to wbl-amy.")
        await expect(page.get_by_label("Search")).to_have_value(marker)  # back to the list as it was filtered
        await page.get_by_label("Lead Status").select_option("offered")

        async def offered_two() -> bool:
            await page.get_by_role("button", name="Apply").click()
            return sorted(await rows(page)) == sorted(chosen)

        await eventually(offered_two, what="the two leads listed as offered")
        for lead_id in chosen:
            status = page.locator(f'tr[data-lead="{lead_id}"] [data-label="Lead Status"]')
            await expect(status).to_contain_text("offered")

        # The "My Leads" tab keeps the search; signing out ends the session.
        await page.get_by_role("link", name="My Leads").click()
        await expect(page.get_by_role("link", name="My Leads")).to_have_attribute("aria-current", "page")
        await expect(page.get_by_label("Search")).to_have_value(marker)
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(f"{crm}/app/sign-in")
        await page.goto(f"{crm}/app/accounts/{LIST}/leads")
        await expect(page).to_have_url(re.compile(r"/app/sign-in\?next="))
    finally:
        await context.close()


async def test_an_agent_on_a_phone_claims_a_broker_s_offer_by_a_call_sets_its_status_and_writes_to_the_contact(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Work{uuid.uuid4().hex[:6]}"
    [lead_id] = await post_leads(stack, WORK, marker, 1)
    await eventually(lambda: lead_json(stack, WORK, lead_id, "wbl-wb"), what="the lead held by the broker")
    contact = (await lead_json(stack, WORK, lead_id, "wbl-wb"))["email"]
    broker_context, broker = await window(browser)
    agent_context, agent = await window(browser, phone=True)
    lead_url = f"{stack.url('crm-api')}/app/accounts/{WORK}/leads/{lead_id}"
    try:
        await sign_in_as(broker, stack, WORK, "wbl-wb", "broker")
        await broker.goto(lead_url)
        await broker.locator("summary", has_text="Assign").click()
        offer = broker.get_by_label("Offer: the agent claims it within the window")
        await offer.check()
        await broker.get_by_label("Claim window for an offer").fill("3600")
        await broker.get_by_label("Note (on the timeline)").fill("Wants a call today")
        await broker.get_by_role("button", name="Assign", exact=True).click()  # no agent chosen
        await expect(broker.locator("#agent_id-error")).to_have_text("Select an agent.")
        await expect(offer).to_be_checked()  # the rest as it was filled in
        await expect(broker.get_by_label("Claim window for an offer")).to_have_value("3600")
        await expect(broker.get_by_label("Note (on the timeline)")).to_have_value("Wants a call today")
        await broker.get_by_label("Agent", exact=True).select_option(label="Wan Work")
        await broker.get_by_role("button", name="Assign", exact=True).click()
        await expect(broker.get_by_role("status")).to_contain_text("The lead is being offered to wbl-wa")

        await sign_in_as(agent, stack, WORK, "wbl-wa", "realtor")
        await agent.get_by_label("Lead Status").select_option("offered")
        await agent.get_by_role("button", name="Apply").click()
        row = agent.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_be_visible(timeout=LIVE_MS)  # the open page gets the offer
        await row.get_by_role("link", name=f"Paula {marker}").click()
        await expect(agent.get_by_role("button", name="Claim")).to_be_visible()
        # Only the holder (or a broker) sets the CRM status: no such button while the lead is only offered.
        await expect(agent.get_by_role("button", name="Set status")).to_have_count(0)

        await agent.get_by_label("Action").select_option("call")
        await agent.get_by_label("Call outcome").select_option("left_voicemail")
        await agent.get_by_label("Note or words about it").fill("Asked for a callback")
        await agent.get_by_role("button", name="Save", exact=True).click()
        await expect(agent.get_by_role("status")).to_contain_text("Saved.")
        timeline = agent.locator("ol.timeline")
        await expect(timeline).to_contain_text("call by wbl-wa (left voicemail)")
        await expect(agent.locator('li[data-type="LeadClaimed"]')).to_contain_text("Claimed by wbl-wa", timeout=LIVE_MS)

        # Now the holder: the open page offers the CRM status without a reload.
        await agent.get_by_role("combobox", name="CRM status").select_option("contacted", timeout=LIVE_MS)
        await agent.get_by_role("button", name="Set status").click()
        await expect(agent.get_by_role("status")).to_have_text("CRM status saved.")
        await expect(agent.get_by_role("combobox", name="CRM status")).to_have_value("contacted")

        await agent.get_by_label("Action").select_option("email")
        await agent.get_by_label("Email subject (to the contact)").fill(f"Homes for {marker}")
        await agent.get_by_label("Email or text to the contact").fill("Three listings you may like.")
        await agent.get_by_role("button", name="Save", exact=True).click()
        await expect(agent.get_by_role("status")).to_contain_text("Saved.")
        await expect(timeline).to_contain_text(f"email by wbl-wa to the contact: Homes for {marker}")

        def emailed() -> bool:
            assert stack.mail is not None
            return any(str(m["Subject"]) == f"Homes for {marker}" for m in stack.mail.received_by(contact))

        await eventually(emailed, what="the agent's email at the contact's address")

        # A text to a contact who gave no phone: refused beside the message, what was typed kept, nothing written.
        entries = await timeline.locator("li").count()
        await agent.get_by_label("Action").select_option("sms")
        await agent.get_by_label("Email or text to the contact").fill("Call me back?")
        await agent.get_by_role("button", name="Save", exact=True).click()
        await expect(agent.locator("#message-error")).to_have_text("the contact has no phone number")
        await expect(agent.get_by_label("Email or text to the contact")).to_have_value("Call me back?")
        await expect(agent.get_by_label("Action")).to_have_value("sms")
        await agent.goto(lead_url)
        await expect(timeline.locator("li")).to_have_count(entries)

        # The broker's page shows the lead held by the agent, with the note and the call.
        await broker.goto(lead_url)
        await expect(broker.locator("#live dl.facts")).to_contain_text("Wan Work")
        await expect(broker.locator("ol.timeline")).to_contain_text("Wants a call today")
        await expect(broker.get_by_role("combobox", name="CRM status")).to_have_value("contacted")
    finally:
        await broker_context.close()
        await agent_context.close()
