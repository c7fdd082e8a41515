"""Reading fetched records so that no record can wedge a partition (I4).

aiokafka decodes record batches inside its fetcher, before FastStream or leadflow see a
record. A header name that is not UTF-8, a record whose lengths do not add up or an unknown
compression codec raise there, and the fetcher fetches the same batch again, forever.
`install()` wraps the batches the fetcher reads: aiokafka's fast reader reads them as
before, and only when it fails is the batch read again here, tolerantly:

- a header name that is not UTF-8 keeps its bytes, decoded with `surrogateescape`
  (strict UTF-8 never yields a surrogate, so no name a sender can write looks like it);
- what cannot be read at all becomes one stand-in record at the batch's last offset,
  holding the batch's raw bytes, whose only header (UNREADABLE) says which offsets were
  lost and why.

`unreadable()` tells both apart from readable records; the consumers' edge dead-letters
them with that reason, and the partition moves on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

from leadflow_shared.errors import PoisonMessage

Headers = Sequence[tuple[str, bytes | None]]

# No bytes decode to this name: strict UTF-8 never yields a surrogate, and the tolerant
# reader's `surrogateescape` only yields U+DC80..U+DCFF, never a high surrogate.
UNREADABLE = "\ud800unreadable"
_LENGTH_AT = 8  # a batch starts with its base offset (int64) and its length (int32) ...
_LOG_OVERHEAD = 12  # ... which counts the bytes after those two


class UnreadableRecord(PoisonMessage):
    """A record the fetcher could not read as it was sent (see `unreadable`)."""


def unreadable(headers: Headers) -> str | None:
    """Why a record could not be read as it was sent, or None if it was."""
    for name, value in headers:
        if name.isascii():
            continue
        if name == UNREADABLE:
            return (value or b"").decode("utf-8", "replace")
        if not is_utf8(name):
            return f"header name {printable(name)!r} is not UTF-8"
    return None


def printable(name: str) -> str:
    """A header name as valid text: bytes that were not UTF-8 shown as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """A header name aiokafka decoded with `surrogateescape` was valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Record:
    """A record as aiokafka's fetcher reads one (it copies these fields into a ConsumerRecord)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


class _Reader:
    """Reads one record after another from a batch's (decompressed) records section."""

    def __init__(self, buffer: bytearray, pos: int) -> None:
        self.buffer, self.pos = buffer, pos

    def varint(self) -> int:
        value, self.pos = decode_varint(self.buffer, self.pos)
        return int(value)

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.buffer):
            raise ValueError(f"a length of {size} runs past the end of the batch")
        data, self.pos = bytes(self.buffer[self.pos : end]), end
        return data

    def sized(self) -> bytes | None:
        size = self.varint()
        return None if size < 0 else self.take(size)

    def record(self, batch: _DefaultRecordBatchPy) -> _Record:
        length = self.varint()
        start = self.pos
        self.varint()  # attributes: none defined for records
        timestamp_delta, offset_delta = self.varint(), self.varint()
        key, value = self.sized(), self.sized()
        headers = []
        for _ in range(self.varint()):
            name = self.take(self.varint()).decode("utf-8", "surrogateescape")
            headers.append((name, self.sized()))
        if self.pos - start != length:
            raise ValueError(f"a record declares {length} bytes but holds {self.pos - start}")
        timestamp = (
            batch.max_timestamp
            if batch.timestamp_type == batch.LOG_APPEND_TIME
            else (batch.first_timestamp + timestamp_delta)
        )
        return _Record(batch.base_offset + offset_delta, timestamp, batch.timestamp_type, key, value, headers)


def _read_tolerantly(data: memoryview, after: int, last: int, cause: Exception) -> Iterator[_Record]:
    """The batch's records past offset `after`, then a stand-in for whatever up to `last` cannot be read."""
    first, timestamp = after + 1, -1
    try:
        if data[16] < 2:  # magic: v0/v1 batches have no header names to repair
            raise cause
        batch = _DefaultRecordBatchPy(data)
        timestamp = batch.max_timestamp
        iter(batch)  # decompresses the records section
        reader = _Reader(batch._buffer, batch._pos)
        for _ in range(batch._num_records):
            record = reader.record(batch)
            if record.offset > after:
                first = record.offset + 1
                yield record
    except Exception as exc:  # noqa: BLE001 (any fault of these bytes ends the batch, never the partition)
        if last >= first:
            reason = (
                f"records {first}..{last} of this partition are unreadable ({type(exc).__name__}: {exc});"
                " the value holds the raw record batch"
            )
            yield _Record(last, timestamp, 0, None, bytes(data), [(UNREADABLE, reason[:2000].encode())])


class _TolerantBatch:
    """A record batch from aiokafka's reader, read again tolerantly where that reader fails."""

    __slots__ = ("_batch", "_data")

    def __init__(self, batch: Any, data: memoryview) -> None:
        self._batch, self._data = batch, data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        after = -1
        try:
            for record in self._batch:
                after = record.offset
                yield record
        except Exception as exc:  # noqa: BLE001 (whatever these bytes break, the tolerant reader decides)
            yield from _read_tolerantly(self._data, after, self._batch.next_offset - 1, exc)


class TolerantMemoryRecords:
    """aiokafka's MemoryRecords (the fetched bytes of one partition), handing out tolerant batches."""

    def __init__(self, data: bytes) -> None:
        self._records = MemoryRecords(data)
        self._data = memoryview(data)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> _TolerantBatch | None:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        (length,) = struct.unpack_from(">i", self._data, start + _LENGTH_AT)
        self._pos = start + _LOG_OVERHEAD + length
        return _TolerantBatch(batch, self._data[start : self._pos])


def install() -> None:
    """Make every aiokafka consumer of this process read batches through TolerantMemoryRecords."""
    fetcher.MemoryRecords = TolerantMemoryRecords
