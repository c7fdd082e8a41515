"""Helper 200's review (session 39): crm-api's bearer JWTs and web session as an attacker tries them, on crm-api's
whole app served over HTTP on the session's Tansu and nx-27017 (test_people_who_left.py's `site`).

Two failed before `TokenVerifier._expiry`: an `exp` in milliseconds kept a session signed in for millennia (its
sign-out a 500, nothing stored), and an `exp` of 400 digits was a 500 on every route. An expiry more than
`CRM_API_AUTH__MAX_LIFETIME_HOURS` ahead is now refused. The others pin what was found sound.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from test_people_who_left import CSRF, Site, sign_in, site

from leadflow_devstack.tokens import bearer
from leadflow_shared.collections import ACCOUNTS, AGENTS, CRM_SIGNED_OUT

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

__all__ = ["site"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _raw_token(header: dict[str, Any], payload_text: str, key: str, alg: str = "HS256") -> str:
    """A JWT whose payload is `payload_text` byte for byte (duplicate members, numbers JSON allows but Python
    floats cannot hold), signed with `key` as an identity provider holding it would."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(payload_text.encode())}"
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


async def _office(site: Site) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    account, agent = f"office-{tag}", f"ana-{tag}"
    await site.db[ACCOUNTS].insert_one({"_id": account, "name": "Office", "roster": [agent]})
    await site.db[AGENTS].insert_one(
        {"_id": agent, "account_id": account, "name": "Ana", "email": f"{agent}@x.example", "status": "active",
         "active": True}
    )  # fmt: skip
    return account, agent


def _claims(agent: str, account: str, **over: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {"sub": agent, "role": "realtor", "account_id": account, "aud": "leadflow-crm-api", "iat": now,
            "exp": now + 3600, **over}  # fmt: skip


async def test_forged_and_out_of_bounds_tokens_are_refused_with_401_never_a_server_error(site: Site) -> None:
    """alg none, another HS algorithm with the right key, a `kid`/`jku`/`x5u` naming another key, no `exp`, a
    future `nbf`/`iat`, another audience, a role in another case or as a list, operator and path characters in the
    ids, a token 60 KB long, a header nested past the recursion limit: each one a 401."""
    account, agent = await _office(site)
    key = site.settings.verification_key
    other_key = "another-environment-s-signing-key-of-40-bytes!"
    now = int(datetime.now(UTC).timestamp())
    deep = _b64(b"[" * 5000 + b"]" * 5000)
    forged = {
        "alg none": jwt.encode(_claims(agent, account), key="", algorithm="none"),
        "HS512 with the key": _raw_token(
            {"alg": "HS512", "typ": "JWT"}, json.dumps(_claims(agent, account)), key, "HS512"
        ),
        "jku elsewhere": jwt.encode(
            _claims(agent, account),
            other_key,
            algorithm="HS256",
            headers={"kid": "../../../dev/null", "jku": "https://evil.example/jwks", "x5u": "https://evil.example/c"},
        ),
        "another environment's key": jwt.encode(_claims(agent, account), other_key, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in _claims(agent, account).items() if k != "exp"}, key, algorithm="HS256"),
        "nbf in an hour": jwt.encode(_claims(agent, account, nbf=now + 3600), key, algorithm="HS256"),
        "iat in an hour": jwt.encode(_claims(agent, account, iat=now + 3600), key, algorithm="HS256"),
        "wrong aud": jwt.encode(_claims(agent, account, aud="leadflow-router"), key, algorithm="HS256"),
        "role Realtor": jwt.encode(_claims(agent, account, role="Realtor"), key, algorithm="HS256"),
        "role list": jwt.encode(_claims(agent, account, role=["broker"]), key, algorithm="HS256"),
        "sub operator": jwt.encode(_claims({"$ne": ""}, account), key, algorithm="HS256"),  # type: ignore[arg-type]
        "sub regex": jwt.encode(_claims(".*", account), key, algorithm="HS256"),
        "account_id slash": jwt.encode(_claims(agent, "../office"), key, algorithm="HS256"),
        "exp Infinity": _raw_token(
            {"alg": "HS256", "typ": "JWT"},
            json.dumps(_claims(agent, account, exp=1)).replace('"exp": 1', '"exp": 1e999'),
            key,
        ),
        "huge, forged": jwt.encode(_claims(agent, account, pad="x" * 60_000), other_key, algorithm="HS256"),
        "deep header": f"{deep}.{_b64(b'{}')}.c2ln",
    }
    answers = {}
    for name, token in forged.items():
        answer = await site.http.get(f"/v1/accounts/{account}/leads", headers=bearer(token))
        answers[name] = answer.status_code
    refused = {name: code for name, code in answers.items() if code not in {401, 400, 431}}
    signed_huge = jwt.encode(_claims(agent, account, pad="x" * 60_000), key, algorithm="HS256")
    mine = await site.http.get("/v1/realtors/me/leads", headers=bearer(signed_huge))
    assert mine.status_code < 500, "a genuine 60 KB token is served or refused, never a server error"
    # "sub regex" (`.*`) is a well-formed id of nobody's: the token's own, nothing matched as a pattern.
    refused.pop("sub regex", None)
    assert refused == {}, f"accepted or a server error: {refused}"


async def test_a_token_whose_exp_python_cannot_make_a_float_of_is_a_401_not_a_500(site: Site) -> None:
    """An `exp` of 10**400 is a JSON number PyJWT reads as an int (in the future: valid), then
    `TokenVerifier.verify` turns it into a float: OverflowError, a 500 on every route the token is sent to."""
    account, agent = await _office(site)
    payload = json.dumps(_claims(agent, account, exp=1)).replace('"exp": 1', '"exp": 1' + "0" * 400)
    token = _raw_token({"alg": "HS256", "typ": "JWT"}, payload, site.settings.verification_key)
    answer = await site.http.get(f"/v1/accounts/{account}/leads", headers=bearer(token))
    assert answer.status_code == 401, f"{answer.status_code}: {answer.text[:200]}"


