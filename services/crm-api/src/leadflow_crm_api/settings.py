"""crm-api settings: environment variables prefixed CRM_API_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class CrmApiSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "crm-api"
    model_config = SettingsConfigDict(env_prefix="CRM_API_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8004)
    consumer_group: str = "leadflow-crm-api-projection"
