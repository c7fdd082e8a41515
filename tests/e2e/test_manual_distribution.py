"""Leads distributed by hand (issue 11.1), through crm-api, the router, the notifier and crm-api's
views: a broker assigns or offers leads (named, or all a filter matches), an agent gives one back;
bad requests are refused with the field and reason, and send nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, insert_rows

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "hand-realty"
AGENTS = {"hand-broker": "Hal Broker", "hand-ann": "Ann Hand", "hand-bo": "Bo Hand", "hand-gone": "Gone Hand"}


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("hand") / "accounts.json"
    agents: list[dict[str, Any]] = [{"agent_id": a, "name": n, "email": f"{a}@hand.example"} for a, n in AGENTS.items()]
    agents[-1]["active"] = False
    account = {
        "account_id": OFFICE,
        "name": "Hand Realty",
        "round_robin": False,  # R5: roster position 1 holds every new lead until someone distributes it
        "time_zone": "UTC",
        "agents": agents,
        "roster": list(AGENTS),
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def new_lead(stack: Stack, source: str) -> str:
    tag = uuid.uuid4().hex[:8]
    body = {
        "account_id": OFFICE,
        "first_name": "Robin",
        "last_name": f"Q{tag}",
        "email": f"robin.{tag}@example.com",
        "source_name": source,
    }
    async with httpx.AsyncClient() as intake:
        response = await intake.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def mails_to(stack: Stack, address: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return stack.mail.received_by(address)


async def test_a_broker_assigns_and_offers_by_hand_and_an_agent_gives_a_lead_back(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    broker = stack.auth("hand-broker", "broker", OFFICE)
    ann, bo = stack.auth("hand-ann", "realtor", OFFICE), stack.auth("hand-bo", "realtor", OFFICE)
    source = f"Open house {uuid.uuid4().hex[:6]}"
    ids = [await new_lead(stack, source) for _ in range(3)]

    async def row(lead_id: str) -> dict[str, Any]:
        response = await client.get(f"/v1/accounts/{OFFICE}/leads/{lead_id}", headers=broker)
        return dict(response.json()) if response.status_code == 200 else {}

    async def when(lead_id: str, what: str, ready: Any) -> dict[str, Any]:
        async def poll() -> dict[str, Any] | None:
            found = await row(lead_id)
            return found if found and ready(found) else None

        found = await eventually(poll, what=what)
        assert found is not None
        return dict(found)

    for lead_id in ids:
        await when(lead_id, "R5: the broker holds it", lambda d: d["owner_agent_id"] == "hand-broker")

    async def distribute(body: dict[str, Any], headers: dict[str, str] = broker) -> httpx.Response:
        return await client.post(f"/v1/accounts/{OFFICE}/distributions", headers=headers, json=body)

    # Refused as a whole, with the field and reason; nothing is sent.
    unknown = await distribute({"agent_id": "hand-ann", "mode": "assign", "lead_ids": [ids[0], "no-such-lead"]})
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["invalid_params"] == [{"name": "body.lead_ids.1", "reason": "no such lead"}]
    for agent in ("hand-gone", "crm-ana", "nobody"):
        refused = await distribute({"agent_id": agent, "mode": "assign", "lead_ids": [ids[0]]})
        assert refused.status_code == 422, refused.text
        reason = "not an active agent of this account"
        assert refused.json()["invalid_params"] == [{"name": "body.agent_id", "reason": reason}]
    as_agent = await distribute({"agent_id": "hand-ann", "mode": "assign", "lead_ids": [ids[0]]}, headers=ann)
    assert as_agent.status_code == 403

    # One lead assigned to Ann at once: the timeline says who and why, and Ann is emailed.
    assigned = await distribute(
        {"agent_id": "hand-ann", "mode": "assign", "lead_ids": [ids[0]], "note": "Speaks Spanish"}
    )
    assert assigned.status_code == 202, assigned.text
    assert assigned.json()["lead_ids"] == [ids[0]]

    def assigned_by_hand(d: dict[str, Any]) -> bool:
        # crm-api writes an event's row change before its timeline entry (the entry goes last): wait for both.
        return d["owner_agent_id"] == "hand-ann" and any("by hand" in e["summary"] for e in d["timeline"])

    first = await when(ids[0], "the assignment, on the timeline too", assigned_by_hand)
    by_hand = [e["summary"] for e in first["timeline"] if "by hand" in e["summary"]]
    expected = "Assigned to hand-ann (manual): Assigned by hand to hand-ann by hand-broker: Speaks Spanish."
    assert by_hand == [expected], "the refused request sent nothing, the accepted one exactly one assignment"
    await eventually(
        lambda: [m for m in mails_to(stack, "hand-ann@hand.example") if "New lead" in str(m["Subject"])],
        what="Ann's email",
    )

    # Every lead the filter matches that the broker still holds, offered to Bo with a claim window.
    offered = await distribute(
        {
            "agent_id": "hand-bo",
            "mode": "offer",
            "claim_window_seconds": 600,
            "filter": {"source": source, "owner": "hand-broker"},
        }
    )
    assert offered.status_code == 202, offered.text
    assert sorted(offered.json()["lead_ids"]) == sorted(ids[1:])
    for lead_id in ids[1:]:
        on_offer = await when(
            lead_id, "the offer to Bo", lambda d: [o["agent_id"] for o in d["open_offers"]] == ["hand-bo"]
        )
        assert on_offer["owner_agent_id"] is None
    claimed = await client.post(
        f"/v1/accounts/{OFFICE}/leads/{ids[1]}/activities", headers=bo, json={"action": "accept"}
    )
    assert claimed.status_code == 202, claimed.text
    await when(ids[1], "Bo's claim", lambda d: d["owner_agent_id"] == "hand-bo")

    # Ann gives her lead back: the broker pool holds it; someone who does not hold it cannot.
    not_hers = await client.post(f"/v1/accounts/{OFFICE}/leads/{ids[1]}/return", headers=ann, json={})
    assert not_hers.status_code in {404, 409}, not_hers.text
    given_back = await client.post(
        f"/v1/accounts/{OFFICE}/leads/{ids[0]}/return", headers=ann, json={"note": "Out of my area"}
    )
    assert given_back.status_code == 202, given_back.text
    returned = "hand-ann gave the lead back to the broker (Out of my area); hand-broker holds it now."

    def given_back_to_the_broker(d: dict[str, Any]) -> bool:
        return d["owner_agent_id"] == "hand-broker" and any(e["summary"].endswith(returned) for e in d["timeline"])

    back = await when(ids[0], "the return, on the timeline too", given_back_to_the_broker)
    assert any(e["summary"].endswith(returned) for e in back["timeline"])

    # A lead an office transfer is moving right now (its record staged as crm-api writes one):
    # named, the request is refused and nothing is sent; matched by a filter, it is skipped.
    insert_rows(stack.mongo_url, "crm_office_transfers", [{
        "_id": str(uuid.uuid4()), "account_id": OFFICE, "kind": "lead", "lead_id": ids[2], "agent_id": None,
        "to_account_id": "elsewhere", "to_account_name": "Elsewhere", "by": "hand-broker",
        "at": datetime.now(UTC), "status": "pending", "published": True,
    }])  # fmt: skip
    moving = await distribute({"agent_id": "hand-ann", "mode": "assign", "lead_ids": [ids[2]]})
    assert moving.status_code == 422
    assert moving.json()["invalid_params"] == [{"name": "body.lead_ids.0", "reason": "being moved to another office"}]
    skipped = await distribute({"agent_id": "hand-ann", "mode": "assign", "filter": {"source": source}})
    assert {"lead_id": ids[2], "reason": "being moved to another office"} in skipped.json()["skipped"]
    assert ids[2] not in skipped.json()["lead_ids"]
