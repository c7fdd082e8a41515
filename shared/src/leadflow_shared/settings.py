"""Settings shared by every service: one typed class each, read from the environment.

Each service subclasses `ServiceSettings` with its own env prefix (INTAKE_, ROUTER_,
NOTIFIER_, CRM_API_); nested fields use "__", e.g. ROUTER_KAFKA__BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password"})


class KafkaSettings(BaseModel):
    """The Kafka client: brokers, transport security (decision 0027), the producer, the consumers' fetches and
    group membership, and the handlers' retries."""

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Brokers to connect to first (host:port, comma-separated). Required in "
        "production.",
        # No entry empty: "" or "," passed the production check and failed later, in the Kafka client, with a
        # traceback instead of the setting's name (helper 181's review).
        pattern=r"^\s*[^,\s]+(\s*,\s*[^,\s]+)*\s*$",
    )  # fmt: skip
    # The embedded Tansu broker has no InitProducerId (docs/decisions/0003-kafka-delivery.md), so the
    # embedded default and the tests switch it off.
    producer_idempotence: bool = Field(
        default=True, description="Idempotent producers (they need the broker's InitProducerId; off only for a "
        "broker without it, such as the embedded Tansu). acks=all stays on always.",
    )  # fmt: skip
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = Field(
        default="PLAINTEXT", description="TLS (SSL, SASL_SSL) and SASL authentication (SASL_*) to the brokers; "
        "settings that ask for either and cannot get it stop the service at start.",
    )  # fmt: skip
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="Required with SASL_PLAINTEXT and SASL_SSL, refused without them."
    )
    sasl_username: str | None = Field(default=None, description="The SASL user; required with SASL_*.")
    sasl_password: SecretStr | None = Field(default=None, description="The SASL user's password; required with SASL_*.")
    # TLS (SSL, SASL_SSL): the broker's certificate is verified against the system CAs or
    # `ssl_cafile`; `ssl_certfile`/`ssl_keyfile` add a client certificate (mutual TLS).
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) the broker's certificate is verified against; unset: the system "
        "CAs. TLS only.",
    )  # fmt: skip
    ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS; goes with ssl_keyfile. TLS only."
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="The client certificate's private key (PEM); goes with ssl_certfile. TLS only."
    )
    ssl_check_hostname: bool = Field(
        default=True, description="The broker's certificate must name the host connected to."
    )
    # Bursts of events (a routed batch) fill aiokafka's 16 KiB default at once and then wait for it to drain.
    producer_batch_bytes: int = Field(
        default=512 * 1024, ge=16 * 1024, le=8 * 1024 * 1024, description="Bytes per partition batch of the producer."
    )
    # The broker answers a waiting fetch as soon as one partition has data, so idle consumers wake seldom
    # at no cost in latency (decision 0052).
    fetch_wait_idle_ms: int = Field(
        default=500, ge=1, le=30_000, description="How long a fetch covering every assigned partition waits at the "
        "broker for data.",
    )  # fmt: skip
    # Kafka answers a waiting fetch as soon as data arrives, so there the longer wait costs no latency
    # and they fetch a quarter as often while idle (decision 0070).
    fetch_wait_idle_off_path_ms: int = Field(
        default=2_000, ge=1, le=30_000, description="The same, for the consumers off a new lead's way to its first "
        "notice (the router's activity and commands, crm-api's projection).",
    )  # fmt: skip
    fetch_wait_busy_ms: int = Field(
        default=20, ge=1, le=1_000, description="How long a fetch waits while a busy handler's partition is left "
        "out of it.",
    )  # fmt: skip
    # aiokafka's default; Kafka refuses less than its group.min.session.timeout.ms (6,000 by default). Tansu
    # also holds every join for half of it (decision 0073), so the embedded stack sets 6,000.
    session_timeout_ms: int = Field(
        default=10_000, ge=3_000, le=300_000, description="How long the consumer group waits for a silent member "
        "(a crashed replica) before it hands its partitions to the others; heartbeats go every third of it.",
    )  # fmt: skip
    handler_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts of a failing handler before the message is dead-lettered "
        "(transient errors only: invalid input goes straight to the dead-letter topic).",
    )  # fmt: skip
    retry_initial_seconds: float = Field(
        default=0.2, gt=0, le=60, description="A handler's first pause between attempts; it grows exponentially, "
        "with jitter.",
    )  # fmt: skip
    retry_max_seconds: float = Field(
        default=5.0, gt=0, le=300, description="A handler's longest pause between attempts."
    )
    graceful_timeout_seconds: float = Field(
        default=15.0, gt=0, le=600, description="On SIGTERM, how long the Kafka handlers have to finish and "
        "commit, after the HTTP drain.",
    )  # fmt: skip

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    @model_validator(mode="after")
    def _security_is_what_it_says(self) -> Self:
        """Settings that ask for encryption or authentication get it, or the service does not start."""
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(f"sasl_mechanism is set but security_protocol {self.security_protocol} sends no SASL")
        if not self.uses_tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(f"ssl_* files are set but security_protocol {self.security_protocol} is not TLS")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (a client certificate and its key)")
        return self


