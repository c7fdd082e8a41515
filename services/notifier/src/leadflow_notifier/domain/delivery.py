"""One delivery: a message for one recipient on one channel, and what its dead letter needs.

The delivery log keeps it while it is pending, so any notifier process can finish it after the
one that started it died (decision 0021).
"""

from __future__ import annotations

from dataclasses import dataclass

from leadflow_notifier.domain.messages import Content
from leadflow_notifier.domain.preferences import Channel


def delivery_key(event_id: object, channel: Channel, agent_id: str, device_id: str = "") -> str:
    """The N3 key: at most one delivery per (event, channel, recipient, and for push device); also the
    Message-ID's seed. The legacy push token (no device id) keeps the key it always had."""
    base = f"{event_id}:{channel}:{agent_id}"
    return f"{base}:{device_id}" if device_id else base


@dataclass(frozen=True, slots=True)
class Delivery:
    key: str
    channel: Channel
    agent_id: str
    account_id: str
    event_type: str  # for logs; "Digest" for a daily digest
    content: Content
    event: bytes | None = None  # the original event, for the dead letter; None: nothing to dead-letter
    occurred_ms: int | None = None  # the event's occurred_at (latency metric)
    drives: int = 1  # how many times a process started it since its last orderly end, this one included
    # A digest (no event): until when a transient failure leaves it pending for a later try (while its day's
    # digest is sendable: `DigestWindow.sendable_until_ms`).
    expires_ms: int | None = None
    postponed: int = 0  # how many times a transient failure left it pending for later
    lead_ids: tuple[str, ...] = ()  # the leads it is about, so erasing one ends it unsent (decision 0050)
    # A digest: built afresh from the kept items by each run, so one an erasure ended unsent may be begun again,
    # without the erased leads, under its key (`DeliveryLog.begin`, decision 0094). An event's delivery never is.
    again_after_erasure: bool = False


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A pending record the re-driver claimed but cannot rebuild (its message no longer reads)."""

    key: str
    channel: str
    account_id: str | None
    agent_id: str
    event: bytes | None  # the original event, if the record still has one: for the dead letter


# A digest left pending by a transient failure is tried again after 30 s, then 1 min, 2 min, ... up to
# 15 min between tries, until it is no longer sendable (`expires_ms`, decision 0088).
POSTPONE_FIRST_MS = 30_000
POSTPONE_MAX_MS = 15 * 60_000


def retry_at(*, now_ms: int, postponed: int, expires_ms: int | None) -> int | None:
    """When a delivery that failed transiently is tried again; None: give up (no deadline, or it passed)."""
    if expires_ms is None or now_ms >= expires_ms:
        return None
    backoff = min(POSTPONE_FIRST_MS << min(postponed, 16), POSTPONE_MAX_MS)
    return min(now_ms + backoff, expires_ms)
