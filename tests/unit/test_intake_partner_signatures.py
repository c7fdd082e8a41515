"""Partners' signatures on leads.inbound.v1 (decision 0098): the signed text, the checks, the settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from partner_messages import signed
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter, ValidationError
from test_intake_kafka_handlers import submitted

from leadflow_intake.domain.partner_signature import ANY_ACCOUNT, PartnerKeys, PartnerRefused, check, sign, signed_text
from leadflow_intake.entrypoints import kafka
from leadflow_intake.metrics import IntakeMetrics
from leadflow_intake.settings import DEVELOPMENT_SECRET, IntakeSettings, PartnerSettings
from leadflow_shared import topics
from leadflow_shared.consumers import Record, Subscription
from leadflow_shared.events.inbound import InboundSource, LeadSubmitted

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


# -- partner names: every name the contract lets a message give can be configured (helper 115's review) ------

PARTNER_SECRET = "a-partner-secret-of-at-least-32-characters"
ACCOUNT = "acme-realty"
# What payload.source.partner accepts (the published contract, leads.inbound.v1): the names a partner's messages give.
PARTNER_NAMES = st.from_regex(r"[A-Za-z0-9_.-]{1,100}", fullmatch=True)


def producers(name: str) -> dict[str, object]:
    return {name: {"secrets": [PARTNER_SECRET], "accounts": [ACCOUNT]}}


def inbound_record(value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Record:
    return ConsumerRecord(topics.LEADS_INBOUND, 0, 1, 0, 0, key, value, None, len(key), len(value), headers)


def named(partner: str) -> bytes:
    lead = json.loads(submitted(ACCOUNT))
    lead["payload"]["source"]["partner"] = partner
    return json.dumps(lead).encode()


@settings(database=None, deadline=None, max_examples=200)
@given(PARTNER_NAMES)
def test_every_partner_name_the_contract_allows_can_be_configured(name: str) -> None:
    """payload.source.partner takes [A-Za-z0-9_.-]{1,100} (contract 1.0: a partner may be `HomeFinder`,
    `listings_direct` or `zillow.com`). INTAKE_PARTNERS__PRODUCERS took only the webhooks' provider names
    ([a-z0-9-], 40 at most): such a partner could never be configured, so from the upgrade on every one of its
    leads was dead-lettered as `payload.source.partner: not a partner configured`, with no way but renaming
    the partner (its leads' provider) or accepting unsigned messages for every account."""
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name)
    InboundSource.model_validate({"partner": name, "name": "n"})  # a name a message may give ...
    assert list(PartnerSettings.model_validate({"producers": producers(name)}).producers) == [name]  # ... configured


@pytest.mark.parametrize("name", ["HomeFinder", "listings_direct", "zillow.com", "p" * 100])
def test_a_configured_partner_with_such_a_name_has_its_signed_lead_taken(name: str) -> None:
    configured = IntakeSettings.model_validate(
        {"environment": "production", "partners": {"producers": producers(name)}}
    )
    admit = kafka.signed_by_its_partner(
        configured.partner_keys(), accept_unsigned=False, metrics=IntakeMetrics(CollectorRegistry())
    )
    subscription = Subscription(
        topics.LEADS_INBOUND, TypeAdapter(LeadSubmitted), False, unknown_fields="forbid", admit=admit
    )
    value, key = named(name), ACCOUNT.encode()
    lead = subscription.event(inbound_record(value, key, signed(value, key, PARTNER_SECRET)))
    assert lead.payload.source.partner == name


@pytest.mark.parametrize("name", ["", "home finder", "home/finder", "p" * 101, "home+finder"])
def test_a_name_no_message_can_give_is_refused_in_the_settings(name: str) -> None:
    """The other way round: a configured name a message cannot give would never match; it is a typo, refused."""
    with pytest.raises(ValidationError):
        InboundSource.model_validate({"partner": name, "name": "n"})
    with pytest.raises(ValidationError):
        PartnerSettings.model_validate({"producers": producers(name)})


def test_two_partners_sharing_a_secret_are_refused() -> None:
    """A secret two partners share lets each sign as the other, for the other's accounts (helper 115's review)."""
    shared = {"secrets": [PARTNER_SECRET], "accounts": [ACCOUNT]}
    with pytest.raises(ValidationError, match="partners homefinder and listings share a secret"):
        IntakeSettings.model_validate({"partners": {"producers": {"homefinder": shared, "listings": shared}}})
    rotating = {"homefinder": {"secrets": [PARTNER_SECRET, PARTNER_SECRET + "-old"], "accounts": ["*"]}}
    assert IntakeSettings.model_validate({"partners": {"producers": rotating}}).partner_keys()["homefinder"]


_header_names = st.sampled_from(["leadflow-signature", "Leadflow-Signature", "content-type", "x-other"])
_header_values = st.binary(max_size=80) | st.sampled_from([b"kafka-v1=", b"v2=" + b"0" * 64, b"kafka-v1=" + b"f" * 64])


@PROPERTY
@given(st.lists(st.tuples(_header_names, _header_values), max_size=4), st.booleans(), st.booleans())
def test_whatever_headers_a_record_carries_it_is_taken_only_with_its_partners_signature_last(
    headers: list[tuple[str, bytes]], with_good: bool, accept_unsigned: bool
) -> None:
    """Arbitrary header names' cases and bytes, repeats, the right signature or not (last of its name wins): the lead
    is taken exactly when its last signature header is the partner's signature of the record, or, accepting unsigned
    messages, when it carries none; otherwise PartnerRefused, never another error."""
    value, key = named("homefinder"), ACCOUNT.encode()
    good = signed(value, key, PARTNER_SECRET)
    sent = headers + good if with_good else headers
    metrics = IntakeMetrics(CollectorRegistry())
    keys = IntakeSettings.model_validate({"partners": {"producers": producers("homefinder")}}).partner_keys()
    admit = kafka.signed_by_its_partner(keys, accept_unsigned=accept_unsigned, metrics=metrics)
    signatures = [v for n, v in sent if n.lower() == "leadflow-signature"]
    lead = LeadSubmitted.model_validate_json(value)
    last = signatures[-1].decode("ascii", "replace").strip().lower() if signatures else None
    taken = last == good[0][1].decode() or (last is None and accept_unsigned)
    if taken:
        admit(lead, inbound_record(value, key, sent))
    else:
        with pytest.raises(PartnerRefused):
            admit(lead, inbound_record(value, key, sent))


@pytest.mark.parametrize("accept_unsigned", [False, True])
def test_a_signature_header_without_a_value_is_refused_as_missing(accept_unsigned: bool) -> None:
    """A record header may carry no value at all (None); read as an empty signature, it is a signature that fails
    (refused even when unsigned messages are accepted), not an error of the check."""
    value, key = named("homefinder"), ACCOUNT.encode()
    keys = IntakeSettings.model_validate({"partners": {"producers": producers("homefinder")}}).partner_keys()
    admit = kafka.signed_by_its_partner(
        keys, accept_unsigned=accept_unsigned, metrics=IntakeMetrics(CollectorRegistry())
    )
    record = inbound_record(value, key, [("leadflow-signature", None)])  # type: ignore[list-item]
    with pytest.raises(PartnerRefused, match=r"^leadflow-signature: missing"):
        admit(LeadSubmitted.model_validate_json(value), record)
