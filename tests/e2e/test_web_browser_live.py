"""Live pages in a real browser (Chromium through Playwright), against the whole running system:

- a lead changes while its holder and its broker each have a choice in progress on its page (a CRM status picked,
  an email being written; an agent and a note in Assign): the live update shows the change and leaves every
  choice as it was, and the agent's status and the broker's Assign are then saved as chosen;
- the network drops under an open lead page (the page reaches crm-api through a relay the test cuts, which drops
  the stream and resets every new connection): once it is mended the page reconnects and shows what changed
  meanwhile, without reloading (a choice in progress is still there), and hears of later changes too; the same
  when the relay answers 503 meanwhile, as a proxy does while crm-api restarts (the page never shows that error);
- crm-api stops under an open Brokerage CRM list (killed, as a crash or a deploy would): once it runs again the
  page reconnects and shows the lead that came in meanwhile, its selection kept;
- a realtor's open My Leads list shows a lead the broker assigns her, without reloading.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from browser_windows import Cable, office, sign_in_as, window
from playwright.async_api import Browser, Page, Request, Route, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ACCOUNT = "wbv-realty"  # round robin off: its broker holds new leads
BROKER, ANN, BO = "wbv-boss", "wbv-ann", "wbv-bo"
NAMES = {BROKER: "Vic Boss", ANN: "Ann Live", BO: "Bo Live"}
LIVE_MS = 10_000  # a change shows on an open page within about a second; routing and projection come first
RESTART_MS = 60_000  # crm-api started again, its projection back in its consumer group, then the page


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("web-live") / "accounts.json"
    path.write_text(json.dumps({"accounts": [office(ACCOUNT, [BROKER, ANN, BO], NAMES)]}))
    stack.seed(path)


async def crm(stack: Stack, method: str, path: str, user: str = BROKER, **body: Any) -> Any:
    """A call of crm-api's JSON API as `user` (the broker unless said): its answer's JSON."""
    role = "broker" if user == BROKER else "realtor"
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as client:
        answer = await client.request(
            method, f"/v1/accounts/{ACCOUNT}{path}", headers=stack.auth(user, role, ACCOUNT), json=body or None
        )
    assert answer.status_code < 300, answer.text
    return answer.json()


async def post_lead(stack: Stack, last_name: str) -> str:
    """A website lead posted at intake; its lead id (crm-api may not have it yet)."""
    body = {"account_id": ACCOUNT, "first_name": "Paula", "last_name": last_name,
            "email": f"paula-{uuid.uuid4().hex[:10]}@example.com"}  # fmt: skip
    async with httpx.AsyncClient(timeout=30) as client:
        posted = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    return str(posted.json()["event_id"])


async def held_by(stack: Stack, lead_id: str, agent_id: str) -> dict[str, Any]:
    """The lead once crm-api shows it held by `agent_id`."""

    async def lead() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as client:
            found = await client.get(
                f"/v1/accounts/{ACCOUNT}/leads/{lead_id}", headers=stack.auth(BROKER, "broker", ACCOUNT)
            )
        detail: dict[str, Any] = found.json() if found.status_code == 200 else {}
        return detail if detail.get("owner_agent_id") == agent_id else None

    found: dict[str, Any] | None = await eventually(lead, what=f"the lead held by {agent_id}")
    assert found is not None
    return found


def navigations(page: Page) -> list[str]:
    """Where the page's main frame goes from now on (a reload among them)."""
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


def live_streams(page: Page) -> tuple[list[Request], list[Request]]:
    """The page's live-stream requests as they start, and those that fail (the stream dropped)."""
    started: list[Request] = []
    failed: list[Request] = []
    page.on("request", lambda r: started.append(r) if "/live?" in r.url else None)
    page.on("requestfailed", lambda r: failed.append(r) if "/live?" in r.url else None)
    return started, failed


