"""leadflow-ops settings: the services' Kafka and MongoDB settings, from variables prefixed OPS_.

`OPS_KAFKA__BOOTSTRAP_SERVERS`, `OPS_KAFKA__SECURITY_PROTOCOL`, `OPS_KAFKA__SASL_*`, `OPS_KAFKA__SSL_*`,
`OPS_MONGO__URL`, `OPS_MONGO__DATABASE`: the same fields, checks and TLS/SASL handling as the services'.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from leadflow_shared.settings import ServiceSettings


class OpsSettings(ServiceSettings):
    SERVICE_NAME: ClassVar[str] = "ops"
    model_config = SettingsConfigDict(env_prefix="OPS_", env_nested_delimiter="__", extra="ignore", frozen=True)
