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

A compressed batch is first inflated here into a bounded buffer (`MAX_INFLATED_BYTES`): aiokafka
decompresses a whole batch in memory, and a partner's batch within the broker's 1 MiB can hold a
record of 400 MB of spaces, which would take the service past its container's memory before any
size check sees the record, again at every restart (helper 170). A batch that inflates past the
bound, or a compressed message set of the old format (magic 0/1), becomes the same stand-in.

`unreadable()` tells both apart from readable records; the consumers' edge dead-letters
them with that reason, and the partition moves on.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cramjam
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
_MAGIC_AT = 16  # then (v2) the partition leader epoch (int32), the magic (int8), ...
_ATTRIBUTES_AT = 21  # ... the CRC (uint32), the attributes (int16: the codec in the low three bits) ...
_LAST_DELTA_AT = 23  # ... the last offset delta (int32), ...
_V2_RECORDS_AT = 61  # ... and the records section after the batch's 61-byte header
_LEGACY_ATTRIBUTES_AT = 17  # a v0/v1 message: offset, size, CRC, magic (int8), attributes (int8)
_CODEC = 0x07
_XERIAL = b"\x82SNAPPY\x00"  # a snappy stream in xerial's blocks (16-byte header, then length-prefixed blocks)

# What one batch may inflate to: a batch the broker took (1 MiB by default) of JSON compresses some 5-10 times;
# a partner's lead is at most 64 KiB and leadflow's events a few KiB.
MAX_INFLATED_BYTES = 16 * 1024 * 1024


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


def _inflates_past(data: memoryview, limit: int) -> str | None:
    """Why the compressed batch `data` is not read (it inflates past `limit` bytes, or cannot be inflated within
    them), or None: not compressed, or within the bound (aiokafka then reads it as usual)."""
    if len(data) <= _ATTRIBUTES_AT + 1:
        return None  # aiokafka's reader decides: nothing here to inflate
    if data[_MAGIC_AT] < 2:
        if data[_LEGACY_ATTRIBUTES_AT] & _CODEC:
            return "a compressed message set of the old format (magic 0/1) is not read: send record batches (v2)"
        return None
    inflated_size = _SIZES.get(struct.unpack_from(">h", data, _ATTRIBUTES_AT)[0] & _CODEC)
    if inflated_size is None:
        return None  # not compressed; or an unknown codec, which aiokafka's reader fails and the tolerant one says
    try:
        size = inflated_size(bytes(data[_V2_RECORDS_AT:]), limit)
    except Exception as exc:  # noqa: BLE001 (past the buffer, or not this codec's bytes: not read either way)
        return f"the batch does not inflate within {limit} bytes ({type(exc).__name__})"
    return None if size <= limit else f"the batch inflates to {size} bytes, past {limit}"


@functools.cache
def _buffer(limit: int) -> bytearray:
    """One buffer per bound for the process, made on the first compressed batch: the fetcher reads on the event
    loop's thread, one batch at a time."""
    return bytearray(limit)


def _inflated_into_buffer(module: Any) -> Callable[[bytes, int], int]:
    def size(body: bytes, limit: int) -> int:
        return int(module.decompress_into(body, _buffer(limit)))  # stops, failing, where the buffer ends

    return size


def _snappy_size(body: bytes, limit: int) -> int:
    """A snappy batch's inflated size, as its blocks declare it (what `decompress_raw` allocates), read without
    inflating them; aiokafka's `snappy_decode` reads xerial's blocks or one raw block."""
    del limit  # nothing is inflated here
    if body[: len(_XERIAL)] != _XERIAL:
        return int(cramjam.snappy.decompress_raw_len(body))
    size, cursor = 0, 16
    while cursor < len(body):
        (block,) = struct.unpack_from(">i", body, cursor)
        cursor += 4
        if block <= 0 or cursor + block > len(body):  # else a length of -4 reads itself forever (helper 173)
            raise ValueError(f"a snappy block of {block} bytes at {cursor - 4}")
        size += int(cramjam.snappy.decompress_raw_len(body[cursor : cursor + block]))
        cursor += block
    return size


# Kafka's codecs by their attribute value, as aiokafka reads them: gzip, snappy, lz4 (frames), zstd.
_SIZES: dict[int, Callable[[bytes, int], int]] = {
    1: _inflated_into_buffer(cramjam.gzip),
    2: _snappy_size,
    3: _inflated_into_buffer(cramjam.lz4),
    4: _inflated_into_buffer(cramjam.zstd),
}


class _RefusedBatch:
    """A compressed batch not inflated (`_inflates_past`): one stand-in record for all its offsets."""

    __slots__ = ("_batch", "_data", "_why")

    def __init__(self, batch: Any, data: memoryview, why: str) -> None:
        self._batch, self._data, self._why = batch, data, why

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        (first,) = struct.unpack_from(">q", self._data, 0)  # v2: the base offset; a v0/v1 wrapper: its last inner
        last = first + struct.unpack_from(">i", self._data, _LAST_DELTA_AT)[0] if self._data[_MAGIC_AT] >= 2 else first
        reason = (
            f"records {first}..{last} of this partition are unreadable ({self._why});"
            " the value holds the raw record batch"
        )
        yield _Record(last, -1, 0, None, bytes(self._data), [(UNREADABLE, reason[:2000].encode())])


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

    def next_batch(self) -> _TolerantBatch | _RefusedBatch | None:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        (length,) = struct.unpack_from(">i", self._data, start + _LENGTH_AT)
        self._pos = start + _LOG_OVERHEAD + length
        data = self._data[start : self._pos]
        if (why := _inflates_past(data, MAX_INFLATED_BYTES)) is not None:
            return _RefusedBatch(batch, data, why)
        return _TolerantBatch(batch, data)


def install() -> None:
    """Make every aiokafka consumer of this process read batches through TolerantMemoryRecords."""
    fetcher.MemoryRecords = TolerantMemoryRecords
