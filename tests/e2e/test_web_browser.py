"""The web app in a real browser (Chromium through Playwright), against the whole running system (issue 12.6):

- a lead posted at intake appears in the broker's All Leads while the page is open, without a reload;
- two agents race for a lead on its page: one claims, and the other's offer disappears from their open page.

The browser is Debian's Chromium (`dev.py test` installs it when it can); a missing browser fails these
tests with what to install, never skips them.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_windows import post_a_lead, routed
from playwright.async_api import Browser, BrowserContext, Page, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LIVE = "live-realty"  # round robin on, a race of two
SHARE, RILEY = "roof-realty", "riley-homes"  # a brokerage, and a realtor on an account of its own
NORTH, SOUTH = "org-north-office", "org-south-office"  # two offices of one organisation
SET = "web-set-realty"  # the settings page changes how its next lead is routed
DECLINE = "decline-realty"  # one agent at a time; a decline sends the lead on
AGENTS = {"live-broker": "Lou Broker", "live-ann": "Ann Live", "live-bo": "Bo Live"}
LIVE_TIMEOUT_MS = 20_000  # a deadline, not a speed target: a change shows within about a second, but a page the
# live update reloads (the lead page) waited for its navigation over 10 s under the whole suite on a slow hour


SCREENS = os.environ.get("LEADFLOW_SCREENSHOTS")  # a folder: the tests photograph each screen into it


async def shot(page: Page, name: str) -> None:
    """docs/screens/: `LEADFLOW_SCREENSHOTS=docs/screens python3 dev.py test tests/e2e/test_web_browser.py`."""
    if SCREENS:  # Playwright makes the folder
        await page.screenshot(path=str(Path(SCREENS) / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    config = {"accounts": [{
        "account_id": LIVE, "name": "Live Realty", "round_robin": True, "roster": list(AGENTS),
        # The broker takes no round-robin leads: the racers are always the two agents.
        "agents": [{"agent_id": a, "name": n, "email": f"{a}@live.example", "round_robin": a != "live-broker"}
                   for a, n in AGENTS.items()],
        "sources": [{"name": "Website", "race_count": 2, "claim_window_seconds": 3600}],
    }, {
        # AgentRoof: a brokerage that shares leads with realtors; round robin off, so its broker holds them.
        "account_id": SHARE, "name": "Roof Realty", "round_robin": False, "roster": ["roof-broker"],
        "agents": [{"agent_id": "roof-broker", "name": "Sam Broker", "email": "sam@roof.example"}],
    }, {
        # Round robin between two agents; the broker (position 1) takes none until round robin is off.
        "account_id": SET, "name": "Set Realty", "round_robin": True, "roster": ["set-broker", "set-ann", "set-bo"],
        "agents": [{"agent_id": "set-broker", "name": "Stu Broker", "email": "stu@set.example", "round_robin": False},
                   {"agent_id": "set-ann", "name": "Ann Set", "email": "ann@set.example"},
                   {"agent_id": "set-bo", "name": "Bo Set", "email": "bo@set.example"}],
        "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 3600}],
    }, {
        # RealHub's offers one agent at a time: a decline sends the lead on to the other agent.
        "account_id": DECLINE, "name": "Decline Realty", "round_robin": True,
        "roster": ["dec-broker", "dec-dee", "dec-eli"],
        "agents": [{"agent_id": "dec-broker", "name": "Dot Broker", "email": "dot@dec.example", "round_robin": False},
                   {"agent_id": "dec-dee", "name": "Dee Dec", "email": "dee@dec.example"},
                   {"agent_id": "dec-eli", "name": "Eli Dec", "email": "eli@dec.example"}],
        "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 3600}],
    }, {
        # Brokerkit: two offices of one organisation.
        "account_id": NORTH, "name": "Org North", "organisation_id": "web-org", "round_robin": False,
        "roster": ["north-broker", "org-north-ned", "north-tia"], "agents": [
            {"agent_id": "north-broker", "name": "Nia North", "email": "nia@north.example"},
            {"agent_id": "org-north-ned", "name": "Ned North", "email": "ned@north.example"},
            {"agent_id": "north-tia", "name": "Tia Mover", "email": "tia@north.example"}],
    }, {
        "account_id": SOUTH, "name": "Org South", "organisation_id": "web-org", "round_robin": False,
        "roster": ["south-broker", "org-south-sue"], "agents": [
            {"agent_id": "south-broker", "name": "Sol South", "email": "sol@south.example"},
            {"agent_id": "org-south-sue", "name": "Sue Second", "email": "sue@south.example"}],
    }, {
        "account_id": RILEY, "name": "Riley Homes", "round_robin": False,
        "roster": ["riley-office", "riley-park", "riley-lane"],
        "agents": [{"agent_id": "riley-office", "name": "Riley Office", "email": "office@riley.example"},
                   {"agent_id": "riley-park", "name": "Riley Park", "email": "riley@riley.example"},
                   {"agent_id": "riley-lane", "name": "Riley Lane", "email": "lane@riley.example"}],
    }]}  # fmt: skip
    path = tmp_path_factory.mktemp("browser") / "accounts.json"
    path.write_text(json.dumps(config))
    stack.seed(path)


async def signed_in(
    browser: Browser, stack: Stack, user: str, role: str, account: str = LIVE, *, desktop: bool = False
) -> tuple[BrowserContext, Page]:
    """A browser window (a phone's, unless `desktop`) signed in through the sign-in page, as a person would."""
    viewport = {"width": 1280, "height": 900} if desktop else {"width": 390, "height": 844}
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={account}")
    if account == SHARE and desktop:
        await shot(page, "sign-in")
    await page.locator(f'form:has(input[name="user"][value="{account}|{user}|{role}"]) button').click()
    await page.wait_for_load_state()
    return context, page


async def post_lead(stack: Stack, last_name: str, account: str = LIVE) -> str:
    return await post_a_lead(stack, last_name, account)


async def offered_to(stack: Stack, account: str, lead_id: str, broker: str) -> str:
    """The agent the lead is offered to (a race of one), once it is."""
    headers = stack.auth(broker, "broker", account)

    async def first() -> str | None:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
            detail = (await api.get(f"/v1/accounts/{account}/leads/{lead_id}", headers=headers)).json()
        offers = detail.get("open_offers", [])
        return str(offers[0]["agent_id"]) if offers else None

    found = await eventually(first, what="the offer")
    assert found is not None
    return found


async def test_a_new_lead_appears_in_the_brokers_all_leads_while_the_page_is_open(
    browser: Browser, stack: Stack
) -> None:
    context, page = await signed_in(browser, stack, "live-broker", "broker")
    try:
        await expect(page.get_by_role("heading", name="Brokerage CRM")).to_be_visible()
        await expect(page.get_by_role("link", name="All Leads")).to_have_attribute("aria-current", "page")
        marker = f"Live{uuid.uuid4().hex[:6]}"
        reloads: list[str] = []
        page.on("framenavigated", lambda frame: reloads.append(frame.url) if frame == page.main_frame else None)
        lead_id = await post_lead(stack, marker)
        row = page.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS + 5_000)  # routing, projection, then the page
        await expect(row).to_contain_text(f"Paula {marker}")
        await expect(row.locator('[data-label="Lead Status"]')).to_contain_text("offered")
        assert reloads == [], "the row came in without the page reloading"
        await shot(page, "brokerage-crm-phone")
    finally:
        await context.close()


