"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<raw body>" with the provider's secret.

Signing the timestamp with the body is what makes the replay window hold: a captured request
cannot be given a fresh timestamp without the secret. Two secrets may be valid at once, so a
provider's secret can be rotated without downtime (docs/decisions/0008-webhook-authentication.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from leadflow_intake.domain.errors import Unauthorized

TIMESTAMP_HEADER = "X-Leadflow-Timestamp"
SIGNATURE_HEADER = "X-Leadflow-Signature"
_TIMESTAMP = re.compile(r"^\d{1,12}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-f]{64})$")
# Checked against when the provider is unknown, so an unknown provider takes as long as a bad signature.
_DUMMY_SECRET = b"\x00" * 32


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Leadflow-Signature value for `body` sent at `timestamp` (Unix seconds)."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    *,
    secrets: Sequence[bytes] | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Raise Unauthorized unless `signature` is one of `secrets`' signatures of `body` at a timestamp
    within `tolerance_seconds` of `now`; `secrets` None means the provider is unknown."""
    ts = _TIMESTAMP.match(timestamp or "")
    sig = _SIGNATURE.match((signature or "").strip().lower())
    if ts is None or sig is None:
        raise Unauthorized("missing")
    expected = sig.group(1).encode()
    matched = False
    for secret in secrets or (_DUMMY_SECRET,):
        candidate = sign(secret, int(ts.group(0)), body).removeprefix("sha256=").encode()
        matched |= hmac.compare_digest(candidate, expected)
    if secrets is None:
        raise Unauthorized("provider")
    if not matched:
        raise Unauthorized("mismatch")
    if abs(now - int(ts.group(0))) > tolerance_seconds:
        raise Unauthorized("stale")
