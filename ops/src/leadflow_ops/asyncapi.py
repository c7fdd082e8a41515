"""The AsyncAPI document of every leadflow topic, generated from the four services' Kafka edges.

Each service's composition root is built as it would run (nothing connects): its typed subscribers
(`ServiceRuntime.subscribe`) and declared publishers (`ServiceRuntime.publisher`) are what FastStream
documents, so the document cannot say something the code does not do. docs/asyncapi.yaml is this
document; a test fails when it drifts (regenerate with `leadflow-ops asyncapi --out docs/asyncapi.yaml`).
The partner-facing contract of leads.inbound.v1 stays in docs/partner-contract/ (versioned, with
examples and a compatibility baseline).
"""

from __future__ import annotations

from typing import Any

import yaml
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from leadflow_crm_api.bootstrap import create_app as crm_api
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.bootstrap import create_app as intake
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.bootstrap import create_app as notifier
from leadflow_notifier.settings import NotifierSettings
from leadflow_router.bootstrap import create_app as router
from leadflow_router.settings import RouterSettings

VERSION = "1.0.0"
SERVER = "kafka:9092"  # a placeholder: each deployment names its own brokers
DESCRIPTION = (
    "The topics between leadflow's services (intake, router, notifier, crm-api) and partners. Every "
    "topic is keyed by the brokerage's account_id, so an account's messages keep their order; values "
    "are JSON, one event per message, each with an event_id its consumers deduplicate on. A consumer "
    "that cannot process a message sends it to the topic's `.dlq` with the reason in dlq-* headers."
)


def brokers() -> list[KafkaBroker]:
    """The four services' brokers with their subscribers and publishers, as each service declares them."""
    kafka: dict[str, Any] = {"kafka": {"bootstrap_servers": SERVER}}
    apps = [
        intake(IntakeSettings.model_validate(kafka)),
        router(RouterSettings.model_validate(kafka)),
        notifier(NotifierSettings.model_validate(kafka)),
        crm_api(CrmApiSettings.model_validate(kafka)),
    ]
    return [app.state.runtime.broker for app in apps]


def document() -> str:
    """The AsyncAPI 3 document as YAML, keys sorted: FastStream's order of publishers varies by process."""
    spec = AsyncAPI(*brokers(), title="leadflow", version=VERSION, description=DESCRIPTION, schema_version="3.0.0")
    return yaml.safe_dump(spec.to_specification().to_jsonable(), sort_keys=True, allow_unicode=True, width=100)
