"""Intake settings: environment variables prefixed INTAKE_ (nested with "__").

Webhook providers are one JSON value, secrets included, so they come from the deployment's
secret store as a whole, e.g.
INTAKE_WEBHOOKS__PROVIDERS='{"homefinder": {"format": "generic", "secrets": ["<32+ random chars>"]}}'.
Partners publishing to leads.inbound.v1 likewise, e.g.
INTAKE_PARTNERS__PRODUCERS='{"homefinder": {"secrets": ["<32+ random chars>"], "accounts": ["acme-realty"]}}'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import SettingsConfigDict

from leadflow_intake.domain.fields import AccountId
from leadflow_intake.domain.partner_signature import ANY_ACCOUNT, PartnerKeys
from leadflow_shared.settings import HttpSettings, ServiceSettings, require_secret

ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")]
# A partner as its messages name it: every name leads.inbound.v1's payload.source.partner allows (InboundSource).
PartnerName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
MIN_SECRET_LENGTH = 32
# The embedded stack's webhook secret: accepted only with environment=development, refused in production.
DEVELOPMENT_SECRET = "development-only-webhook-secret-not-for-production"  # noqa: S105 (a refused placeholder)


class WebhookProvider(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["generic", "fub-events", "portal-push"]
    # Two at once while a secret is rotated: the new one first, the old one until providers switched.
    secrets: list[SecretStr] = Field(min_length=1, max_length=2)
    accounts: list[AccountId] = Field(default_factory=list, description="Accounts it may post for; empty: any.")
    source_name: str | None = Field(default=None, max_length=100, description="Lead source name; default: provider.")


class WebhookSettings(BaseModel):
    """Signed webhooks of lead providers (decision 0008)."""

    model_config = ConfigDict(frozen=True)

    providers: dict[ProviderName, WebhookProvider] = Field(
        default_factory=dict,
        description='The providers by name, as one JSON object: {"<name>": {"format": "generic" | "fub-events" | '
        '"portal-push", "secrets": ["<new>", "<old while rotating>"], "accounts": [...], "source_name": "..."}}; '
        "secrets of 32+ characters in production, each provider's its own (shared with no other provider or partner). "
        "Empty in development: the embedded stack's demo providers.",
    )
    tolerance_seconds: int = Field(default=300, ge=30, le=3600, description="Replay window around the timestamp.")

    @model_validator(mode="after")
    def _own_secrets(self) -> Self:
        # The provider is only a path segment of the signed text: with a secret two providers share, one limited to
        # some accounts could sign as the other, for every account, with its source and format (decision 0008).
        _refuse_shared_secrets(*(("webhook provider", name, p.secrets) for name, p in self.providers.items()))
        return self


class PartnerProducer(BaseModel):
    """A partner publishing to leads.inbound.v1 (decision 0098): the secrets it signs with, the accounts it serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Two at once while a secret is rotated: the new one first, the old one until the partner switched.
    secrets: list[SecretStr] = Field(min_length=1, max_length=2)
    accounts: list[AccountId | Literal["*"]] = Field(
        min_length=1, max_length=10_000, description='Accounts it may publish leads for; ["*"]: every account.'
    )

    @model_validator(mode="after")
    def _any_alone(self) -> Self:
        if ANY_ACCOUNT in self.accounts and len(self.accounts) > 1:
            raise ValueError('accounts: "*" (every account) stands alone')
        return self

    def keys(self) -> PartnerKeys:
        return PartnerKeys(
            secrets=tuple(s.get_secret_value().encode() for s in self.secrets), accounts=frozenset(self.accounts)
        )


class PartnerSettings(BaseModel):
    """Partners' signed messages on leads.inbound.v1 (decision 0098)."""

    model_config = ConfigDict(frozen=True)

    producers: dict[PartnerName, PartnerProducer] = Field(
        default_factory=dict,
        description="The partners by the name their messages give in payload.source.partner, as one JSON object: "
        '{"<name>": {"secrets": ["<new>", "<old while rotating>"], "accounts": ["<account id>", ...] or ["*"]}}; '
        "secrets of 32+ characters in production, each partner's its own (shared with no other partner or webhook "
        "provider). Empty in development: the embedded stack's demo partner.",
    )
    unsigned: Literal["refuse", "accept"] = Field(
        default="refuse",
        description="A message without a leadflow-signature header: refused (dead-lettered with the reason), or "
        "accepted for any account as before decision 0098, e.g. while a partner moves to signing. Accepting lets "
        "anyone who may write the topic publish leads for every account.",
    )

    @model_validator(mode="after")
    def _own_secrets(self) -> Self:
        # A secret two partners share lets each sign as the other (and for the other's accounts).
        _refuse_shared_secrets(*(("partner", name, p.secrets) for name, p in self.producers.items()))
        return self


