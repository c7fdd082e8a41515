"""What crm-api's answers tell a browser about themselves, and where the notifier's invitation email lands (S4,
T1; decision 0092; found by helper 78's review): every answer says `X-Content-Type-Options: nosniff`; the pages
run only crm-api's own static scripts (strict Content-Security-Policy); the JSON API's answers with personal data
are kept by no cache; the invitation email's link opens the page where the realtor answers it.

crm-api's whole app in-process on the session's Tansu and nx-27017, the router behind its HTTP app
(routing_world.py), as tests/integration/test_web_forms_fuzz.py runs it. The same headers over a real process:
e2e/test_web_pages.py::test_no_answer_of_crm_api_may_be_framed; as Chromium reads
them (no page's script or style refused): e2e/test_web_browser.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio
from routing_world import ACCOUNT, OTHER, Site, config, csrf_of, received, site_on

from leadflow_notifier.domain.messages import invitation_email
from leadflow_shared.collections import CRM_INVITATIONS
from leadflow_shared.events.routing import RealtorInvited, RealtorInvitedPayload

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

BROKER = f"{ACCOUNT}|oak-boss|broker"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def site(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[Site, str]]:
    async with site_on(mongo_url, kafka_bootstrap, config()) as site:
        lead = received(1)
        await site.world.route(lead)
        yield site, str(lead.event_id)


async def personal_answers(site: Site, lead_id: str) -> list[httpx.Response]:
    """Answers that carry a lead's contact (pages and JSON), and what a page loads (its script)."""
    web = await site.sign_in(BROKER)
    answers = [
        await web.get(f"/app/accounts/{ACCOUNT}/leads"),
        await web.get(f"/app/accounts/{ACCOUNT}/leads/{lead_id}"),
        await web.get("/app/no-such-page"),
        await web.get("/app/static/app.js"),
        await web.get(f"/v1/offer-links/{'x' * 43}"),
    ]
    headers = site.auth("oak-boss", "broker")
    answers += [
        await web.get(f"/v1/accounts/{ACCOUNT}/leads", headers=headers),
        await web.get(f"/v1/accounts/{ACCOUNT}/leads/{lead_id}", headers=headers),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 200, 200, 200, 200]
    return answers


def where(answer: httpx.Response) -> str:
    return f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"


async def test_no_answer_lets_a_browser_sniff_its_content_type(site: tuple[Site, str]) -> None:
    # Without `X-Content-Type-Options: nosniff` a browser may guess another type than the one sent (a JSON answer
    # or an error body echoing text read as HTML or as a script): pages with a lead's name, email and phone, the
    # JSON API, the web app's script, the one-click offer page.
    answers = await personal_answers(*site)
    missing = [where(a) for a in answers if a.headers.get("x-content-type-options", "").lower() != "nosniff"]
    assert missing == [], f"no X-Content-Type-Options: nosniff on {missing}"


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if words := part.split():
            found.setdefault(words[0].lower(), words[1:])
    return found


async def test_pages_with_personal_data_allow_only_leadflow_s_own_scripts(site: tuple[Site, str]) -> None:
    # `frame-ancestors 'none'` alone (decision 0080) limited nothing of where a page's scripts, plugins, <base> or
    # form posts may come from or go to: one escaping slip (a lead's name, message or label reaching the HTML
    # unescaped) would run an attacker's script with the session's authority. The pages need nothing but their own
    # /app/static files (decision 0040: no inline script); the offer-link page included (its script is a file).
    site_, lead_id = site
    web = await site_.sign_in(BROKER)
    paths = (f"/app/accounts/{ACCOUNT}/leads", f"/app/accounts/{ACCOUNT}/leads/{lead_id}", "/app/no-such-page")
    pages = [await web.get(path) for path in paths] + [await web.get(f"/v1/offer-links/{'x' * 43}")]
    for page in pages:
        assert page.headers["content-type"].startswith("text/html"), where(page)
        assert "<script>" not in page.text, f"{where(page)}: an inline script"
        assert " style=" not in page.text, f"{where(page)}: an inline style"
        policy = directives(" ; ".join(page.headers.get_list("content-security-policy")))
        scripts = policy.get("script-src", policy.get("default-src"))
        assert scripts is not None, f"{where(page)}: no script-src nor default-src in {policy}"
        assert not {"*", "'unsafe-inline'", "'unsafe-eval'", "data:", "http:", "https:"} & set(scripts), where(page)
        assert policy.get("object-src", policy.get("default-src")) == ["'none'"], f"{where(page)}: plugins allowed"
        assert policy.get("base-uri") in (["'none'"], ["'self'"]), f"{where(page)}: any <base> allowed"
        assert policy.get("form-action") == ["'self'"], f"{where(page)}: forms may post anywhere"
        assert policy.get("frame-ancestors") == ["'none'"], f"{where(page)}: may be framed"