async def test_an_agent_claims_on_the_lead_page_and_the_other_racers_offer_disappears(
    browser: Browser, stack: Stack
) -> None:
    lead_id = await post_lead(stack, f"Race{uuid.uuid4().hex[:6]}")
    headers = stack.auth("live-broker", "broker", LIVE)

    async def racers() -> list[str] | None:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
            detail: dict[str, Any] = (await api.get(f"/v1/accounts/{LIVE}/leads/{lead_id}", headers=headers)).json()
        offers = [o["agent_id"] for o in detail.get("open_offers", [])]
        return offers if len(offers) == 2 else None

    found = await eventually(racers, what="the race of two")
    assert found is not None
    winner, loser = found
    url = f"{stack.url('crm-api')}/app/accounts/{LIVE}/leads/{lead_id}"
    win_context, win_page = await signed_in(browser, stack, winner, "realtor")
    lose_context, lose_page = await signed_in(browser, stack, loser, "realtor")
    try:
        await win_page.goto(url)
        await lose_page.goto(url)
        await expect(lose_page.locator(f'[data-offer="{loser}"]')).to_be_visible()
        await expect(lose_page.locator(".countdown").first).to_contain_text("left")  # the time left to claim
        await shot(lose_page, "offer-to-claim-phone")
        await win_page.get_by_role("button", name="Claim").click()
        await expect(win_page.get_by_role("status")).to_contain_text("Claim sent")
        # The loser's open page hears of the claim and drops its offer, without anyone reloading it.
        await expect(lose_page.locator(f'[data-offer="{loser}"]')).to_have_count(0, timeout=LIVE_TIMEOUT_MS + 5_000)
        await expect(lose_page.get_by_role("button", name="Claim")).to_have_count(0)
        # ...and says how its offer ended and who has the lead now.
        await expect(lose_page.get_by_role("alert")).to_contain_text(f"the lead is held by {AGENTS[winner]}")
        await shot(lose_page, "offer-ended-phone")
        await shot(win_page, "lead-page-claimed-phone")
        await expect(win_page.locator('li[data-type="LeadClaimed"]')).to_contain_text(
            f"Claimed by {winner}", timeout=LIVE_TIMEOUT_MS
        )
    finally:
        await win_context.close()
        await lose_context.close()


