"""crm-api bearer tokens (S1): what the verifier accepts and refuses, and the settings' key rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from leadflow_crm_api.adapters.tokens import TokenVerifier
from leadflow_crm_api.domain.principal import Principal, Role
from leadflow_crm_api.errors import Unauthenticated
from leadflow_crm_api.settings import DEVELOPMENT_SIGNING_KEY, CrmApiSettings
from leadflow_devstack.tokens import dev_token
from leadflow_shared import offer_links

pytestmark = pytest.mark.unit

KEY = "unit-test-signing-key-long-enough-for-hs512-which-wants-64-bytes!"
OFFER_LINK_KEY = "an-offer-link-key-of-more-than-32-bytes!"
WEB = {"session_key": "a-web-session-key-of-more-than-32-bytes!"}
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
            environment="production", auth={"key": KEY}, offer_link_key=OFFER_LINK_KEY, web=WEB
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
