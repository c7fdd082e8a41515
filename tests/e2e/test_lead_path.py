"""The first real path: website lead -> intake -> router (R5) -> notifier email -> crm-api All Leads."""

from __future__ import annotations

import itertools
import uuid
from email.message import EmailMessage

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


_phones = itertools.count(1000)


def lead(**overrides: object) -> dict[str, object]:
    """A new contact each time: same email or phone would make it an existing contact (R1)."""
    marker = uuid.uuid4().hex[:8]
    return {
        "account_id": "acme-realty",
        "first_name": "ROBIN",
        "last_name": f"tester-{marker}",
        "email": f"Robin.{marker}@Example.com",
        "phone": f"(415) 555-{next(_phones)}",
        "message": "Interested in 12 Elm St.",
        **overrides,
    }


def mails_for(stack: Stack, lead_id: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return [m for m in stack.mail.received() if m["X-Leadflow-Lead-Id"] == lead_id]


async def test_website_lead_is_emailed_to_roster_position_1_and_listed_in_all_leads(stack: Stack) -> None:
    body = lead()
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{stack.url('intake')}/v1/leads", json=body)
        assert response.status_code == 202, response.text
        lead_id = response.json()["event_id"]

        emails = await eventually(lambda: mails_for(stack, lead_id), what="the offer email")
        email = emails[0]
        # Roster position 1 of acme-realty (sample_accounts.json) is Alex Rivera.
        assert email["X-Envelope-To"] == "alex.rivera@acme-realty.example"
        assert email["To"] == "alex.rivera@acme-realty.example"
        expected_name = f"Robin {str(body['last_name']).title()}"
        assert email["Subject"] == f"New lead: {expected_name}"
        plain = email.get_body(("plain",))  # the plain part of text + HTML
        assert plain is not None
        text = plain.get_content()
        assert f"/app/accounts/acme-realty/leads/{lead_id}" in text  # the lead's page in the web app
        assert str(body["email"]).lower() in text
        phone = "+1415555" + str(body["phone"])[-4:]
        assert phone in text

        broker = bearer(stack.token("acme-broker", "broker", "acme-realty"))

        async def listed() -> dict[str, object] | None:
            url = f"{stack.url('crm-api')}/v1/accounts/acme-realty/leads?tab=all&limit=200"
            page = (await client.get(url, headers=broker)).json()
            return next((item for item in page["items"] if item["lead_id"] == lead_id), None)

        row = await eventually(listed, what="the lead in All Leads")
        assert row is not None
        assert row["name"] == expected_name
        assert row["email"] == str(body["email"]).lower()
        assert row["phone"] == phone
        assert row["owner_agent_id"] == "alex-rivera"
        assert row["status"] == "assigned"
        detail = await client.get(f"{stack.url('crm-api')}/v1/accounts/acme-realty/leads/{lead_id}", headers=broker)
        assert detail.status_code == 200
        other_broker = bearer(stack.token("other-broker", "broker", "other-realty"))
        other_account = await client.get(
            f"{stack.url('crm-api')}/v1/accounts/other-realty/leads/{lead_id}", headers=other_broker
        )
        assert other_account.status_code == 404


async def test_retry_with_same_idempotency_key_returns_same_event_and_emails_once(stack: Stack) -> None:
    body, key = lead(), str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as client:
        first = await client.post("/v1/leads", json=body, headers={"Idempotency-Key": key})
        second = await client.post("/v1/leads", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == second.status_code == 202
        assert first.json()["event_id"] == second.json()["event_id"]
        changed = await client.post("/v1/leads", json={**body, "message": "other"}, headers={"Idempotency-Key": key})
        assert changed.status_code == 409
    lead_id = first.json()["event_id"]
    await eventually(lambda: mails_for(stack, lead_id), what="the email")
    # A later lead's email arriving shows the pipeline moved past this one without a second copy.
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as client:
        later = (await client.post("/v1/leads", json=lead())).json()["event_id"]
    await eventually(lambda: mails_for(stack, later), what="the later lead's email")
    assert len(mails_for(stack, lead_id)) == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"account_id": "acme-realty", "first_name": "", "email": "not-an-email"}, {"first_name", "email"}),
        ({"account_id": "acme realty!", "first_name": "Al", "email": "al@example.com"}, {"account_id"}),
        ({"account_id": "acme-realty", "first_name": "Al", "phone": "12"}, {"phone"}),
        ({"account_id": "acme-realty", "first_name": "Al"}, {"<body>"}),
        ({"account_id": "acme-realty", "first_name": "Al", "email": "a@example.com", "x": 1}, {"x"}),
    ],
)
async def test_malformed_lead_gets_422_naming_the_fields(
    stack: Stack, body: dict[str, object], fields: set[str]
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as client:
        response = await client.post("/v1/leads", json=body)
    assert response.status_code == 422, response.text
    named = {str(err["loc"][-1]) if len(err["loc"]) > 1 else "<body>" for err in response.json()["detail"]}
    assert fields <= named, response.json()


async def test_oversized_body_gets_413(stack: Stack) -> None:
    body = lead(message="x" * 70_000)
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as client:
        response = await client.post("/v1/leads", json=body)
    assert response.status_code == 413