async def test_an_emails_accept_link_claims_in_one_click_and_its_lead_link_opens_the_page(
    browser: Browser, stack: Stack
) -> None:
    # As an agent reading the offer email on a phone: one click on "accept" claims, and the other racer's
    # lead link leads, through sign-in, to the lead's page, which says who has it now.
    lead_id = await post_lead(stack, f"Mail{uuid.uuid4().hex[:6]}")

    def offers() -> dict[str, str]:
        assert stack.mail is not None
        found: dict[str, str] = {}
        for mail in stack.mail.received():
            if mail["X-Leadflow-Lead-Id"] == lead_id and str(mail["Subject"]).startswith("Lead offer"):
                body = mail.get_body(("plain",))
                assert body is not None
                found[str(mail["X-Envelope-To"]).split("@")[0]] = body.get_content()
        return found if len(found) == 2 else {}

    mails = await eventually(offers, what="both racers' offer emails")
    winner, loser = sorted(mails)
    accept = re.search(r"Accept it with one click: (\S+)", mails[winner])
    lead_link = re.search(rf"(http\S+/app/accounts/{LIVE}/leads/{lead_id})", mails[loser])
    assert accept is not None
    assert lead_link is not None
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await context.new_page()
        await page.goto(accept.group(1))  # the page posts itself: the click was the claim
        await expect(page.get_by_role("heading", name="Claim sent")).to_be_visible()
        await context.clear_cookies()
        await page.goto(lead_link.group(1))  # not signed in: sign in first, then back to the lead
        await expect(page).to_have_url(re.compile(r"/app/sign-in\?next="))
        await page.goto(page.url + f"&account={LIVE}")  # the sample users of this office
        await page.locator(f'form:has(input[name="user"][value="{LIVE}|{loser}|realtor"]) button').click()
        await expect(page.get_by_role("alert")).to_contain_text(
            f"the lead is held by {AGENTS[winner]}", timeout=LIVE_TIMEOUT_MS + 5_000
        )
        assert page.url.endswith(f"/app/accounts/{LIVE}/leads/{lead_id}")
    finally:
        await context.close()