class MongoSettings(BaseModel):
    """The MongoDB client."""

    url: SecretStr = Field(
        default=SecretStr("mongodb://127.0.0.1:27017/?directConnection=true"),
        description="Connection string, `mongodb://` or `mongodb+srv://` (a replica set, with w=majority in "
        "production); may hold credentials. Required in production.",
    )
    database: str = Field(default="leadflow", description="The database every service shares.")
    timeout_ms: int = Field(
        default=5000, ge=100, le=600_000, description="How long the client waits to connect and to select a server."
    )


class HttpSettings(BaseModel):
    """The HTTP server (the service's API and /health, /metrics). Request deadlines: decision 0071."""

    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0 in a container).")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    # A client on a slow mobile link sends a lead form (a few KiB) in well under a second.
    head_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="A connection's request head (request line and headers) must be "
        "whole within this of the connection's opening or of its first byte after a response, else the "
        "connection is closed unanswered.",
    )  # fmt: skip
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="A request's whole body must arrive within this of its head, "
        "else 408.",
    )  # fmt: skip
    # Longer than the proxies and load balancers in front keep an idle connection (AWS's ALB and nginx 60 s): the side
    # that closes an idle connection must be theirs, else a request they send on one the service is closing at that
    # moment fails (a 502 at the proxy, a read error at a client; decision 0103).
    keep_alive_seconds: int = Field(
        default=75, ge=1, le=3600, description="A kept-alive connection that sends nothing after a response is "
        "closed after this. Keep it above the idle timeout of whatever is in front (a load balancer, a proxy).",
    )  # fmt: skip


class TracingSettings(BaseModel):
    """OpenTelemetry traces, exported over OTLP/HTTP (decision 0046). Off unless enabled."""

    enabled: bool = Field(default=False, description="Export traces.")
    endpoint: str | None = Field(
        default=None, description="The collector's traces URL (http://collector:4318/v1/traces). Unset: the "
        "standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces.",
    )  # fmt: skip
    service_name: str | None = Field(
        default=None, description="The traces' service name; unset: leadflow-<service>, like its Kafka client id."
    )
    sample_ratio: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share of new traces kept; a trace begun upstream follows its "
        "parent's decision.",
    )  # fmt: skip


class ServiceSettings(BaseSettings):
    """Base of every service's settings."""

    SERVICE_NAME: ClassVar[str] = "leadflow"

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = Field(
        default="development", description="production requires the Kafka and MongoDB addresses and real secrets, "
        "and refuses the development-only conveniences.",
    )  # fmt: skip
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Least level logged.")
    log_format: Literal["json", "text"] = Field(
        default="json", description="JSON lines for log collectors; text for a person reading a terminal."
    )
    kafka: KafkaSettings = KafkaSettings()
    mongo: MongoSettings = MongoSettings()
    http: HttpSettings = HttpSettings()
    tracing: TracingSettings = TracingSettings()

    @model_validator(mode="after")
    def _addresses_given_in_production(self) -> Self:
        """Production names its Kafka and MongoDB: the development defaults (this host) would leave
        a pod running that never becomes ready, instead of failing at start with the reason."""
        if self.environment == "production":
            prefix = self.model_config.get("env_prefix", "")
            if "bootstrap_servers" not in self.kafka.model_fields_set:
                raise ValueError(f"{prefix}KAFKA__BOOTSTRAP_SERVERS must be set in production")
            if "url" not in self.mongo.model_fields_set:
                raise ValueError(f"{prefix}MONGO__URL must be set in production")
        return self


def require_secret(value: SecretStr | None, name: str, environment: str) -> None:
    """Refuse a missing or placeholder secret in production."""
    if environment == "production" and (
        value is None or value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
    ):
        raise ValueError(f"{name} must be set to a real secret in production")
