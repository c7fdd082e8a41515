"""`ops_replays`: which dead letters were replayed, when, by whom and to where (decision 0044).

One document per dead letter, `_id` = `<dlq topic>/<partition>:<offset>`. It is written after the
broker acknowledged the replayed record, so `replay` never republishes a dead letter it recorded.
A run that dies between the two leaves the dead letter unrecorded and it is published again by
the next run: harmless, because consumers deduplicate by event id and the notifier reopens a
failed delivery once per dead letter (the replay marker), not once per copy.
"""

from __future__ import annotations

import getpass
import socket
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from leadflow_ops.dead_letters import DeadLetter
from leadflow_shared.clock import epoch_ms
from leadflow_shared.collections import OPS_REPLAYS


def operator() -> str:
    """Who runs the command, for the record: `user@host`."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ReplayLedger:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._replays = db[OPS_REPLAYS]

    async def replayed(self, refs: list[str]) -> dict[str, dict[str, Any]]:
        """The ledger's documents of these dead letters (those replayed before)."""
        if not refs:
            return {}
        return {str(d["_id"]): d async for d in self._replays.find({"_id": {"$in": refs}})}

    async def record(self, letter: DeadLetter, *, to: str, at: datetime, by: str) -> bool:
        """Record a replay; False if another run recorded this dead letter first."""
        summary = letter.summary()
        doc = {
            "_id": letter.ref,
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