async def test_a_broker_invites_a_realtor_and_transfers_two_leads_who_then_sees_them_assigned_by_the_brokerage(
    browser: Browser, stack: Stack
) -> None:
    # AgentRoof, end to end in the browser: invite from My Realtors, the realtor accepts, then the broker
    # selects two leads, More -> Lead Transfer -> the realtor -> Submit.
    marker = f"Share{uuid.uuid4().hex[:6]}"
    leads = [await post_lead(stack, marker, SHARE) for _ in range(2)]
    broker_context, broker = await signed_in(browser, stack, "roof-broker", "broker", SHARE, desktop=True)
    realtor_context, realtor = await signed_in(browser, stack, "riley-park", "realtor", RILEY)
    try:
        await broker.get_by_role("link", name="My Realtors").click()
        await broker.get_by_label("Realtor's user id").fill("riley-park")
        await broker.get_by_label("Email Address").fill("riley@riley.example")
        await broker.get_by_label("Name").fill("Riley Park")
        await broker.get_by_role("button", name="Invite").click()
        await expect(broker.get_by_role("status")).to_contain_text("Invitation sent to Riley Park")
        await expect(broker.locator('tr[data-realtor="riley-park"]')).to_contain_text("pending")
        await shot(broker, "my-realtors")

        await realtor.reload()
        invitation = realtor.locator("section.invitations li", has_text=SHARE)
        await shot(realtor, "realtor-invitation-phone")
        await invitation.get_by_role("button", name="Accept").click()
        await expect(realtor.get_by_role("status")).to_contain_text("You accepted the invitation")

        await broker.get_by_role("link", name="Brokerage CRM").click()
        await broker.get_by_label("Search").fill(marker)
        await broker.get_by_role("button", name="Apply").click()
        for lead_id in leads:
            await expect(broker.locator(f'tr[data-lead="{lead_id}"]')).to_be_visible(timeout=LIVE_TIMEOUT_MS + 5_000)
            await broker.locator(f'tr[data-lead="{lead_id}"] input[type="checkbox"]').check()
        await broker.get_by_text("More", exact=True).click()
        await broker.get_by_role("button", name="Lead Transfer").click()
        dialog = broker.get_by_role("dialog", name="Lead Transfer")
        await dialog.get_by_label("Riley Park").check()
        await shot(broker, "lead-transfer")
        await dialog.get_by_role("button", name="Submit").click()
        await expect(broker.get_by_role("status")).to_contain_text(
            "The selected leads were transferred successfully: 2 leads to Riley Park"
        )
        for lead_id in leads:  # still in the brokerage's CRM, labelled with the realtor
            row = broker.locator(f'tr[data-lead="{lead_id}"]')
            await expect(row.locator('[data-label="Assigned Realtor Information"]')).to_contain_text(
                "Assigned To: Riley Park", timeout=LIVE_TIMEOUT_MS
            )

        # The realtor's open My Leads gets both, labelled with the brokerage, without a reload.
        for lead_id in leads:
            row = realtor.locator(f'tr[data-lead="{lead_id}"]')
            await expect(row).to_contain_text(f"Paula {marker}", timeout=LIVE_TIMEOUT_MS + 5_000)
            await expect(row).to_contain_text("Assigned By: Roof Realty")
        await shot(realtor, "realtor-my-leads-phone")
        await shot(broker, "brokerage-crm")

        # On the lead's page the realtor fills in the profile, but the brokerage's labels are not its to change.
        await realtor.goto(f"{stack.url('crm-api')}/app/accounts/{SHARE}/leads/{leads[0]}")
        labels = realtor.get_by_label("Labels (one per line)")
        await expect(labels).not_to_be_editable()
        await expect(realtor.locator("#labels-note")).to_contain_text("Labels are the brokerage's own")
        await realtor.get_by_label("Company").fill("Park Partners")
        await realtor.get_by_role("button", name="Save profile").click()
        await expect(realtor.get_by_role("status")).to_contain_text("Profile saved.")
        await expect(realtor.get_by_label("Company")).to_have_value("Park Partners")
        await expect(labels).to_have_value("")
    finally:
        await broker_context.close()
        await realtor_context.close()


async def test_a_broker_withdraws_an_invitation_and_a_realtor_who_joined_leaves_on_its_my_leads(
    browser: Browser, stack: Stack
) -> None:
    # Decision 0108 in the browser: My Realtors' Withdraw on a pending invitation, then the realtor's Leave.
    broker_context, broker = await signed_in(browser, stack, "roof-broker", "broker", SHARE, desktop=True)
    realtor_context, realtor = await signed_in(browser, stack, "riley-lane", "realtor", RILEY)
    row = broker.locator('tr[data-realtor="riley-lane"]')
    try:

        async def invite() -> None:
            await broker.get_by_role("link", name="My Realtors").click()
            await broker.get_by_label("Realtor's user id").fill("riley-lane")
            await broker.get_by_label("Email Address").fill("lane@riley.example")
            await broker.get_by_role("button", name="Invite").click()
            await expect(row).to_contain_text("pending")

        await invite()
        await row.get_by_role("button", name="Withdraw").click()
        await expect(broker.get_by_role("status")).to_contain_text("The invitation of riley-lane is withdrawn")
        await expect(row).to_contain_text("withdrawn")
        await realtor.reload()
        await expect(realtor.locator("section.invitations")).to_have_count(0)

        await invite()
        await realtor.reload()
        await realtor.locator("section.invitations li", has_text=SHARE).get_by_role("button", name="Accept").click()
        await expect(realtor.get_by_role("status")).to_contain_text("You accepted the invitation")
        joined = realtor.locator(f'section.brokerages li[data-brokerage="{SHARE}"]')
        await joined.get_by_role("button", name="Leave").click()
        await expect(realtor.get_by_role("status")).to_contain_text(f"You left {SHARE}")
        await expect(realtor.locator("section.brokerages")).to_have_count(0)
        await broker.reload()
        await expect(row).to_contain_text("left")
        await expect(row.get_by_role("button")).to_have_count(0)
    finally:
        await broker_context.close()
        await realtor_context.close()


