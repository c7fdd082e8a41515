"""A session ends when the office or its user says so, not hours later when its token expires (decision 0105):
crm-api's whole app served over HTTP on the session's Tansu and nx-27017. Found by helper 171's review; each test
failed before.

- An admin the broker removed from the office (`DELETE /v1/accounts/{a}/staff/{u}`), or demoted to staff, went on
  acting as an admin with the token it held: the whole office's leads with their contacts, its settings, its team
  list (decision 0079 checked the agent record only).
- Signing out of the web app ended nothing: the session cookie's value (the bearer JWT) still signed a browser in,
  and still opened the live stream, until the token's own expiry (hours).
- A live page's stream outlived its token: it checked the agent record at each poll, never the token's expiry.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from test_people_who_left import CSRF, Db, Site, site

from leadflow_crm_api.adapters.leads import LeadViews
from leadflow_crm_api.handlers import project
from leadflow_devstack.tokens import bearer
from leadflow_shared.collections import ACCOUNTS, AGENTS, STAFF
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

__all__ = ["site"]  # crm-api's app served on Tansu and nx-27017, as test_people_who_left.py serves it

SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


@dataclass(frozen=True)
class Office:
    account: str
    broker: str
    admin: str
    agent: str
    lead: str


async def office(db: Db) -> Office:
    """An office with its broker (no agent record), an admin (a staff record, role admin) and an agent holding a
    lead with the contact's personal data."""
    tag = uuid.uuid4().hex[:6]
    at = Office(f"office-{tag}", f"boss-{tag}", f"adm-{tag}", f"ana-{tag}", "")
    await db[ACCOUNTS].insert_one({"_id": at.account, "name": "Office", "roster": [at.agent]})
    await db[AGENTS].insert_one(
        {"_id": at.agent, "account_id": at.account, "name": "Ana", "email": f"{at.agent}@x.example",
         "status": "active", "active": True}
    )  # fmt: skip
    await db[STAFF].insert_one(
        {"_id": at.admin, "account_id": at.account, "name": "Adam", "email": f"{at.admin}@x.example", "role": "admin"}
    )
    lead = LeadAssigned.create(
        account_id=at.account,
        occurred_at=datetime.now(UTC),
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(), agent_id=at.agent, reason=AssignmentReason.MANUAL, explanation="by hand",
            contact=Contact(first_name="Rae", email="rae@contact.example", phone="+15555550100"), source=SOURCE,
        ),
    )  # fmt: skip
    await project(lead, views=LeadViews(db))
    return Office(at.account, at.broker, at.admin, at.agent, str(lead.payload.lead_id))


async def admin_reach(site: Site, at: Office, token: str) -> list[int]:
    """What an admin's token reaches: the office's leads, one lead's contact, the settings, the team list."""
    headers = bearer(token)
    base = f"/v1/accounts/{at.account}"
    return [
        (await site.http.get(f"{base}/leads", headers=headers)).status_code,
        (await site.http.get(f"{base}/leads/{at.lead}", headers=headers)).status_code,
        (await site.http.get(f"{base}/settings/routing", headers=headers)).status_code,
        (await site.http.get(f"{base}/team", headers=headers)).status_code,
    ]


async def test_an_admin_removed_from_the_office_keeps_acting_as_its_admin_with_the_token_it_holds(site: Site) -> None:
    at = await office(site.db)
    adam = site.token(at.admin, "admin", at.account)
    assert await admin_reach(site, at, adam) == [200, 200, 200, 200], "the admin's token works while it is one"

    broker = bearer(site.token(at.broker, "broker", at.account))
    removed = await site.http.delete(f"/v1/accounts/{at.account}/staff/{at.admin}", headers=broker)
    assert removed.status_code == 204, removed.text
    assert await site.db[STAFF].find_one({"_id": at.admin}) is None

    # This replica made the change: refused from the next request on (others within their cache time, 2 s).
    lead = await site.http.get(f"/v1/accounts/{at.account}/leads/{at.lead}", headers=bearer(adam))
    assert "rae@contact.example" not in lead.text, "a removed admin still reads the office's contacts"
    assert await admin_reach(site, at, adam) == [401, 401, 401, 401], (
        "a removed admin is refused from its next request on, as an agent made inactive is (decision 0079)"
    )
    assert await admin_reach(site, at, site.token(at.admin, "admin", at.account)) == [401] * 4, "a new token too"

    record = {"name": "Adam", "email": f"{at.admin}@x.example", "role": "admin"}
    again = await site.http.put(f"/v1/accounts/{at.account}/staff/{at.admin}", headers=broker, json=record)
    assert again.status_code == 200, again.text
    assert await admin_reach(site, at, adam) == [200] * 4, "added again as an admin: an admin again"


