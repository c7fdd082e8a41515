"""Router settings: environment variables prefixed ROUTER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AwareDatetime, Field, model_validator
from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import HttpSettings, ServiceSettings


class RouterSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "router"
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8002)
    consumer_group: str = "leadflow-router"
    sweeper: bool = Field(default=True, description="Fire offer deadlines in this replica (safe on several).")
    sweep_batch: int = Field(default=200, ge=1, le=5000, description="Due records fired per sweep.")
    sweep_idle_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Longest pause of the sweeper: it sleeps until the next deadline it knows of (its own offers "
        "wake it), and looks again at least this often for deadlines set by other replicas.",
    )
    intake_batch: int = Field(default=500, ge=1, le=5000, description="Leads routed per Kafka batch.")
    config_cache_seconds: float = Field(default=5.0, ge=0, description="How long account snapshots are reused.")
    clock_start: AwareDatetime | None = Field(
        default=None,
        description="Development and test only: the router's clock reads this instant at start and runs at real "
        "speed, so a test can route across a daylight-saving change (R10). Refused in production.",
    )

    clock_rate: float = Field(
        default=1.0,
        ge=1.0,
        le=10.0,
        description="Development and test only, with clock_start: how many times real speed the test clock runs.",
    )

    @model_validator(mode="after")
    def _real_clock_in_production(self) -> Self:
        if self.clock_start is not None and self.environment == "production":
            raise ValueError("clock_start is a test clock: production runs on the real clock")
        return self
