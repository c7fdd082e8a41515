"""Partners' signatures on leads.inbound.v1 (decision 0098): the signed text, the checks, the settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_intake.domain.partner_signature import ANY_ACCOUNT, PartnerKeys, PartnerRefused, check, sign, signed_text
from leadflow_intake.settings import DEVELOPMENT_SECRET, IntakeSettings
from leadflow_shared import topics

pytestmark = pytest.mark.unit

SECRET = secrets.token_bytes(32)
OLD_SECRET = secrets.token_bytes(32)
TOPIC = topics.LEADS_INBOUND
KEY, VALUE = b"acme-realty", b'{"account_id": "acme-realty"}'
PARTNER = PartnerKeys(secrets=(SECRET,), accounts=frozenset({"acme-realty", "beta-homes"}))
PROPERTY = settings(database=None, deadline=None, max_examples=300)


def verify(
    signature: str | None,
    *,
    partner: PartnerKeys | None = PARTNER,
    account: str = "acme-realty",
    topic: str = TOPIC,
    key: bytes | None = KEY,
    value: bytes = VALUE,
) -> None:
    check(partner, account_id=account, signature=signature, topic=topic, key=key, value=value)


@pytest.mark.parametrize(("key", "key_line"), [(b"acme-realty", b"61636d652d7265616c7479"), (None, b"")])
def test_the_signature_is_hmac_sha256_of_the_documented_lines(key: bytes | None, key_line: bytes) -> None:
    # Written out independently of `sign`, as a partner implements it from the contract.
    text = b"\n".join([b"kafka-v1", TOPIC.encode(), key_line, VALUE])
    expected = f"kafka-v1={hmac.new(SECRET, text, hashlib.sha256).hexdigest()}"
    assert sign(SECRET, TOPIC, key, VALUE) == expected
    verify(expected, key=key)
    verify(expected.upper().replace("KAFKA-V1=", "kafka-v1="), key=key)  # hex in either case


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "leadflow-signature: missing"),
        ("", "leadflow-signature: missing"),
        ("v2=" + "0" * 64, "leadflow-signature: missing"),  # the webhooks' scheme is not this one
        ("kafka-v1=" + "0" * 63, "leadflow-signature: missing"),
        ("kafka-v1=" + "0" * 64, "leadflow-signature: does not match"),
    ],
)
def test_a_missing_malformed_or_wrong_signature_is_refused_with_the_reason(signature: str | None, why: str) -> None:
    with pytest.raises(PartnerRefused, match=f"^{why}"):
        verify(signature)


def test_either_of_two_secrets_is_accepted_while_rotating() -> None:
    rotating = PartnerKeys(secrets=(SECRET, OLD_SECRET), accounts=frozenset({"acme-realty"}))
    verify(sign(SECRET, TOPIC, KEY, VALUE), partner=rotating)
    verify(sign(OLD_SECRET, TOPIC, KEY, VALUE), partner=rotating)
    with pytest.raises(PartnerRefused, match="does not match"):
        verify(sign(OLD_SECRET, TOPIC, KEY, VALUE))


def test_a_partner_signs_only_for_the_accounts_it_serves() -> None:
    verify(sign(SECRET, TOPIC, KEY, VALUE), account="beta-homes")
    with pytest.raises(PartnerRefused, match=r"^account_id: the partner may not publish leads for this account"):
        verify(sign(SECRET, TOPIC, KEY, VALUE), account="gamma-realty")
    everywhere = PartnerKeys(secrets=(SECRET,), accounts=frozenset({ANY_ACCOUNT}))
    verify(sign(SECRET, TOPIC, KEY, VALUE), partner=everywhere, account="gamma-realty")


def test_a_partner_intake_does_not_know_is_refused_even_with_a_plausible_signature() -> None:
    with pytest.raises(PartnerRefused, match=r"^payload\.source\.partner: not a partner configured"):
        verify(sign(SECRET, TOPIC, KEY, VALUE), partner=None)


_records = st.tuples(
    st.sampled_from([TOPIC, "leads.inbound.v2", "leads.inbound.v1.dlq"]),
    st.none() | st.binary(max_size=12),
    st.binary(max_size=60),
)


@PROPERTY
@given(_records, _records)
def test_a_signature_holds_for_its_record_only(
    sent: tuple[str, bytes | None, bytes], replayed: tuple[str, bytes | None, bytes]
) -> None:
    """Whatever changes (the topic, the key or its absence, the value's bytes): refused. The key None and the
    empty key sign alike: both are sent as no key at all."""
    signature = sign(SECRET, *sent)
    verify(signature, topic=sent[0], key=sent[1], value=sent[2])
    if (replayed[0], replayed[1] or b"", replayed[2]) != (sent[0], sent[1] or b"", sent[2]):
        assert signed_text(*replayed) != signed_text(*sent)
        with pytest.raises(PartnerRefused, match="does not match"):
            verify(signature, topic=replayed[0], key=replayed[1], value=replayed[2])


# -- settings -----------------------------------------------------------------------------------


def partners_json(secret: str, accounts: list[str]) -> str:
    return json.dumps({"homefinder": {"secrets": [secret], "accounts": accounts}})


def test_partners_are_read_from_one_json_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("INTAKE_ENVIRONMENT", "production")
    monkeypatch.setenv("INTAKE_PARTNERS__PRODUCERS", partners_json(secret, ["acme-realty"]))
    configured = IntakeSettings()
    keys = configured.partner_keys()
    assert list(keys) == ["homefinder"]
    assert keys["homefinder"] == PartnerKeys(secrets=(secret.encode(),), accounts=frozenset({"acme-realty"}))
    assert configured.partners.unsigned == "refuse"
    assert secret not in repr(configured)


@pytest.mark.parametrize("secret", ["changeme", "short-but-real", DEVELOPMENT_SECRET, "  "])
def test_production_refuses_placeholder_or_short_partner_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match=r"INTAKE_PARTNERS__PRODUCERS\[homefinder\] secret"):
        IntakeSettings.model_validate(
            {"environment": "production", "partners": {"producers": json.loads(partners_json(secret, ["a"]))}}
        )


@pytest.mark.parametrize("accounts", [[], ["*", "acme-realty"], ["acme realty"], ["x" * 65]])
def test_a_partner_names_its_accounts_or_every_account_alone(accounts: list[str]) -> None:
    with pytest.raises(ValidationError):
        IntakeSettings.model_validate({"partners": {"producers": json.loads(partners_json("s", accounts))}})


def test_development_without_partners_gets_the_demo_partner_for_every_account_only_in_development() -> None:
    dev = IntakeSettings.model_validate({"environment": "development"}).partner_keys()
    assert dev == {"homefinder": PartnerKeys(secrets=(DEVELOPMENT_SECRET.encode(),), accounts=frozenset({"*"}))}
    assert IntakeSettings.model_validate({"environment": "test"}).partner_keys() == {}
    assert IntakeSettings.model_validate({"environment": "production"}).partner_keys() == {}
    configured = IntakeSettings.model_validate(
        {"environment": "development", "partners": {"producers": json.loads(partners_json("x", ["acme-realty"]))}}
    )
    assert configured.partner_keys()["homefinder"].accounts == frozenset({"acme-realty"})


def test_the_partner_contracts_worked_example_holds() -> None:
    readme = (Path(__file__).resolve().parents[2] / "docs" / "partner-contract" / "README.md").read_text()
    secret, key, value = b"example-secret-of-32-characters!", b"acme-realty", b'{"account_id":"acme-realty"}'
    assert f"`leadflow-signature: {sign(secret, TOPIC, key, value)}`" in readme
    assert value.decode() in readme
    assert key.hex() in readme
