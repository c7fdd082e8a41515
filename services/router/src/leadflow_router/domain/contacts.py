"""Contact keys (R1): how a lead's email and phone are indexed within its account. Pure, no I/O."""

from __future__ import annotations

import hashlib
from datetime import timedelta

# How long an erased contact's keys are remembered (decision 0106): past the retention of every topic an inquiry can
# be replayed from (dead-letter topics, 30 days), so no inquiry made before the erasure is routed after it.
ERASED_KEEP = timedelta(days=31)


def contact_keys(account_id: str, email: str | None, phone: str | None) -> list[str]:
    """The index keys of a contact's email and phone in `account_id` (normalized by intake)."""
    return [f"{account_id}:{kind}:{value}" for kind, value in (("email", email), ("phone", phone)) if value]


def in_account(key: str, account_id: str) -> str:
    """The same email or phone as a key of another account (account ids hold no ':')."""
    return f"{account_id}:{key.split(':', 1)[1]}"


def erased_id(key: str) -> str:
    """The contact index's mark that `key`'s contact was erased: the key's SHA-256, never the email or phone."""
    return "erased:" + hashlib.sha256(key.encode()).hexdigest()


def made_before_erasure(keys: list[str], made_ms: int, erased_ms: dict[str, int]) -> bool:
    """Whether an inquiry made at `made_ms` with these contact keys was made before one of them was erased (an
    erasure's `erased_ms`, by erased id): the person asked to be forgotten after it, so it is not routed. One made
    in the erasure's own millisecond counts as after it."""
    return any(made_ms < erased_ms.get(erased_id(key), made_ms) for key in keys)
