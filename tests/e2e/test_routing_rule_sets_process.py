"""Routing rules through the real processes (issue 15): an account seeded with rules, website leads with
what they are about posted to intake, and the offer emails reaching the agents the rules name."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

AGENTS = ("rs-broker", "rs-seller", "rs-lux1", "rs-lux2", "rs-gen")


@pytest.fixture
def ruled_account(stack: Stack, tmp_path: Path) -> str:
    rules = {
        "rules": [
            {
                "id": "sellers",
                "name": "Sellers",
                "criteria": {"intents": ["sell"]},
                "action": {"kind": "agent", "agent_id": "rs-seller"},
            },
            {
                "id": "luxury-austin",
                "name": "Luxury Austin",
                "criteria": {"price_min": 1_000_000, "cities": ["Austin"]},
                "action": {"kind": "rotation", "agents": ["rs-lux1", "rs-lux2"], "race": 2},
            },
        ],
        "default": {"action": {"kind": "rotation", "agents": ["rs-gen"]}},
    }
    config = {
        "accounts": [
            {
                "account_id": "ruled-realty",
                "name": "Ruled Realty",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a, "email": f"{a}@ruled.example"} for a in AGENTS],
                "roster": list(AGENTS),
                "routing_rules": rules,
            }
        ]
    }
    path = tmp_path / "ruled.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    return "ruled-realty"


async def offered_to(
    stack: Stack, client: httpx.AsyncClient, account: str, criteria: dict[str, Any], n: int
) -> set[str]:
    """Post a website lead about `criteria`; the agents its `n` offer emails went to."""
    body = {
        "account_id": account,
        "first_name": "Rue",
        "email": f"rue-{uuid.uuid4().hex[:8]}@example.com",  # a new contact each time: R1 merges none
        "criteria": criteria,
    }
    response = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
    assert response.status_code == 202, response.text
    lead_id = response.json()["event_id"]

    def offers() -> list[EmailMessage]:
        assert stack.mail is not None
        found = [m for m in stack.mail.received() if m["X-Leadflow-Lead-Id"] == lead_id]
        return found if len(found) >= n else []

    return {str(m["To"]).split("@")[0] for m in await eventually(offers, what=f"{n} offer emails")}


async def test_each_lead_goes_to_the_agents_its_rule_names(stack: Stack, ruled_account: str) -> None:
    async with httpx.AsyncClient() as client:
        assert await offered_to(stack, client, ruled_account, {"intent": "sell"}, 1) == {"rs-seller"}
        luxury = {"intent": "buy", "price": {"min": 1_200_000}, "place": {"city": "austin"}}
        assert await offered_to(stack, client, ruled_account, luxury, 2) == {"rs-lux1", "rs-lux2"}
        elsewhere = {"intent": "buy", "price": {"min": 1_200_000}, "place": {"city": "Dallas"}}
        assert await offered_to(stack, client, ruled_account, elsewhere, 1) == {"rs-gen"}  # the default rule
