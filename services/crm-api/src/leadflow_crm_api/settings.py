"""crm-api settings: environment variables prefixed CRM_API_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from leadflow_shared.offer_links import resolve_key
from leadflow_shared.service_token import check_service_token
from leadflow_shared.settings import HttpSettings, ServiceSettings, require_secret

# Signs and verifies tokens only when environment=development and no key is configured
# (the embedded stack's default and `compose.yaml`); refused anywhere else. Public by design.
DEVELOPMENT_SIGNING_KEY = "leadflow-development-only-signing-key-not-a-secret"


class AuthSettings(BaseModel):
    """OAuth2 bearer JWTs: who signed them (key), and for whom (audience, issuer)."""

    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = Field(
        default="HS256", description="How the tokens are signed: HS* with a shared secret, RS256 or ES256 with "
        "the issuer's key pair.",
    )  # fmt: skip
    key: SecretStr | None = Field(
        default=None, description="The HMAC secret (HS*, 32+ bytes) or the issuer's PEM public key (RS256, "
        "ES256). Required outside development, where the documented development key stands in.",
    )  # fmt: skip
    audience: str = Field(default="leadflow-crm-api", min_length=1, description="The tokens' aud must name it.")
    issuer: str | None = Field(default=None, description="Set: the tokens' iss must be it; unset: not checked.")
    leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock difference allowed on the tokens' expiry and not-before."
    )
    max_lifetime_hours: int = Field(
        default=744, ge=1, le=8784, description="How far ahead a token's expiry may be (31 days): one further, an "
        "`exp` in milliseconds say, is refused, not kept signed in for millennia.",
    )  # fmt: skip
    member_cache_seconds: float = Field(
        default=2.0, ge=0, le=10, description="How long a caller's agent record (active? of the token's office?) "
        "is kept before it is read again: an agent made inactive or moved is refused within this time (decision "
        "0079). 0 reads it on every request.",
    )  # fmt: skip


class WebSettings(BaseModel):
    """The web app (/app): its session cookie and, in development, the sign-in page for sample users."""

    session_key: SecretStr | None = Field(
        default=None, description="Signs the CSRF tokens of the web app's forms; the same on every replica (32+ "
        "bytes). Required outside development.",
    )  # fmt: skip
    session_hours: int = Field(
        default=8, ge=1, le=24, description="How long the session cookie lives; the token's own expiry ends the "
        "session sooner.",
    )  # fmt: skip
    dev_sign_in: bool = Field(
        default=False, description="Development only: a page that signs in as any sample user without a "
        "password. Refused in production.",
    )  # fmt: skip
    secure_cookies: bool = Field(
        default=True, description="The session cookie is sent over HTTPS only; the embedded run (plain "
        "http://127.0.0.1) turns it off. Refused off in production.",
    )  # fmt: skip


class CrmApiSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "crm-api"
    model_config = SettingsConfigDict(env_prefix="CRM_API_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8004)
    consumer_group: str = Field(
        default="leadflow-crm-api-projection", description="The projection's consumer group is "
        "<this>.leads.events.v1; a new name projects every event again from the earliest offset (absorbed as "
        "duplicates).",
    )  # fmt: skip
    auth: AuthSettings = AuthSettings()
    # The largest real body, a roster of 10,000 agent ids, is about 700 KB.
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=64 * 1024, le=16 * 1024 * 1024, description="Request bodies beyond this are "
        "refused with 413.",
    )  # fmt: skip
    router_url: str = Field(
        default="http://127.0.0.1:8002", description="The router's internal HTTP address: who is next, a lead's "
        "routing decisions and the dry-run ask it.",
    )  # fmt: skip
    router_token: SecretStr | None = Field(
        default=None,
        description="The service token sent on every call of the router's API (`Authorization: Bearer`): one of "
        "the router's ROUTER_API_TOKEN, ROUTER_API_TOKEN_NEXT (decision 0082). Required in production; without "
        "it the router refuses the calls, and who is next, routing info and the dry-run answer 503.",
    )
    offer_link_key: SecretStr | None = Field(
        default=None, description="Verifies the notifier's one-click accept links: the same secret (32+ bytes) as "
        "NOTIFIER_OFFER_LINK_KEY. Required outside development.",
    )  # fmt: skip
    web: WebSettings = WebSettings()
    digest_default_hour: int = Field(
        default=7, ge=0, le=23, description="The digest hour the settings show for an account that set no "
        "`digest_hour`: set it as NOTIFIER_DIGEST__DEFAULT_HOUR, which decides when the digest goes out.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _signing_key(self) -> Self:
        key = self.auth.key
        if key is None and self.environment == "development":
            if not self.auth.algorithm.startswith("HS"):
                raise ValueError("auth.key: the development key is an HMAC secret; set a public key for RS/ES")
            return self
        if key is None:
            raise ValueError(f"auth.key (CRM_API_AUTH__KEY) must be set when environment={self.environment}")
        require_secret(key, "auth.key (CRM_API_AUTH__KEY)", self.environment)
        if self.environment == "production" and key.get_secret_value() == DEVELOPMENT_SIGNING_KEY:
            raise ValueError("auth.key: the development signing key is refused in production")
        if self.auth.algorithm.startswith("HS") and len(key.get_secret_value().encode()) < 32:
            raise ValueError("auth.key: an HMAC key must be at least 32 bytes (RFC 7518 section 3.2)")
        return self

    @model_validator(mode="after")
    def _offer_link_key(self) -> Self:
        value = self.offer_link_key.get_secret_value() if self.offer_link_key else None
        resolve_key(value, self.environment, "offer_link_key (CRM_API_OFFER_LINK_KEY)")
        return self

    @model_validator(mode="after")
    def _web(self) -> Self:
        if self.web.dev_sign_in and self.environment == "production":
            raise ValueError("web.dev_sign_in (CRM_API_WEB__DEV_SIGN_IN) is refused in production")
        if not self.web.secure_cookies and self.environment == "production":
            # The session cookie is the bearer token the JSON API takes: never sent over plain http.
            raise ValueError(
                "web.secure_cookies=false (CRM_API_WEB__SECURE_COOKIES) is refused in production: the session "
                "cookie holds the sign-in token and must go over HTTPS only"
            )
        if self.web.dev_sign_in and not self.auth.algorithm.startswith("HS"):
            raise ValueError("web.dev_sign_in signs its tokens with the HMAC auth key: it needs an HS* algorithm")
        value = self.web.session_key.get_secret_value() if self.web.session_key else None
        resolve_key(value, self.environment, "web.session_key (CRM_API_WEB__SESSION_KEY)")
        return self

    @model_validator(mode="after")
    def _router_token(self) -> Self:
        if self.router_token is None and self.environment == "production":
            raise ValueError("router_token (CRM_API_ROUTER_TOKEN) must be set in production: the router's API token")
        check_service_token(self.router_token, "router_token (CRM_API_ROUTER_TOKEN)")
        return self

    @property
    def web_session_secret(self) -> str:
        value = self.web.session_key.get_secret_value() if self.web.session_key else None
        return resolve_key(value, self.environment, "web.session_key")

    @property
    def offer_link_secret(self) -> str:
        value = self.offer_link_key.get_secret_value() if self.offer_link_key else None
        return resolve_key(value, self.environment, "offer_link_key")

    @property
    def verification_key(self) -> str:
        """The configured key, or the development key (the validator allows that in development only)."""
        return DEVELOPMENT_SIGNING_KEY if self.auth.key is None else self.auth.key.get_secret_value()