async def test_an_office_takes_back_its_admin_whose_id_another_office_holds_a_staff_record_under(site: Site) -> None:
    """Ids are global: North writing a staff record under the id of South's admin (one only the identity provider
    makes an admin, no staff record in South) kept South from demoting it (404: another office's id) and from
    removing it (404: no record here), so South could not take its admin's token back (decision 0105's "Left")."""
    south, north = await office(site.db), await office(site.db)
    idp_admin = f"idp-{uuid.uuid4().hex[:6]}"
    token = site.token(idp_admin, "admin", south.account)
    assert await admin_reach(site, south, token) == [200] * 4, "an admin only the identity provider knows"

    squat = {"name": "Not yours", "email": "squat@north.example", "role": "admin"}
    north_broker = bearer(site.token(north.broker, "broker", north.account))
    put = await site.http.put(f"/v1/accounts/{north.account}/staff/{idp_admin}", headers=north_broker, json=squat)
    assert put.status_code == 200, put.text

    south_broker = bearer(site.token(south.broker, "broker", south.account))
    removed = await site.http.delete(f"/v1/accounts/{south.account}/staff/{idp_admin}", headers=south_broker)
    assert removed.status_code == 204, f"South cannot remove its own admin: {removed.status_code} {removed.text}"
    assert await admin_reach(site, south, token) == [401] * 4, "South's removal holds on South's admin token"
    assert await site.db[STAFF].find_one({"_id": idp_admin, "account_id": north.account}), "North's record stays"
    north_token = site.token(idp_admin, "admin", north.account)
    assert (
        await site.http.get(f"/v1/accounts/{north.account}/team", headers=bearer(north_token))
    ).status_code == 200, "South's word is South's: the user's standing in North is North's"
    unknown = await site.http.delete(
        f"/v1/accounts/{south.account}/staff/nobody-{uuid.uuid4().hex[:6]}", headers=south_broker
    )
    assert unknown.status_code == 404, "an id no office has a record under is still no staff member here"


async def test_an_admin_demoted_to_staff_keeps_the_admin_s_powers_with_the_token_it_holds(site: Site) -> None:
    at = await office(site.db)
    adam = site.token(at.admin, "admin", at.account)
    broker = bearer(site.token(at.broker, "broker", at.account))
    record = {"name": "Adam", "email": f"{at.admin}@x.example", "role": "staff"}
    demoted = await site.http.put(f"/v1/accounts/{at.account}/staff/{at.admin}", headers=broker, json=record)
    assert demoted.status_code == 200, demoted.text

    # A staff member may not change the office's routing; the demoted admin's old token still does.
    routing = await site.http.get(f"/v1/accounts/{at.account}/settings/routing", headers=bearer(adam))
    assert routing.status_code in {401, 403}, (
        f"a demoted admin (staff) reads the office's routing settings with its admin token: {routing.status_code}"
    )


async def test_signing_out_ends_the_session_s_token(site: Site) -> None:
    at = await office(site.db)
    token = site.token(at.agent, "realtor", at.account)
    async with site.signed_in(token) as web:
        cookie = web.cookies.get("leadflow_session")
        assert cookie is not None
        mine = await web.get("/app/my/leads")
        assert mine.status_code == 200
        csrf = CSRF.search(mine.text)
        assert csrf is not None
        out = await web.post("/app/sign-out", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
        assert web.cookies.get("leadflow_session") is None, "the browser's cookie is deleted"

    # Whoever kept the cookie's value (a shared computer's cookie jar read before, a proxy's log, malware) signs
    # in again with it after its owner signed out.
    async with httpx.AsyncClient(
        base_url=site.http.base_url, follow_redirects=False, cookies={"leadflow_session": cookie}
    ) as replay:
        page = await replay.get("/app/my/leads")
        assert page.status_code == 303, f"the signed-out session's cookie still opens the app: {page.status_code}"
        assert page.headers["location"].startswith("/app/sign-in")
    api = await site.http.get(f"/v1/accounts/{at.account}/leads", headers=bearer(cookie))
    assert api.status_code == 401, "the signed-out token is no bearer token either, until it expires"


async def test_a_live_stream_ends_once_its_token_expired(site: Site) -> None:
    at = await office(site.db)
    token = site.token(at.agent, "realtor", at.account, lifetime=timedelta(seconds=4))
    expires = asyncio.get_running_loop().time() + 4
    async with (
        httpx.AsyncClient(
            base_url=site.http.base_url, follow_redirects=False, cookies={"leadflow_session": token}
        ) as web,
        web.stream("GET", "/app/my/live", timeout=httpx.Timeout(60.0)) as stream,
    ):
        assert stream.status_code == 200
        chunks = stream.aiter_text()
        assert "retry:" in await anext(chunks)

        async def drained() -> None:
            async for _ in chunks:
                pass

        # A deadline, not a pause: the stream ends at its first poll after the expiry (every 0.25 s), or fails here.
        await asyncio.wait_for(drained(), timeout=max(0.0, expires - asyncio.get_running_loop().time()) + 10)
        assert (await web.get("/app/my/leads")).status_code == 303, "the expired token opens no page"
