"""Webhook signatures, scheme v2: HMAC-SHA256 over everything that identifies the request.

The signed text is six fields joined by newlines, the raw body last (docs/decisions/0024):

    v2
    <timestamp: Unix seconds>
    POST
    /v1/accounts/<account_id>/webhooks/<provider>
    <Idempotency-Key header value, or nothing when the header is absent>
    <raw body bytes>

None of the first five can hold a newline (digits, a method, ids restricted to [A-Za-z0-9_.-],
a key restricted to printable ASCII), so the text splits back into exactly one set of fields:
a signature made for one account, provider, key or body holds for no other. The timestamp bounds
the replay window; within it a replay is the same request and idempotency makes it the same lead.
Two secrets may be valid at once, so a provider's secret can be rotated without downtime (0008).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from leadflow_intake.domain.errors import Unauthorized

SCHEME = "v2"
TIMESTAMP_HEADER = "X-Leadflow-Timestamp"
SIGNATURE_HEADER = "X-Leadflow-Signature"
WEBHOOK_PATH = "/v1/accounts/{account_id}/webhooks/{provider}"
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_SIGNATURE = re.compile(r"^v2=([0-9a-f]{64})$")
_FIELD = re.compile(r"^[\x20-\x7e]*$")  # printable ASCII: no newline can split or shift a field
# Checked against when the provider is unknown, so an unknown provider takes as long as a bad signature.
_DUMMY_SECRET = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The parts of a webhook request its signature covers, besides the timestamp."""

    method: str
    path: str  # WEBHOOK_PATH filled in: account and provider as plain text, no query string
    idempotency_key: str | None
    body: bytes


def webhook_path(account_id: str, provider: str) -> str:
    return WEBHOOK_PATH.format(account_id=account_id, provider=provider)


def signed_text(timestamp: int, request: SignedRequest) -> bytes:
    """The exact bytes a provider signs; ValueError if a field could smuggle in a newline."""
    fields = (SCHEME, str(timestamp), request.method, request.path, request.idempotency_key or "")
    if not all(_FIELD.fullmatch(field) for field in fields):  # `$` would let a final newline through
        raise ValueError("signed header fields must be printable ASCII")
    return "\n".join(fields).encode("ascii") + b"\n" + request.body


def sign(secret: bytes, timestamp: int, request: SignedRequest) -> str:
    """The X-Leadflow-Signature value for `request` sent at `timestamp` (Unix seconds)."""
    return f"{SCHEME}={hmac.new(secret, signed_text(timestamp, request), hashlib.sha256).hexdigest()}"


def verify(
    *,
    secrets: Sequence[bytes] | None,
    timestamp: str | None,
    signature: str | None,
    request: SignedRequest,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Raise Unauthorized unless `signature` is one of `secrets`' signatures of `request` at a timestamp
    within `tolerance_seconds` of `now`; `secrets` None means the provider is unknown."""
    ts = _TIMESTAMP.match(timestamp or "")
    sig = _SIGNATURE.match((signature or "").strip().lower())
    if ts is None or sig is None:
        raise Unauthorized("missing")
    try:
        text = signed_text(int(ts.group(0)), request)
    except ValueError:
        raise Unauthorized("malformed") from None
    expected = sig.group(1).encode()
    matched = False
    for secret in secrets or (_DUMMY_SECRET,):
        candidate = hmac.new(secret, text, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(candidate, expected)
    if secrets is None:
        raise Unauthorized("provider")
    if not matched:
        raise Unauthorized("mismatch")
    if abs(now - int(ts.group(0))) > tolerance_seconds:
        raise Unauthorized("stale")
