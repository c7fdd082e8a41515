"""Provider secrets: development defaults, refused in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadflow_notifier.settings import NotifierSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("channel", ["sms", "push"])
def test_production_refuses_the_development_secret_of_an_enabled_channel(channel: str) -> None:
    with pytest.raises(ValidationError, match=channel.upper()):
        NotifierSettings.model_validate({"environment": "production", channel: {"enabled": True}})


def test_development_defaults_and_real_production_secrets_are_accepted() -> None:
    assert NotifierSettings.model_validate({"environment": "development", "sms": {"enabled": True}}).sms.enabled
    settings = NotifierSettings.model_validate(
        {"environment": "production", "sms": {"enabled": True, "auth_token": "a-real-token-from-the-vault"},
         "push": {"enabled": False}}
    )
    assert settings.sms.auth_token.get_secret_value() == "a-real-token-from-the-vault"
