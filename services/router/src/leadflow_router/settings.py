"""Router settings: environment variables prefixed ROUTER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class RouterSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "router"
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8002)
    consumer_group: str = "leadflow-router"
    sweeper_workers: int = Field(default=2, ge=0, le=32, description="Concurrent deadline sweepers; 0 disables.")
    sweep_idle_seconds: float = Field(default=0.1, gt=0, description="Pause when no deadline is due.")
    lease_seconds: float = Field(default=10.0, gt=0, description="How long a sweeper holds a due record.")
    config_cache_seconds: float = Field(default=5.0, ge=0, description="How long account snapshots are reused.")
