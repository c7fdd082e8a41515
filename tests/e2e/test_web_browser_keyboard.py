"""Helper 196's review (session 39): the web app used with a keyboard, a screen reader and a phone-sized window.

Each test failed before its fix (`app.js`: a dialog's Enter uses its own button, a refresh puts the focus back on the
link or button that had it, the one it was of links alike (helper 198); the Assign dialog's box is
`assign_all_matching`; the approvals name their agent):

- Enter in the Lead Transfer dialog runs the *Assign* dialog's action (the form's first submit button), so a keyboard
  user who picked a realtor and pressed Enter assigns the selected leads to the agent left chosen in a cancelled
  Assign dialog instead of transferring them;
- "Every lead the filters match" ticked in one More dialog and cancelled still applies to the other dialog's action
  (both boxes are `all_matching` of the one bulk form), so assigning the one selected lead assigns every match;
- a live update of a page replaces the focused link or button (one with no name or id), so a keyboard user's focus
  falls to <body>: their place in the list is lost, and the Enter they press on "Set status" does nothing;
- Settings' round-robin approvals: every row's box is named "approved" and its button "Save", with no row header,
  so a screen-reader user cannot tell whose approval a box or a Save is.
"""

from __future__ import annotations

import json
import pathlib
import re
import uuid

import httpx
import pytest
from browser_windows import post_a_lead, routed, sign_in_as, window
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from leadflow_devstack.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

OFFICE, REALTOR_ACCOUNT = "a11y-realty", "a11y-riley"  # a brokerage (round robin off: its broker holds new leads)
BROKER, ANN, BO, REALTOR = "a11y-boss", "a11y-ann", "a11y-bo", "a11y-rk"
NAMES = {BROKER: "Bea Boss", ANN: "Ann Keys", BO: "Bo Reader"}
LIVE_MS = 25_000


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    config = {"accounts": [{
        "account_id": OFFICE, "name": "A11y Realty", "round_robin": False, "roster": list(NAMES),
        "agents": [{"agent_id": a, "name": n, "email": f"{a}@a11y.example"} for a, n in NAMES.items()],
    }, {
        "account_id": REALTOR_ACCOUNT, "name": "Riley Keys", "round_robin": False,
        "roster": ["a11y-riley-office", REALTOR],
        "agents": [{"agent_id": "a11y-riley-office", "name": "Riley Office", "email": "office@rk.example"},
                   {"agent_id": REALTOR, "name": "Riley Keys", "email": "rk@rk.example"}],
    }]}  # fmt: skip
    path = tmp_path_factory.mktemp("a11y") / "accounts.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    # A realtor who accepted the brokerage's invitation, so the Lead Transfer dialog offers one.
    with httpx.Client(base_url=stack.url("crm-api"), timeout=30) as api:
        invited = api.post(
            f"/v1/accounts/{OFFICE}/invitations",
            headers=stack.auth(BROKER, "broker", OFFICE),
            json={"realtor_id": REALTOR, "email": "rk@rk.example", "name": "Riley Keys"},
        )
        assert invited.status_code == 201, invited.text
        accepted = api.post(
            f"/v1/invitations/{invited.json()['invitation_id']}/accept",
            headers=stack.auth(REALTOR, "realtor", REALTOR_ACCOUNT),
        )
        assert accepted.status_code == 200, accepted.text


async def signed_in(browser: Browser, user: str, stack: Stack, *, phone: bool = False) -> tuple[BrowserContext, Page]:
    context, page = await window(browser, phone=phone)
    await sign_in_as(page, stack, OFFICE, user, "broker")
    return context, page


async def routed_leads(stack: Stack, marker: str, count: int) -> list[str]:
    leads = [await post_a_lead(stack, marker, OFFICE) for _ in range(count)]
    for lead_id in leads:
        await routed(stack, OFFICE, lead_id, BROKER)
    return leads


