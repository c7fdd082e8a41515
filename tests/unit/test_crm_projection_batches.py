"""How crm-api's consumer splits a batch: leads apart (each in order), an erasure alone between the rest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from leadflow_crm_api.entrypoints.kafka import Parsed, segments
from leadflow_shared.consumers import Incoming
from leadflow_shared.events.routing import (
    ContactErased,
    ContactErasedPayload,
    OfferClosedPayload,
    OfferExpired,
    RoutingEvent,
)

pytestmark = pytest.mark.unit

AT = datetime(2026, 11, 29, tzinfo=UTC)
A, B = uuid.uuid4(), uuid.uuid4()


def expired(lead: uuid.UUID) -> OfferExpired:
    return OfferExpired.create(
        account_id="acme", occurred_at=AT, payload=OfferClosedPayload(lead_id=lead, agent_id="ana", offer_round=1)
    )


def parsed(events: list[RoutingEvent]) -> list[Parsed]:
    return [(n, event, Incoming(b"", {})) for n, event in enumerate(events)]


def test_each_lead_keeps_its_order_and_an_erasure_stands_between_what_came_before_and_after() -> None:
    erased = ContactErased.create(
        account_id="acme", occurred_at=AT,
        payload=ContactErasedPayload(erasure_id=uuid.uuid4(), lead_ids=[A], by_user_id="bea", reason="T-1"),
    )  # fmt: skip
    runs = segments(parsed([expired(A), expired(B), expired(A), erased, expired(B)]))
    assert [{lead: [n for n, _, _ in items] for lead, items in run.items()} for run in runs] == [
        {str(A): [0, 2], str(B): [1]},
        {str(erased.event_id): [3]},
        {str(B): [4]},
    ]