async def test_a_broker_reassigns_a_lead_to_another_office_with_its_labels(browser: Browser, stack: Stack) -> None:
    # Brokerkit: the lead's profile -> labels; Reassign -> the other office -> Reassign. The other office's
    # open All Leads gets it, labels and all, as a new lead.
    marker = f"Move{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker, NORTH)
    north_context, north = await signed_in(browser, stack, "north-broker", "broker", NORTH, desktop=True)
    south_context, south = await signed_in(browser, stack, "south-broker", "broker", SOUTH, desktop=True)
    try:
        row = north.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS + 5_000)
        await row.get_by_role("link", name=f"Paula {marker}").click()
        await north.get_by_label("Labels (one per line)").fill("Hot\nRelocating, spring")  # a comma is in a label
        await north.get_by_label("Company").fill("Harbor Lofts LLC")
        await north.get_by_role("button", name="Save profile").click()
        await expect(north.get_by_role("status")).to_contain_text("Profile saved.")
        await expect(north.get_by_label("Labels (one per line)")).to_have_value("Hot\nRelocating, spring")
        await north.get_by_role("button", name="Reassign").click()
        dialog = north.get_by_role("dialog", name="Reassign")
        await dialog.get_by_role("button", name="Reassign").click()  # no office chosen: refused in the dialog
        await expect(dialog.get_by_role("alert")).to_have_text("Select the office that will receive the lead.")
        await dialog.get_by_label("Office").select_option(label="Org South")
        await shot(north, "reassign")
        await dialog.get_by_role("button", name="Reassign").click()
        await expect(north.get_by_role("status")).to_contain_text("reassigned to Org South")

        moved = south.locator(f'tr[data-lead="{lead_id}"]')
        await expect(moved).to_be_visible(timeout=LIVE_TIMEOUT_MS + 10_000)  # the router moves it, then the views
        await expect(moved).to_contain_text("Hot")
        await expect(moved.locator(".label", has_text="Relocating, spring")).to_have_count(1)
        await expect(moved).to_contain_text("from Org North")
        await moved.get_by_role("link", name=f"Paula {marker}").click()
        await expect(south.get_by_text("Moved from Org North")).to_be_visible()
        await expect(south.get_by_label("Company")).to_have_value("Harbor Lofts LLC")
        await shot(south, "lead-page")
        # ...and it is gone from the office it left.
        await north.goto(f"{stack.url('crm-api')}/app/accounts/{NORTH}/leads")
        await expect(north.locator(f'tr[data-lead="{lead_id}"]')).to_have_count(0)
    finally:
        await north_context.close()
        await south_context.close()


async def test_turning_round_robin_off_in_settings_sends_the_next_lead_to_roster_position_1(
    browser: Browser, stack: Stack
) -> None:
    context, page = await signed_in(browser, stack, "set-broker", "broker", SET, desktop=True)
    headers = stack.auth("set-broker", "broker", SET)

    async def holder(lead_id: str) -> tuple[str | None, list[str]] | None:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
            detail: dict[str, Any] = (await api.get(f"/v1/accounts/{SET}/leads/{lead_id}", headers=headers)).json()
        offers = [o["agent_id"] for o in detail.get("open_offers", [])]
        return (detail.get("owner_agent_id"), offers) if detail.get("owner_agent_id") or offers else None

    try:
        first = await post_lead(stack, "Before", SET)
        before = await eventually(lambda: holder(first), what="a lead routed before the change")
        assert before is not None
        assert before[1][:1] in (["set-ann"], ["set-bo"]), f"round robin offers it to an agent: {before}"

        await page.get_by_role("link", name="Settings").click()
        await page.get_by_label("Round robin", exact=False).first.uncheck()
        await page.get_by_role("button", name="Save routing", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Round robin off")
        await expect(page.get_by_label("Round robin", exact=False).first).not_to_be_checked()
        await shot(page, "settings")

        async def next_goes_to_the_broker() -> str | None:
            # The router reuses settings for up to 5 s: post until a lead routes under the new ones.
            lead_id = await post_lead(stack, f"After{uuid.uuid4().hex[:4]}", SET)
            found = await eventually(lambda: holder(lead_id), what="the lead routed")
            return lead_id if found and found[0] == "set-broker" else None

        lead_id = await eventually(next_goes_to_the_broker, timeout=45, what="a lead held by roster position 1")
        await page.get_by_role("link", name="Brokerage CRM").click()
        row = page.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row.locator('[data-label="Lead Status"]')).to_contain_text("assigned")
        await expect(row.locator('[data-label="Assigned Realtor Information"]')).to_contain_text("Stu Broker")
    finally:
        await context.close()