async def test_a_live_update_keeps_every_choice_in_progress_on_the_lead_page_and_each_is_then_saved(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Keep{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker)
    await held_by(stack, lead_id, BROKER)
    await crm(stack, "POST", "/distributions", agent_id=ANN, mode="assign", lead_ids=[lead_id])
    await held_by(stack, lead_id, ANN)
    url = f"{stack.url('crm-api')}/app/accounts/{ACCOUNT}/leads/{lead_id}"
    agent_context, agent = await window(browser, phone=True)
    broker_context, broker = await window(browser)
    reloads: list[list[str]] = []
    try:
        await sign_in_as(agent, stack, ACCOUNT, ANN, "realtor")
        await sign_in_as(broker, stack, ACCOUNT, BROKER, "broker")
        for page in (agent, broker):
            await page.goto(url)
            # Both assignments on the timeline (to the broker as roster position 1, then to Ann) before counting.
            await expect(page.locator('li[data-type="LeadAssigned"]')).to_have_count(2, timeout=LIVE_MS)
            reloads.append(navigations(page))
        entries = await agent.locator("ol.timeline li").count()

        # The agent, holding the lead, picks a CRM status and starts an email to the contact.
        status = agent.get_by_role("combobox", name="CRM status")
        await status.select_option("appointment_set")
        await agent.get_by_label("Action").select_option("email")
        await agent.get_by_label("Email subject (to the contact)").fill(f"Viewing for {marker}")
        await agent.get_by_label("Email or text to the contact").fill("Saturday at 10?")
        # The broker, on the same lead, picks another status and starts handing the lead to Bo in Assign.
        broker_status = broker.get_by_role("combobox", name="CRM status")
        await broker_status.select_option("lost")
        await broker.locator("summary", has_text="Assign").click()
        await broker.get_by_label("Agent", exact=True).select_option(label=NAMES[BO])
        await broker.get_by_label("Note (on the timeline)").fill("Bo covers Saturdays")

        # Meanwhile the lead changes from outside both pages: its CRM status set through the API.
        await crm(stack, "PUT", f"/leads/{lead_id}/crm-status", status="contacted")
        for page in (agent, broker):  # the live update arrives: the timeline grows, the status line says so
            await expect(page.locator("ol.timeline li")).to_have_count(entries + 1, timeout=LIVE_MS)
            await expect(page.locator('li[data-type="CrmStatusSet"]')).to_have_count(1)
            await expect(page.locator("#live p.muted").first).to_contain_text("CRM status: contacted")

        # Every choice in progress is as it was left, and neither page reloaded.
        await expect(status).to_have_value("appointment_set")
        await expect(agent.get_by_label("Action")).to_have_value("email")
        await expect(agent.get_by_label("Email subject (to the contact)")).to_have_value(f"Viewing for {marker}")
        await expect(agent.get_by_label("Email or text to the contact")).to_have_value("Saturday at 10?")
        await expect(broker_status).to_have_value("lost")
        await expect(broker.get_by_label("Agent", exact=True)).to_have_value(BO)
        await expect(broker.get_by_label("Note (on the timeline)")).to_have_value("Bo covers Saturdays")
        assert reloads == [[], []], "the live update replaced the lead's part, not the page"

        # The agent's choice is saved as made; the broker's open page hears of it and still keeps its own.
        await agent.get_by_role("button", name="Set status").click()
        await expect(agent.get_by_role("status")).to_have_text("CRM status saved.")
        await expect(agent.locator("#live p.muted").first).to_contain_text("CRM status: appointment set")
        assert (await held_by(stack, lead_id, ANN))["crm_status"] == "appointment_set"
        await expect(broker.locator('li[data-type="CrmStatusSet"]')).to_have_count(2, timeout=LIVE_MS)
        await expect(broker.locator("#live p.muted").first).to_contain_text("CRM status: appointment set")
        await expect(broker_status).to_have_value("lost")
        await expect(broker.get_by_label("Agent", exact=True)).to_have_value(BO)
        # The agent's email in progress, in another form, survived that form's submit and the page built again.
        await expect(agent.get_by_label("Action")).to_have_value("email")
        await expect(agent.get_by_label("Email subject (to the contact)")).to_have_value(f"Viewing for {marker}")
        await expect(agent.get_by_label("Email or text to the contact")).to_have_value("Saturday at 10?")

        # The broker's Assign goes as picked: Bo holds the lead, with the broker's note on its timeline.
        await broker.get_by_role("button", name="Assign", exact=True).click()
        await expect(broker.get_by_role("status")).to_contain_text(f"assigned to {BO}")
        await held_by(stack, lead_id, BO)
        await expect(broker.locator('li[data-type="LeadAssigned"]').last).to_contain_text(
            "Bo covers Saturdays", timeout=LIVE_MS
        )
    finally:
        await agent_context.close()
        await broker_context.close()


# Counts the page's own fetches (its live refreshes) in flight, the most ever at once, and the refreshes it asked for.
COUNT_REFRESHES = """
window.refreshes = { inFlight: 0, most: 0, asked: 0 };
const fetchNow = window.fetch;
window.fetch = function (...args) {
  const r = window.refreshes;
  r.most = Math.max(r.most, ++r.inFlight);
  return fetchNow.apply(this, args).finally(() => { r.inFlight--; });
};
document.addEventListener("leadflow:refreshing", () => { window.refreshes.asked++; });
"""


async def test_a_lead_page_refreshes_one_at_a_time_so_a_slow_older_answer_never_hides_a_later_change(
    browser: Browser, stack: Stack
) -> None:
    """Two refreshes in flight may answer out of order (a loaded server): the older page would be shown last, with
    nothing left to announce. The page's first refresh is held unanswered while a second change is heard: the page
    waits for it, then fetches again, and shows the later change."""
    marker = f"Order{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker)
    await held_by(stack, lead_id, BROKER)
    url = f"{stack.url('crm-api')}/app/accounts/{ACCOUNT}/leads/{lead_id}"
    context, page = await window(browser)
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_the_first_refresh(route: Route, request: Request) -> None:
        if request.is_navigation_request() or held.is_set():
            await route.continue_()
            return
        held.set()
        answer = await route.fetch()  # the page as it is now, sent once the test lets it go
        await release.wait()
        await route.fulfill(response=answer)

    try:
        await context.add_init_script(COUNT_REFRESHES)
        await sign_in_as(page, stack, ACCOUNT, BROKER, "broker")
        await page.goto(url)
        await page.route(url, hold_the_first_refresh)
        await crm(stack, "PUT", f"/leads/{lead_id}/crm-status", status="contacted")
        await eventually(held.is_set, what="the page's first refresh")
        asked = await page.evaluate("window.refreshes.asked")
        await crm(stack, "PUT", f"/leads/{lead_id}/crm-status", status="lost")
        # The page hears of the second change while the first refresh is unanswered, and asks for it.
        await page.wait_for_function("(n) => window.refreshes.asked > n", arg=asked, timeout=LIVE_MS)
        release.set()
        await expect(page.locator('li[data-type="CrmStatusSet"]')).to_have_count(2, timeout=LIVE_MS)
        await expect(page.locator("#live p.muted").first).to_contain_text("CRM status: lost")
        assert await page.evaluate("window.refreshes.most") == 1, "two refreshes were in flight at once"
    finally:
        release.set()
        await context.close()


async def test_a_lead_page_reconnects_after_the_network_drops_and_shows_what_changed_meanwhile(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Net{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker)
    await held_by(stack, lead_id, BROKER)
    context, page = await window(browser)
    try:
        async with Cable(stack.ports["crm-api"]) as cable:  # the page reaches crm-api through a cable to cut
            await sign_in_as(page, stack, ACCOUNT, BROKER, "broker")
            started, failed = live_streams(page)
            await page.goto(f"{cable.url}/app/accounts/{ACCOUNT}/leads/{lead_id}")
            reloads = navigations(page)
            await eventually(lambda: any(cable.url in r.url for r in started), what="the page's live stream")
            status = page.get_by_role("combobox", name="CRM status")
            await status.select_option("under_contract")  # a choice in progress: a reload would lose it
            timeline = page.locator("ol.timeline")

            opened, dropped = len(started), len(failed)
            cable.cut()
            await eventually(lambda: len(failed) > dropped, timeout=LIVE_MS / 1000, what="the stream dropped")
            await crm(stack, "POST", f"/leads/{lead_id}/activities", action="note", text=f"Cut note {marker}")
            await expect(timeline).not_to_contain_text(f"Cut note {marker}")  # nothing reaches the cut page

            cable.mend()
            await expect(timeline).to_contain_text(f"Cut note {marker}", timeout=LIVE_MS)
            await expect(status).to_have_value("under_contract")
            assert reloads == [], "the page showed the change without reloading"
            assert len(started) > opened, "the page opened its live stream again"

            # The stream it opened again hears of the next change too.
            await crm(stack, "POST", f"/leads/{lead_id}/activities", action="note", text=f"Mended note {marker}")
            await expect(timeline).to_contain_text(f"Mended note {marker}", timeout=LIVE_MS)
            await expect(status).to_have_value("under_contract")

            # A proxy in front of crm-api answering 503 while crm-api restarts: the stream is refused and the page
            # asks for itself, in vain; it keeps what it shows (no error page) and tries again until answered.
            page_url = page.url
            unavailable: list[str] = []
            page.on("response", lambda r: unavailable.append(r.url) if r.status == 503 else None)
            dropped = len(failed)
            cable.cut(status=503)
            await eventually(lambda: len(failed) > dropped, timeout=LIVE_MS / 1000, what="the stream dropped")
            await crm(stack, "POST", f"/leads/{lead_id}/activities", action="note", text=f"Proxied note {marker}")
            await eventually(lambda: page_url in unavailable, timeout=LIVE_MS / 1000, what="the page asking, in vain")
            cable.mend()
            await expect(timeline).to_contain_text(f"Proxied note {marker}", timeout=LIVE_MS)
            await expect(status).to_have_value("under_contract")
            assert reloads == [], "the page never showed the proxy's error instead of itself"
    finally:
        await context.close()


async def test_the_brokerage_list_reconnects_after_crm_api_stops_and_shows_the_lead_that_came_meanwhile(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Down{uuid.uuid4().hex[:6]}"
    before = await post_lead(stack, marker)
    await held_by(stack, before, BROKER)
    context, page = await window(browser)
    crm_api = stack.services["crm-api"]
    try:
        await sign_in_as(page, stack, ACCOUNT, BROKER, "broker")
        started, failed = live_streams(page)
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{ACCOUNT}/leads?q={marker}")
        reloads = navigations(page)
        await eventually(lambda: started, what="the page's live stream")
        box = page.locator(f'tr[data-lead="{before}"]').get_by_role("checkbox")
        await box.check()  # a selection in progress: a reload would lose it

        opened, dropped = len(started), len(failed)
        crm_api.kill()
        await eventually(lambda: len(failed) > dropped, timeout=LIVE_MS / 1000, what="the stream dropped with crm-api")
        during = await post_lead(stack, marker)  # routed while crm-api is down; projected once it is back
        await asyncio.to_thread(stack.start_service, "crm-api")
        await asyncio.to_thread(stack.wait_ready, "crm-api", timeout=RESTART_MS / 1000)

        row = page.locator(f'tr[data-lead="{during}"]')
        await expect(row).to_be_visible(timeout=RESTART_MS)
        await expect(row).to_contain_text(f"Paula {marker}")
        await expect(box).to_be_checked()
        await expect(row.get_by_role("checkbox")).not_to_be_checked()
        assert reloads == [], "the page showed the new lead without reloading"
        assert len(started) > opened, "the page opened its live stream again"
    finally:
        await context.close()
        if not stack.services["crm-api"].running():  # the other tests of this stack need it
            await asyncio.to_thread(stack.start_service, "crm-api")
            await asyncio.to_thread(stack.wait_ready, "crm-api", timeout=RESTART_MS / 1000)


async def test_a_refused_assign_is_not_live_so_a_change_neither_reloads_it_nor_posts_it_again(
    browser: Browser, stack: Stack
) -> None:
    """A refusal is the answer to the form's POST, at the POST's address: refreshing it on a change reloaded that
    address, which posted the refused form again and dropped what the person picked since (seen in the whole
    suite, where leads change all the time). Such a page is not live; the list it came from is."""
    marker = f"Refused{uuid.uuid4().hex[:6]}"
    first = await post_lead(stack, marker)
    await held_by(stack, first, BROKER)
    context, page = await window(browser)
    try:
        await sign_in_as(page, stack, ACCOUNT, BROKER, "broker")
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{ACCOUNT}/leads?q={marker}")
        await expect(page.locator("body")).to_have_attribute("data-live", re.compile(f"/app/accounts/{ACCOUNT}/live"))
        await page.locator(f'tr[data-lead="{first}"]').get_by_role("checkbox").check()
        await page.get_by_text("More", exact=True).click()
        await page.get_by_role("button", name="Assign to an agent").click()
        dialog = page.get_by_role("dialog", name="Assign to an agent")
        await dialog.get_by_role("button", name="Assign").click()
        await expect(dialog.get_by_role("alert")).to_have_text("Select an agent.")
        assert "/distributions" in page.url
        await expect(page.locator("body")).not_to_have_attribute("data-live", re.compile(".*"))

        reloads = navigations(page)
        await dialog.get_by_label("Agent", exact=True).select_option(label=NAMES[ANN])
        await held_by(stack, await post_lead(stack, marker), BROKER)  # a change of the account's leads
        await dialog.get_by_role("button", name="Assign").click()
        await expect(page.get_by_role("status")).to_have_text(f"1 leads are going to {ANN}.")
        assert len(reloads) == 1, reloads  # the answer's redirect to the list, no reload before it
    finally:
        await context.close()


async def test_a_realtor_s_open_list_shows_a_lead_handed_to_her_without_reloading(
    browser: Browser, stack: Stack
) -> None:
    """A realtor's list (My Leads) reads her scope (an `$or`) and hears changes by a poll asked a branch at a time
    (decision 0102): the lead the broker assigns her (held by the broker, then by her: a branch of her scope) shows on
    her open list without a reload."""
    marker = f"Mine{uuid.uuid4().hex[:6]}"
    lead_id = await post_lead(stack, marker)
    await held_by(stack, lead_id, BROKER)
    context, page = await window(browser, phone=True)
    try:
        await sign_in_as(page, stack, ACCOUNT, ANN, "realtor")
        started, _ = live_streams(page)
        await page.goto(f"{stack.url('crm-api')}/app/my/leads")
        reloads = navigations(page)
        await eventually(lambda: started, what="the list's live stream")
        row = page.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row).to_have_count(0)  # not hers yet
        await crm(stack, "POST", "/distributions", agent_id=ANN, mode="assign", lead_ids=[lead_id])
        await expect(row).to_be_visible(timeout=LIVE_MS)
        await expect(row).to_contain_text(f"Paula {marker}")
        assert reloads == [], "the list showed the lead without reloading"
    finally:
        await context.close()
