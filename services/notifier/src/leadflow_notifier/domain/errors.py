"""Why a delivery failed, as the adapters report it to the handler.

    DeliveryError
    ├── PermanentDeliveryError   the provider refused it (4xx, 5xx SMTP reply): retrying cannot help
    └── TransientDeliveryError   outage, 5xx, timeout, rate limit: retry with backoff, then give up

`reason` is a short fixed token (a metric label and the DLQ header); `detail` is for operators
and never holds message content or addresses.
"""

from __future__ import annotations

UNREGISTERED = "unregistered"  # the push provider no longer knows the device: it is forgotten


class DeliveryError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PermanentDeliveryError(DeliveryError):
    """Do not retry: the request itself is wrong (bad number, unregistered token, auth refused)."""


class TransientDeliveryError(DeliveryError):
    """Retry later: the provider is down, slow or throttling; `retry_after`: the seconds it asked to wait, if any."""

    def __init__(self, reason: str, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after