async def test_a_broker_assigns_a_lead_by_hand_and_the_agent_gives_it_back(browser: Browser, stack: Stack) -> None:
    # T4 and ClientBAY's "return lead to broker": the lead held by roster position 1 (round robin off) goes to
    # an agent by hand; the agent's open My Leads shows it; the agent returns it and the broker holds it again.
    marker = f"Hand{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker, NORTH)
    await routed(stack, NORTH, lead_id, "north-broker")
    broker_context, broker = await signed_in(browser, stack, "north-broker", "broker", NORTH, desktop=True)
    agent_context, agent = await signed_in(browser, stack, "org-north-ned", "realtor", NORTH)
    try:
        await broker.goto(f"{stack.url('crm-api')}/app/accounts/{NORTH}/leads/{lead_id}")
        await broker.locator("summary", has_text="Assign").click()
        await broker.get_by_label("Agent", exact=True).select_option(label="Ned North")
        await broker.get_by_label("Note (on the timeline)").fill("Speaks Spanish")
        await broker.get_by_role("button", name="Assign", exact=True).click()
        await expect(broker.get_by_role("status")).to_contain_text("assigned to org-north-ned")
        await expect(broker.locator('li[data-type="LeadAssigned"]').last).to_contain_text(
            "Speaks Spanish", timeout=LIVE_TIMEOUT_MS + 5_000
        )

        row = agent.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_be_visible(timeout=LIVE_TIMEOUT_MS + 5_000)
        await shot(agent, "agent-my-leads-phone")
        await row.get_by_role("link", name=f"Paula {marker}").click()
        await agent.get_by_role("combobox", name="CRM status").select_option("attempted_contact")
        await agent.get_by_role("button", name="Set status").click()
        await expect(agent.get_by_role("status")).to_contain_text("CRM status saved.")
        await expect(agent.locator("p.muted").first).to_contain_text("CRM status: attempted contact")
        await agent.locator("summary", has_text="Return to broker").click()
        await agent.get_by_label("Why (optional)").fill("Not my area")
        await agent.get_by_role("button", name="Return to broker").click()
        await expect(agent.get_by_role("status")).to_contain_text("going back to the broker")

        await expect(broker.locator('[data-label="Assigned To"], dd').filter(has_text="Nia North").first).to_be_visible(
            timeout=LIVE_TIMEOUT_MS + 5_000
        )
        await expect(broker.locator("ol.timeline")).to_contain_text("Not my area")
    finally:
        await broker_context.close()
        await agent_context.close()


