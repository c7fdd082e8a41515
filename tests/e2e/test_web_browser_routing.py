"""Issue 15's pages in a real browser (Chromium through Playwright), against the whole running system:

- a broker replaces the routing rules on Settings, tests a lead against them, and reads on a routed lead's page
  why it went to that agent; a save based on an older version is refused with the reason, not a crash;
- an agent pauses itself on its own page and the broker's "Next up" shows it skipped as paused, until it resumes;
- an agent whose offer ended asks for the lead back from the page its lead link now shows, and gets it again
  (the router's new offer naming that ask, decision 0067).

The browser and how it is started are those of test_web_browser.py (its helpers cannot be imported here: the
type checker does not see tests/e2e as a module path). The router reuses an account's settings for up to 5 s,
so whatever depends on a change reaching it is waited for, never slept on.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, records_until
from leadflow_shared import topics

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RULES, PAUSE, ASK, HOLD = "wbr-rules-realty", "wbr-pause-realty", "wbr-ask-realty", "wbr-hold-realty"
NAMES = {
    "wbr-rb": "Rhea Broker", "wbr-ra": "Ann Rules", "wbr-rs": "Sid Seller",
    "wbr-pb": "Pia Broker", "wbr-pa": "Pat Pause", "wbr-pc": "Cal Pause",
    "wbr-kb": "Kay Broker", "wbr-ka": "Ada Ask", "wbr-ko": "Otto Ask",
    "wbr-hb": "Hal Broker", "wbr-ha": "Hana Hold",
}  # fmt: skip
BROKERS = {"wbr-rb", "wbr-pb", "wbr-kb", "wbr-hb"}
SELLERS = "Sellers to Sid"
ASK_TAG = "wbr-askb"
ROUTER_WAIT = 20  # seconds: the router's 5 s account cache, then routing and projection on a busy machine


def account(account_id: str, roster: list[str], **more: Any) -> dict[str, Any]:
    """Round robin on; the broker (roster position 1) takes no round-robin leads, so rotations are the agents'."""
    agents = [{"agent_id": a, "name": NAMES[a], "email": f"{a}@wbr.example", "round_robin": a != roster[0]}
              for a in roster]  # fmt: skip
    return {"account_id": account_id, "name": account_id, "round_robin": True, "time_zone": "UTC", "roster": roster,
            "agents": agents, "sources": [{"name": "Website", "race_count": 1, "claim_window_seconds": 3600}],
            **more}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def accounts(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The ask-back account: a tagged lead is offered to one agent and, when it declines, to another.
    mine = {"id": "mine", "name": "Mine", "criteria": {"tags": [ASK_TAG]},
            "action": {"kind": "agent", "agent_id": "wbr-ka"},
            "fallbacks": [{"kind": "agent", "agent_id": "wbr-ko"}]}  # fmt: skip
    # The hold account: its one rule opens twelve hours from now (UTC), for an hour; a lead now waits for it.
    opens = datetime.now(UTC) + timedelta(hours=12)
    hours = {"start": f"{opens:%H}:00", "end": f"{opens + timedelta(hours=1):%H}:00"}
    hold = {"id": "office", "name": "Office hours", "criteria": {"hours": hours}, "when_closed": "hold",
            "action": {"kind": "agent", "agent_id": "wbr-ha"}}  # fmt: skip
    configs = [
        account(HOLD, ["wbr-hb", "wbr-ha"], routing_rules={"rules": [hold]}),
        account(RULES, ["wbr-rb", "wbr-ra", "wbr-rs"]),  # no rule set yet: version 0
        account(PAUSE, ["wbr-pb", "wbr-pa", "wbr-pc"]),
        account(ASK, ["wbr-kb", "wbr-ka", "wbr-ko"], routing_rules={"rules": [mine]}),
    ]
    path = tmp_path_factory.mktemp("web-routing") / "accounts.json"
    path.write_text(json.dumps({"accounts": configs}))
    stack.seed(path)


async def sign_in(browser: Browser, stack: Stack, account_id: str, user: str) -> tuple[BrowserContext, Page]:
    """A desktop window signed in on the sign-in page as the sample user (roster position 1 is the broker)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={account_id}")
    role = "broker" if user in BROKERS else "realtor"
    await page.locator(f'form:has(input[name="user"][value="{account_id}|{user}|{role}"]) button').click()
    await page.wait_for_load_state()
    return context, page


async def intake(stack: Stack, account_id: str, criteria: dict[str, Any]) -> str:
    """A website lead posted to intake; its lead id."""
    lead = {"account_id": account_id, "first_name": "Wren", "last_name": f"Lee{uuid.uuid4().hex[:6]}",
            "email": f"wren-{uuid.uuid4().hex[:8]}@example.com", "criteria": criteria}  # fmt: skip
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{stack.url('intake')}/v1/leads", json=lead)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["event_id"])


async def open_offers(stack: Stack, account_id: str, lead_id: str, broker: str) -> list[str]:
    """The agents the lead is open to now, as crm-api has it (none until it is routed and projected)."""
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        found = await crm.get(
            f"/v1/accounts/{account_id}/leads/{lead_id}", headers=stack.auth(broker, "broker", account_id)
        )
    return [o["agent_id"] for o in found.json().get("open_offers", [])] if found.status_code == 200 else []


async def submitted(page: Page, button: str) -> int:
    """Click a form's button and wait for the page the server answers with; its HTTP status."""
    async with page.expect_navigation() as navigation:
        await page.get_by_role("button", name=button, exact=True).click()
    answer = await navigation.value
    assert answer is not None
    return answer.status


async def test_a_broker_saves_rules_tests_a_lead_and_reads_why_a_routed_lead_went_to_that_agent(
    browser: Browser, stack: Stack
) -> None:
    context, page = await sign_in(browser, stack, RULES, "wbr-rb")
    rules_box = page.get_by_label("The rule set as JSON", exact=False)
    rules_error = page.locator("#rules-rules-error")
    try:
        await page.get_by_role("link", name="Settings").click()
        shown = json.loads(await rules_box.input_value())
        version = shown["version"]
        await expect(page.locator("#rules-h + p")).to_contain_text(f"Version {version}.")
        sellers = {"id": "sellers", "name": SELLERS, "criteria": {"intents": ["sell"]},
                   "action": {"kind": "agent", "agent_id": "wbr-rs"}}  # fmt: skip
        await rules_box.fill(json.dumps(shown | {"rules": [sellers]}, indent=2))
        await submitted(page, "Save routing rules")
        await expect(page.get_by_role("status")).to_contain_text(f"Routing rules saved as version {version + 1}.")
        await expect(page.locator("#rules-h + p")).to_contain_text(f"Version {version + 1}.")
        row = page.locator('tr[data-rule="sellers"]')
        await expect(row.locator('[data-label="Rule"]')).to_contain_text(SELLERS)
        await expect(row.locator('[data-label="Matches"]')).to_have_text("intents: sell")
        await expect(row.locator('[data-label="Then"]')).to_have_text("offer to wbr-rs")

        # Someone else saves (through the API) while this page is open; this page's edit is then refused.
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
            url, headers = f"/v1/accounts/{RULES}/settings/routing-rules", stack.auth("wbr-admin", "admin", RULES)
            current = (await crm.get(url, headers=headers)).json()
            assert current["version"] == version + 1, current
            assert (await crm.put(url, headers=headers, json=current)).status_code == 200
        edited = (await rules_box.input_value()).replace(SELLERS, "Sellers, edited")
        await rules_box.fill(edited)
        assert await submitted(page, "Save routing rules") == 409  # the page again, with the reason
        await expect(rules_error).to_contain_text(f"changed since version {version + 1}")
        await expect(rules_error).to_contain_text(f"they are at version {version + 2}. Nothing was saved")
        await expect(rules_box).to_have_value(edited)  # what was typed is not lost
        await expect(page.locator("#rules-h + p")).to_contain_text(f"Version {version + 2}.")
        await expect(row.locator('[data-label="Rule"]')).to_contain_text(SELLERS)  # the stored rule, unchanged

        # "Test a lead": a seller goes to the rule's agent once the router has the rule set (its cache).
        await page.get_by_label("Buyer, seller or renter").select_option("sell")
        tested = page.locator(".tested")

        async def decided_by_the_rule() -> bool:
            await submitted(page, "Test a lead")
            return await tested.locator(".decided").text_content() == SELLERS

        await eventually(decided_by_the_rule, timeout=ROUTER_WAIT, what="the dry-run decided by the saved rule")
        await expect(tested.locator(".tested-status")).to_have_text("offered to")
        await expect(tested).to_contain_text("By the saved rules, this lead would be offered to Sid Seller wbr-rs.")
        await expect(tested.locator("dd.chosen")).to_have_text("Sid Seller wbr-rs")
        await expect(page.get_by_label("Buyer, seller or renter")).to_have_value("sell")  # the form as sent
        # The router knows the rule now, so the page's "Next up" names its agent.
        await expect(row.locator('[data-label="Next up"]')).to_have_text("next: Sid Seller wbr-rs")

        lead_id = await intake(stack, RULES, {"intent": "sell"})
        offers = await eventually(lambda: open_offers(stack, RULES, lead_id, "wbr-rb"), what="the seller lead offered")
        assert offers == ["wbr-rs"], offers
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{RULES}/leads/{lead_id}")
        info = page.locator("details.routing-info")
        await expect(info.locator(".decision").last).to_be_hidden()  # collapsed until asked for
        await info.locator("summary", has_text="Routing info").click()
        decision = info.locator(".decision").last
        await expect(decision).to_be_visible()
        await expect(decision.locator(".decided")).to_have_text(SELLERS)
        await expect(decision.locator('ol.rules-tried li[data-rule="sellers"]')).to_contain_text("matched")
        await expect(decision.locator("dd.chosen")).to_have_text("Sid Seller wbr-rs")
    finally:
        await context.close()


async def test_an_agent_pauses_itself_and_the_brokers_next_up_skips_it_until_it_resumes(
    browser: Browser, stack: Stack
) -> None:
    agent_context, agent = await sign_in(browser, stack, PAUSE, "wbr-pa")
    broker_context, broker = await sign_in(browser, stack, PAUSE, "wbr-pb")
    next_up = broker.locator('tr[data-rule="default"] [data-label="Next up"]')

    async def next_up_says(paused: bool) -> bool:
        await broker.goto(f"{stack.url('crm-api')}/app/accounts/{PAUSE}/settings")
        return ("Pat Pause, paused" in (await next_up.text_content() or "")) is paused

    try:
        await eventually(lambda: next_up_says(paused=False), what="Next up before the pause")
        await expect(next_up).to_contain_text("Pat Pause")  # in the rotation

        await agent.get_by_role("link", name="My notifications").click()
        paused_box = agent.get_by_label("Paused: take no new leads until I resume")
        await expect(paused_box).not_to_be_checked()
        await paused_box.check()
        await submitted(agent, "Save availability")
        await expect(agent.get_by_role("status")).to_contain_text("Paused: no new leads until you resume.")
        await expect(paused_box).to_be_checked()

        await eventually(lambda: next_up_says(paused=True), timeout=ROUTER_WAIT, what="Next up skipping the paused")
        await expect(next_up).to_contain_text("next (Website leads): Cal Pause")

        await paused_box.uncheck()
        await submitted(agent, "Save availability")
        await expect(agent.get_by_role("status")).to_contain_text("Availability saved.")
        await expect(paused_box).not_to_be_checked()
        await eventually(lambda: next_up_says(paused=False), timeout=ROUTER_WAIT, what="Next up after the resume")
    finally:
        await agent_context.close()
        await broker_context.close()


async def test_an_agent_whose_offer_ended_asks_for_the_lead_back_and_sees_it_again(
    browser: Browser, stack: Stack
) -> None:
    lead_id = await intake(stack, ASK, {"tags": [ASK_TAG]})
    offered = await eventually(lambda: open_offers(stack, ASK, lead_id, "wbr-kb"), what="the offer to the rule's agent")
    assert offered == ["wbr-ka"], offered
    context, page = await sign_in(browser, stack, ASK, "wbr-ka")
    lead_url = f"{stack.url('crm-api')}/app/accounts/{ASK}/leads/{lead_id}"
    try:
        await page.goto(lead_url)
        await submitted(page, "Decline")
        await expect(page.get_by_role("status")).to_contain_text("You declined the offer")

        async def gone_on() -> bool:
            return await open_offers(stack, ASK, lead_id, "wbr-kb") == ["wbr-ko"]

        await eventually(gone_on, what="the lead offered to the rule's fallback agent")

        async def ended_page() -> bool:
            await page.goto(lead_url)
            return await page.get_by_role("heading", name="This lead is no longer yours").count() == 1

        await eventually(ended_page, what="the ended-offer page on the lead's link")
        await expect(page.get_by_role("alert")).not_to_be_empty()  # how the offer ended
        await expect(page.get_by_role("button", name="Claim")).to_have_count(0)
        await submitted(page, "Ask for it back")
        await expect(page.get_by_role("status")).to_contain_text("Asked; the router decides")

        async def offered_again() -> bool:
            await page.goto(lead_url)
            return await page.get_by_role("button", name="Claim").count() == 1

        await eventually(offered_again, timeout=ROUTER_WAIT, what="the lead offered to the agent again")
        await expect(page.locator('[data-offer="wbr-ka"]')).to_be_visible()
        assert sorted(await open_offers(stack, ASK, lead_id, "wbr-kb")) == ["wbr-ka", "wbr-ko"]  # a race again
        await the_offer_names_the_button_s_ask(stack, lead_id)
    finally:
        await context.close()


async def the_offer_names_the_button_s_ask(stack: Stack, lead_id: str) -> None:
    """The button's ask (its id as crm-api's JSON outcome gives it) is the one the router's new offer on
    leads.events.v1 and crm-api's timeline entry of it name (decision 0067)."""
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        url = f"/v1/accounts/{ASK}/leads/{lead_id}"

        async def answer_on_the_timeline() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
            # The page showed the new offer from the lead's row; crm-api writes the offer's timeline entry after
            # the row (the entry goes last): wait for the entry that answers the ask.
            outcome = (await crm.get(f"{url}/ask-back", headers=stack.auth("wbr-ka", "realtor", ASK))).json()
            timeline = (await crm.get(url, headers=stack.auth("wbr-kb", "broker", ASK))).json()["timeline"]
            ask = outcome.get("event_id")
            answered = ask is not None and any(e["answers_activity_id"] == ask for e in timeline)
            return (outcome, timeline) if answered else None

        found = await eventually(answer_on_the_timeline, what="the offer answering the ask, on crm-api's timeline")
        assert found is not None
        outcome, timeline = found
    assert outcome["status"] == "offered", outcome
    ask_id = outcome["event_id"]

    def names_it(record: Any) -> bool:
        return bool(json.loads(record.value or b"{}").get("payload", {}).get("answers_activity_id") == ask_id)

    [record] = [r for r in await records_until(stack.bootstrap, topics.LEADS_EVENTS, names_it) if names_it(r)]
    offer = json.loads(record.value or b"{}")
    assert (offer["type"], offer["payload"]["agent_id"], offer["payload"]["lead_id"]) == (
        "LeadOffered",
        "wbr-ka",
        lead_id,
    )
    assert [e["answers_activity_id"] for e in timeline if e["event_id"] == offer["event_id"]] == [ask_id]


async def test_a_broker_sees_a_lead_held_until_its_rule_opens_on_the_lead_page(browser: Browser, stack: Stack) -> None:
    lead_id = await intake(stack, HOLD, {})
    headers = stack.auth("wbr-hb", "broker", HOLD)

    async def held() -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
            found = await crm.get(f"/v1/accounts/{HOLD}/leads/{lead_id}", headers=headers)
        return found.json() if found.status_code == 200 and found.json()["status"] == "held" else None

    row = await eventually(held, what="the lead listed held")
    until = datetime.fromisoformat(row["held_until"])
    assert (until.minute, row["owner_agent_id"], row["open_offers"]) == (0, None, [])
    context, page = await sign_in(browser, stack, HOLD, "wbr-hb")
    try:
        await page.goto(f"{stack.url('crm-api')}/app/accounts/{HOLD}/leads/{lead_id}")
        status = page.locator("p.muted", has=page.locator(".status-held"))
        await expect(status).to_contain_text("held until")
        await expect(status).to_contain_text("(its routing rule's hours are closed)")
        # The page shows the time in the reader's own clock (app.js); the moment is the element's datetime.
        await expect(status.locator("time")).to_have_attribute("datetime", until.isoformat())
        await expect(page.locator('li[data-type="LeadHeld"]')).to_contain_text("'Office hours' is closed")
    finally:
        await context.close()
