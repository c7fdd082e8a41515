"""A missed offer asked back through the real processes (issue 15, item 5): an agent declines its offer, the
rule's fallback agent is offered the lead, and the agent asks for it back through crm-api: the router offers
it the lead again (joining the race) and the notifier emails it a second offer. Also: crm-api's "who is next"
for the rule, asked of the router process."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "askb-realty"
AGENTS = {"askb-boss": "Ada Boss", "askb-ann": "Ann Ask", "askb-bo": "Bo Back"}
RULE = {
    "id": "mine",
    "name": "Mine",
    "criteria": {"tags": ["askb"]},
    "action": {"kind": "agent", "agent_id": "askb-ann"},
    "fallbacks": [{"kind": "agent", "agent_id": "askb-bo"}],  # after ann declines
}


@pytest.fixture(scope="module", autouse=True)
def account(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    config = {"account_id": ACCOUNT, "name": "Ask Back Realty", "round_robin": True, "time_zone": "UTC",
              "agents": [{"agent_id": a, "name": n, "email": f"{a}@askb.example"} for a, n in AGENTS.items()],
              "roster": list(AGENTS), "default_source": {"claim_window_seconds": 3600},
              "routing_rules": {"rules": [RULE]}}  # fmt: skip
    path = tmp_path_factory.mktemp("askb") / "accounts.json"
    path.write_text(json.dumps({"accounts": [config]}))
    stack.seed(path)


def offer_mails(stack: Stack, lead_id: str, agent_id: str) -> int:
    """How many offer emails of the lead the agent received."""
    assert stack.mail is not None
    return sum(
        1
        for m in stack.mail.received()
        if str(m["Subject"]).startswith("Lead offer")
        and m["X-Leadflow-Lead-Id"] == lead_id
        and str(m["To"]).startswith(f"{agent_id}@")
    )


async def test_an_agent_asks_back_the_offer_it_declined_and_is_emailed_a_new_offer(
    stack: Stack, crm: httpx.AsyncClient
) -> None:
    broker, ann = stack.auth("askb-boss", "broker", ACCOUNT), stack.auth("askb-ann", "realtor", ACCOUNT)
    body = {"account_id": ACCOUNT, "first_name": "Ask", "email": f"ask-{uuid.uuid4().hex[:8]}@example.com",
            "criteria": {"tags": ["askb"]}}  # fmt: skip
    posted = await crm.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["event_id"])
    url = f"/v1/accounts/{ACCOUNT}/leads/{lead_id}"

    async def offered_to(*agents: str) -> dict[str, Any] | None:
        detail = await crm.get(url, headers=broker)
        found = detail.json() if detail.status_code == 200 else {}
        return found if sorted(o["agent_id"] for o in found.get("open_offers", [])) == sorted(agents) else None

    await eventually(lambda: offered_to("askb-ann"), what="the offer to ann in crm-api")
    await eventually(lambda: offer_mails(stack, lead_id, "askb-ann") == 1, what="ann's offer email")
    declined = await crm.post(f"{url}/activities", headers=ann, json={"action": "decline"})
    assert declined.status_code == 202, declined.text
    await eventually(lambda: offered_to("askb-bo"), what="the fallback agent's offer")
    assert (await crm.get(url, headers=ann)).status_code == 404, "its offer ended: ann no longer sees the lead"

    asked = await crm.post(f"{url}/ask-back", headers=ann)
    assert asked.status_code == 202, asked.text
    assert asked.json()["detail"].startswith("Asked; the router decides")
    await eventually(lambda: offered_to("askb-ann", "askb-bo"), what="ann offered the lead again, racing bo")
    outcome = await crm.get(f"{url}/ask-back", headers=ann)  # what became of the ask, in JSON
    assert (outcome.status_code, outcome.json()["status"]) == (200, "offered"), outcome.text
    await eventually(lambda: offer_mails(stack, lead_id, "askb-ann") == 2, what="ann's second offer email")
    assert (await crm.get(url, headers=ann)).status_code == 200, "offered again, ann sees the lead"
    again = await crm.post(f"{url}/ask-back", headers=ann)
    assert again.status_code == 409, "its offer is open: nothing to ask back"

    next_up = await crm.get(f"/v1/accounts/{ACCOUNT}/routing/rules/mine/next", headers=broker)
    assert next_up.status_code == 200, next_up.text
    assert next_up.json()["next"] == [{"agent_id": "askb-ann", "name": "Ann Ask"}]