async def test_a_token_whose_exp_is_in_milliseconds_is_refused_not_signed_in_for_millennia(site: Site) -> None:
    """An identity provider (or a script) that writes `exp` in milliseconds, a common slip, made a token PyJWT
    takes as valid for about 55,000 years: it signed in, and its sign-out answered 500 (`datetime.fromtimestamp` past
    9999-12-31) storing nothing, so the cookie's value stayed a working bearer token for ever."""
    account, agent = await _office(site)
    in_an_hour_ms = int(datetime.now(UTC).timestamp() * 1000) + 3_600_000
    token = jwt.encode(_claims(agent, account, exp=in_an_hour_ms), site.settings.verification_key, "HS256")
    async with httpx.AsyncClient(base_url=site.http.base_url, follow_redirects=False) as web:
        signed = await sign_in(web, token)
        assert (signed.status_code, signed.headers["location"]) == (303, "/app/sign-in?why=token_refused")
    api = await site.http.get(f"/v1/accounts/{account}/leads", headers=bearer(token))
    assert api.status_code == 401
    assert "expiry is more than 744 hours ahead" in api.json()["detail"]


async def test_duplicate_claims_are_read_as_one_token_and_its_sign_out_holds_for_every_spelling(site: Site) -> None:
    """A payload naming `role` twice is read with its last value everywhere (the claims and the sign-out's hash
    alike); a second spelling of the same claims (members reordered, spaces) is the same signed-out session."""
    account, agent = await _office(site)
    key = site.settings.verification_key
    base = _claims(agent, account)
    text_a = json.dumps(base, separators=(",", ":")).replace('"role":"realtor"', '"role":"broker","role":"realtor"')
    text_b = json.dumps(dict(reversed(list(base.items()))), indent=1)
    token_a = _raw_token({"alg": "HS256", "typ": "JWT"}, text_a, key)
    token_b = _raw_token({"alg": "HS256"}, text_b, key)
    team = await site.http.get(f"/v1/accounts/{account}/team", headers=bearer(token_a))
    assert team.status_code in {403, 200}
    async with httpx.AsyncClient(base_url=site.http.base_url, follow_redirects=False) as web:
        assert (await sign_in(web, token_a)).status_code == 303
        page = await web.get("/app/my/leads")
        csrf = CSRF.search(page.text)
        assert csrf is not None
        assert (await web.post("/app/sign-out", data={"csrf": csrf.group(1)})).status_code == 303
    assert await site.db[CRM_SIGNED_OUT].count_documents({}) >= 1
    again = await site.http.get(f"/v1/accounts/{account}/leads", headers=bearer(token_b))
    assert again.status_code == 401, "another spelling of the signed-out claims"


async def test_one_users_form_token_is_refused_in_another_users_session(site: Site) -> None:
    account, agent = await _office(site)
    other_account, other = await _office(site)
    key = site.settings.verification_key
    mine = jwt.encode(_claims(agent, account), key, "HS256")
    async with httpx.AsyncClient(base_url=site.http.base_url, follow_redirects=False) as web:
        assert (await sign_in(web, mine)).status_code == 303
        csrf = CSRF.search((await web.get("/app/my/leads")).text)
        assert csrf is not None
        stolen = csrf.group(1)
    theirs = jwt.encode(_claims(other, other_account), key, "HS256")
    async with httpx.AsyncClient(base_url=site.http.base_url, follow_redirects=False) as web:
        assert (await sign_in(web, theirs)).status_code == 303
        out = await web.post("/app/sign-out", data={"csrf": stolen})
        assert out.status_code == 403, out.status_code
        assert (await web.get("/app/my/leads")).status_code == 200, "still signed in"


async def test_every_cookie_crm_api_sets_is_http_only_and_same_site(site: Site) -> None:
    """The sign-in nonce and the session: each Set-Cookie that gives a value says HttpOnly and SameSite (Secure is
    off in this test deployment, `web.secure_cookies=false`). The deletions (Max-Age=0, empty) carry neither
    HttpOnly nor Secure (Starlette's `delete_cookie` defaults): reported, not asserted, as they hold nothing."""
    account, agent = await _office(site)
    token = jwt.encode(_claims(agent, account), site.settings.verification_key, "HS256")
    seen: list[str] = []
    async with httpx.AsyncClient(base_url=site.http.base_url, follow_redirects=False) as web:
        page = await web.get("/app/sign-in")
        seen += page.headers.get_list("set-cookie")
        nonce = CSRF.search(page.text)
        assert nonce is not None
        signed = await web.post("/app/sign-in", data={"token": token, "csrf": nonce.group(1)})
        seen += signed.headers.get_list("set-cookie")
        csrf = CSRF.search((await web.get("/app/my/leads")).text)
        assert csrf is not None
        out = await web.post("/app/sign-out", data={"csrf": csrf.group(1)})
        seen += out.headers.get_list("set-cookie")
    names = {c.split("=", 1)[0] for c in seen}
    assert {"leadflow_sign_in", "leadflow_session"} <= names, seen
    given = [c for c in seen if "max-age=0" not in c.lower()]
    assert len(given) == 2, seen
    lacking = [c for c in given if "httponly" not in c.lower() or "samesite" not in c.lower()]
    assert lacking == [], lacking