async def test_enter_in_the_lead_transfer_dialog_transfers_and_does_not_run_the_assign_dialog(
    browser: Browser, stack: Stack
) -> None:
    # A keyboard user: selects a lead, opens Assign and picks an agent, changes their mind (Escape), opens Lead
    # Transfer, picks the realtor with Space and presses Enter to submit, as in any form.
    marker = f"Key{uuid.uuid4().hex[:6]}"
    [lead_id] = await routed_leads(stack, marker, 1)
    context, page = await signed_in(browser, BROKER, stack)
    try:
        await page.get_by_label("Search").fill(marker)
        await page.keyboard.press("Enter")
        await expect(page.locator("tr[data-lead]")).to_have_count(1)
        await page.locator(f'tr[data-lead="{lead_id}"] input[type="checkbox"]').focus()
        await page.keyboard.press("Space")
        await page.locator("summary", has_text="More").focus()
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="Assign to an agent").focus()
        await page.keyboard.press("Enter")
        assign = page.get_by_role("dialog", name="Assign to an agent")
        await assign.get_by_label("Agent", exact=True).select_option(label=NAMES[ANN])
        await page.keyboard.press("Escape")  # cancelled
        await expect(assign).to_be_hidden()
        await page.get_by_role("button", name="Lead Transfer").focus()
        await page.keyboard.press("Enter")
        transfer = page.get_by_role("dialog", name="Lead Transfer")
        await expect(transfer).to_be_visible()
        await transfer.get_by_role("radio", name=re.compile("Riley Keys")).focus()
        await page.keyboard.press("Space")
        await expect(transfer.get_by_role("radio", name=re.compile("Riley Keys"))).to_be_checked()
        await page.keyboard.press("Enter")  # submit the Lead Transfer
        await page.wait_for_load_state()
        # Expected: the lead transferred to Riley Keys. Actual: "1 leads are going to a11y-ann." (the cancelled
        # Assign dialog's button is the bulk form's default button, so Enter posted /distributions).
        await expect(page.get_by_role("status")).to_contain_text("transferred successfully")
    finally:
        await context.close()


async def test_every_lead_ticked_in_a_cancelled_dialog_does_not_widen_the_other_dialogs_action(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Wide{uuid.uuid4().hex[:6]}"
    first, _second = await routed_leads(stack, marker, 2)
    context, page = await signed_in(browser, BROKER, stack)
    try:
        await page.get_by_label("Search").fill(marker)
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("tr[data-lead]")).to_have_count(2)
        await page.locator(f'tr[data-lead="{first}"] input[type="checkbox"]').check()  # one lead of the two
        await page.get_by_text("More", exact=True).click()
        await page.get_by_role("button", name="Lead Transfer").click()
        transfer = page.get_by_role("dialog", name="Lead Transfer")
        await transfer.get_by_label("Every lead the filters match").check()
        await transfer.get_by_role("button", name="Cancel").click()  # not this, after all
        await page.get_by_role("button", name="Assign to an agent").click()
        assign = page.get_by_role("dialog", name="Assign to an agent")
        await expect(assign.get_by_label("Every lead the filters match")).not_to_be_checked()
        await assign.get_by_label("Agent", exact=True).select_option(label=NAMES[ANN])
        await assign.get_by_role("button", name="Assign").click()
        # Expected: the one selected lead. Actual: "2 leads are going to a11y-ann." (the cancelled dialog's box).
        await expect(page.get_by_role("status")).to_contain_text(f"1 leads are going to {ANN}")
    finally:
        await context.close()


