"""Notifier settings: environment variables prefixed NOTIFIER_ (nested with "__")."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from leadflow_shared.offer_links import resolve_key
from leadflow_shared.settings import HttpSettings, ServiceSettings, require_secret


class SmtpSettings(BaseModel):
    """The SMTP relay emails go out through."""

    host: str = Field(default="127.0.0.1", description="The relay's host.")
    port: int = Field(default=1025, ge=1, le=65535, description="The relay's port (587 for submission).")
    username: str | None = Field(default=None, description="Set: log in (AUTH) as this user; unset: no login.")
    password: SecretStr | None = Field(default=None, description="The SMTP user's password.")
    starttls: Literal["auto", "required", "off"] = Field(
        default="auto", description="auto: STARTTLS when the server offers it, and always when a username is set "
        "(no login in clear); required: refuse to send in clear; off: never.",
    )  # fmt: skip
    ca_file: str | None = Field(
        default=None, description="A private CA bundle for the STARTTLS certificate (tests, internal relays); "
        "unset: the system CAs.",
    )  # fmt: skip
    sender: str = Field(default="leadflow <no-reply@leadflow.invalid>", description="The emails' From address.")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="How long one SMTP exchange may take.")
    send_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="How long sending one email may take as a whole, a new connection's "
        "handshake included: a relay answering each exchange just in time holds an attempt no longer.",
    )  # fmt: skip
    # A new connection per email costs connect, EHLO, STARTTLS, AUTH.
    pool_size: int = Field(
        default=8, ge=1, le=64, description="Open connections kept for reuse, and emails sent at once."
    )


class SmsSettings(BaseModel):
    """A Twilio-style Messages API (HTTP basic auth: account SID and auth token)."""

    enabled: bool = Field(default=False, description="Send text messages.")
    base_url: str = Field(default="https://api.twilio.com", description="The Messages API's base URL.")
    account_sid: str = Field(default="AC-development", description="The provider's account SID (the basic-auth user).")
    auth_token: SecretStr = Field(
        default=SecretStr("development-only"), description="The account's auth token; required when SMS is enabled "
        "in production.",
    )  # fmt: skip
    sender: str = Field(default="+15005550006", description="E.164 number messages come from.")
    timeout_seconds: float = Field(default=5.0, gt=0, le=120, description="How long one call of the API may take.")


FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class PushSettings(BaseModel):
    """FCM HTTP v1: OAuth2 bearer tokens minted from a service-account key, refreshed before they expire.

    The key (the JSON file Google Cloud issues) is a mounted file or the JSON itself; its `token_uri`
    is where tokens come from (decision 0042).
    """

    enabled: bool = Field(default=False, description="Send push notifications.")
    base_url: str = Field(default="https://fcm.googleapis.com", description="FCM's base URL.")
    credentials_file: str | None = Field(default=None, description="Path of the service-account key (JSON).")
    credentials_json: SecretStr | None = Field(default=None, description="The service-account key's JSON itself.")
    scope: str = Field(default=FCM_SCOPE, description="The OAuth2 scope tokens are minted for.")
    project_id: str | None = Field(
        default=None, description="Default: the key's project_id (without a key: leadflow-development)."
    )
    # Refused in production, where a token would die within the hour.
    access_token: SecretStr = Field(
        default=SecretStr("development-only"), description="Development and tests only, when no key is given: a "
        "fixed bearer token that nothing renews.",
    )  # fmt: skip
    timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="How long one call of FCM or the token URL may take."
    )

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.credentials_file and self.credentials_json:
            raise ValueError("set NOTIFIER_PUSH__CREDENTIALS_FILE or NOTIFIER_PUSH__CREDENTIALS_JSON, not both")
        return self

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials_file or self.credentials_json)


class DeliverySettings(BaseModel):
    """In-process retries of one channel's delivery; then that delivery is dead-lettered.

    A started delivery is leased to its process, which renews the lease every third of it while it
    works; once a lease has run out (its process died), the re-driver of any replica finishes it
    (decision 0021).
    """

    attempts: int = Field(default=4, ge=1, le=10, description="Attempts of one channel's delivery (transient errors).")
    retry_initial_seconds: float = Field(
        default=0.2, gt=0, le=60, description="First pause between a delivery's attempts; it doubles, with jitter."
    )
    retry_max_seconds: float = Field(
        default=5.0, gt=0, le=300, description="Longest pause between a delivery's attempts."
    )
    lease_seconds: float = Field(
        default=10.0, ge=3, le=600, description="How long a crashed process blocks its deliveries: the lease is "
        "renewed while it lives.",
    )  # fmt: skip
    redrive_seconds: float = Field(default=2.0, gt=0, le=60, description="How often expired leases are looked for.")
    redrive_batch: int = Field(default=100, ge=1, le=1000, description="Expired deliveries taken per look.")
    max_drives: int = Field(
        default=5, ge=2, le=20, description="A delivery whose every drive died with its process is dead-lettered "
        "after this many.",
    )  # fmt: skip
    batch_size: int = Field(default=200, ge=1, le=1000, description="Events taken from Kafka at once.")
    concurrency: int = Field(default=32, ge=1, le=256, description="Leads whose deliveries run at the same time.")
    keep_days: int = Field(
        default=30,
        ge=3,  # a missed digest is caught up for 2 days (decision 0088): its record must outlive that
        le=365,
        description="Finished delivery records are forgotten after this (a TTL index): a redelivery or replay of an "
        "older event would be sent again. Keep it at least the dead-letter topics' retention.",
    )


class DigestSettings(BaseModel):
    """The daily digest of new leads, per account and recipient."""

    enabled: bool = Field(
        default=True, description="Send digests from this replica (each goes once, through the delivery log)."
    )
    default_hour: int = Field(
        default=7,
        ge=0,
        le=23,
        description="When the daily digest of new leads goes out, in each account's time zone, for accounts "
        "that set no `digest_hour`.",
    )
    check_seconds: float = Field(default=60.0, gt=0, le=3600, description="How often due digests are looked for.")
    keep_days: int = Field(
        default=3,
        ge=3,
        le=30,
        description="Digest items (a lead's name) are forgotten after this: at least the days a missed digest "
        "is still sent (2) and the day it covers.",
    )


class NotifierSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "notifier"
    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8003)
    consumer_group: str = Field(
        default="leadflow-notifier", description="Consumer groups are <this>.<topic>; a new name starts from the "
        "topic's earliest offset, and events older than DELIVERY__KEEP_DAYS are notified again.",
    )  # fmt: skip
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()
    push: PushSettings = PushSettings()
    delivery: DeliverySettings = DeliverySettings()
    digest: DigestSettings = DigestSettings()
    crm_base_url: str = Field(
        default="http://127.0.0.1:8004", description="crm-api's public URL: the base of one-click accept links."
    )
    web_app_url: str | None = Field(
        default=None,
        description="leadflow's web app: lead links open {web_app_url}/accounts/{account}/leads/{lead}. "
        "Default: {crm_base_url}/app.",
    )
    offer_link_key: SecretStr | None = Field(
        default=None, description="Signs one-click accept links: the same secret (32+ bytes) as crm-api's "
        "CRM_API_OFFER_LINK_KEY. Required outside development.",
    )  # fmt: skip
    # Agents, preferences and who subscribed to new-lead notices are read per event; a short cache saves the
    # reads (P2).
    directory_cache_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="How long agents, preferences and subscriptions are reused: a change "
        "applies within this time.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _real_secrets_in_production(self) -> Self:
        # The defaults above are for development only; production must bring its own.
        if self.sms.enabled:
            require_secret(_unless_default(self.sms.auth_token), "NOTIFIER_SMS__AUTH_TOKEN", self.environment)
        if self.push.enabled and self.environment == "production" and not self.push.has_credentials:
            raise ValueError(
                "NOTIFIER_PUSH__CREDENTIALS_FILE (or NOTIFIER_PUSH__CREDENTIALS_JSON) must name a service-account "
                "key in production: a fixed NOTIFIER_PUSH__ACCESS_TOKEN expires within the hour"
            )
        self.offer_link_secret  # noqa: B018 (validates the key: ValueError names the setting)
        return self

    @property
    def offer_link_secret(self) -> str:
        value = self.offer_link_key.get_secret_value() if self.offer_link_key else None
        return resolve_key(value, self.environment, "offer_link_key (NOTIFIER_OFFER_LINK_KEY)")

    @property
    def pages_url(self) -> str:
        return (self.web_app_url or f"{self.crm_base_url.rstrip('/')}/app").rstrip("/")


def _unless_default(secret: SecretStr) -> SecretStr | None:
    return None if secret.get_secret_value() == "development-only" else secret
