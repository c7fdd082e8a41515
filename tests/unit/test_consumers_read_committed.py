"""Every leadflow consumer skips the records of an aborted Kafka transaction (helper 170's review).

`leads.inbound.v1` is written by partners' own producers, and the contract forbids none a transaction: a partner's
exactly-once pipeline (consume, transform, produce in one transaction) aborts whenever it fails half-way and does
the work again, with a new random event id as the contract asks. Kafka keeps an aborted transaction's records in
the log, marked aborted; only a consumer reading `read_committed` skips them. With aiokafka's default,
`read_uncommitted`, intake took the aborted record as a lead and the retried one as a second, and took a lead the
partner withdrew by aborting.

Checked on the consumers the services build, not on the wire: the embedded broker (Tansu 0.6) has no
InitProducerId, so no transactional producer can run here (`AIOKafkaProducer(transactional_id=...)` fails at
`start()` with `UnknownError`, a raw transactional batch is refused with `UnknownProducerId`).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from leadflow_crm_api.bootstrap import create_app as crm_api
from leadflow_crm_api.settings import CrmApiSettings
from leadflow_intake.bootstrap import create_app as intake
from leadflow_intake.settings import IntakeSettings
from leadflow_notifier.bootstrap import create_app as notifier
from leadflow_notifier.settings import NotifierSettings
from leadflow_router.bootstrap import create_app as router
from leadflow_router.settings import RouterSettings
from leadflow_shared import topics

pytestmark = pytest.mark.unit


def _apps() -> dict[str, FastAPI]:
    return {
        "intake": intake(IntakeSettings.model_validate({"consume_inbound": True})),
        "router": router(RouterSettings()),
        "notifier": notifier(NotifierSettings()),
        "crm-api": crm_api(CrmApiSettings()),
    }


def _isolation(subscriber: Any) -> object:
    return subscriber._connection_args.get("isolation_level")  # FastStream keeps aiokafka's consumer arguments here


def test_every_consumer_of_every_service_reads_committed_records_only() -> None:
    seen: set[str] = set()
    for service, app in _apps().items():
        subscribers = list(app.state.runtime.broker.subscribers)
        assert subscribers, f"{service} consumes"
        for subscriber in subscribers:
            seen.update(subscriber.topic_names)
            assert _isolation(subscriber) == "read_committed", (
                f"{service} consumes {subscriber.topic_names} with isolation_level={_isolation(subscriber)!r}: a "
                "record of a transaction its producer aborted is taken as a message"
            )
    assert topics.LEADS_INBOUND in seen, "the partners' topic among them"
