"""Webhook signatures, provider payload formats and the provider settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from example_scripts import load_example
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_intake.bootstrap import webhooks
from leadflow_intake.domain.errors import Unauthorized
from leadflow_intake.domain.lead import normalize_submission
from leadflow_intake.domain.providers import FORMATS, FubEventIn, GenericLeadIn, PortalLeadIn
from leadflow_intake.domain.signature import SignedRequest, sign, signed_text, verify
from leadflow_intake.settings import DEVELOPMENT_SECRET, IntakeSettings
from leadflow_shared.events.intake import LeadChannel

pytestmark = pytest.mark.unit

SECRET = secrets.token_bytes(32)
NOW = 1_772_460_300
PROPERTY = settings(database=None, deadline=None, max_examples=200)
PATH = "/v1/accounts/acme-realty/webhooks/homefinder"


def req(body: bytes = b"{}", *, key: str | None = None, path: str = PATH, method: str = "POST") -> SignedRequest:
    return SignedRequest(method, path, key, body)


def check(
    request: SignedRequest, signature: str | None, *, ts: str | None = str(NOW), keys: list[bytes] | None = None
) -> None:
    verify(
        secrets=[SECRET] if keys is None else keys,
        timestamp=ts,
        signature=signature,
        request=request,
        now=NOW,
        tolerance_seconds=300,
    )


# -- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "key_line"), [("k-1", b"k-1"), (None, b"")])
def test_signature_is_hmac_sha256_of_the_documented_lines(key: str | None, key_line: bytes) -> None:
    # Written out independently of `sign`, as a provider would implement it from the partner contract.
    text = b"\n".join([b"v2", str(NOW).encode(), b"POST", PATH.encode(), key_line, b'{"a":1}'])
    expected = hmac.new(SECRET, text, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, req(b'{"a":1}', key=key)) == f"v2={expected}"
    check(req(b'{"a":1}', key=key), f"v2={expected}")
    check(req(b'{"a":1}', key=key), f"V2={expected.upper()}")  # case of the hex digits does not matter


def test_the_first_scheme_is_refused() -> None:
    # v1 signed "<timestamp>.<body>" only: a captured request could be sent with another key or account.
    old = hmac.new(SECRET, f"{NOW}.".encode() + b"{}", hashlib.sha256).hexdigest()
    with pytest.raises(Unauthorized) as info:
        check(req(), f"sha256={old}")
    assert info.value.why == "missing"


@pytest.mark.parametrize(
    ("ts", "signature", "why"),
    [
        (None, "valid", "missing"),
        (str(NOW), None, "missing"),
        ("", "valid", "missing"),
        ("-5", "valid", "missing"),
        ("1e9", "valid", "missing"),
        (str(NOW), "sha1=" + "0" * 40, "missing"),
        (str(NOW), "v2=" + "0" * 64, "mismatch"),
        (str(NOW - 301), "valid", "stale"),
        (str(NOW + 301), "valid", "stale"),
    ],
)
def test_bad_or_stale_signatures_are_refused(ts: str | None, signature: str | None, why: str) -> None:
    if signature == "valid":
        signature = sign(SECRET, int(ts or NOW) if ts and ts.isdigit() else NOW, req())
    with pytest.raises(Unauthorized) as info:
        check(req(), signature, ts=ts)
    assert info.value.why == why


def test_timestamps_at_the_edge_of_the_window_are_accepted() -> None:
    for ts in (NOW - 300, NOW + 300):
        check(req(), sign(SECRET, ts, req()), ts=str(ts))


def test_a_signature_for_one_timestamp_does_not_hold_for_another() -> None:
    with pytest.raises(Unauthorized):
        check(req(), sign(SECRET, NOW - 1, req()))


def test_either_of_two_secrets_is_accepted_while_rotating() -> None:
    new = secrets.token_bytes(32)
    for secret in (SECRET, new):
        check(req(), sign(secret, NOW, req()), keys=[new, SECRET])


def test_unknown_provider_is_refused_even_with_a_plausible_signature() -> None:
    with pytest.raises(Unauthorized) as info:
        verify(
            secrets=None,
            timestamp=str(NOW),
            signature=sign(b"\x00" * 32, NOW, req()),
            request=req(),
            now=NOW,
            tolerance_seconds=300,
        )
    assert info.value.why == "provider"


@pytest.mark.parametrize("field", ["key", "path"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "é", "\x00"])
def test_fields_that_could_shift_the_signed_lines_are_refused(field: str, bad: str) -> None:
    request = req(key=bad) if field == "key" else req(path=PATH + bad)
    with pytest.raises(ValueError, match="printable ASCII"):
        sign(SECRET, NOW, request)
    with pytest.raises(Unauthorized) as info:
        check(request, "v2=" + "0" * 64)
    assert info.value.why == "malformed"


_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
_requests = st.builds(
    SignedRequest,
    method=st.sampled_from(["POST", "PUT"]),
    path=st.builds(
        lambda a, p: f"/v1/accounts/{a}/webhooks/{p}",
        st.from_regex(r"[a-z.-]{1,5}", fullmatch=True),
        st.from_regex(r"[a-z-]{1,5}", fullmatch=True),
    ),
    idempotency_key=st.none() | _printable.filter(bool),
    body=st.binary(max_size=60),
)


@PROPERTY
@given(_requests, _requests, st.integers(NOW - 300, NOW + 300))
def test_a_signature_holds_for_its_request_only(sent: SignedRequest, replayed: SignedRequest, ts: int) -> None:
    """Whatever changes (account or provider in the path, the key or its absence, the body): refused."""
    signature = sign(SECRET, ts, sent)
    check(sent, signature, ts=str(ts))
    if replayed != sent:
        assert signed_text(ts, replayed) != signed_text(ts, sent)
        with pytest.raises(Unauthorized):
            check(replayed, signature, ts=str(ts))


# -- provider formats ---------------------------------------------------------------------------

FUB_EVENT: dict[str, Any] = {
    "source": "MyIDXSite.com",
    "system": "AwesomeSiteBuilder",
    "type": "Property Inquiry",
    "message": "Is this still available?",
    "person": {
        "firstName": "JOHN", "lastName": "smith", "emails": [{"value": "John.Smith@Example.com"}],
        "phones": [{"value": "(415) 555-0123"}, {"value": "(212) 555-0101"}], "tags": ["buyer"],
        "assignedTo": "blair-chen",
    },
    "property": {"street": "12 Elm St", "city": "Boston", "state": "MA", "code": "02118", "mlsNumber": "MLS-4471",
                 "price": 450000},
    "campaign": {"source": "google", "medium": "cpc", "campaign": "spring"},
    "unknownNewField": {"anything": True},
}  # fmt: skip

PORTAL_PUSH: dict[str, Any] = {
    "lead_id": "PL-998877",
    "created_at": "2026-03-02T09:05:00",
    "lead_source": "streeteasy",
    "people": [
        {"first_name": "Ana", "last_name": "Souza", "email": "", "phone_1": "", "phone_2": "+1 646 555 0144"},
        {"first_name": "Co", "last_name": "Buyer", "email": "co@example.com"},
    ],
    "listings": [{"listing_id": "SE-1", "property_address": "123 First St", "unit_number": "2A"}],
    "messages": [{"message": "Hi, I'm interested in 2A."}, {"message": "Can I see it Saturday?"}],
    "agents": [{"name": "Casey Okafor", "email": "casey@example.com", "agent_id": "casey-okafor"}],
}


def to_payload(model: GenericLeadIn | FubEventIn | PortalLeadIn) -> Any:
    sub = model.to_submission(account_id="acme-realty", provider="p", source_name="Configured")
    return normalize_submission(sub, default_region="US")


def test_fub_event_maps_person_property_campaign_and_assigned_agent() -> None:
    payload = to_payload(FubEventIn.model_validate_json(json.dumps(FUB_EVENT)))
    assert payload.contact.model_dump() == {
        "first_name": "John",
        "last_name": "Smith",
        "email": "john.smith@example.com",
        "phone": "+14155550123",
    }
    assert payload.source.channel is LeadChannel.LEAD_GEN
    assert payload.source.listing_id == "MLS-4471"
    assert payload.source.assigned_agent_id == "blair-chen"
    assert payload.source.utm == {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring"}
    assert payload.message.startswith("Is this still available?")
    assert "12 Elm St, Boston, MA, 02118" in payload.message


def test_portal_push_maps_first_person_listing_messages_and_agent() -> None:
    payload = to_payload(PortalLeadIn.model_validate(PORTAL_PUSH))
    assert (payload.contact.first_name, payload.contact.email, payload.contact.phone) == ("Ana", None, "+16465550144")
    assert payload.source.listing_id == "SE-1"
    assert payload.source.assigned_agent_id == "casey-okafor"
    assert payload.source.utm == {"utm_source": "streeteasy"}
    assert payload.message == "Hi, I'm interested in 2A.\n\nCan I see it Saturday?\n\nListing: 123 First St 2A"


def _nulls_everywhere_but(node: Any, keep: set[str]) -> Any:
    """`node` with every optional field set to null, as providers send what they do not have."""
    if isinstance(node, list):
        return [_nulls_everywhere_but(item, keep) for item in node]
    if isinstance(node, dict):
        return {k: _nulls_everywhere_but(v, keep) if k in keep else None for k, v in node.items()}
    return node


@pytest.mark.parametrize(
    ("model", "body", "keep"),
    [
        (FubEventIn, FUB_EVENT, {"person", "emails", "value"}),
        (PortalLeadIn, PORTAL_PUSH, {"people", "phone_2"}),
    ],
    ids=["fub-events", "portal-push"],
)
def test_a_provider_s_nulls_read_as_left_out_and_the_lead_is_kept(
    model: Any, body: dict[str, Any], keep: set[str]
) -> None:
    nulls = _nulls_everywhere_but(body, keep)
    payload = to_payload(model.model_validate_json(json.dumps(nulls)))
    assert (payload.contact.email or payload.contact.phone) is not None  # the way to reach the lead survives
    assert (payload.message, payload.source.listing_id, payload.source.assigned_agent_id) == ("", None, None)
    with pytest.raises(ValidationError):  # no person at all is still no lead
        model.model_validate({"person": None, "people": None})


def test_generic_format_is_strict_about_unknown_fields() -> None:
    with pytest.raises(ValidationError) as info:
        GenericLeadIn.model_validate({"first_name": "A", "email": "a@example.com", "agent": "x"})
    assert info.value.errors()[0]["loc"] == ("agent",)


@pytest.mark.parametrize(
    ("fmt", "body", "loc"),
    [
        ("fub-events", {"person": {"emails": [{"value": "a@example.com"}] * 11}}, ("person", "emails")),
        ("fub-events", {"person": {"firstName": "x" * 101}}, ("person", "firstName")),
        ("fub-events", {"person": {}, "message": "x" * 5001}, ("message",)),
        ("portal-push", {"people": []}, ("people",)),
        ("portal-push", {"people": [{"first_name": "A"}] * 11}, ("people",)),
        ("portal-push", {"people": [{"first_name": "A"}], "messages": [{"message": "m"}] * 21}, ("messages",)),
        ("portal-push", {"people": [{"first_name": "A"}], "agents": [{"agent_id": "a b"}]}, ("agents", 0, "agent_id")),
        ("generic", {"first_name": "A", "phone": "1" * 41}, ("phone",)),
        ("generic", {"first_name": "A", "email": "a@example.com", "utm": {str(i): "v" for i in range(11)}}, ("utm",)),
    ],
)
def test_provider_limits_name_the_field(fmt: str, body: dict[str, Any], loc: tuple[str | int, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        FORMATS[fmt].model_validate_json(json.dumps(body))
    assert info.value.errors()[0]["loc"] == loc


def test_combined_provider_messages_are_bounded() -> None:
    long = {"people": [{"first_name": "A", "email": "a@example.com"}], "messages": [{"message": "x" * 5000}] * 3}
    payload = to_payload(PortalLeadIn.model_validate(long))
    assert len(payload.message) == 5000
    assert payload.message.endswith("…")


# -- settings ----------------------------------------------------------------------------------


def providers_json(secret: str, fmt: str = "generic") -> str:
    return json.dumps({"homefinder": {"format": fmt, "secrets": [secret], "accounts": ["acme-realty"]}})


def test_providers_are_read_from_one_json_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("INTAKE_ENVIRONMENT", "production")
    monkeypatch.setenv("INTAKE_WEBHOOKS__PROVIDERS", providers_json(secret, "portal-push"))
    monkeypatch.setenv("INTAKE_WEBHOOKS__TOLERANCE_SECONDS", "120")
    configured = IntakeSettings()
    hooks = webhooks(configured)
    assert list(hooks) == ["homefinder"]
    assert hooks["homefinder"].secrets == [secret.encode()]
    assert hooks["homefinder"].format == "portal-push"
    assert hooks["homefinder"].accounts == frozenset({"acme-realty"})
    assert configured.webhooks.tolerance_seconds == 120
    assert secret not in repr(configured)


@pytest.mark.parametrize("secret", ["changeme", "short-but-real", DEVELOPMENT_SECRET, "  "])
def test_production_refuses_placeholder_or_short_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="secret"):
        IntakeSettings.model_validate(
            {"environment": "production", "webhooks": {"providers": json.loads(providers_json(secret))}}
        )


def test_development_without_providers_gets_the_demo_providers_only_in_development() -> None:
    dev = webhooks(IntakeSettings.model_validate({"environment": "development"}))
    assert set(dev) == {"demo-generic", "demo-fub", "demo-portal"}
    assert {h.secrets[0] for h in dev.values()} == {DEVELOPMENT_SECRET.encode()}
    assert webhooks(IntakeSettings.model_validate({"environment": "test"})) == {}
    assert webhooks(IntakeSettings.model_validate({"environment": "production"})) == {}


def test_configured_providers_replace_the_demo_ones_in_development() -> None:
    configured = IntakeSettings.model_validate(
        {"environment": "development", "webhooks": {"providers": json.loads(providers_json("x"))}}
    )
    assert list(webhooks(configured)) == ["homefinder"]


def test_two_webhook_providers_sharing_a_secret_are_refused() -> None:
    """As two partners may not (decision 0098): the provider is only a path segment of the signed text, so a provider
    limited to `accounts: [acme-realty]` that shares its secret with one allowed every account could sign as the
    other and post leads into any account, with the other's source, fee and format (decision 0008)."""
    secret = secrets.token_urlsafe(32)
    providers = {
        "homefinder": {"format": "generic", "secrets": [secret], "accounts": ["acme-realty"]},
        "bigportal": {"format": "portal-push", "secrets": [secrets.token_urlsafe(32), secret]},  # one while rotating
    }
    with pytest.raises(ValidationError, match="webhook providers homefinder and bigportal share a secret") as info:
        IntakeSettings.model_validate({"webhooks": {"providers": providers}})
    assert secret not in str(info.value.errors(include_input=False))
    providers["bigportal"]["secrets"] = [secrets.token_urlsafe(32)]
    assert set(webhooks(IntakeSettings.model_validate({"webhooks": {"providers": providers}}))) == set(providers)


