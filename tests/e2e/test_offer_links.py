"""Offer notices people can act on (issue 11.6), through intake, the router, the notifier's emails
and crm-api: a race's offer hides the contact until someone claims, links to the lead's page in
the web app, and carries a one-click accept link that claims once and then says why it cannot."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

OFFICE = "link-realty"
AGENTS = {"link-ann": "Ann Link", "link-bo": "Bo Link"}
ACCEPT = re.compile(r"Accept it with one click: (\S+)")


@pytest.fixture(scope="module", autouse=True)
def office(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("links") / "accounts.json"
    account = {
        "account_id": OFFICE,
        "name": "Link Realty",
        "round_robin": True,
        "time_zone": "UTC",
        "agents": [{"agent_id": a, "name": n, "email": f"{a}@link.example"} for a, n in AGENTS.items()],
        "roster": list(AGENTS),
        "sources": [{"name": "Website", "race_count": 2, "claim_window_seconds": 600}],
    }
    path.write_text(json.dumps({"accounts": [account]}))
    stack.seed(path)


async def test_a_race_offer_hides_the_contact_and_its_accept_link_claims_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    contact = f"casey.{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient() as intake:
        posted = await intake.post(
            f"{stack.url('intake')}/v1/leads",
            json={"account_id": OFFICE, "first_name": "Casey", "email": contact, "phone": "(312) 555-0177"},
        )
    assert posted.status_code == 202, posted.text
    lead_id = str(posted.json()["event_id"])

    def offers() -> dict[str, EmailMessage]:
        assert stack.mail is not None
        found = {
            str(m["X-Envelope-To"]): m
            for m in stack.mail.received()
            if m["X-Leadflow-Lead-Id"] == lead_id and str(m["Subject"]).startswith("Lead offer")
        }
        return found if len(found) == 2 else {}

    mails = await eventually(offers, what="both racers' offer emails")
    links: dict[str, str] = {}
    for agent in AGENTS:
        body = mails[f"{agent}@link.example"].get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert contact not in text, "a race's offer hides the contact's email until someone claims"
        assert "Email: shown once you claim the lead" in text
        assert f"{stack.url('crm-api')}/app/accounts/{OFFICE}/leads/{lead_id}" in text  # the web app's page
        found = ACCEPT.search(text)
        assert found is not None
        links[agent] = found.group(1)
    assert links["link-ann"] != links["link-bo"]

    async with httpx.AsyncClient() as browser:
        page = await browser.get(links["link-ann"])
        assert page.status_code == 200
        assert 'method="post"' in page.text, "opening the link posts itself; a scanner's GET claims nothing"
        html_accept = {"Accept": "text/html"}
        # A double click: the link works once.
        first, second = await asyncio.gather(*(browser.post(links["link-ann"], headers=html_accept) for _ in "ab"))
        claimed, refused = sorted((first, second), key=lambda r: r.status_code)
        assert claimed.status_code == 202, claimed.text
        assert "Claim sent" in claimed.text
        assert (refused.status_code, "used already" in refused.text) == (409, True), refused.text

        broker = stack.auth("link-broker", "broker", OFFICE)

        async def held_by_ann() -> dict[str, Any] | None:
            # crm-api writes an event's row change before its timeline entry (the entry goes last), and bo's
            # OfferWithdrawn comes after the claim: the late click's answer below reads how bo's offer ended there.
            detail = (await client.get(f"/v1/accounts/{OFFICE}/leads/{lead_id}", headers=broker)).json()
            types = {(e["type"], e["agent_id"]) for e in detail.get("timeline", [])}
            on_the_timeline = {("LeadClaimed", "link-ann"), ("OfferWithdrawn", "link-bo")} <= types
            return detail if detail.get("owner_agent_id") == "link-ann" and on_the_timeline else None

        detail = await eventually(held_by_ann, what="the claim through the link and bo's withdrawal, on the timeline")
        assert detail is not None
        assert any(e["type"] == "LeadClaimed" and e["action"] == "accept" for e in detail["timeline"])

        again = await browser.post(links["link-ann"], headers=html_accept)
        assert (again.status_code, "You hold this lead already." in again.text) == (409, True), again.text
        late = await browser.post(links["link-bo"])  # an API client: problem+json
        assert late.status_code == 409
        assert late.headers["content-type"] == "application/problem+json"
        assert late.json()["detail"].startswith("Nothing was claimed: Your offer was withdrawn at ")
        assert late.json()["detail"].endswith("; the lead is held by link-ann.")
        forged = links["link-bo"][:-2] + ("AA" if not links["link-bo"].endswith("AA") else "BB")
        assert (await browser.post(forged)).status_code == 404
