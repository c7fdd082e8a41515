"""One-click accept links in offer notices (issue 11.6): short, signed, single use, ending with the offer.

A link names one offer by its id, derived from the `LeadOffered` event, so the notifier (which
signs it) and crm-api (which stores it with the offer, from the same event) agree without talking.
The token is that id and an HMAC-SHA256 of it under a key only they share (43 characters, short
enough for a text message). crm-api finds the offer by the id, checks it is still open, marks the
link used and claims for the offered agent (R8).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid

# Signs and verifies links only when environment=development and no key is set; refused elsewhere.
DEVELOPMENT_KEY = "leadflow-development-only-offer-link-key-not-a-secret"
MIN_KEY_BYTES = 32
_MAC_BYTES = 16  # 128 bits: forging one needs 2**128 tries
_CONTEXT = b"leadflow offer accept link v1\n"


class InvalidOfferLink(ValueError):  # noqa: N818 (a kind of link, named for what the caller reads)
    """Not a link of ours, or altered."""


def resolve_key(configured: str | None, environment: str, name: str) -> str:
    """The key links are signed and verified with: `configured`, or the development key when
    environment=development and none is set. ValueError (naming the setting) otherwise."""
    if configured is None:
        if environment == "development":
            return DEVELOPMENT_KEY
        raise ValueError(f"{name} must be set when environment={environment}")
    if environment == "production" and configured == DEVELOPMENT_KEY:
        raise ValueError(f"{name}: the development key is refused in production")
    if len(configured.encode()) < MIN_KEY_BYTES:
        raise ValueError(f"{name}: at least {MIN_KEY_BYTES} bytes (an HMAC key, RFC 2104)")
    return configured


def link_id_of(offer_event_id: uuid.UUID) -> str:
    """The link of one offer (one `LeadOffered` event): a redelivered event has the same link."""
    return str(uuid.uuid5(offer_event_id, "accept-link"))


def _mac(raw_id: bytes, key: str) -> bytes:
    return hmac.new(key.encode(), _CONTEXT + raw_id, hashlib.sha256).digest()[:_MAC_BYTES]


def token_for(link_id: str, key: str) -> str:
    raw = uuid.UUID(link_id).bytes
    return base64.urlsafe_b64encode(raw + _mac(raw, key)).decode().rstrip("=")


def link_id_from(token: str, key: str) -> str:
    """The link id the token carries; InvalidOfferLink unless it is exactly one of ours."""
    if not 40 <= len(token) <= 48 or not token.isascii():
        raise InvalidOfferLink("not an accept link")
    try:
        data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidOfferLink("not an accept link") from exc
    raw, mac = data[:16], data[16:]
    canonical = base64.urlsafe_b64encode(data).decode().rstrip("=") == token  # one spelling per link
    if len(data) != 16 + _MAC_BYTES or not canonical or not hmac.compare_digest(mac, _mac(raw, key)):
        raise InvalidOfferLink("not an accept link")
    return str(uuid.UUID(bytes=raw))
