"""Partners' signatures on leads.inbound.v1: which partner sent a message, and for which accounts it may.

Kafka's ACLs say who may write the topic, not for which account: any partner with write access could
otherwise publish leads into every brokerage's account (decision 0098). So each message carries
`leadflow-signature: kafka-v1=<hex>`, HMAC-SHA256 with the partner's secret over everything that
identifies it, three fields and the raw value joined by newlines:

    kafka-v1
    <topic>
    <record key as lowercase hex; nothing when the record has no key>
    <the record's value, as sent>

The value names the account (`account_id`), the lead (`event_id`) and the partner
(`payload.source.partner`, whose secret is the one checked), so a signature made for one account,
topic, key or body holds for no other, and a partner cannot sign as another. A signed message
replayed unchanged is the same lead (the event id's idempotency, decision 0024); nothing else of the
message can change without its signature failing. Two secrets may be valid at once (rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from leadflow_shared.errors import PoisonMessage

SCHEME = "kafka-v1"
HEADER = "leadflow-signature"
ANY_ACCOUNT = "*"
_SIGNATURE = re.compile(r"^kafka-v1=([0-9a-f]{64})$")
# Checked against when the partner is unknown, so an unknown partner takes as long as a bad signature.
_DUMMY_SECRET = b"\x00" * 32


class PartnerRefused(PoisonMessage):
    """Why a partner's message is not taken: a dead-letter reason naming fields, never values."""


@dataclass(frozen=True, slots=True)
class PartnerKeys:
    """One partner as configured: its secrets (the new one first while rotating) and its accounts."""

    secrets: Sequence[bytes]
    accounts: Collection[str]  # ANY_ACCOUNT alone: every account of the deployment

    def may_publish_for(self, account_id: str) -> bool:
        return ANY_ACCOUNT in self.accounts or account_id in self.accounts


def signed_text(topic: str, key: bytes | None, value: bytes) -> bytes:
    """The exact bytes a partner signs. The topic is a Kafka topic name ([a-zA-Z0-9._-]) and the key is
    hex, so no field can hold a newline and the text splits back into exactly one set of fields."""
    return f"{SCHEME}\n{topic}\n{(key or b'').hex()}\n".encode("ascii") + value


def sign(secret: bytes, topic: str, key: bytes | None, value: bytes) -> str:
    """The `leadflow-signature` header value of a record (examples/partner_producer/ does the same)."""
    return f"{SCHEME}={hmac.new(secret, signed_text(topic, key, value), hashlib.sha256).hexdigest()}"


def check(
    partner: PartnerKeys | None,
    *,
    account_id: str,
    signature: str | None,
    topic: str,
    key: bytes | None,
    value: bytes,
) -> None:
    """Raise PartnerRefused unless `signature` is the named partner's signature of the record and the
    partner may publish for `account_id`; `partner` None: the message names a partner not configured."""
    found = _SIGNATURE.match((signature or "").strip().lower())
    if found is None:
        raise PartnerRefused(f"{HEADER}: missing or not of the form {SCHEME}=<64 hex digits> (a partner signs "
                             "every message, docs/partner-contract/README.md)")  # fmt: skip
    text = signed_text(topic, key, value)
    expected = found.group(1).encode()
    matched = False
    for secret in partner.secrets if partner is not None else (_DUMMY_SECRET,):
        matched |= hmac.compare_digest(hmac.new(secret, text, hashlib.sha256).hexdigest().encode(), expected)
    if partner is None:
        raise PartnerRefused("payload.source.partner: not a partner configured for this deployment")
    if not matched:
        raise PartnerRefused(f"{HEADER}: does not match the message (topic, key and value) under the partner's "
                             "secrets")  # fmt: skip
    if not partner.may_publish_for(account_id):
        raise PartnerRefused("account_id: the partner may not publish leads for this account")
