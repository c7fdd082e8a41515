"""The web app's forms give back a name as it is: a lead's labels (the lead page's Profile form) and a lead source's
offices (Settings, Lead sources) are one per line, so a name holding a comma ("Smith, Jones", "Brooklyn, NY", which
the JSON API takes) stays one name. The forms showed them joined by ", " and split what came back on ",": saving
only the company renamed the lead's labels (and created new ones in the account), a realtor of another brokerage
(T1, labels read-only) got a 403 on every save, and saving a source's referral fee split its office in two, which
the router then matched against agents' offices (R6) (found by helper 130). A label never holds a line break (the
API makes its whitespace one space); an office's name with one, or with spaces around it, is refused on saving.

crm-api's whole app in-process on the session's Tansu and nx-27017, the router behind its HTTP app
(routing_world.py), as tests/integration/test_web_answers.py runs it.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from routing_world import ACCOUNT, Site, config, csrf_of, received, site_on

from leadflow_shared.collections import CRM_LEADS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

BROKER = f"{ACCOUNT}|oak-boss|broker"
REALTOR = "solo|rio|realtor"  # a realtor of its own brokerage, Oak shares a lead with (T1)
SOURCE_FORM = {"race_count": "1", "claim_window_seconds": "900", "referral_fee_percent": "10", "lead_group": "",
               "auto_accept": "on", "direct_period_seconds": "900"}  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Site]:
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        yield site


async def a_lead(site: Site) -> str:
    lead = received(1)
    await site.world.route(lead)
    return str(lead.event_id)


async def labels_of(site: Site, lead: str) -> list[str]:
    row = await site.world.db[CRM_LEADS].find_one({"_id": lead})
    assert row is not None
    return list(row.get("labels", []))


def field_of(page: httpx.Response, field_id: str) -> str:
    """The text of the page's textarea `field_id`, as a browser gives it back."""
    start = page.text.index(f'<textarea id="{field_id}"')
    opened = page.text.index(">", start) + 1
    return html.unescape(page.text[opened : page.text.index("</textarea>", opened)])


async def test_saving_a_lead_s_profile_on_its_page_keeps_a_label_with_a_comma_whole(site: Site) -> None:
    # A label with a comma, set through the JSON API; the page shows the labels one per line, the broker changes
    # only the company and saves: the labels stay as they were.
    lead = await a_lead(site)
    headers = site.auth("oak-boss", "broker")
    profile = {"labels": ["Smith, Jones", "Hot"]}
    put = await site.web.put(f"/v1/accounts/{ACCOUNT}/leads/{lead}/profile", json=profile, headers=headers)
    assert put.status_code == 200, put.text
    client = await site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/leads/{lead}"
    shown = await client.get(page)
    assert field_of(shown, "labels") == "Smith, Jones\nHot"
    form = {"csrf": csrf_of(shown), "labels": "Smith, Jones\r\nHot", "company": "Harbor Lofts LLC"}  # as sent
    saved = await client.post(f"{page}/profile", data=form)
    assert saved.status_code == 303, saved.text[:500]
    assert sorted(await labels_of(site, lead)) == ["Hot", "Smith, Jones"]

    # A label added on its own line is one more label, commas and all.
    form |= {"labels": "Smith, Jones\r\nHot\r\n  Relocating, maybe  \r\n\r\n"}
    assert (await client.post(f"{page}/profile", data=form)).status_code == 303
    assert sorted(await labels_of(site, lead)) == ["Hot", "Relocating, maybe", "Smith, Jones"]


async def test_a_realtor_of_another_brokerage_saves_the_profile_of_a_lead_whose_label_holds_a_comma(
    site: Site,
) -> None:
    # Oak shares a lead labelled "Smith, Jones" with Rio (T1): the labels are read-only on Rio's page, and saving
    # the company keeps them as they are (it was refused, 403, "the labels differ").
    lead = await a_lead(site)
    headers = site.auth("oak-boss", "broker")
    put = await site.web.put(
        f"/v1/accounts/{ACCOUNT}/leads/{lead}/profile", json={"labels": ["Smith, Jones"]}, headers=headers
    )
    assert put.status_code == 200, put.text
    await site.world.db[CRM_LEADS].update_one({"_id": lead}, {"$set": {"transferred_to": "rio"}})
    client = await site.sign_in(REALTOR)
    page = f"/app/accounts/{ACCOUNT}/leads/{lead}"
    shown = await client.get(page)
    assert shown.status_code == 200, shown.text[:500]
    assert field_of(shown, "labels") == "Smith, Jones"
    form = {"csrf": csrf_of(shown), "labels": "Smith, Jones", "company": "Rio Co"}
    saved = await client.post(f"{page}/profile", data=form)
    assert saved.status_code == 303, saved.text[:500]
    row = await site.world.db[CRM_LEADS].find_one({"_id": lead})
    assert row is not None
    assert (row["labels"], row.get("company")) == (["Smith, Jones"], "Rio Co")


async def test_saving_a_lead_source_on_the_settings_page_keeps_an_office_with_a_comma_whole(site: Site) -> None:
    # An office named "Brooklyn, NY" (set through the JSON API) is shown on its own line and comes back whole when
    # the broker saves only the referral fee; the router offers the source's leads to Brooklyn, NY's agents (R6).
    headers = site.auth("oak-boss", "broker")
    sources = {"sources": [{"name": "Website", "offices": ["Brooklyn, NY", "Queens"]}]}
    put = await site.web.put(f"/v1/accounts/{ACCOUNT}/settings/lead-sources", json=sources, headers=headers)
    assert put.status_code == 200, put.text
    client = await site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/settings"
    shown = await client.get(page)
    assert field_of(shown, "source0-offices") == "Brooklyn, NY\nQueens"
    form = SOURCE_FORM | {"csrf": csrf_of(shown), "offices": "Brooklyn, NY\r\nQueens"}
    saved = await client.post(f"{page}/sources/0", data=form)
    assert saved.status_code == 303, saved.text[:500]
    stored = await site.web.get(f"/v1/accounts/{ACCOUNT}/settings/lead-sources", headers=headers)
    assert stored.json()["sources"][0]["offices"] == ["Brooklyn, NY", "Queens"]


@pytest.mark.parametrize("office", ["Brooklyn\nNY", "Brooklyn\u2028NY", " Brooklyn", "Brooklyn "])
async def test_an_office_name_the_settings_form_could_not_give_back_whole_is_refused_naming_it(
    site: Site, office: str
) -> None:
    headers = site.auth("oak-boss", "broker")
    url = f"/v1/accounts/{ACCOUNT}/settings/lead-sources"
    before = (await site.web.get(url, headers=headers)).json()
    sources = {"sources": [{"name": "Website", "offices": ["Queens", office]}]}
    refused = await site.web.put(url, json=sources, headers=headers)
    assert refused.status_code == 422, refused.text
    assert [p["name"] for p in refused.json()["invalid_params"]] == ["body.sources.0.offices.1"]
    assert (await site.web.get(url, headers=headers)).json() == before, "nothing saved"
