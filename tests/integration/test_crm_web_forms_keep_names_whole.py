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
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from routing_world import ACCOUNT, Site, config, csrf_of, received, site_on, text_of

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


# -- helper 139: the routing rules' test form's tags, a lead group's name --------------------------------------------


async def test_testing_a_lead_on_the_settings_page_keeps_a_tag_with_a_comma_whole(site: Site) -> None:
    # A rule for the tag "open house, sat" (a tag may hold a comma: LeadCriteria's and the rules' Tag): the test
    # form's tags are one per line, so the lead tested has that tag and the rule matches it. They were split on ","
    # into "open house" and "sat", and the rule did not match: the broker was told the lead would go elsewhere.
    rules = {"rules": [
        {"id": "open-house", "name": "Open house", "criteria": {"tags": ["open house, sat"]},
         "action": {"kind": "agent", "agent_id": "let1"}},
        {"id": "all", "name": "All", "action": {"kind": "agent", "agent_id": "gen"}},
    ]}  # fmt: skip
    client = await site.sign_in(BROKER)
    page = await client.get(f"/app/accounts/{ACCOUNT}/settings")
    form = {"csrf": csrf_of(page), "version": "0", "rules": json.dumps(rules), "test_use": "draft",
            "test_source": "Website", "test_tags": "First-time buyer\r\n  Open House, Sat  \r\n\r\n"}  # fmt: skip
    tested = await client.post(f"/app/accounts/{ACCOUNT}/settings/routing-rules/dry-run", data=form)
    assert tested.status_code == 200, tested.text[:500]
    assert "By the draft, this lead would be offered to Lena Let let1 ." in text_of(tested)
    assert "decided by rule Open house" in text_of(tested)
    assert "Tags (one per line)" in text_of(page)
    shown = re.search(r'<textarea id="test_tags"[^>]*>([^<]*)</textarea>', tested.text)
    assert shown is not None
    assert html.unescape(shown.group(1)) == form["test_tags"], "the tags as typed"

    one = await client.post(
        f"/app/accounts/{ACCOUNT}/settings/routing-rules/dry-run", data=form | {"test_tags": "open house\nsat"}
    )
    assert "By the draft, this lead would be offered to Gus Gen gen ." in text_of(one), "two tags, neither the rule's"


def value_of(page: httpx.Response, field_id: str) -> str:
    """The value of the page's input `field_id`, as a browser gives it back (a text input drops CR and LF)."""
    found = re.search(f'<input id="{field_id}"[^>]* value="([^"]*)"', page.text)
    assert found is not None, field_id
    return html.unescape(found.group(1)).replace("\r", "").replace("\n", "")


@pytest.mark.parametrize(
    ("group", "refused"),
    [("Luxury, NY", False), ("luxury\u00a0homes", False), ("luxury\nhomes", True), ("luxury\r\nhomes", True),
     ("luxury\u2028homes", True), (" luxury", True), ("luxury ", True)],
    ids=["comma", "nbsp-inside", "lf", "crlf", "line-separator", "space-before", "space-after"],
)  # fmt: skip
async def test_a_lead_group_is_refused_naming_it_or_the_settings_form_gives_it_back_whole(
    site: Site, group: str, refused: bool
) -> None:
    """A lead group's name is chosen on the settings page in a source's one-line "Lead group" field: a name with a
    line break came back without it (a browser's text input drops CR and LF), one with spaces around it trimmed,
    and every save of the source (its referral fee, say) was refused "not a lead group of this account". The API
    refuses such a name when the group is saved, as it refuses such an office's (one line, no spaces around it);
    any other name round-trips through the form."""
    headers = site.auth("oak-boss", "broker")
    base = f"/v1/accounts/{ACCOUNT}/settings"
    website = {"name": "Website", "offices": []}
    put = await site.web.put(f"{base}/lead-sources", json={"sources": [website]}, headers=headers)
    assert put.status_code == 200, put.text
    before = (await site.web.get(f"{base}/lead-groups", headers=headers)).json()
    saved = await site.web.put(
        f"{base}/lead-groups", json={"groups": [{"name": group, "agent_ids": ["let1"]}]}, headers=headers
    )
    if refused:
        assert saved.status_code == 422, saved.text
        assert [p["name"] for p in saved.json()["invalid_params"]] == ["body.groups.0.name"]
        assert "one line" in saved.json()["invalid_params"][0]["reason"]
        assert (await site.web.get(f"{base}/lead-groups", headers=headers)).json() == before, "nothing saved"
        return
    assert saved.status_code == 200, saved.text
    put = await site.web.put(
        f"{base}/lead-sources", json={"sources": [website | {"lead_group": group}]}, headers=headers
    )
    assert put.status_code == 200, put.text
    client = await site.sign_in(BROKER)
    page = f"/app/accounts/{ACCOUNT}/settings"
    shown = await client.get(page)
    form = SOURCE_FORM | {"csrf": csrf_of(shown), "lead_group": value_of(shown, "source0-group"), "offices": ""}
    posted = await client.post(f"{page}/sources/0", data=form | {"referral_fee_percent": "12"})
    assert posted.status_code == 303, text_of(posted)[:800]
    stored = (await site.web.get(f"{base}/lead-sources", headers=headers)).json()["sources"][0]
    assert (stored["lead_group"], stored["referral_fee_percent"]) == (group, 12)
