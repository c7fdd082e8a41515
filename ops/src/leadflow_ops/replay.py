"""Replaying dead letters: each one back on its source topic, once (decision 0044).

A replayed record has the dead letter's key and body (the original ones), the original record's
headers as they came (in order, repeats and all; not leadflow's `dlq-*`), and `leadflow-replay*`
headers naming the dead letter and the service that failed it (leadflow_shared.replay). Dead letters
whose body, key or headers are not the original's, or that are no leadflow dead letter of this topic, are
refused; those in the ledger are skipped (the ledger knows a dead letter by its coordinates and content,
`DeadLetter.ident`: decision 0091).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from leadflow_ops.dead_letters import Coordinates, DeadLetter
from leadflow_ops.output import iso


class Status(StrEnum):
    REPLAYED = "replayed"
    WOULD_REPLAY = "would-replay"  # --dry-run
    ALREADY = "already-replayed"
    REFUSED = "refused"
    MISSING = "missing"  # no record at these coordinates (never was, or removed by retention)


@dataclass(frozen=True, slots=True)
class Outcome:
    ref: str
    status: Status
    detail: str = ""
    to: str | None = None  # where the replayed record landed: topic[partition]@offset
    event_id: str | None = None
    event_type: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dead_letter": self.ref,
            "status": str(self.status),
            "detail": self.detail,
            "replayed_to": self.to,
            "event_id": self.event_id,
            "event_type": self.event_type,
        }

    @property
    def ok(self) -> bool:
        """Done, or nothing to do: refused and missing dead letters need the operator."""
        return self.status not in (Status.REFUSED, Status.MISSING)


class Publisher(Protocol):
    async def publish(
        self, topic: str, *, key: bytes | None, value: bytes, headers: list[tuple[str, bytes | None]]
    ) -> str: ...


class Ledger(Protocol):
    async def replayed(self, letters: Sequence[DeadLetter]) -> dict[str, dict[str, Any]]: ...
    async def record(self, letter: DeadLetter, *, to: str, at: datetime, by: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Replayer:
    publisher: Publisher | None  # None: a dry run
    ledger: Ledger
    clock: Callable[[], datetime]
    operator: str

    async def run(
        self,
        topic: str,
        letters: Iterable[DeadLetter],
        missing: Iterable[Coordinates],
        report: Callable[[Outcome], None],
    ) -> list[Outcome]:
        """Replay `letters` in partition and offset order (a key's dead letters stay in order); `report`
        sees each outcome as it happens, so an interrupted run still shows what it did."""
        outcomes = [Outcome(f"{topic}/{c}", Status.MISSING, "no record at these coordinates")
                    for c in sorted(missing, key=lambda c: (c.partition, c.offset))]  # fmt: skip
        for outcome in outcomes:
            report(outcome)
        ordered = sorted(letters, key=lambda d: (d.partition, d.offset))
        done = await self.ledger.replayed(ordered)
        for letter in ordered:
            outcome = await self._one(letter, done.get(letter.ref))
            report(outcome)
            outcomes.append(outcome)
        return outcomes

    async def _one(self, letter: DeadLetter, before: dict[str, Any] | None) -> Outcome:
        ids = letter.envelope_ids()
        event_id, event_type = ids if ids else (None, None)

        def outcome(status: Status, detail: str, to: str | None = None) -> Outcome:
            return Outcome(letter.ref, status, detail, to, event_id, event_type)

        if (why := letter.refusal()) is not None:
            return outcome(Status.REFUSED, why)
        if before is not None:
            when = iso(before.get("replayed_at"))
            return outcome(Status.ALREADY, f"replayed {when} by {before.get('by', '?')}", before.get("replayed_to"))
        source = letter.source_topic or ""  # refusal() made sure there is one
        if self.publisher is None:
            return outcome(Status.WOULD_REPLAY, f"to {source}")
        to = await self.publisher.publish(source, key=letter.key, value=letter.value, headers=letter.replay_headers())
        recorded = await self.ledger.record(letter, to=to, at=self.clock(), by=self.operator)
        return outcome(Status.REPLAYED, "" if recorded else "another run recorded it first", to)
