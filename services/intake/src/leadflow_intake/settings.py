"""Intake settings: environment variables prefixed INTAKE_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class IntakeSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8001)
    default_region: str = Field(
        default="US", min_length=2, max_length=2, description="Region of phone numbers without a country code."
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
