"""Decision 0105 with crm-api's app served twice (two replicas) over HTTP on the session's Tansu and nx-27017 (helper
173's review of it; each test failed before its fix).

- A signed-out token was refused by the SHA-256 of its exact text, but PyJWT reads a token whose signature segment
  carries base64 padding (`<token>=`) as the same token: whoever kept a copy of the cookie's value signed in, and
  called the API, with it after its owner signed out. A sign-out is now kept by the token's verified claims.
- An admin removed by the broker re-added itself, as an admin, through a replica that still held its word (cache,
  2 s by default): the mark was dropped and the record said admin, so the removal was void for good. An admin may
  now only update its own record as it is, as staff may (`_own_record_only`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from routing_world import served
from test_crm_sessions_end import office
from test_people_who_left import CSRF, crm_settings, sign_in

from leadflow_crm_api.bootstrap import create_app
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_devstack.testing import eventually
from leadflow_devstack.tokens import Role, bearer, dev_token
from leadflow_shared.kafka import ensure_topics
from leadflow_shared.topics import all_topics

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

Db = AsyncDatabase[dict[str, Any]]


@dataclass
class Replicas:
    one: httpx.AsyncClient
    two: httpx.AsyncClient
    db: Db
    settings: CrmApiSettings

    def token(self, sub: str, role: Role, account_id: str) -> str:
        return dev_token(sub, role, account_id, key=self.settings.verification_key)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def crm(mongo_url: str, kafka_bootstrap: str) -> AsyncIterator[Replicas]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    db = client[f"sessions_two_{uuid.uuid4().hex[:12]}"]
    await ensure_topics(kafka_bootstrap, all_topics())
    settings = crm_settings(mongo_url, kafka_bootstrap, db.name)
    try:
        async with (
            served(create_app(settings)) as one,
            served(create_app(settings)) as two,
            httpx.AsyncClient(base_url=one.url, follow_redirects=False) as http_one,
            httpx.AsyncClient(base_url=two.url, follow_redirects=False) as http_two,
        ):
            yield Replicas(http_one, http_two, db, settings)
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_signed_out_token_is_taken_again_with_a_padding_character_after_its_signature(crm: Replicas) -> None:
    at = await office(crm.db)
    token = crm.token(at.broker, "broker", at.account)
    async with httpx.AsyncClient(base_url=crm.one.base_url, follow_redirects=False) as web:
        signed = await sign_in(web, token)
        assert signed.status_code == 303
        assert not signed.headers["location"].startswith("/app/sign-in")
        mine = await web.get(signed.headers["location"])
        assert mine.status_code == 200
        csrf = CSRF.search(mine.text)
        assert csrf is not None
        out = await web.post("/app/sign-out", data={"csrf": csrf.group(1)})
        assert out.status_code == 303
    base = f"/v1/accounts/{at.account}/team"
    assert (await crm.one.get(base, headers=bearer(token))).status_code == 401, "the token itself is refused"

    # The same token, the signature segment padded: PyJWT decodes it to the same signature and claims.
    padded = token + "="
    api = await crm.one.get(base, headers=bearer(padded))
    async with httpx.AsyncClient(base_url=crm.one.base_url, follow_redirects=False) as replay:
        again = await sign_in(replay, padded)
    assert (api.status_code, again.headers.get("location", "").startswith("/app/sign-in")) == (401, True), (
        f"a signed-out token with one '=' after it: API {api.status_code}, web sign-in to "
        f"{again.headers.get('location')!r}: decision 0105's sign-out is undone by one character"
    )


async def test_a_removed_admin_cannot_re_add_itself_through_another_replica(crm: Replicas) -> None:
    at = await office(crm.db)
    adam = bearer(crm.token(at.admin, "admin", at.account))
    broker = bearer(crm.token(at.broker, "broker", at.account))
    team = f"/v1/accounts/{at.account}/team"
    assert (await crm.two.get(team, headers=adam)).status_code == 200  # replica two knows adam as an admin

    removed = await crm.one.delete(f"/v1/accounts/{at.account}/staff/{at.admin}", headers=broker)
    assert removed.status_code == 204
    assert (await crm.one.get(team, headers=adam)).status_code == 401, "refused at once where it was removed"

    # Within replica two's cache time (2 s), the removed admin puts its own record back, role admin.
    record = {"name": "Adam", "email": f"{at.admin}@x.example", "role": "admin"}
    back = await crm.two.put(f"/v1/accounts/{at.account}/staff/{at.admin}", headers=adam, json=record)

    assert back.status_code == 403, "an admin does not give itself back its record or its role"

    async def refused_everywhere() -> list[int] | None:  # once replica two's cache reads the office again (2 s)
        codes = [(await c.get(team, headers=adam)).status_code for c in (crm.one, crm.two)]
        return codes if codes == [401, 401] else None

    reach = await eventually(refused_everywhere, timeout=crm.settings.auth.member_cache_seconds + 10, what="401s")
    assert reach == [401, 401], (
        f"the removed admin's own PUT (answered {back.status_code}) undid its removal for good: {reach}; the broker "
        "was told 204"
    )