async def test_a_team_member_reassigned_to_another_office_waits_in_its_onboarding_queue(
    browser: Browser, stack: Stack
) -> None:
    # Brokerkit Retention: search the team, Reassign a member to the other office; there, the member is in
    # the Onboarding queue until a broker sets it active.
    north_context, north = await signed_in(browser, stack, "north-broker", "broker", NORTH, desktop=True)
    south_context, south = await signed_in(browser, stack, "south-broker", "broker", SOUTH, desktop=True)
    try:
        await north.get_by_role("link", name="Team").click()
        await north.get_by_label("Search").fill("tia")
        await north.get_by_role("button", name="Apply").click()
        member = north.locator('tr[data-member="north-tia"]')
        await expect(north.locator("tr[data-member]")).to_have_count(1)
        await shot(north, "team")
        await member.get_by_label("Office for Tia Mover").select_option(label="Org South")
        await member.get_by_role("button", name="Reassign").click()
        await expect(north.get_by_role("status")).to_contain_text("moves to Org South")

        await south.goto(f"{stack.url('crm-api')}/app/accounts/{SOUTH}/team?status=onboarding")

        async def arrived() -> bool:
            await south.reload()
            return await south.locator('tr[data-member="north-tia"]').count() == 1

        await eventually(arrived, what="the member in the Onboarding queue")
        await expect(south.locator('tr[data-member="north-tia"] [data-label="Status"]')).to_have_text("onboarding")
        row = south.locator('tr[data-member="north-tia"]')
        await row.get_by_label("Status of Tia Mover").select_option("active")
        await row.get_by_role("button", name="Set status").click()
        await expect(south.get_by_role("status")).to_contain_text("north-tia is active now")
        await expect(south.locator('tr[data-member="north-tia"]')).to_have_count(0)  # out of the queue
    finally:
        await north_context.close()
        await south_context.close()


async def test_the_lead_management_dashboard_shows_who_is_next_open_offers_and_todays_leads(
    browser: Browser, stack: Stack
) -> None:
    context, page = await signed_in(browser, stack, "live-broker", "broker", LIVE, desktop=True)
    try:
        await page.get_by_role("link", name="Lead Management").click()
        website = page.locator('tr[data-source="Website"]')
        await expect(website.locator('[data-label="Rotation"]')).to_have_text("live-ann, live-bo")
        await expect(website.locator('[data-label="Left out"]')).to_contain_text(
            "live-broker: not approved for round robin"
        )
        marker = f"Dash{uuid.uuid4().hex[:6]}"
        await post_lead(stack, marker)
        # The open page gets the new lead's offers and today's count, live.
        offers = page.locator("ul.open-offers li", has_text=f"Paula {marker}")
        await expect(offers).to_have_count(2, timeout=LIVE_TIMEOUT_MS + 5_000)  # a race of two
        await expect(offers.first.locator(".countdown")).to_contain_text("left")
        await expect(page.locator('tr[data-today="Website"] [data-label="offered"]')).not_to_have_text("0")
        await shot(page, "lead-management")
    finally:
        await context.close()


