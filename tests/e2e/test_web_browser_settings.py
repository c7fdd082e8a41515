"""The Settings page in a real browser (Chromium through Playwright), against the whole running system: a broker
reorders the roster (a refused roster comes back with the reason and what was typed), withdraws an agent's
round-robin approval (Lead Management then leaves it out, saying why), edits a lead source (a refused acceptance
period likewise), adds and removes a pause window and sets the office's time zone (refusals likewise), and tests a
lead against a draft rule set without saving it. Each change is read back through the JSON API. In another office,
a broker sets each other field of a lead source (referral fee, lead group, offices, auto-accept, direct period):
refusals beside their fields with everything as typed, nothing saved; then saved, shown after a reload, and cleared.

The browser and how it is started are those of test_web_browser.py (its helpers cannot be imported here: the
type checker does not see tests/e2e as a module path).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from browser_windows import pressed, sign_in_as, window
from playwright.async_api import Browser, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ACCOUNT = "wbs-realty"
NAMES = {"wbs-boss": "Sia Boss", "wbs-ann": "Ann Set", "wbs-bo": "Bo Set"}
SOURCES = "wbs-src-realty"  # one lead source, Zillow, each of its fields as the defaults; one lead group, luxury
ROUTER_WAIT = 20  # seconds: the router's 5 s account cache, on a busy machine


@pytest.fixture(scope="module", autouse=True)
def account(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    agents = [{"agent_id": a, "name": n, "email": f"{a}@wbs.example", "round_robin": a != "wbs-boss"}
              for a, n in NAMES.items()]  # fmt: skip
    config = {"account_id": ACCOUNT, "name": "Set Realty", "round_robin": True, "time_zone": "UTC",
              "roster": list(NAMES), "agents": agents,
              "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 900}]}  # fmt: skip
    sources = {"account_id": SOURCES, "name": "Source Realty", "round_robin": False, "time_zone": "UTC",
               "roster": ["wbs-src-boss", "wbs-src-lux"],
               "agents": [{"agent_id": "wbs-src-boss", "name": "Sol Boss", "email": "sol@wbs-src.example"},
                          {"agent_id": "wbs-src-lux", "name": "Lux Agent", "email": "lux@wbs-src.example",
                           "lead_groups": ["luxury"]}],
               "sources": [{"name": "Zillow"}]}  # fmt: skip
    path = tmp_path_factory.mktemp("web-settings") / "accounts.json"
    path.write_text(json.dumps({"accounts": [config, sources]}))
    stack.seed(path)


async def api(stack: Stack, path: str, account_id: str = ACCOUNT) -> Any:
    broker = "wbs-boss" if account_id == ACCOUNT else "wbs-src-boss"
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        answer = await crm.get(f"/v1/accounts/{account_id}{path}", headers=stack.auth(broker, "broker", account_id))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_broker_changes_each_setting_and_a_refused_one_keeps_what_was_typed(
    browser: Browser, stack: Stack
) -> None:
    context, page = await window(browser)
    flash = page.get_by_role("status").first
    try:
        await sign_in_as(page, stack, ACCOUNT, "wbs-boss", "broker")
        await page.get_by_role("link", name="Settings").click()

        # Routing: a roster naming someone who is no agent here is refused beside it, as typed.
        roster = page.get_by_label("Roster, position 1 first")
        await roster.fill("wbs-boss\nwbs-bo\nnobody")
        assert await pressed(page, "Save routing") == 422
        await expect(page.locator("#routing-roster-error")).to_contain_text("not an agent of this account")
        await expect(roster).to_have_value("wbs-boss\nwbs-bo\nnobody")
        await roster.fill("wbs-boss\nwbs-bo\nwbs-ann")
        assert await pressed(page, "Save routing") == 200
        await expect(flash).to_contain_text("Round robin on.")
        await expect(roster).to_have_value("wbs-boss\nwbs-bo\nwbs-ann")
        assert (await api(stack, "/settings/routing"))["roster"] == ["wbs-boss", "wbs-bo", "wbs-ann"]

        # Round-robin approval withdrawn: saved, and Lead Management's "Left out" says why.
        approval = page.locator('tr[data-agent="wbs-bo"]')
        await approval.get_by_label("approved").uncheck()
        async with page.expect_navigation():
            await approval.get_by_role("button", name="Save").click()
        await expect(flash).to_contain_text("wbs-bo is no longer approved for round robin.")
        await expect(page.locator('tr[data-agent="wbs-bo"]').get_by_label("approved")).not_to_be_checked()
        await page.get_by_role("link", name="Lead Management").click()
        left_out = page.locator('tr[data-source="Website"] [data-label="Left out"]')

        async def not_approved() -> bool:
            await page.reload()
            return "wbs-bo: not approved for round robin" in (await left_out.text_content() or "")

        await eventually(not_approved, timeout=ROUTER_WAIT, what="Lead Management leaving wbs-bo out")
        await page.get_by_role("link", name="Settings").click()

        # A lead source: a claim window under the minimum is refused beside it, as typed; then saved.
        source = page.get_by_role("form", name="Lead source Website")
        race, claim = source.get_by_label("Agents offered at a time"), source.get_by_label("Acceptance period")
        await race.fill("2")
        await claim.fill("5")
        assert await pressed(page, "Save Website") == 422
        await expect(page.locator("#source0-claim_window_seconds-error")).to_contain_text("greater than or equal to 10")
        await expect(race).to_have_value("2")
        await expect(claim).to_have_value("5")
        await claim.fill("600")
        assert await pressed(page, "Save Website") == 200
        await expect(flash).to_contain_text("Lead source Website saved.")
        await expect(race).to_have_value("2")
        await expect(claim).to_have_value("600")
        [website] = (await api(stack, "/settings/lead-sources"))["sources"]
        assert (website["race_count"], website["claim_window_seconds"]) == (2, 600), website

        # The pause schedule: a window without days is refused, what was typed kept; added; removed.
        adding = page.get_by_role("form", name="Add a pause window")
        await adding.get_by_label("From (HH:MM)").fill("20:00")
        await adding.get_by_label("To (HH:MM").fill("08:00")
        assert await pressed(page, "Add the window") == 422
        await expect(page.locator("#pause-windows-error")).to_be_visible()
        await expect(adding.get_by_label("From (HH:MM)")).to_have_value("20:00")
        await expect(adding.get_by_label("To (HH:MM")).to_have_value("08:00")
        for day in ("Mon", "Tue"):
            await adding.get_by_label(day, exact=True).check()
        assert await pressed(page, "Add the window") == 200
        await expect(flash).to_contain_text("Pause window added.")
        await expect(page.locator("ul.pause-windows")).to_contain_text("Mon Tue 20:00–08:00")
        windows = (await api(stack, "/settings/pause-schedule"))["windows"]
        assert windows == [{"weekdays": [0, 1], "start": "20:00", "end": "08:00"}], windows
        async with page.expect_navigation():
            await page.get_by_role("button", name="Remove the window 20:00–08:00").click()
        await expect(flash).to_contain_text("Pause window removed.")
        await expect(page.locator("ul.pause-windows")).to_have_text("No pause.")

        # The office's time zone: an unknown zone is refused beside the field, as typed; then saved.
        zone = page.get_by_label("Time zone (IANA")
        await zone.fill("Mars/Olympus_Mons")
        assert await pressed(page, "Save the time zone") == 422
        await expect(page.locator("#pause-time_zone-error")).to_be_visible()
        await expect(zone).to_have_value("Mars/Olympus_Mons")
        await zone.fill("America/Chicago")
        assert await pressed(page, "Save the time zone") == 200
        await expect(flash).to_contain_text("Time zone saved.")
        await expect(zone).to_have_value("America/Chicago")
        assert (await api(stack, "/settings/pause-schedule"))["time_zone"] == "America/Chicago"

        # "Test a lead" against a draft rule set: decided by the draft, and nothing saved.
        rules_box = page.get_by_label("The rule set as JSON", exact=False)
        shown = json.loads(await rules_box.input_value())
        vips = {"id": "vips", "name": "VIPs to Ann", "criteria": {"tags": ["vip"]},
                "action": {"kind": "agent", "agent_id": "wbs-ann"}}  # fmt: skip
        draft = json.dumps(shown | {"rules": [vips]}, indent=2)
        await rules_box.fill(draft)
        await page.get_by_label("Tags (one per line)").fill("vip")
        await page.get_by_label("the draft in the text area above (not saved)").check()
        assert await pressed(page, "Test a lead") == 200
        tested = page.locator(".tested")
        await expect(tested.locator(".decided")).to_have_text("VIPs to Ann")
        await expect(tested).to_contain_text("By the draft, this lead would be offered to Ann Set wbs-ann.")
        await expect(rules_box).to_have_value(draft)  # the draft as typed, still not saved
        await expect(page.locator('tr[data-rule="vips"]')).to_have_count(0)
        await expect(page.locator("#rules-h + p")).to_contain_text(f"Version {shown['version']}.")
        assert (await api(stack, "/settings/routing-rules"))["rules"] == []
    finally:
        await context.close()


async def test_a_broker_sets_each_other_field_of_a_lead_source_and_a_refusal_keeps_all_as_typed(
    browser: Browser, stack: Stack
) -> None:
    context, page = await window(browser)
    try:
        await sign_in_as(page, stack, SOURCES, "wbs-src-boss", "broker")
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{SOURCES}/settings")
        source = page.get_by_role("form", name="Lead source Zillow")
        fee, group = source.get_by_label("Referral fee (%)"), source.get_by_label("Lead group")
        offices, direct = source.get_by_label("Offices"), source.get_by_label("Direct period without auto-accept")
        auto = source.get_by_label("Auto-accept direct-to-user leads")
        [seeded] = (await api(stack, "/settings/lead-sources", SOURCES))["sources"]

        # Three fields the model refuses at once, each beside its field (and named by it), all kept as typed.
        typed = {fee: "150", group: "nobody", offices: "north\nnorth", direct: "5"}
        for field, text in typed.items():
            await field.fill(text)
        await auto.uncheck()
        assert await pressed(page, "Save Zillow") == 422
        for field, name, reason in ((fee, "referral_fee_percent", "less than or equal to 100"),
                                    (offices, "offices", "values must not repeat"),
                                    (direct, "direct_period_seconds", "greater than or equal to 10")):  # fmt: skip
            await expect(page.locator(f"#source0-{name}-error")).to_contain_text(reason)
            await expect(field).to_have_attribute("aria-describedby", f"source0-{name}-error")
        for field, text in typed.items():
            await expect(field).to_have_value(text)
        await expect(auto).not_to_be_checked()

        # The account's own check: a lead group it does not have, beside the lead group; the rest as typed.
        typed = {fee: "12.5", group: "nobody", offices: "north\nBrooklyn, NY", direct: "1800"}
        for field, text in typed.items():
            await field.fill(text)
        assert await pressed(page, "Save Zillow") == 422
        await expect(page.locator("#source0-lead_group-error")).to_have_text("not a lead group of this account")
        for field, text in typed.items():
            await expect(field).to_have_value(text)
        await expect(auto).not_to_be_checked()
        assert (await api(stack, "/settings/lead-sources", SOURCES))["sources"] == [seeded], "nothing saved"

        # Saved: stored as typed, and shown so after a reload.
        await group.fill("luxury")
        assert await pressed(page, "Save Zillow") == 200
        await expect(page.get_by_role("status").first).to_contain_text("Lead source Zillow saved.")
        await page.reload()
        for field, text in (typed | {group: "luxury"}).items():
            await expect(field).to_have_value(text)
        await expect(auto).not_to_be_checked()
        [zillow] = (await api(stack, "/settings/lead-sources", SOURCES))["sources"]
        assert zillow == seeded | {"referral_fee_percent": 12.5, "lead_group": "luxury",
                                   "offices": ["north", "Brooklyn, NY"],  # one office, its comma and all
                                   "auto_accept": False, "direct_period_seconds": 1800}, zillow  # fmt: skip

        # Cleared: no lead group, every office, auto-accept again; the numbers as they were.
        await group.fill("")
        await offices.fill("")
        await auto.check()
        assert await pressed(page, "Save Zillow") == 200
        await page.reload()
        await expect(group).to_have_value("")
        await expect(offices).to_have_value("")
        await expect(auto).to_be_checked()
        await expect(fee).to_have_value("12.5")
        [zillow] = (await api(stack, "/settings/lead-sources", SOURCES))["sources"]
        assert zillow == seeded | {"referral_fee_percent": 12.5, "direct_period_seconds": 1800}, zillow
    finally:
        await context.close()
