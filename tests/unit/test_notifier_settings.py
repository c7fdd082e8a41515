"""Provider secrets: development defaults, refused in production."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from leadflow_notifier.settings import FCM_SCOPE, NotifierSettings, PushSettings
from leadflow_shared import offer_links

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("channel", ["sms", "push"])
def test_production_refuses_the_development_secret_of_an_enabled_channel(channel: str) -> None:
    with pytest.raises(ValidationError, match=channel.upper()):
        NotifierSettings.model_validate({"environment": "production", channel: {"enabled": True}})


def test_development_defaults_and_real_production_secrets_are_accepted() -> None:
    assert NotifierSettings.model_validate({"environment": "development", "sms": {"enabled": True}}).sms.enabled
    settings = NotifierSettings.model_validate(
        {
            "environment": "production",
            "sms": {"enabled": True, "auth_token": "a-real-token-from-the-vault"},
            "push": {"enabled": False},
            "offer_link_key": "an-offer-link-key-of-more-than-32-bytes!",
        }
    )
    assert settings.sms.auth_token.get_secret_value() == "a-real-token-from-the-vault"


def test_accept_links_need_their_own_key_outside_development() -> None:
    assert NotifierSettings(environment="development").offer_link_secret == offer_links.DEVELOPMENT_KEY
    with pytest.raises(ValidationError, match="NOTIFIER_OFFER_LINK_KEY"):
        NotifierSettings(environment="production")
    with pytest.raises(ValidationError, match="refused in production"):
        NotifierSettings(environment="production", offer_link_key=offer_links.DEVELOPMENT_KEY)
    assert NotifierSettings(environment="development").pages_url == "http://127.0.0.1:8004/app"
    assert NotifierSettings(environment="development", web_app_url="https://app.example/").pages_url == (
        "https://app.example"
    )


def test_production_push_needs_a_service_account_key_not_a_fixed_token() -> None:
    production = {"environment": "production", "offer_link_key": "an-offer-link-key-of-more-than-32-bytes!"}
    with pytest.raises(ValidationError, match="NOTIFIER_PUSH__CREDENTIALS_FILE"):
        NotifierSettings.model_validate({**production, "push": {"enabled": True, "access_token": "ya29.real-looking"}})
    key_file = "/var/run/secrets/leadflow/fcm/service-account.json"
    settings = NotifierSettings.model_validate({**production, "push": {"enabled": True, "credentials_file": key_file}})
    assert (settings.push.scope, settings.push.project_id) == (FCM_SCOPE, None)  # the project comes from the key
    assert NotifierSettings.model_validate({"environment": "development", "push": {"enabled": True}}).push.enabled
    with pytest.raises(ValidationError, match="not both"):
        PushSettings(credentials_file=key_file, credentials_json=SecretStr("{}"))


def test_the_key_json_can_come_from_the_environment_and_stays_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    key = {"type": "service_account", "project_id": "leadflow-test", "private_key": "-----BEGIN PRIVATE KEY-----"}
    monkeypatch.setenv("NOTIFIER_PUSH__ENABLED", "true")
    monkeypatch.setenv("NOTIFIER_PUSH__CREDENTIALS_JSON", json.dumps(key))
    settings = NotifierSettings()
    assert settings.push.credentials_json is not None
    assert json.loads(settings.push.credentials_json.get_secret_value()) == key
    assert "PRIVATE KEY" not in repr(settings)
