"""Idempotency key spaces: each way in has its own, so no caller's key can reach another way's.

A stored key is `<space>/<account_id>/<key>`. The space is chosen by the code path that received
the request (the route or the Kafka consumer), never read from the request, and neither the space
nor the account id can hold a "/": the first two "/" always end them, whatever the key holds. So two
different (space, account, key) never share an id, e.g. a form's key "webhook:homefinder:k" or
"inbound:<event id>" is only ever a form key (docs/decisions/0024).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # settings.ProviderName
_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # fields.AccountId


class Way(StrEnum):
    WEBSITE = "website"
    LISTING_INQUIRY = "listing-inquiry"
    WEBHOOK = "webhook"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class KeySpace:
    way: Way
    provider: str | None = None  # webhooks only: one space per provider

    def __post_init__(self) -> None:
        if (self.way is Way.WEBHOOK) != (self.provider is not None):
            raise ValueError("a webhook key space names its provider; no other space does")
        if self.provider is not None and not _PROVIDER.match(self.provider):
            raise ValueError("provider names are [a-z0-9-], starting with a letter or digit")

    def __str__(self) -> str:
        return f"{self.way}.{self.provider}" if self.provider else str(self.way)


WEBSITE = KeySpace(Way.WEBSITE)
LISTING_INQUIRY = KeySpace(Way.LISTING_INQUIRY)
PARTNER = KeySpace(Way.PARTNER)


def webhook(provider: str) -> KeySpace:
    return KeySpace(Way.WEBHOOK, provider)


def stored_key(space: KeySpace, account_id: str, key: str) -> str:
    """The id of `key` in `space` for `account_id`: distinct for every distinct triple."""
    if not _ACCOUNT.fullmatch(account_id):  # `$` would let a final newline through
        raise ValueError("account ids are [A-Za-z0-9_.-]")
    return f"{space}/{account_id}/{key}"
