"""Round robin across the processes: offer email with the deadline, a claim on leads.activity.v1,
the others' offers withdrawn, and the brokerage list showing the new holder."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import bearer
from leadflow_shared import topics
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

AGENTS = ("rr2-ana", "rr2-ben", "rr2-cy")


@pytest.fixture
def race_account(stack: Stack, tmp_path: Path) -> str:
    config = {
        "accounts": [
            {
                "account_id": "race-realty",
                "name": "Race Realty",
                "round_robin": True,
                "time_zone": "America/Chicago",
                "agents": [
                    {"agent_id": a, "name": a, "email": f"{a}@race.example", "time_zone": "America/Chicago"}
                    for a in AGENTS
                ],
                "roster": list(AGENTS),
                "sources": [
                    {"name": "Website", "race_count": 2, "claim_window_seconds": 600, "referral_fee_percent": 20}
                ],
            }
        ]
    }
    path = tmp_path / "race.json"
    path.write_text(json.dumps(config))
    stack.seed(path)
    return "race-realty"


def mails(stack: Stack, lead_id: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return [m for m in stack.mail.received() if m["X-Leadflow-Lead-Id"] == lead_id]


async def test_lead_race_offer_claim_and_listing(stack: Stack, race_account: str) -> None:
    email = f"racer-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{stack.url('intake')}/v1/leads", json={"account_id": race_account, "first_name": "Rae", "email": email}
        )
        assert response.status_code == 202, response.text
        lead_id = response.json()["event_id"]

        def two_offers() -> list[EmailMessage]:
            found = mails(stack, lead_id)
            return found if len(found) >= 2 else []

        offers = await eventually(two_offers, what="two offer emails (a race of 2)")
        offered = sorted(str(m["To"]).split("@")[0] for m in offers)
        assert len(set(offered)) == 2
        assert set(offered) <= set(AGENTS)
        plain = offers[0].get_body(("plain",))  # the plain part of text + HTML
        assert plain is not None
        text = plain.get_content()
        assert "Claim it before" in text
        assert "CST" in text, "the deadline is shown in the agent's time zone"

        broker = bearer(stack.token("rr2-broker", "broker", race_account))

        async def listed_status() -> str | None:
            page = (await client.get(f"{stack.url('crm-api')}/v1/accounts/{race_account}/leads", headers=broker)).json()
            row = next((r for r in page["items"] if r["lead_id"] == lead_id), None)
            return None if row is None else f"{row['status']}:{row['owner_agent_id']}"

        assert await eventually(listed_status, what="the offered lead in All Leads") == "offered:None"

        winner = offered[1]
        claim = LeadActivity.create(
            account_id=race_account,
            occurred_at=datetime.now(UTC),
            payload=LeadActivityPayload(lead_id=uuid.UUID(lead_id), agent_id=winner, action=ActivityAction.CALL),
        )
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                topics.LEADS_ACTIVITY, claim.model_dump_json().encode(), key=race_account.encode()
            )
        finally:
            await producer.stop()

        async def claimed() -> bool:
            return await listed_status() == f"assigned:{winner}"

        await eventually(claimed, what="the claim in the brokerage list")
