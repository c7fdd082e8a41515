"""Contact keys (R1): how a lead's email and phone are indexed within its account. Pure, no I/O."""

from __future__ import annotations


def contact_keys(account_id: str, email: str | None, phone: str | None) -> list[str]:
    """The index keys of a contact's email and phone in `account_id` (normalized by intake)."""
    return [f"{account_id}:{kind}:{value}" for kind, value in (("email", email), ("phone", phone)) if value]


def in_account(key: str, account_id: str) -> str:
    """The same email or phone as a key of another account (account ids hold no ':')."""
    return f"{account_id}:{key.split(':', 1)[1]}"