async def test_an_agent_declines_an_offer_and_the_next_agent_gets_it_on_their_open_page(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Pass{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker, DECLINE)
    first = await offered_to(stack, DECLINE, lead_id, "dec-broker")
    other = "dec-eli" if first == "dec-dee" else "dec-dee"
    first_context, first_page = await signed_in(browser, stack, first, "realtor", DECLINE)
    other_context, other_page = await signed_in(browser, stack, other, "realtor", DECLINE)
    try:
        await expect(other_page.locator(f'tr[data-lead="{lead_id}"]')).to_have_count(0)  # not theirs yet
        await first_page.goto(f"{stack.url('crm-api')}/app/accounts/{DECLINE}/leads/{lead_id}")
        await first_page.get_by_role("button", name="Decline").click()
        await expect(first_page.get_by_role("status")).to_contain_text("You declined the offer")
        await expect(first_page.locator(f'tr[data-lead="{lead_id}"]')).to_have_count(0)
        row = other_page.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_contain_text(f"Paula {marker}", timeout=LIVE_TIMEOUT_MS + 5_000)
        await row.get_by_role("link", name=f"Paula {marker}").click()
        await expect(other_page.get_by_role("button", name="Claim")).to_be_visible()
    finally:
        await first_context.close()
        await other_context.close()


async def test_an_agent_claims_by_writing_a_note_then_adds_a_task_sets_notifications_and_signs_out(
    browser: Browser, stack: Stack
) -> None:
    # RealHub: any qualifying action claims. The note claims the offer; the task's due time is read in the
    # agent's own time zone (the browser's); then My notifications, then Sign out.
    lead_id = await post_lead(stack, f"Note{uuid.uuid4().hex[:6]}", DECLINE)
    headers = stack.auth("dec-broker", "broker", DECLINE)
    agent = await offered_to(stack, DECLINE, lead_id, "dec-broker")
    context = await browser.new_context(viewport={"width": 390, "height": 844}, timezone_id="America/Chicago")
    page = await context.new_page()
    try:
        await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={DECLINE}")
        await page.locator(f'form:has(input[name="user"][value="{DECLINE}|{agent}|realtor"]) button').click()
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{DECLINE}/leads/{lead_id}")
        await page.get_by_label("Action").select_option("note")
        await page.get_by_label("Note or words about it").fill("Called back, wants a 3-bedroom.")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Saved.")
        await expect(page.locator('li[data-type="LeadClaimed"]')).to_contain_text(
            f"Claimed by {agent}", timeout=LIVE_TIMEOUT_MS + 5_000
        )
        await page.get_by_label("Action").select_option("task")
        await page.get_by_label("Task title").fill("Send comps")
        await page.get_by_label("Task due").fill("2026-12-01T09:30")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Saved.")
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:
            detail = (await api.get(f"/v1/accounts/{DECLINE}/leads/{lead_id}", headers=headers)).json()
        [task] = [e for e in detail["timeline"] if e["action"] == "task"]
        assert task["content"]["task"]["due_at"].startswith("2026-12-01T15:30"), task  # 09:30 in Chicago, in UTC

        await page.get_by_role("link", name="My notifications").click()
        await page.get_by_label("Text message").uncheck()
        await page.get_by_label("Quiet hours from").fill("21:00")
        await page.get_by_label("Quiet hours until").fill("07:00")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Notification preferences saved.")
        await expect(page.get_by_label("Text message")).not_to_be_checked()
        await shot(page, "my-notifications-phone")

        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/app/sign-in$"))
        await page.goto(f"{stack.url('crm-api')}/app/my/leads")
        await expect(page).to_have_url(re.compile(r"/app/sign-in\?next="))  # the session is gone
    finally:
        await context.close()


async def test_a_broker_assigns_every_lead_the_filters_match_from_the_list(browser: Browser, stack: Stack) -> None:
    marker = f"Bulk{uuid.uuid4().hex[:6]}"
    leads = [await post_lead(stack, marker, SOUTH) for _ in range(3)]
    for lead_id in leads:
        await routed(stack, SOUTH, lead_id, "south-broker")
    context, page = await signed_in(browser, stack, "south-broker", "broker", SOUTH, desktop=True)
    try:
        await page.get_by_label("Search").fill(marker)
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("tr[data-lead]")).to_have_count(3)
        await page.get_by_text("More", exact=True).click()
        await page.get_by_role("button", name="Assign to an agent").click()
        dialog = page.get_by_role("dialog", name="Assign to an agent")
        await dialog.get_by_label("Every lead the filters match").check()
        await dialog.get_by_label("Agent", exact=True).select_option(label="Sue Second")
        await dialog.get_by_role("button", name="Assign").click()
        await expect(page.get_by_role("status")).to_contain_text("3 leads are going to org-south-sue")
        for lead_id in leads:
            row = page.locator(f'tr[data-lead="{lead_id}"] [data-label="Assigned Realtor Information"]')
            await expect(row).to_contain_text("Sue Second", timeout=LIVE_TIMEOUT_MS + 5_000)
    finally:
        await context.close()


async def test_another_site_cannot_show_leadflow_s_pages_in_a_frame(browser: Browser, stack: Stack) -> None:
    # Clickjacking (S4): a page that is not leadflow's frames crm-api's sign-in page and its offer-link page, and,
    # to show that framing works at all, intake's health answer (intake sends no anti-framing header). Chromium
    # shows intake's and refuses crm-api's: the headers are not only sent but valid as the browser reads them.
    context = await browser.new_context()
    page = await context.new_page()
    try:
        frames = {
            "control": f"{stack.url('intake')}/health/live",
            "sign-in": f"{stack.url('crm-api')}/app/sign-in",
            "offer-link": f"{stack.url('crm-api')}/v1/offer-links/{'x' * 43}",
        }
        await page.set_content("".join(f'<iframe id="{k}" src="{url}"></iframe>' for k, url in frames.items()))
        await expect(page.frame_locator("#control").locator("body")).to_contain_text("ok")
        # The frames have loaded (set_content waits for the page's load, which waits for its frames) and show
        # Chromium's error page instead of leadflow's.
        await expect(page.frame_locator("#sign-in").get_by_role("heading", name="Sign in")).to_have_count(0)
        # (The offer-link page would at once claim and show its answer, so no heading tells: its frame's URL does.)
        loaded = {frame.url for frame in page.frames}
        assert not {frames["sign-in"], frames["offer-link"]} & loaded, loaded
    finally:
        await context.close()
