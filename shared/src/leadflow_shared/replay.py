"""Headers of a dead letter put back on its source topic by `leadflow-ops dlq replay` (decision 0044).

A replayed record carries the original key and body. The dead letter's `dlq-*` headers are
dropped and these are added, so a consumer can tell a replay from an ordinary redelivery:
every consumer still deduplicates it by event id, and the service named in REPLAY_SERVICE
(the one whose failure is being retried) may undo that failure (the notifier re-attempts a
failed delivery).
"""

from __future__ import annotations

from typing import Final

# "<dlq topic>/<partition>:<offset>#<fingerprint>": the dead letter this record replays; unique per dead letter,
# also once a `.dlq` topic is recreated and its offsets start again (decision 0091).
REPLAY: Final = "leadflow-replay"
# The service that dead-lettered it (its `dlq-service`): the one whose failure is retried.
REPLAY_SERVICE: Final = "leadflow-replay-service"
# The notifier's dead letters name the one delivery that failed: its channel and recipient.
REPLAY_CHANNEL: Final = "leadflow-replay-channel"
REPLAY_RECIPIENT: Final = "leadflow-replay-recipient"
# Every header a replay sets; a dead letter of a replay carries them along, and its own replay replaces them.
REPLAY_HEADERS: Final = (REPLAY, REPLAY_SERVICE, REPLAY_CHANNEL, REPLAY_RECIPIENT)