def _refuse_shared_secrets(*owners: tuple[str, str, Sequence[SecretStr]]) -> None:
    """ValueError naming two owners (kind, name) that share a secret, never the secret: each needs its own."""
    seen: dict[str, tuple[str, str]] = {}
    for kind, name, secrets in owners:
        for secret in secrets:
            if (first := seen.setdefault(secret.get_secret_value(), (kind, name))) != (kind, name):
                both = (
                    f"{kind}s {first[1]} and {name}" if first[0] == kind else f"{first[0]} {first[1]} and {kind} {name}"
                )
                raise ValueError(f"{both} share a secret: each needs its own")


def _development_partners() -> Mapping[str, PartnerProducer]:
    secret = [SecretStr(DEVELOPMENT_SECRET)]
    return MappingProxyType({"homefinder": PartnerProducer(secrets=secret, accounts=[ANY_ACCOUNT])})


def _development_providers() -> Mapping[str, WebhookProvider]:
    secret = [SecretStr(DEVELOPMENT_SECRET)]
    return MappingProxyType(
        {
            "demo-generic": WebhookProvider(format="generic", secrets=secret, source_name="Demo lead provider"),
            "demo-fub": WebhookProvider(format="fub-events", secrets=secret, source_name="Demo IDX site"),
            "demo-portal": WebhookProvider(format="portal-push", secrets=secret, source_name="Demo listing portal"),
        }
    )


class IntakeSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "intake"
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_nested_delimiter="__", extra="ignore", frozen=True)

    http: HttpSettings = HttpSettings(port=8001)
    default_region: str = Field(
        default="US", min_length=2, max_length=2,
        description="Region of phone numbers without a country code, for accounts that set none.",
    )  # fmt: skip
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=1024 * 1024, description="Request bodies beyond this are refused with 413, "
        "and partners' records on leads.inbound.v1 beyond it are dead-lettered.",
    )  # fmt: skip
    consumer_group: str = Field(
        default="leadflow-intake", description="Consumer groups are <this>.<topic>; a new name starts from the "
        "topic's earliest offset.",
    )  # fmt: skip
    consume_inbound: bool = Field(
        default=True, description="Consume partners' leads.inbound.v1; false runs an HTTP-only replica (e.g. to "
        "scale the web path apart from the Kafka consumer).",
    )  # fmt: skip
    account_cache_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="How long an account's existence and phone region are "
        "reused before it is read again.",
    )  # fmt: skip
    webhooks: WebhookSettings = WebhookSettings()
    partners: PartnerSettings = PartnerSettings()
    idempotency_days: int = Field(
        default=7,
        ge=1,
        le=90,
        description="How long an Idempotency-Key is remembered: a retry within it gets the same event; MongoDB then "
        "deletes the record (a TTL index).",
    )

    @model_validator(mode="after")
    def _no_secret_shared_by_a_provider_and_a_partner(self) -> Self:
        # Each signer has its own secret, whichever way in it signs for (decisions 0008, 0098); the development
        # defaults (one demo secret for every demo provider and partner) are not settings and are not checked.
        _refuse_shared_secrets(
            *(("webhook provider", name, p.secrets) for name, p in self.webhooks.providers.items()),
            *(("partner", name, p.secrets) for name, p in self.partners.producers.items()),
        )
        return self

    @model_validator(mode="after")
    def _real_secrets_in_production(self) -> Self:
        if self.environment != "production":
            return self
        configured = (
            *((f"INTAKE_WEBHOOKS__PROVIDERS[{name}] secret", p.secrets) for name, p in self.webhooks.providers.items()),
            *((f"INTAKE_PARTNERS__PRODUCERS[{name}] secret", p.secrets) for name, p in self.partners.producers.items()),
        )
        for label, secrets in configured:
            for secret in secrets:
                require_secret(secret, label, self.environment)
                value = secret.get_secret_value()
                if value == DEVELOPMENT_SECRET or len(value) < MIN_SECRET_LENGTH:
                    raise ValueError(f"{label} must be a random secret of at least {MIN_SECRET_LENGTH} characters")
        return self

    def webhook_providers(self) -> Mapping[str, WebhookProvider]:
        """The configured providers; in development, with none configured, the embedded stack's demo ones."""
        if not self.webhooks.providers and self.environment == "development":
            return _development_providers()
        return self.webhooks.providers

    def partner_keys(self) -> Mapping[str, PartnerKeys]:
        """The configured partners' keys; in development, with none configured, the embedded stack's demo one."""
        producers = self.partners.producers
        if not producers and self.environment == "development":
            producers = dict(_development_partners())
        return MappingProxyType({name: producer.keys() for name, producer in producers.items()})