async def test_the_json_api_s_lead_data_is_not_kept_by_browser_caches(site: tuple[Site, str]) -> None:
    # The web app's pages said `Cache-Control: no-store`, but the JSON API's answers with the same personal data (a
    # lead list, a lead with its contact's email, phone and message) said nothing: a browser calling the API would
    # keep them in its disk cache, readable after sign-out on a shared computer. Its static files may be cached.
    site_, lead_id = site
    headers = site_.auth("oak-boss", "broker")
    async with httpx.AsyncClient(transport=site_.web._transport, base_url="http://crm") as api:
        answers = [
            await api.get(f"/v1/accounts/{ACCOUNT}/leads", headers=headers),
            await api.get(f"/v1/accounts/{ACCOUNT}/leads/{lead_id}", headers=headers),
            await api.get(f"/v1/accounts/{ACCOUNT}/leads/{lead_id}"),  # the 401 too: every /v1 answer
        ]
        static = await api.get("/app/static/app.js")
    assert [a.status_code for a in answers] == [200, 200, 401]
    assert "@example.com" in answers[1].text, "the lead's contact is in the answer"
    stored = [where(a) for a in answers if a.headers.get("cache-control") != "no-store"]
    assert stored == [], f"no Cache-Control: no-store on {stored}"
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("cache-control", "")


async def test_an_invitation_email_s_link_opens_the_page_where_the_realtor_answers_it(
    site: tuple[Site, str],
) -> None:
    # The invitation email (notifier `invitation_email`) links to `{web app}/invitations/{id}`; the web app had no
    # such page (only `POST /app/invitations/{id}/accept|decline`): the invited realtor, signed in, got "No such
    # page.". The link now leads (signed in first if need be) to My Leads, where the invitation is answered.
    site_, _ = site
    web = await site_.sign_in(BROKER)
    page = await web.get(f"/app/accounts/{ACCOUNT}/realtors")
    invited = await web.post(
        f"/app/accounts/{ACCOUNT}/realtors",
        data={"csrf": csrf_of(page), "realtor_id": "elm-boss", "email": "elm-boss@elm.example", "name": "Elm Boss"},
    )
    assert invited.status_code == 303, invited.text[:500]
    stored = await site_.world.db[CRM_INVITATIONS].find_one({"account_id": ACCOUNT, "realtor_id": "elm-boss"})
    assert stored is not None
    payload = RealtorInvitedPayload(
        invitation_id=stored["_id"], realtor_id="elm-boss", email="elm-boss@elm.example", name="Elm Boss",
        brokerage_name="Oak", by_user_id="oak-boss",
    )  # fmt: skip
    event = RealtorInvited.create(account_id=ACCOUNT, payload=payload, occurred_at=datetime.now(UTC))
    email = invitation_email(event, "http://crm/app")
    [link] = [word for word in email.text.split() if word.startswith("http://crm/")]
    path = urlsplit(link).path
    async with httpx.AsyncClient(transport=site_.web._transport, base_url="http://crm") as nobody:
        signed_out = await nobody.get(path)
    assert signed_out.status_code == 303, "no session: sign in first"
    assert parse_qs(urlsplit(signed_out.headers["location"]).query)["next"] == [path], "then back to the link"
    realtor = await site_.sign_in(f"{OTHER}|elm-boss|realtor")
    opened = await realtor.get(path, follow_redirects=True)  # a page, or a redirect to one
    assert opened.status_code == 200, f"the email's link {path} answers {opened.status_code}"
    assert f'id="invitation-{stored["_id"]}"' in opened.text, "the page lets the realtor answer this invitation"
    assert f'action="/app/invitations/{stored["_id"]}/accept"' in opened.text
    other = await site_.sign_in(f"{OTHER}|elm-other|realtor")
    assert (await other.get(path)).status_code == 404, "another realtor learns nothing of it"
    realtor = await site_.sign_in(f"{OTHER}|elm-boss|realtor")
    answer_page = await realtor.get("/app/my/leads")
    answered = await realtor.post(f"/app/invitations/{stored['_id']}/accept", data={"csrf": csrf_of(answer_page)})
    assert answered.status_code == 303
    again = await realtor.get(path, follow_redirects=True)
    assert again.status_code == 200
    assert "is accepted already" in again.text, "an answered one says so"
