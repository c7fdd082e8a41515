"""crm-api bearer tokens (S1): what the verifier accepts and refuses, and the settings' key rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from leadflow_crm_api.adapters.callers import Callers
from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.domain.principal import Membership, Principal, Role, StaffWord, admitted
from leadflow_crm_api.errors import Unauthenticated
from leadflow_crm_api.settings import DEVELOPMENT_SIGNING_KEY, CrmApiSettings
from leadflow_devstack.tokens import dev_token
from leadflow_shared import offer_links

pytestmark = pytest.mark.unit

KEY = "unit-test-signing-key-long-enough-for-hs512-which-wants-64-bytes!"
OFFER_LINK_KEY = "an-offer-link-key-of-more-than-32-bytes!"
WEB = {"session_key": "a-web-session-key-of-more-than-32-bytes!"}
ROUTER_TOKEN = "a-router-service-token-of-more-than-32-chars"  # production needs one (decision 0082)
SETTINGS = CrmApiSettings(environment="test", auth={"key": KEY}, offer_link_key=OFFER_LINK_KEY, web=WEB)


def _claims(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": "alex-rivera",
        "role": "realtor",
        "account_id": "acme-realty",
        "aud": "leadflow-crm-api",
        "exp": now + timedelta(minutes=5),
    }
    return {**claims, **overrides}


def test_a_valid_token_names_its_principal() -> None:
    token = dev_token("ann", "broker", "acme-realty", key=KEY, organisation_id="acme-group")
    assert TokenVerifier(SETTINGS).verify(token) == Principal("ann", Role.BROKER, "acme-realty", "acme-group")


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: dev_token("a", "broker", "acme", key=KEY, now=datetime.now(UTC) - timedelta(hours=2)), "expired"),
        (lambda: dev_token("a", "broker", "acme", key=KEY, audience="other-api"), "another audience"),
        (lambda: dev_token("a", "broker", "acme", key="some-other-key-" + "x" * 40), "signature"),
        (lambda: jwt.encode(_claims(), key="", algorithm="none"), "not valid"),  # alg=none is never accepted
        (lambda: jwt.encode(_claims(), KEY, algorithm="HS512"), "not valid"),  # only the configured algorithm
        (lambda: jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, KEY, algorithm="HS256"), "not valid"),
        (lambda: jwt.encode(_claims(role="owner"), KEY, algorithm="HS256"), "role"),
        (lambda: jwt.encode(_claims(account_id={"$ne": ""}), KEY, algorithm="HS256"), "account_id"),  # no operators
        (lambda: jwt.encode(_claims(sub="x" * 65), KEY, algorithm="HS256"), "sub"),
        (lambda: "not-a-jwt", "not valid"),
    ],
)
def test_bad_tokens_are_unauthenticated(make_token: Callable[[], str], reason: str) -> None:
    # Made when the test runs: made at collection, a 5-minute token may expire before a long suite gets here.
    token = make_token()
    with pytest.raises(Unauthenticated, match=reason):
        TokenVerifier(SETTINGS).verify(token)


def test_issuer_is_checked_when_configured() -> None:
    settings = CrmApiSettings(
        environment="test",
        auth={"key": KEY, "issuer": "https://auth.example.com/"},
        offer_link_key=OFFER_LINK_KEY,
        web=WEB,
    )
    good = jwt.encode(_claims(iss="https://auth.example.com/"), KEY, algorithm="HS256")
    assert TokenVerifier(settings).verify(good).sub == "alex-rivera"
    with pytest.raises(Unauthenticated):
        TokenVerifier(settings).verify(jwt.encode(_claims(iss="https://evil.example/"), KEY, algorithm="HS256"))


def test_rs256_with_the_issuers_public_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = CrmApiSettings(
        environment="production",
        auth={"algorithm": "RS256", "key": public_pem},
        offer_link_key=OFFER_LINK_KEY,
        router_token=ROUTER_TOKEN,
        web=WEB,
    )
    token = jwt.encode(_claims(), private, algorithm="RS256")
    assert TokenVerifier(settings).verify(token).role is Role.REALTOR
    # Alg confusion: an HS256 token "signed" with the public key must not pass.
    forged = jwt.api_jws.PyJWS().encode(  # PyJWT refuses PEM as an HMAC key, so sign by hand
        jwt.utils.force_bytes('{"sub":"x"}'), key=KEY, algorithm="HS256"
    )
    with pytest.raises(Unauthenticated):
        TokenVerifier(settings).verify(forged)


def test_development_key_only_in_development() -> None:
    assert CrmApiSettings(environment="development").verification_key == DEVELOPMENT_SIGNING_KEY
    for environment in ("test", "production"):
        with pytest.raises(ValidationError, match="must be set"):
            CrmApiSettings(environment=environment)
    with pytest.raises(ValidationError, match="refused in production"):
        CrmApiSettings(environment="production", auth={"key": DEVELOPMENT_SIGNING_KEY})
    with pytest.raises(ValidationError, match="real secret"):
        CrmApiSettings(environment="production", auth={"key": "changeme"})
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        CrmApiSettings(environment="production", auth={"key": "a-real-but-short-secret"})
    assert (
        CrmApiSettings(
            environment="production",
            auth={"key": KEY},
            offer_link_key=OFFER_LINK_KEY,
            router_token=ROUTER_TOKEN,
            web=WEB,
        ).verification_key
        == KEY
    )
    # The accept links' key: required outside development, never the development one in production.
    with pytest.raises(ValidationError, match=r"offer_link_key \(CRM_API_OFFER_LINK_KEY\) must be set"):
        CrmApiSettings(environment="production", auth={"key": KEY})
    with pytest.raises(ValidationError, match="development key is refused"):
        CrmApiSettings(environment="production", auth={"key": KEY}, offer_link_key=offer_links.DEVELOPMENT_KEY)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        CrmApiSettings(environment="production", auth={"key": KEY}, offer_link_key="short")


# Decision 0079: a token holds while its user is who it says (an agent of the token's office, not inactive).

STATUSES = st.sampled_from(["active", "onboarding", "inactive", None, "retired", 3, ["inactive"]])
ACTIVE = st.sampled_from([True, False, 1, 0, None])


def _agent(account_id: str, status: object, active: object) -> dict[str, object]:
    record: dict[str, object] = {"_id": "ann", "account_id": account_id}
    if status is not None:
        record["status"] = status
    if active is not None:
        record["active"] = active  # nx-27017 stores a `$set` boolean as 1/0
    return record


@given(status=STATUSES, active=ACTIVE, same_office=st.booleans(), role=st.sampled_from(list(Role)))
def test_an_agent_is_admitted_while_of_the_tokens_office_and_not_inactive(
    status: object, active: object, same_office: bool, role: Role
) -> None:
    caller = Principal("ann", role, "acme-realty")
    membership = Membership.of(_agent("acme-realty" if same_office else "other-realty", status, active))
    # A status the team list knows decides; a record without one (or an unknown one) is read by `active`.
    left = status == "inactive" or (status not in ("active", "onboarding") and active is not None and not active)
    assert admitted(caller, membership) is (same_office and not left)
    assert admitted(caller, None), "no agent record (an admin, staff, a broker who is no agent): the token alone"


# Decision 0105: an admin's token holds while the office has not said otherwise (removed, or staff now).


@given(
    role=st.sampled_from(list(Role)),
    staff_role=st.sampled_from([None, "admin", "staff"]),
    removed=st.booleans(),
    agent=st.booleans(),
)
def test_an_admins_token_holds_while_its_office_keeps_it_an_admin(
    role: Role, staff_role: str | None, removed: bool, agent: bool
) -> None:
    caller = Principal("ann", role, "acme-realty")
    membership = Membership.of(_agent("acme-realty", "active", True)) if agent else None
    word = StaffWord(role=staff_role, removed=removed)
    if agent or role is not Role.ADMIN:
        expected = True  # an agent by its agent record (0079); a broker's or a realtor's token as it says
    elif staff_role is not None:
        expected = staff_role == "admin"  # the record says what the user is here now, whatever was before
    else:
        expected = not removed  # no record: only the office's removal refuses (its silence leaves the token)
    assert admitted(caller, membership, word) is expected
    assert admitted(caller, membership), "not asked (no admin token, or an agent record): the records above decide"


@pytest.mark.asyncio
async def test_a_removed_or_demoted_admin_is_refused_and_the_office_is_read_once_per_cache_time() -> None:
    staff = _Records({"_id": "sam", "account_id": "acme-realty", "role": "admin"})
    removed = _Records()
    callers = _callers(_Agents(None), ttl=60, staff=staff, crm_removed_staff=removed)
    token = dev_token("sam", "admin", "acme-realty", key=KEY)
    for _ in range(3):
        assert (await callers.of(token)).sub == "sam"
    assert staff.reads == 1, "one read for the cache's time"

    staff.records = [{"_id": "sam", "account_id": "acme-realty", "role": "staff"}]  # demoted by this replica
    await callers.recheck("sam", "acme-realty")
    with pytest.raises(Unauthenticated, match="no longer"):
        await callers.of(token)

    staff.records, removed.records = [], [{"_id": "acme-realty|sam"}]  # then removed
    await callers.recheck("sam", "acme-realty")
    with pytest.raises(Unauthenticated, match="no longer"):
        await callers.of(token)
    broker = dev_token("sam", "broker", "acme-realty", key=KEY)
    assert (await callers.of(broker)).role is Role.BROKER, "a removal speaks of an admin's token only"
    elsewhere = dev_token("sam", "admin", "other-realty", key=KEY)
    assert (await callers.of(elsewhere)).account_id == "other-realty", "one office's word holds in that office alone"


@pytest.mark.asyncio
async def test_a_signed_out_token_is_refused_here_at_once_and_elsewhere_within_the_cache_time() -> None:
    signed_out = _Records()
    here = _callers(_Agents(None), ttl=60, crm_signed_out=signed_out)
    elsewhere = _callers(_Agents(None), ttl=60, crm_signed_out=signed_out)
    token = dev_token("sam", "broker", "acme-realty", key=KEY, lifetime=timedelta(hours=2))
    caller = await here.of(token)
    assert (await elsewhere.of(token)).sub == "sam"
    await here.sign_out(caller)
    with pytest.raises(Unauthenticated, match="signed out"):
        await here.of(token)
    assert (await elsewhere.of(token)).sub == "sam", "cached: another replica sees a sign-out within its cache time"
    with pytest.raises(Unauthenticated, match="signed out"):
        await _callers(_Agents(None), ttl=0, crm_signed_out=signed_out).of(token)  # a replica reading it now
    # Helper 173: the same token spelled otherwise (PyJWT pads a signature itself) was another hash, admitted.
    for respelled in (f"{token}=",):
        with pytest.raises(Unauthenticated, match="signed out"):
            await here.of(respelled)
    (kept,) = signed_out.records
    assert token.split(".")[1] not in repr(kept), "kept by a hash of its claims: the store holds no token"
    leeway = SETTINGS.auth.leeway_seconds
    assert kept["expires_at"] == datetime.fromtimestamp((caller.expires_at or 0) + leeway, UTC), (
        "kept while the token is accepted: until its expiry and the leeway after it"
    )
    other = dev_token("sam", "broker", "acme-realty", key=KEY, lifetime=timedelta(hours=3))
    assert (await here.of(other)).sub == "sam", "another token (another session) holds"


class _Agents:
    """`agents` with one record, counting the reads."""

    def __init__(self, record: dict[str, object] | None) -> None:
        self.record, self.reads = record, 0

    async def find_one(self, query: dict[str, object], _fields: dict[str, int]) -> dict[str, object] | None:
        self.reads += 1
        return self.record if self.record is not None and query == {"_id": self.record["_id"]} else None


class _Records:
    """A collection holding `records` by id (`staff`, `crm_removed_staff`, `crm_signed_out`), counting the reads."""

    def __init__(self, *records: dict[str, object]) -> None:
        self.records, self.reads = list(records), 0

    async def find_one(self, query: dict[str, object], _fields: dict[str, int]) -> dict[str, object] | None:
        self.reads += 1
        return next((r for r in self.records if all(r.get(k) == v for k, v in query.items())), None)

    async def insert_one(self, record: dict[str, object]) -> None:
        self.records.append(record)


def _callers(agents: _Agents, ttl: float, **collections: _Records) -> Callers:
    names = ("staff", "crm_removed_staff", "crm_signed_out")
    db = cast(AsyncDatabase[dict[str, Any]], {"agents": agents} | {n: collections.get(n, _Records()) for n in names})
    return Callers(TokenVerifier(SETTINGS), lambda: db, ttl=ttl)


@pytest.mark.asyncio
async def test_the_agent_record_is_read_once_per_user_per_cache_time() -> None:
    agents = _Agents(_agent("acme-realty", "active", True))
    token = dev_token("ann", "realtor", "acme-realty", key=KEY)
    callers = _callers(agents, ttl=60)
    for _ in range(5):
        assert (await callers.of(token)).sub == "ann"
    assert agents.reads == 1, "one read for the cache's time, however many requests"
    agents.record = _agent("acme-realty", "inactive", False)
    assert (await callers.of(token)).sub == "ann", "cached: other replicas see a departure within their cache's time"
    await callers.recheck("ann")  # this replica made the change (a status, a move): read again at once
    with pytest.raises(Unauthenticated, match="no longer"):
        await callers.of(token)

    uncached = _callers(agents, ttl=0)
    agents.record = _agent("acme-realty", None, 0)  # no status: read by `active`, stored as 0
    with pytest.raises(Unauthenticated, match="no longer"):
        await uncached.of(token)
    agents.record = _agent("acme-realty", "active", 1)
    with pytest.raises(Unauthenticated, match="no longer"):
        await uncached.of(dev_token("ann", "realtor", "other-realty", key=KEY))
    assert (await uncached.of(token)).sub == "ann"
    staff = dev_token("sam", "admin", "acme-realty", key=KEY)
    assert (await uncached.of(staff)).role is Role.ADMIN, "no agent record: the token alone"


class _AgentsAway(_Agents):
    """`agents` while MongoDB is unreachable."""

    async def find_one(self, _query: dict[str, object], _fields: dict[str, int]) -> dict[str, object] | None:
        self.reads += 1
        raise AutoReconnect("connection refused")


@pytest.mark.asyncio
async def test_a_recheck_that_cannot_read_fails_nothing_and_the_cache_reads_again_later() -> None:
    # The change it follows (a departure, a move) is stored already: its caller must not get a 500 for it.
    agents = _AgentsAway(_agent("acme-realty", "inactive", False))
    callers = _callers(agents, ttl=60)
    await callers.recheck("ann")
    assert agents.reads == 1
    with pytest.raises(AutoReconnect):  # nothing was cached: a request meanwhile fails as any read in an outage
        await callers.of(dev_token("ann", "realtor", "acme-realty", key=KEY))
    assert agents.reads == 2
