"""A dead letter of the notifier replayed by an operator: which failed deliveries to attempt again (decision 0044).

`leadflow-ops dlq replay` puts a dead letter back on its source topic with the original event
and `leadflow-replay*` headers. When those name the notifier as the service that failed, the
failed deliveries of that event (of one channel and recipient, when the dead letter named them)
are attempted again. A replay of another service's dead letter is an ordinary redelivery here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from leadflow_shared.replay import REPLAY, REPLAY_CHANNEL, REPLAY_RECIPIENT, REPLAY_SERVICE

SERVICE = "notifier"  # the `dlq-service` of the notifier's dead letters


@dataclass(frozen=True, slots=True)
class Replay:
    marker: str  # "<dlq topic>/<partition>:<offset>#<fingerprint>" (decision 0091): each reopens a delivery once
    channel: str | None = None  # None: every channel
    recipient: str | None = None  # None: every recipient

    @property
    def names_delivery(self) -> bool:
        """Whether the dead letter was one delivery's (the notifier's own names its channel and recipient): then that
        delivery alone is attempted again; else (an event the consumers' edge dead-lettered) the event is read as
        a redelivery, its failed deliveries reopened (decision 0044, amended in session 32)."""
        return self.channel is not None or self.recipient is not None

    def covers(self, channel: str, agent_id: str) -> bool:
        return self.channel in (None, channel) and self.recipient in (None, agent_id)


def replay_of(headers: Mapping[str, str]) -> Replay | None:
    """The replay a record's headers ask the notifier for, or None (not a replay, or another service's)."""
    marker = headers.get(REPLAY)
    if not marker or headers.get(REPLAY_SERVICE) != SERVICE:
        return None
    return Replay(marker, headers.get(REPLAY_CHANNEL) or None, headers.get(REPLAY_RECIPIENT) or None)
