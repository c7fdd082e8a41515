"""`ops_replays`: which dead letters were replayed, when, by whom and to where (decision 0044).

One document per dead letter, `_id` = `<dlq topic>/<partition>:<offset>#<fingerprint>` (`DeadLetter.ident`):
its coordinates and a hash of its key, body and headers, so another message at the same coordinates (a
dead-letter topic recreated to empty it starts again at offset 0) is another dead letter (decision 0091).
It is written after the broker acknowledged the replayed record, so `replay` never republishes a dead
letter it recorded.

Documents written before 0091 have the coordinates alone as `_id`. One still names the dead letter at those
coordinates if that was written before the replay was recorded and has the event id recorded: a message
dead-lettered at reused coordinates was written after the topic was recreated, so after that replay.
A run that dies between the two leaves the dead letter unrecorded and it is published again by
the next run: harmless, because consumers deduplicate by event id and the notifier reopens a
failed delivery once per dead letter (the replay marker), not once per copy.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_ops.dead_letters import DeadLetter, ListedLetter
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import OPS_REPLAYS


def operator() -> str:
    """Who runs the command, for the record: `user@host`."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# Dead letters asked about per query: two ids each (`ident` and the legacy `ref`), about 100 bytes apiece, so a
# query stays near 1 MiB, far under MongoDB's 16 MiB command limit whatever the topic holds.
LOOKUP_CHUNK = 5_000


class ReplayLedger:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._replays = db[OPS_REPLAYS]

    async def replayed(self, letters: Sequence[DeadLetter | ListedLetter]) -> dict[str, dict[str, Any]]:
        """The ledger's documents of these dead letters (those replayed before), by `DeadLetter.ref`."""
        done: dict[str, dict[str, Any]] = {}
        for at in range(0, len(letters), LOOKUP_CHUNK):
            done |= await self._replayed(letters[at : at + LOOKUP_CHUNK])
        return done

    async def _replayed(self, letters: Sequence[DeadLetter | ListedLetter]) -> dict[str, dict[str, Any]]:
        ids = [letter.ident for letter in letters] + [letter.ref for letter in letters]
        found = {str(d["_id"]): d async for d in self._replays.find({"_id": {"$in": ids}})}
        done = {}
        for letter in letters:
            doc = found.get(letter.ident) or found.get(letter.ref)
            if doc is not None and (doc["_id"] == letter.ident or _names(doc, letter)):
                done[letter.ref] = doc
        return done

    async def record(self, letter: DeadLetter, *, to: str, at: datetime, by: str) -> bool:
        """Record a replay; False if another run recorded this dead letter first."""
        summary = letter.summary()
        doc = {
            "_id": letter.ident,
            "dead_letter": letter.ref,
            "fingerprint": letter.fingerprint,
            "written_ms": letter.timestamp_ms,
            "dlq_topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "source_topic": letter.source_topic,
            "service": summary["service"],
            "channel": summary["channel"],
            "recipient": summary["recipient"],
            "event_id": summary["event_id"],
            "event_type": summary["event_type"],
            "replayed_to": to,
            "replayed_at": at,
            "replayed_ms": epoch_ms(at),
            "by": by,
        }
        try:
            await self._replays.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True


def _names(legacy: dict[str, Any], letter: DeadLetter | ListedLetter) -> bool:
    """Whether a document written before decision 0091 (`_id` the coordinates alone) names `letter`: the dead
    letter at those coordinates then was written before that replay, and had the same event id."""
    replayed_ms = legacy.get("replayed_ms")
    ids = letter.envelope_ids()
    same_event = legacy.get("event_id") == (ids[0] if ids else None)
    return isinstance(replayed_ms, int) and letter.timestamp_ms <= replayed_ms and same_event
