"""Why intake refuses a lead; translated only at the edges (HTTP status, dead-letter reason).

IntakeError
├── InvalidLead             -> 422 / dead letter: fields and reasons, never values
├── InvalidBody             -> 422: a body that is not bounded JSON text or does not fit its model
├── UnsupportedContentType  -> 415: a form posted as something other than JSON
├── UnknownAccount          -> 422 / dead letter
├── IdempotencyConflict     -> 409 / dead letter: a key reused for a different request
└── Unauthorized            -> 401 with no detail: a webhook's signature, timestamp or provider is wrong
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class IntakeError(Exception):
    """Base of intake's refusals."""

    reason: str = "invalid"  # the metric label of this refusal


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str  # dotted path, e.g. "phone" or "payload.contact.phone"
    reason: str


class InvalidLead(IntakeError):  # noqa: N818 (reads as the condition it reports)
    reason = "invalid"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = errors


class InvalidBody(IntakeError):  # noqa: N818
    """`errors` are dicts of type, loc (relative to the body) and msg, like pydantic's without the input."""

    reason = "invalid"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} invalid fields")
        self.errors = errors


class UnsupportedContentType(IntakeError):  # noqa: N818
    reason = "invalid"

    def __init__(self) -> None:
        super().__init__("Content-Type must be application/json")


class UnknownAccount(IntakeError):  # noqa: N818
    reason = "unknown_account"

    def __init__(self) -> None:
        super().__init__("account_id: unknown account")


class IdempotencyConflict(IntakeError):  # noqa: N818
    reason = "conflict"


class Unauthorized(IntakeError):  # noqa: N818
    """The caller gets no detail; `why` ("missing", "stale", "mismatch", "provider") is for logs and tests."""

    reason = "unauthorized"

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why