def test_a_webhook_provider_and_a_partner_sharing_a_secret_are_refused() -> None:
    """Each signer has its own secret, whichever way in it signs for; the development defaults (one demo secret
    for the demo providers and partner) are not settings and stay as they are."""
    secret = secrets.token_urlsafe(32)
    configured = {
        "webhooks": {"providers": {"homefinder": {"format": "generic", "secrets": [secret]}}},
        "partners": {"producers": {"homefinder": {"secrets": [secret], "accounts": ["*"]}}},
    }
    with pytest.raises(ValidationError, match="webhook provider homefinder and partner homefinder share a secret"):
        IntakeSettings.model_validate(configured)
    development = IntakeSettings.model_validate({"environment": "development"})
    assert {h.secrets[0] for h in webhooks(development).values()} == {DEVELOPMENT_SECRET.encode()}
    assert development.partner_keys()["homefinder"].secrets == (DEVELOPMENT_SECRET.encode(),)


@pytest.mark.parametrize("name", ["Upper", "-dash", "a b", "x" * 41])
def test_provider_names_are_url_safe(name: str) -> None:
    with pytest.raises(ValidationError):
        IntakeSettings.model_validate({"webhooks": {"providers": {name: {"format": "generic", "secrets": ["s"]}}}})


# -- what providers are told and given -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key", [None, "lead-8841"])
def test_the_example_sender_signs_what_intake_verifies(key: str | None) -> None:
    sender = load_example("webhook_sender/send_webhook.py")
    body = b'{"first_name": "Jane"}\n'
    headers = sender.signature_headers(SECRET, account_id="acme-realty", provider="homefinder", body=body,
                                       idempotency_key=key, timestamp=NOW)  # fmt: skip
    assert headers.get("Idempotency-Key") == key
    check(req(body, key=key), headers["X-Leadflow-Signature"], ts=headers["X-Leadflow-Timestamp"])


def test_the_partner_contracts_worked_example_holds() -> None:
    readme = (ROOT / "docs" / "partner-contract" / "README.md").read_text()
    secret, body = b"example-secret-of-32-characters!", b'{"first_name": "Jane", "email": "jane@example.com"}'
    signature = sign(secret, NOW, req(body, key="lead-8841"))
    assert f"`X-Leadflow-Signature: {signature}`" in readme
    assert body.decode() in readme
    assert f"timestamp `{NOW}`" in readme
