"""ClientBAY's "who is next" (issue 11.9) through crm-api and the router: per lead source and per
lead group, following the rotation and the broker's approvals."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "next-realty"
AGENTS = {"next-ann": "Ann Next", "next-bo": "Bo Next", "next-cy": "Cy Next"}


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("next") / "accounts.json"
    account = {
        "account_id": OFFICE,
        "name": "Next Realty",
        "round_robin": True,
        "time_zone": "UTC",
        "agents": [
            {"agent_id": a, "name": n, "email": f"{a}@next.example", "lead_groups": ["buyers"]}
            for a, n in AGENTS.items()
        ],
        "roster": list(AGENTS),
        "sources": [
            {"name": "Website", "race_count": 1, "claim_window_seconds": 600},
            {"name": "Zillow", "lead_group": "buyers", "race_count": 2, "claim_window_seconds": 600},
        ],
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def test_who_is_next_follows_the_rotation_and_the_approvals(stack: Stack, client: httpx.AsyncClient) -> None:
    admin = stack.auth("next-admin", "admin", OFFICE)
    url = f"/v1/accounts/{OFFICE}/routing/next"

    async def next_for(**params: str) -> list[list[str]]:
        response = await client.get(url, headers=admin, params=params)
        assert response.status_code == 200, response.text
        return [[a["agent_id"] for a in item["next"]] for item in response.json()["items"]]

    assert await next_for(source="Website") == [["next-ann"]]
    group = (await client.get(url, headers=admin, params={"group": "buyers"})).json()["items"]
    assert [(i["source"], [a["name"] for a in i["next"]]) for i in group] == [("Zillow", ["Ann Next", "Bo Next"])]

    async with httpx.AsyncClient() as intake:
        body = {"account_id": OFFICE, "first_name": "Wes", "email": f"wes-{uuid.uuid4().hex[:8]}@example.com"}
        assert (await intake.post(f"{stack.url('intake')}/v1/leads", json=body)).status_code == 202

    async def moved_on() -> bool:
        return await next_for(source="Website") == [["next-bo"]]

    await eventually(moved_on, what="the rotation after a Website lead went to Ann")
    withdrawn = await client.put(
        f"/v1/accounts/{OFFICE}/agents/next-bo/round-robin", headers=admin, json={"approved": False}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    answer = (await client.get(url, headers=admin, params={"source": "Website"})).json()["items"][0]
    assert [a["agent_id"] for a in answer["next"]] == ["next-cy"]
    assert {"agent_id": "next-bo", "reason": "not approved for round robin"} in answer["skipped"]

    assert (
        await client.get(url, headers=stack.auth("next-ann", "realtor", OFFICE), params={"source": "Website"})
    ).status_code == 403
    assert (await client.get(url, headers=admin, params={"group": "sellers"})).status_code == 404
    assert (await client.get(url, headers=admin)).status_code == 422
