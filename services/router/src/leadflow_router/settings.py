"""Router settings: environment variables prefixed ROUTER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class RouterSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "router"
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8002)
    consumer_group: str = "leadflow-router"
