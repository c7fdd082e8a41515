"""Router settings: environment variables prefixed ROUTER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AwareDatetime, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from leadflow_shared.service_token import check_service_token
from leadflow_shared.settings import HttpSettings, ServiceSettings

NOT_SERVING = (
    "ROUTER_API_TOKEN is not set: the router serves its internal API only to callers that send this service "
    "token (crm-api's CRM_API_ROUTER_TOKEN), in every environment (decision 0082). Set both to the same random "
    "secret of 32+ characters, e.g. `openssl rand -hex 32`."
)


class MissingApiTokenError(ValueError):
    """The router was asked to serve without ROUTER_API_TOKEN."""


class RouterSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "router"
    model_config = SettingsConfigDict(env_prefix="ROUTER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8002)
    consumer_group: str = Field(
        default="leadflow-router", description="Consumer groups are <this>.<topic>; a new name starts from the "
        "topics' earliest offsets (every record again, absorbed as duplicates).",
    )  # fmt: skip
    sweeper: bool = Field(default=True, description="Fire offer deadlines in this replica (safe on several).")
    sweep_batch: int = Field(default=200, ge=1, le=5000, description="Due records fired per sweep.")
    sweep_idle_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Longest pause of the sweeper: it sleeps until the next deadline it knows of (its own offers "
        "wake it), and looks again at least this often for deadlines set by other replicas.",
    )
    intake_batch: int = Field(default=500, ge=1, le=5000, description="Leads routed per Kafka batch.")
    config_cache_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="How long account snapshots are reused."
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="The service token every call of the internal API must send (`Authorization: Bearer`): "
        "crm-api's CRM_API_ROUTER_TOKEN. The router does not serve without one, in any environment (decision 0082).",
    )
    api_token_next: SecretStr | None = Field(
        default=None,
        description="While rotating: the next token, taken as well as ROUTER_API_TOKEN (docs/operations.md).",
    )
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

    @model_validator(mode="after")
    def _api_tokens_fit(self) -> Self:
        if self.api_token_next is not None and self.api_token is None:
            raise ValueError("ROUTER_API_TOKEN_NEXT is the token rotated to: it goes with ROUTER_API_TOKEN")
        check_service_token(self.api_token, "api_token (ROUTER_API_TOKEN)")
        check_service_token(self.api_token_next, "api_token_next (ROUTER_API_TOKEN_NEXT)")
        return self

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """The service tokens the internal API takes: the current one and, while rotating, the next."""
        return tuple(t.get_secret_value() for t in (self.api_token, self.api_token_next) if t is not None)

    def require_api_token(self) -> None:
        """`MissingApiTokenError` (naming ROUTER_API_TOKEN) unless a token is set: checked before serving."""
        if not self.api_tokens:
            raise MissingApiTokenError(NOT_SERVING)
