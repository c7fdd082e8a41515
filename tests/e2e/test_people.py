"""People beyond agents (issue 11.4, 11.10): admins and staff get a record the notifier reaches,
the team list shows and searches everyone, and the digest goes out at the hour the account sets.

The digest covers the day before its send time, so the leads it lists are put straight into the
notifier's digest store as yesterday's (the rest runs through the real processes: crm-api's
endpoints, the notifier's digest run, the SMTP server).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually, insert_rows

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "people-realty"
ZONE = "Asia/Kolkata"  # +05:30: a digest hour in UTC would be off by five and a half hours


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("people") / "accounts.json"
    agents = [
        {"agent_id": "ppl-ravi", "name": "Ravi Rao", "email": "ravi@people.example"},
        {
            "agent_id": "ppl-noor",
            "name": "Noor Shah",
            "email": "noor@people.example",
            "status": "onboarding",
            "active": False,
        },
    ]
    account = {
        "account_id": OFFICE,
        "name": "People Realty",
        "time_zone": ZONE,
        "agents": agents,
        "roster": ["ppl-ravi", "ppl-noor"],
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def test_staff_are_listed_with_the_team_and_get_the_digest_at_the_offices_hour(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    broker = stack.auth("ppl-boss", "admin", OFFICE)
    base = f"/v1/accounts/{OFFICE}"
    address = f"ops-{uuid.uuid4().hex[:6]}@people.example"
    prefs = {"channels": ["email"], "digest": True}
    refused = await client.put(f"{base}/settings/notifications/ppl-ops", headers=broker, json=prefs)
    assert refused.status_code == 404, "preferences of someone the notifier cannot reach are refused"

    bad = await client.put(
        f"{base}/staff/ppl-ops",
        headers=broker,
        json={"name": "🙂", "email": "not-an-address", "phone": "555", "time_zone": "Mars/Base"},
    )
    assert bad.status_code == 422
    assert {p["name"] for p in bad.json()["invalid_params"]} == {
        "body.name",
        "body.email",
        "body.phone",
        "body.time_zone",
    }
    member = {"name": "Priya Ops", "email": address, "phone": "+91 98765 43210", "time_zone": ZONE, "role": "staff"}
    saved = await client.put(f"{base}/staff/ppl-ops", headers=broker, json=member)
    assert saved.status_code == 200, saved.text
    assert saved.json()["phone"] == "+919876543210"
    agent_id = await client.put(f"{base}/staff/ppl-ravi", headers=broker, json=member)
    assert agent_id.status_code == 422, "an agent is no staff record"
    realtor = stack.auth("ppl-ravi", "realtor", OFFICE)
    assert (await client.get(f"{base}/team", headers=realtor)).status_code == 403

    team = (await client.get(f"{base}/team", headers=broker)).json()["items"]
    assert [(m["user_id"], m["role"], m["status"]) for m in team] == [
        ("ppl-noor", "agent", "onboarding"),
        ("ppl-ops", "staff", "active"),
        ("ppl-ravi", "agent", "active"),
    ]
    found = (await client.get(f"{base}/team", headers=broker, params={"q": address.upper()})).json()["items"]
    assert [m["user_id"] for m in found] == ["ppl-ops"]
    onboarding = (await client.get(f"{base}/team", headers=broker, params={"status": "onboarding"})).json()["items"]
    assert [m["name"] for m in onboarding] == ["Noor Shah"], "the Onboarding queue"

    assert (await client.put(f"{base}/settings/notifications/ppl-ops", headers=broker, json=prefs)).status_code == 200
    # The digest goes out at this hour of the office's day: the one that has just begun there.
    local_now = datetime.now(UTC).astimezone(ZoneInfo(ZONE))
    hour = local_now.hour
    unset = await client.get(f"{base}/settings/digest", headers=broker)  # the deployment's default (7)
    assert unset.json() == {"hour": 7, "time_zone": ZONE}
    digest = await client.put(f"{base}/settings/digest", headers=broker, json={"hour": hour})
    assert digest.json() == {"hour": hour, "time_zone": ZONE}
    assert (await client.get(f"{base}/settings/digest", headers=broker)).json() == digest.json()
    send_time = local_now.replace(minute=0, second=0, microsecond=0)
    yesterday = int((send_time - timedelta(hours=3)).timestamp() * 1000)
    lead_id = str(uuid.uuid4())
    insert_rows(stack.mongo_url, "notifier_digest_items", [{
        "_id": f"{OFFICE}:{lead_id}", "account_id": OFFICE, "lead_id": lead_id, "name": "Asha Patel",
        "source": "Website", "created_ms": yesterday, "transfer_id": "", "from_account": "",
    }])  # fmt: skip

    def digests() -> list[EmailMessage]:
        assert stack.mail is not None
        return [m for m in stack.mail.received() if m["X-Envelope-To"] == address]

    [mail] = await eventually(digests, timeout=30, what="the staff member's digest")
    assert mail["Subject"] == f"1 new lead on {send_time:%a %d %b}"

    gone = await client.delete(f"{base}/staff/ppl-ops", headers=broker)
    assert gone.status_code == 204
    assert (await client.get(f"{base}/settings/notifications/ppl-ops", headers=broker)).status_code == 404
