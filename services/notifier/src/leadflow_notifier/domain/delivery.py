"""One delivery: a message for one recipient on one channel, and what its dead letter needs.

The delivery log keeps it while it is pending, so any notifier process can finish it after the
one that started it died (decision 0021).
"""

from __future__ import annotations

from dataclasses import dataclass

from leadflow_notifier.domain.messages import Content
from leadflow_notifier.domain.preferences import Channel


def delivery_key(event_id: object, channel: Channel, agent_id: str) -> str:
    """The N3 key: at most one delivery per (event, channel, recipient); also the Message-ID's seed."""
    return f"{event_id}:{channel}:{agent_id}"


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
    drives: int = 1  # how many times a process started it, this one included
