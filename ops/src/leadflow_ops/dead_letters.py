"""A dead letter as read from a `<topic>.dlq` topic: what its headers say, and whether it can be replayed.

Dead letters are written by `DeadLetters.publish` (leadflow_shared.dead_letters: the original key,
body and sender's headers, plus `dlq-*` headers) and by the notifier's `KafkaDeadLetters` (one failed
delivery: the original event, `dlq-channel` and `dlq-recipient`). Bodies hold personal data: only
`show` prints one; everything else uses the headers and the envelope's ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from leadflow_ops.errors import OpsError
from leadflow_shared.clock import from_epoch_ms
from leadflow_shared.replay import REPLAY, REPLAY_CHANNEL, REPLAY_HEADERS, REPLAY_RECIPIENT, REPLAY_SERVICE
from leadflow_shared.topics import DLQ_SUFFIX

DLQ_PREFIX = "dlq-"
ORIGINAL_HEADERS = "dlq-original-headers"  # leadflow_shared.dead_letters: how many headers are the original's
KEY_LIMIT = 1024  # DeadLetters.publish keeps at most this many bytes of the key


class _EnvelopeIds(BaseModel):
    """The ids of a leadflow envelope (leadflow_shared.envelope), whatever its payload."""

    model_config = ConfigDict(extra="ignore")
    event_id: uuid.UUID
    type: str


@dataclass(frozen=True, slots=True)
class Coordinates:
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Coordinates:
        """`PARTITION:OFFSET`, as `dlq list` prints them."""
        partition, sep, offset = text.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise OpsError(f"{text!r} is not PARTITION:OFFSET (e.g. 0:42)")
        return cls(int(partition), int(offset))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...]  # as they came: in order, a name repeated, a value null

    @property
    def coordinates(self) -> Coordinates:
        return Coordinates(self.partition, self.offset)

    @property
    def ref(self) -> str:
        """`<dlq topic>/<partition>:<offset>`: where this dead letter is, as the commands name it. Not unique
        over time: a dead-letter topic emptied by recreating it starts its offsets again at 0."""
        return f"{self.topic}/{self.coordinates}"

    @property
    def fingerprint(self) -> str:
        """A hash of the record's key, body and headers: the same dead letter read again has the same one, another
        message at reused coordinates (a recreated topic) another one (decision 0091). A header name that is not
        UTF-8 (the tolerant reader keeps its bytes as surrogates, and names a stand-in UNREADABLE) is encoded with
        `surrogatepass`: any name has its bytes, a UTF-8 one the same as before."""
        digest = hashlib.sha256()
        parts = [b"" if self.key is None else b"k" + self.key, self.value]
        for name, value in self.headers:
            parts += [name.encode("utf-8", "surrogatepass"), value or b""]
        for part in parts:  # each one length-prefixed: no two lists of parts hash alike
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.hexdigest()[:32]

    @property
    def ident(self) -> str:
        """`<ref>#<fingerprint>`: this dead letter and no other, ever: the replay marker and the ledger's id."""
        return f"{self.ref}#{self.fingerprint}"

    @property
    def at(self) -> datetime:
        return from_epoch_ms(self.timestamp_ms)

    @property
    def _split(self) -> int | None:
        """Where the original record's headers end and leadflow's begin: the value of the last
        `dlq-original-headers` (leadflow's come after the original's); None in a dead letter written
        before it (decision 0091), whose leadflow headers are the `dlq-*` ones."""
        for name, value in reversed(self.headers):
            if name == ORIGINAL_HEADERS:
                text = (value or b"").decode("ascii", "replace")
                return int(text) if text.isdigit() and int(text) < len(self.headers) else None
        return None

    @property
    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The failed record's own headers, in order, repeats and all."""
        split = self._split
        if split is None:
            return [(n, v) for n, v in self.headers if not n.lower().startswith(DLQ_PREFIX)]
        return list(self.headers[:split])

    def header(self, name: str) -> str | None:
        """The last value of leadflow's dead-letter header `name`, decoded leniently; None if absent.
        The original record's own headers are never read as leadflow's, whatever their names."""
        split = self._split
        ours = self.headers[split:] if split is not None else self.headers
        found = None
        for header, value in ours:
            if header == name and (split is not None or header.lower().startswith(DLQ_PREFIX)):
                found = (value or b"").decode("utf-8", "replace")
        return found

    @property
    def source_topic(self) -> str | None:
        return self.header("dlq-source-topic")

    @property
    def source(self) -> str:
        """Where the failed record was: `topic[partition]@offset`, as much of it as the headers say."""
        topic = self.source_topic or "?"
        partition, offset = self.header("dlq-source-partition"), self.header("dlq-source-offset")
        return topic + (f"[{partition}]" if partition else "") + (f"@{offset}" if offset else "")

    def _replay_of(self) -> str | None:
        """The `leadflow-replay` marker of the failed record (a replay itself), if it had one."""
        marks = [value for name, value in self.original_headers if name == REPLAY]
        return (marks[-1] or b"").decode("utf-8", "replace") if marks else None

    def envelope_ids(self) -> tuple[str, str] | None:
        """(event id, type) when the body is a leadflow envelope; None otherwise."""
        try:
            ids = _EnvelopeIds.model_validate_json(self.value)
        except (ValidationError, ValueError):
            return None
        return str(ids.event_id), ids.type

    def refusal(self) -> str | None:
        """Why this dead letter must not be replayed, or None if it can be."""
        source = self.source_topic
        if source is None:
            return "not a leadflow dead letter: no dlq-source-topic header"
        if not self.topic.endswith(DLQ_SUFFIX) or source != self.topic.removesuffix(DLQ_SUFFIX):
            return f"its dlq-source-topic {source!r} is not the topic of {self.topic!r}"
        if (length := self.header("dlq-truncated-from-bytes")) is not None:
            return (
                f"its body was cut to {len(self.value)} of {length} bytes; replaying it would publish a broken"
                f" message (the original is at {self.source})"
            )
        if (count := self.header("dlq-headers-dropped")) is not None:
            return f"its {count} headers were over the budget and not kept; the original is at {self.source}"
        if (why := self.header("dlq-value-dropped")) is not None:
            return f"its body was not kept (the broker refused it: {why}); the original is at {self.source}"
        if self.header("dlq-error-type") == "UnreadableRecord":
            return "the consumer could not read the record: its body is the raw bytes of a batch, not a message"
        if self.key is not None and len(self.key) >= KEY_LIMIT:
            return f"its key may have been cut at {KEY_LIMIT} bytes; the original is at {self.source}"
        return None

    def replay_headers(self) -> list[tuple[str, bytes | None]]:
        """The original record's headers as they came (without an earlier replay's), plus this replay's."""
        kept = [(name, value) for name, value in self.original_headers if name not in REPLAY_HEADERS]
        ours = {
            REPLAY: self.ident,
            REPLAY_SERVICE: self.header("dlq-service"),
            REPLAY_CHANNEL: self.header("dlq-channel"),
            REPLAY_RECIPIENT: self.header("dlq-recipient"),
        }
        return kept + [(name, value.encode()) for name, value in ours.items() if value]

    def summary(self) -> dict[str, Any]:
        """Everything `dlq list` shows: coordinates, headers' facts, envelope ids; never the body."""
        ids = self.envelope_ids()
        return {
            "partition": self.partition,
            "offset": self.offset,
            "time": self.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "key": None if self.key is None else self.key.decode("utf-8", "backslashreplace"),
            "source_topic": self.source_topic,
            "source_partition": _int(self.header("dlq-source-partition")),
            "source_offset": _int(self.header("dlq-source-offset")),
            "service": self.header("dlq-service"),
            "reason": self.header("dlq-reason"),
            "error_type": self.header("dlq-error-type"),
            "channel": self.header("dlq-channel"),
            "recipient": self.header("dlq-recipient"),
            "event_id": ids[0] if ids else None,
            "event_type": ids[1] if ids else None,
            "bytes": len(self.value),
            "truncated_from_bytes": _int(self.header("dlq-truncated-from-bytes")),
            "value_dropped": self.header("dlq-value-dropped"),
            "replay_of": self._replay_of(),  # this dead letter is itself a replay that failed again
        }

    def listed(self) -> ListedLetter:
        """What `dlq list` keeps of this dead letter: its names and summary, not its body (a topic's bodies, up to
        1 MiB each, are not held while it prints)."""
        return ListedLetter(self.ref, self.ident, self.timestamp_ms, self.envelope_ids(), self.summary())

    def details(self) -> dict[str, Any]:
        """`dlq show`: every header and the body (text when it is UTF-8, else base64)."""
        body: dict[str, Any]
        try:
            text = self.value.decode("utf-8")
        except UnicodeDecodeError:
            body = {"body_base64": base64.b64encode(self.value).decode()}
        else:
            try:
                body = {"body": json.loads(text)}
            except (ValueError, RecursionError):
                body = {"body_text": text}
        headers = [[name, None if value is None else value.decode("utf-8", "backslashreplace")]
                   for name, value in self.headers]  # fmt: skip
        return {"topic": self.topic, **self.summary(), "headers": headers, **body}


@dataclass(frozen=True, slots=True)
class ListedLetter:
    """A dead letter as `dlq list` holds it (`DeadLetter.listed`): what the replay ledger is asked by, and its
    summary; no body."""

    ref: str
    ident: str
    timestamp_ms: int
    ids: tuple[str, str] | None
    summary: dict[str, Any]

    def envelope_ids(self) -> tuple[str, str] | None:
        return self.ids


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None
