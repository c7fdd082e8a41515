"""The envelope every leadflow message travels in (DESIGN section 2).

The event id is the idempotency key: consumers record it and ignore a second
delivery. Concrete events subclass `Envelope`, pin `type` to a literal and give
`payload` its own model.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

# Namespace for deterministic event ids derived from an input event (uuid5), so a
# redelivered input produces an output with the same id instead of a new one.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c7c7e-4a61-4a8e-9a53-6a3f2b1d9e10")


class Contract(BaseModel):
    """Base of every wire model: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Envelope(Contract):
    """Fields common to every message on every topic."""

    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID = Field(description="Unique id of this event; the idempotency key.")
    type: str = Field(description="Event or command type, e.g. LeadReceived.")
    schema_version: int = Field(default=1, ge=1, description="Version of the payload schema.")
    account_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Brokerage account the event belongs to; also the Kafka key.",
        examples=["acme-realty"],
    )
    occurred_at: AwareDatetime = Field(description="When it happened, UTC, ISO 8601.")
    correlation_id: uuid.UUID = Field(description="Id shared by every event caused by the same original input.")
    payload: Any

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+01:00: no UTC value; a ValueError names the field
            raise ValueError("the time has no UTC value (out of range)") from exc

    @classmethod
    def create(
        cls,
        *,
        account_id: str,
        payload: Any,
        occurred_at: datetime,
        correlation_id: uuid.UUID | None = None,
        event_id: uuid.UUID | None = None,
    ) -> Self:
        """Build an event; ids default to fresh UUIDs (correlation = own id)."""
        event_id = event_id or uuid.uuid4()
        return cls(
            event_id=event_id,
            type=cls.model_fields["type"].default,
            schema_version=cls.SCHEMA_VERSION,
            account_id=account_id,
            occurred_at=occurred_at,
            correlation_id=correlation_id or event_id,
            payload=payload,
        )

    def kafka_key(self) -> bytes:
        return self.account_id.encode()


def derived_event_id(source_event_id: uuid.UUID, purpose: str) -> uuid.UUID:
    """A stable id for the event `purpose` caused by `source_event_id`."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{source_event_id}:{purpose}")
