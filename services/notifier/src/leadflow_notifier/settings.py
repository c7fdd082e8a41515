"""Notifier settings: environment variables prefixed NOTIFIER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    # "auto": STARTTLS when the server offers it; "required": refuse to send in clear.
    starttls: Literal["auto", "required", "off"] = "auto"
    sender: str = "leadflow <no-reply@leadflow.invalid>"
    timeout_seconds: float = Field(default=10.0, gt=0)


class NotifierSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "notifier"
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8003)
    consumer_group: str = "leadflow-notifier"
    smtp: SmtpSettings = SmtpSettings()
    crm_base_url: str = Field(default="http://127.0.0.1:8004", description="Base of links to leads in messages.")
