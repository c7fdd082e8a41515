"""The web app's forms that e2e/test_web_fuzz.py does not post to, fed arbitrary input (hypothesis): signing in
and out, asking a missed offer back, testing a lead against the rules (crm-api asks the real router), answering
an invitation any way. Invalid UTF-8 and lone surrogates, NUL, huge and repeated fields, numbers JSON does not
have in the draft rules, with and without the form's CSRF token or the sign-in nonce.

Never a server error; a refused form (4xx) changes no stored document and publishes nothing. crm-api's whole
app in-process on the session's Tansu and nx-27017, the router behind its HTTP app (routing_world.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from routing_world import ACCOUNT, Web, csrf_of, web_with_a_lead

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
PAGES = settings(FUZZ, max_examples=25)  # each answer is the whole Settings page, rendered after the router's answer
HUGE = "<70,000 characters>"  # stands for a long value in hypothesis's reports, expanded when sent
NONCE = re.compile(r'name="csrf" value="([^"]*)"')
FIELDS = ["csrf", "user", "token", "next", "rules", "version", "test_use", "test_source", "test_intent",
          "test_price_min", "test_price_max", "test_city", "test_tags", "lead_id", "action"]  # fmt: skip
_values = st.text(max_size=40) | st.sampled_from(
    ["", "saved", "draft", "rent", "buy", "1e999", "NaN", "-1", "9" * 400, "$1,500", "\ud800", "\x00", HUGE,
     '{"rules": NaN}', '{"rules": [{"id": "x\\u0000"}]}', "[" * 5000, f"{ACCOUNT}|oak-boss|broker",
     f"{ACCOUNT}|\ud800|broker", "/app/\r\nSet-Cookie: x", "//evil.example", "/app/../../x"]
)  # fmt: skip
_pairs = st.lists(st.tuples(st.sampled_from(FIELDS) | st.text(max_size=8), _values), max_size=6)


def encoded(pairs: list[tuple[str, str]]) -> bytes:
    """A form body; lone surrogates become the invalid UTF-8 bytes a careless client would send."""

    def part(text: str) -> str:
        return quote(("a" * 70_000 if text == HUGE else text).encode("utf-8", "surrogatepass"))

    return "&".join(f"{part(k)}={part(v)}" for k, v in pairs).encode()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def web(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Web]:
    async with web_with_a_lead(mongo_url, kafka_bootstrap) as web:
        yield web


async def post(web: Web, client: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    """Post `body`; a refusal (4xx) must leave every collection and the publishers as they were."""
    before, sent = await web.site.stored(), len(web.sent.records)
    response = await client.post(path, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
    label = f"{path} {body[:300]!r} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, label
    if 400 <= response.status_code < 500:
        assert len(web.sent.records) == sent, f"a refused form published; {label}"
        assert await web.site.stored() == before, f"a refused form changed what is stored; {label}"
    return response


ASK_BACK = f"/app/accounts/{ACCOUNT}/leads/{{lead}}/ask-back"
DRY_RUN = f"/app/accounts/{ACCOUNT}/settings/routing-rules/dry-run"
ROUTES = [ASK_BACK, f"/app/accounts/{ACCOUNT}/leads/x%00/ask-back", DRY_RUN, "/app/invitations/oak-villa1/decline",
          "/app/invitations/x/%ED%A0%80", "/app/invitations/x/y"]  # fmt: skip


async def signed_in(web: Web, user: str, page: str) -> tuple[httpx.AsyncClient, str]:
    client = await web.site.sign_in(user)
    return client, csrf_of(await client.get(page))


@FUZZ
@example(route=ASK_BACK, with_token=True, pairs=[], raw=None)  # reaches the use case: asked, or refused
@example(route=ASK_BACK, with_token=False, pairs=[], raw=None)
@given(route=st.sampled_from(ROUTES), with_token=st.booleans(), pairs=_pairs, raw=st.none() | st.binary(max_size=80))
async def test_arbitrary_forms_to_the_remaining_web_actions_get_a_page_never_a_server_error(
    web: Web, route: str, with_token: bool, pairs: list[tuple[str, str]], raw: bytes | None
) -> None:
    client, token = await signed_in(web, f"{ACCOUNT}|villa1|realtor", "/app/my/leads")
    body = raw if raw is not None else encoded(([("csrf", token)] if with_token else []) + pairs)
    response = await post(web, client, route.format(lead=web.lead), body)
    if not with_token and raw is None:
        assert response.status_code in {403, 404}, "a form without the session's token was taken"


@PAGES
@example(pairs=[("test_use", "draft"), ("rules", '{"rules": NaN}')])
@example(pairs=[("test_use", "saved"), ("test_price_min", "1e999")])
@given(pairs=_pairs)
async def test_arbitrary_lead_tests_get_the_page_never_a_server_error(web: Web, pairs: list[tuple[str, str]]) -> None:
    client, token = await signed_in(web, f"{ACCOUNT}|oak-boss|broker", f"/app/accounts/{ACCOUNT}/settings")
    response = await post(web, client, DRY_RUN, encoded([("csrf", token), *pairs]))
    expected = {200, 422} | ({403} if "csrf" in dict(pairs) else set())  # a second csrf field replaces the token
    assert response.status_code in expected, response.text[:300]


async def test_a_lead_test_json_does_not_allow_is_a_422_beside_its_field(web: Web) -> None:
    client, token = await signed_in(web, f"{ACCOUNT}|oak-boss|broker", f"/app/accounts/{ACCOUNT}/settings")
    for pairs, field_id in [
        ([("test_use", "draft"), ("rules", '{"rules": [], "x": NaN}')], "rules-rules-error"),
        ([("test_use", "draft"), ("rules", '{"rules": [{"id\\u0000": 1}]}')], "rules-rules-error"),
        ([("test_use", "saved"), ("test_price_min", "1e999")], "test-test_price_min-error"),
    ]:
        response = await post(web, client, DRY_RUN, encoded([("csrf", token), *pairs]))
        assert response.status_code == 422, (pairs, response.text[:300])
        assert f'id="{field_id}"' in response.text, pairs
    assert (await post(web, client, DRY_RUN, encoded([("csrf", token), ("test_use", "saved")]))).status_code == 200


@FUZZ
@example(with_nonce=True, pairs=[("user", f"{ACCOUNT}|oak-boss|broker"), ("next", "//evil.example")], sign_out=True)
@example(with_nonce=True, pairs=[("token", "not.a.jwt")], sign_out=False)
@given(with_nonce=st.booleans(), pairs=_pairs, sign_out=st.booleans())
async def test_arbitrary_sign_ins_and_outs_never_get_a_server_error_nor_another_site(
    web: Web, with_nonce: bool, pairs: list[tuple[str, str]], sign_out: bool
) -> None:
    transport = web.site.web._transport  # the in-process app, in a client with a session of its own
    async with httpx.AsyncClient(transport=transport, base_url="http://crm") as client:
        nonce = NONCE.search((await client.get(f"/app/sign-in?account={ACCOUNT}")).text)
        assert nonce is not None
        response = await post(
            web, client, "/app/sign-in", encoded(([("csrf", nonce.group(1))] if with_nonce else []) + pairs)
        )
        location = response.headers.get("location", "")
        assert location == "" or location.startswith("/app"), f"sent to another site: {location!r}"
        if not with_nonce:
            assert response.status_code == 403, "a sign-in without the page's nonce was taken"
        if sign_out:
            await post(web, client, "/app/sign-out", encoded(pairs))
