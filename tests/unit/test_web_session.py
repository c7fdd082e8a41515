"""The web session's CSRF tokens and settings (issue 12.2): bound to the session, refused when forged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow_crm_api.settings import CrmApiSettings
from leadflow_crm_api.web.session import csrf_token, csrf_valid, same_nonce, sign_in_nonce

pytestmark = pytest.mark.unit

KEY = "k" * 32


def test_a_forms_token_belongs_to_its_session_and_key() -> None:
    token = csrf_token(KEY, "session-a")
    assert csrf_valid(KEY, "session-a", token)
    assert not csrf_valid(KEY, "session-b", token), "another session's token"
    assert not csrf_valid("j" * 32, "session-a", token), "another deployment's key"
    assert not csrf_valid(KEY, "session-a", None)
    assert not csrf_valid(KEY, "session-a", "")


@settings(database=None, deadline=None)
@given(st.text(max_size=80))
def test_no_guess_passes(guess: str) -> None:
    assert not csrf_valid(KEY, "session-a", guess) or guess == csrf_token(KEY, "session-a")


def test_the_sign_in_forms_token_must_repeat_its_cookie() -> None:
    nonce = sign_in_nonce()
    assert same_nonce(nonce, nonce)
    assert not same_nonce(nonce, sign_in_nonce())
    assert not same_nonce(None, nonce)
    assert not same_nonce("", "")


def test_development_sign_in_and_a_missing_session_key_are_refused_in_production() -> None:
    def production(**web: object) -> CrmApiSettings:
        return CrmApiSettings(
            environment="production", auth={"key": "p" * 40}, offer_link_key="o" * 40, router_token="r" * 40, web=web
        )

    with pytest.raises(ValidationError, match="CRM_API_WEB__SESSION_KEY"):
        production()
    with pytest.raises(ValidationError, match="dev_sign_in"):
        production(session_key="s" * 40, dev_sign_in=True)
    ok = production(session_key="s" * 40)
    assert ok.web_session_secret == "s" * 40
    assert ok.web.secure_cookies, "HTTPS-only cookies unless turned off"


def test_production_refuses_a_session_cookie_sent_over_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session cookie is the bearer token the JSON API takes (for hours): without `Secure` a browser sends it
    # over any plain http:// request to the host. Turned off for the embedded run only (found by helper 130).
    monkeypatch.setenv("CRM_API_WEB__SECURE_COOKIES", "false")
    monkeypatch.setenv("CRM_API_WEB__SESSION_KEY", "s" * 40)

    def in_(environment: str) -> CrmApiSettings:
        return CrmApiSettings(environment=environment, auth={"key": "p" * 40}, offer_link_key="o" * 40,
                              router_token="r" * 40)  # fmt: skip

    with pytest.raises(ValidationError, match=r"CRM_API_WEB__SECURE_COOKIES\) is refused in production"):
        in_("production")
    assert not in_("test").web.secure_cookies, "a test deployment on plain http: allowed"
    assert not in_("development").web.secure_cookies, "the embedded run: allowed"
    monkeypatch.delenv("CRM_API_WEB__SECURE_COOKIES")
    assert in_("production").web.secure_cookies


def test_development_sign_in_needs_a_key_it_can_sign_with() -> None:
    with pytest.raises(ValidationError, match="needs an HS"):
        CrmApiSettings(
            environment="test",
            auth={"algorithm": "RS256", "key": "-----BEGIN PUBLIC KEY-----"},
            offer_link_key="o" * 40,
            web={"session_key": "s" * 40, "dev_sign_in": True},
        )
    assert CrmApiSettings(web={"dev_sign_in": True}).web.dev_sign_in, "development, HS256: allowed"
