"""A missed offer asked back through the real processes (issue 15, item 5): an agent declines its offer, the
rule's fallback agent is offered the lead, and the agent asks for it back through crm-api: the router offers
it the lead again (joining the race) and the notifier emails it a second offer. Its rival then claims the lead,
and the agent's second ask is refused. Each answer names its ask (decision 0067): the id crm-api's POST gave
is on the router's answer on leads.events.v1, on crm-api's timeline entry of it, and on the ask's outcome. Also:
crm-api's "who is next" for the rule, asked of the router process."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, records_until
from leadflow_shared import topics
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged, LeadOffered

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


async def answer_on_the_topic(stack: Stack, ask_id: str) -> LeadOffered | ActivityLogged:
    """The router's answer on leads.events.v1 that names the ask."""

    def names_it(record: Any) -> bool:
        return bool(json.loads(record.value or b"{}").get("payload", {}).get("answers_activity_id") == ask_id)

    found = [r for r in await records_until(stack.bootstrap, topics.LEADS_EVENTS, names_it) if names_it(r)]
    assert len(found) == 1, "one answer per ask"
    answer = ROUTING_EVENT.validate_json(found[0].value or b"")
    assert isinstance(answer, LeadOffered | ActivityLogged), answer.type
    return answer


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
    ask_id = asked.json()["event_id"]

    async def offered_again() -> dict[str, Any] | None:
        # crm-api writes the new offer's row change before its timeline entry (the entry goes last): wait for both.
        found = await offered_to("askb-ann", "askb-bo")
        timeline = found["timeline"] if found else []
        answer = [e for e in timeline if e["type"] == "LeadOffered" and e["answers_activity_id"] == ask_id]
        return found if answer else None

    await eventually(offered_again, what="ann offered the lead again, racing bo, the offer on the timeline too")
    outcome = await crm.get(f"{url}/ask-back", headers=ann)  # what became of the ask, in JSON
    assert (outcome.status_code, outcome.json()["status"]) == (200, "offered"), outcome.text
    assert outcome.json()["event_id"] == ask_id, "the outcome is that ask's"
    offer = await answer_on_the_topic(stack, ask_id)  # the router's answer names the ask...
    assert isinstance(offer, LeadOffered)
    assert (offer.payload.agent_id, str(offer.payload.lead_id)) == ("askb-ann", lead_id)
    assert "asked back the offer it missed" in offer.payload.explanation
    timeline = (await crm.get(url, headers=broker)).json()["timeline"]  # ...and so does crm-api's entry of it
    [entry] = [e for e in timeline if e["event_id"] == str(offer.event_id)]
    assert (entry["type"], entry["answers_activity_id"]) == ("LeadOffered", ask_id)
    assert [e["type"] for e in timeline if e["event_id"] == ask_id] == ["LeadActivity"], "the ask's own entry"
    await eventually(lambda: offer_mails(stack, lead_id, "askb-ann") == 2, what="ann's second offer email")
    assert (await crm.get(url, headers=ann)).status_code == 200, "offered again, ann sees the lead"
    again = await crm.post(f"{url}/ask-back", headers=ann)
    assert again.status_code == 409, "its offer is open: nothing to ask back"

    next_up = await crm.get(f"/v1/accounts/{ACCOUNT}/routing/rules/mine/next", headers=broker)
    assert next_up.status_code == 200, next_up.text
    assert next_up.json()["next"] == [{"agent_id": "askb-ann", "name": "Ann Ask"}]

    # bo claims the lead: ann's offer is withdrawn, and its second ask is refused, that refusal naming it.
    claimed = await crm.post(f"{url}/activities", headers=stack.auth("askb-bo", "realtor", ACCOUNT),
                             json={"action": "call"})  # fmt: skip
    assert claimed.status_code == 202, claimed.text

    async def held_by_bo() -> bool:
        detail = (await crm.get(url, headers=broker)).json()
        return bool(detail["owner_agent_id"] == "askb-bo" and not detail["open_offers"])

    await eventually(held_by_bo, what="bo holding the lead, ann's offer withdrawn")
    second = await crm.post(f"{url}/ask-back", headers=ann)
    assert second.status_code == 202, second.text
    second_id = second.json()["event_id"]
    assert second_id != ask_id

    async def answered() -> dict[str, Any] | None:
        found = (await crm.get(f"{url}/ask-back", headers=ann)).json()
        return found if found["status"] != "pending" else None

    refused = await eventually(answered, what="the router's answer to the second ask, projected")
    assert (refused["status"], refused["event_id"]) == ("refused", second_id), refused
    assert refused["reason"] == "the lead is held by askb-bo"
    refusal = await answer_on_the_topic(stack, second_id)
    assert isinstance(refusal, ActivityLogged)
    assert (refusal.payload.by_agent_id, refusal.payload.claim_refused) == (
        "askb-ann",
        "cannot ask it back: the lead is held by askb-bo",
    )
    timeline = (await crm.get(url, headers=broker)).json()["timeline"]
    assert [e["answers_activity_id"] for e in timeline if e["event_id"] == str(refusal.event_id)] == [second_id]
