"""The Ponds page in a real browser (Chromium through Playwright), against the whole running system (issue 15,
item 5): a lead a routing rule puts in a pond is offered to the pond's agents at once; the broker's "Ponds" lists it
with whom it is offered to, and no Claim button; an agent opens "Ponds" from the menu, claims it with the row's
Claim button (the lead page's claim: the router decides), lands on the lead, now its own, and the lead leaves the
pond for everyone. The JSON routes say the same along the way.

The browser and how it is started are those of test_web_browser.py (its helpers cannot be imported here: the
type checker does not see tests/e2e as a module path).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ACCOUNT, TAG = "wbp-pond-realty", "wbp-pond"
NAMES = {"wbp-boss": "Pia Broker", "wbp-ann": "Ann Pond", "wbp-bo": "Bo Pond"}


@pytest.fixture(scope="module", autouse=True)
def account(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    rule = {"id": "ponded", "name": "Pond leads", "criteria": {"tags": [TAG]},
            "action": {"kind": "pond", "pond": "open-house"}}  # fmt: skip
    pond = {"id": "open-house", "name": "Open house", "agents": ["wbp-ann", "wbp-bo"], "hold_seconds": 3600}
    agents = [{"agent_id": a, "name": n, "email": f"{a}@wbp.example"} for a, n in NAMES.items()]
    config = {"account_id": ACCOUNT, "name": ACCOUNT, "round_robin": True, "time_zone": "UTC", "agents": agents,
              "roster": list(NAMES), "routing_rules": {"rules": [rule], "ponds": [pond]}}  # fmt: skip
    path = tmp_path_factory.mktemp("web-ponds") / "accounts.json"
    path.write_text(json.dumps({"accounts": [config]}))
    stack.seed(path)


async def api(stack: Stack, path: str, user: str, role: Any = "realtor") -> Any:
    async with httpx.AsyncClient(base_url=stack.url("crm-api"), timeout=30) as crm:
        answer = await crm.get(f"/v1/accounts/{ACCOUNT}{path}", headers=stack.auth(user, role, ACCOUNT))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_an_agent_claims_a_pond_lead_from_the_ponds_page(browser: Browser, stack: Stack) -> None:
    last_name = f"Lee{uuid.uuid4().hex[:6]}"
    lead = {"account_id": ACCOUNT, "first_name": "Wren", "last_name": last_name,
            "email": f"wren-{uuid.uuid4().hex[:8]}@example.com", "criteria": {"tags": [TAG]}}  # fmt: skip
    async with httpx.AsyncClient() as client:
        posted = await client.post(f"{stack.url('intake')}/v1/leads", json=lead)
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["event_id"])

    async def in_the_pond() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await api(stack, "/ponds/open-house/leads", "wbp-boss", "broker"))["items"]
        # Each agent's offer is its own event: the second may be projected a moment after the first.
        return [i for i in items if i["lead_id"] == lead_id and len(i["offered_to"]) == 2]

    [listed] = await eventually(in_the_pond, what="the lead in the pond, offered to both its agents")
    assert listed["offered_to"] == ["wbp-ann", "wbp-bo"], "offered to the pond's agents at once"
    assert await api(stack, "/ponds", "wbp-boss", "broker") == {
        "ponds": [{"pond_id": "open-house", "name": "Open house", "open_leads": 1}],
        "cannot_claim": None,
    }

    context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone's: the agents' page
    page = await context.new_page()
    try:
        # The broker's Ponds: the lead, whom it is offered to, and no Claim button (not the broker's to claim).
        await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={ACCOUNT}")
        await page.locator(f'form:has(input[name="user"][value="{ACCOUNT}|wbp-boss|broker"]) button').click()
        await page.get_by_role("link", name="Ponds", exact=True).click()
        seen = page.locator(f'section[data-pond="open-house"] tr[data-lead="{lead_id}"]')
        await expect(seen.locator('[data-label="Offered to"]')).to_have_text("wbp-ann, wbp-bo")
        await expect(seen.get_by_role("button")).to_have_count(0)
        await page.get_by_role("button", name="Sign out").click()

        await page.goto(f"{stack.url('crm-api')}/app/sign-in?account={ACCOUNT}")
        await page.locator(f'form:has(input[name="user"][value="{ACCOUNT}|wbp-ann|realtor"]) button').click()
        await page.wait_for_load_state()
        await page.get_by_role("link", name="Ponds", exact=True).click()
        await expect(page.get_by_role("heading", name="Ponds", exact=True)).to_be_visible()
        pond = page.locator('section[data-pond="open-house"]')
        await expect(pond.get_by_role("heading")).to_contain_text("Open house")
        row = pond.locator(f'tr[data-lead="{lead_id}"]')
        await expect(row.locator('[data-label="Lead Name"]')).to_have_text(f"Wren {last_name}")
        async with page.expect_navigation():
            await row.get_by_role("button", name="Claim", exact=True).click()
        await expect(page.get_by_role("status")).to_contain_text("Claim sent.")
        await expect(page.get_by_role("heading", name=f"Wren {last_name}")).to_be_visible()

        async def claimed() -> bool:
            found = await api(stack, f"/leads/{lead_id}", "wbp-boss", "broker")
            return bool(found["owner_agent_id"] == "wbp-ann" and found["open_offers"] == [])

        await eventually(claimed, what="the lead claimed by ann")
        await page.get_by_role("link", name="Ponds", exact=True).click()
        await expect(page.locator(f'tr[data-lead="{lead_id}"]')).to_have_count(0)
        await expect(pond).to_contain_text("No leads waiting.")
        assert (await api(stack, "/ponds/open-house/leads", "wbp-bo"))["items"] == [], "nor for the other agent"
    finally:
        await context.close()