async def test_a_live_update_of_the_list_keeps_the_keyboard_focus_on_the_focused_lead_link(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Foc{uuid.uuid4().hex[:6]}"
    [lead_id] = await routed_leads(stack, marker, 1)
    context, page = await signed_in(browser, BROKER, stack, phone=True)
    try:
        link = page.locator(f'tr[data-lead="{lead_id}"] a')
        await link.focus()  # a keyboard user has tabbed to a lead in the list
        await expect(link).to_be_focused()
        new = await post_a_lead(stack, f"{marker}New", OFFICE)
        await expect(page.locator(f'tr[data-lead="{new}"]')).to_be_visible(timeout=LIVE_MS)
        # Actual: document.activeElement is <body>; the next Tab starts again at the top of the list.
        await expect(page.locator(f'tr[data-lead="{lead_id}"] a')).to_be_focused()
    finally:
        await context.close()


async def test_a_live_update_of_the_lead_page_keeps_the_focus_on_set_status_so_enter_still_saves_it(
    browser: Browser, stack: Stack
) -> None:
    marker = f"Set{uuid.uuid4().hex[:6]}"
    [lead_id] = await routed_leads(stack, marker, 1)
    context, page = await signed_in(browser, BROKER, stack, phone=True)
    try:
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{OFFICE}/leads/{lead_id}")
        await page.get_by_role("combobox", name="CRM status").select_option("contacted")
        await page.get_by_role("button", name="Set status").focus()  # tabbed to the button, about to press Enter
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as api:  # meanwhile, a colleague
            noted = await api.post(
                f"/v1/accounts/{OFFICE}/leads/{lead_id}/activities",
                headers=stack.auth(BROKER, "broker", OFFICE),
                json={"action": "note", "text": f"Colleague's note {marker}"},
            )
        assert noted.status_code < 300, noted.text
        await expect(page.locator("ol.timeline")).to_contain_text(f"Colleague's note {marker}", timeout=LIVE_MS)
        await page.keyboard.press("Enter")
        # Actual: the refresh dropped the focus to <body>, so Enter did nothing and no status was saved.
        await expect(page.get_by_role("status")).to_contain_text("CRM status saved.")
    finally:
        await context.close()


async def test_each_round_robin_approval_box_and_save_button_names_its_agent(browser: Browser, stack: Stack) -> None:
    context, page = await signed_in(browser, BROKER, stack)
    try:
        await page.get_by_role("link", name="Settings").click()
        approvals = page.get_by_role("region", name="Round-robin approvals")
        await expect(approvals.get_by_role("checkbox")).to_have_count(3)
        # Actual: three checkboxes named "approved" and three buttons named "Save"; the rows have no row header.
        for name in NAMES.values():
            await expect(approvals.get_by_role("checkbox", name=re.compile(name))).to_have_count(1)
            await expect(approvals.get_by_role("button", name=re.compile(name))).to_have_count(1)
    finally:
        await context.close()


APP_JS = pathlib.Path(__file__).parents[2] / "services/crm-api/src/leadflow_crm_api/web/static/app.js"
DASHBOARD = """<!doctype html><html><head><script src="/app.js"></script></head><body data-live="/events">
<div id="live"><section><h2>Open offers</h2><ul class="open-offers">
<li><a href="/app/accounts/o/leads/L1">Paula Race</a>: ann, claim before ...</li>
<li><a href="/app/accounts/o/leads/L1">Paula Race</a>: bo, claim before ...</li>
<li><a href="/app/accounts/o/leads/L1">Paula Race</a>: cy, claim before ...</li>
</ul></section></div></body></html>"""


async def test_a_refresh_keeps_the_focus_on_the_link_that_had_it_among_links_alike(browser: Browser) -> None:
    # The dashboard's live part as it renders one lead offered to three agents at once (dashboard.html: one link
    # per open offer, each the lead's name to its page), served with the real app.js.
    context = await browser.new_context()
    page = await context.new_page()

    async def serve(route: Route) -> None:
        if route.request.url.endswith("/app.js"):
            await route.fulfill(body=APP_JS.read_text(), content_type="text/javascript")
        elif route.request.url.endswith("/events"):
            await route.fulfill(status=204)
        else:
            await route.fulfill(body=DASHBOARD, content_type="text/html")

    try:
        await page.route("http://leadflow.test/**", serve)
        await page.goto("http://leadflow.test/app/accounts/o/dashboard")
        links = page.locator("#live a")
        await links.nth(2).focus()  # tabbed to cy's offer
        await page.evaluate("refresh()")  # what a live "changed" runs
        place = await page.evaluate('[...document.querySelectorAll("#live a")].indexOf(document.activeElement)')
        assert place == 2, f"the focus went from the third offer's link to link {place} (the first alike)"
    finally:
        await context.close()
