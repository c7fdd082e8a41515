"""Intake use cases: normalize, de-duplicate by idempotency key, publish LeadReceived.

Exceptions, translated to HTTP at the edge (entrypoints):
    IntakeError
    ├── InvalidField        -> 422, names the field
    └── IdempotencyConflict -> 409, a key reused for a different request
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from leadflow_intake.adapters.idempotency import Claim, IdempotencyStore
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.domain.normalize import normalize_phone
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import PublishRaw


class IntakeError(Exception):
    """Base of intake's request errors."""


class InvalidField(IntakeError):  # noqa: N818 (reads as the condition it reports)
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IdempotencyConflict(IntakeError):  # noqa: N818
    """The idempotency key was already used for a different request."""


async def accept_website_lead(
    form: WebsiteLeadIn,
    *,
    idempotency_key: str | None,
    store: IdempotencyStore,
    publish: PublishRaw,
    default_region: str,
    now: datetime,
) -> uuid.UUID:
    """Publish the lead once per idempotency key; returns its event id."""
    try:
        phone = normalize_phone(form.phone, default_region) if form.phone else None
    except ValueError as exc:
        raise InvalidField("phone", str(exc)) from exc
    event = LeadReceived.create(account_id=form.account_id, payload=form.to_payload(phone), occurred_at=now)
    if idempotency_key is None:
        await publish(form.account_id, event.model_dump_json().encode())
        return event.event_id
    request_hash = hashlib.sha256(form.model_dump_json().encode()).hexdigest()
    claim = await store.claim(
        form.account_id,
        idempotency_key,
        Claim(event.event_id, request_hash, event.model_dump_json(), published=False),
    )
    if claim.request_hash != request_hash:
        raise IdempotencyConflict("Idempotency-Key was already used with a different request body")
    if not claim.published:
        await publish(form.account_id, claim.event_json.encode())
        await store.mark_published(form.account_id, idempotency_key)
    return claim.event_id
