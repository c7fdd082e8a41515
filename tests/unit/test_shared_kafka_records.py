"""I4 at the fetcher: batches aiokafka's reader fails on are read tolerantly, never refetched forever.

Each test runs the fetched bytes through aiokafka's own PartitionRecords (what its fetcher
iterates), so offsets advance exactly as they would in a consumer.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.codec import snappy_encode
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.util import calc_crc32c
from hypothesis import given
from hypothesis import strategies as st

from leadflow_devstack.raw_records import GZIP, LZ4, SNAPPY, ZSTD, RawRecord, batch_of, inflating_batch, record_batch
from leadflow_shared import kafka_records
from leadflow_shared.kafka_records import MAX_INFLATED_BYTES, UNREADABLE, TolerantMemoryRecords, printable, unreadable

pytestmark = pytest.mark.unit

TP = TopicPartition("leads.inbound.v1", 0)


def at(batch: bytes, base_offset: int) -> bytes:
    """The batch as the broker stores it: offsets from `base_offset` on (not covered by the CRC)."""
    return struct.pack(">q", base_offset) + batch[8:]


def read(data: bytes, fetch_offset: int = 0) -> tuple[list[ConsumerRecord[bytes, bytes]], int]:
    """(the records a consumer gets, the offset it fetches next)."""
    records = PartitionRecords(TP, TolerantMemoryRecords(data), [], fetch_offset, None, None, True, READ_UNCOMMITTED)
    return list(records), records.next_fetch_offset


def test_a_header_name_not_utf8_is_kept_flagged_and_the_rest_of_the_batch_is_read() -> None:
    data = record_batch(
        [
            RawRecord(b"one", b"k", [(b"x-ok", b"1"), (b"\xff\xfe", b"2")]),
            RawRecord(b"two", b"k", [(b"content-type", b"application/json")]),
        ]
    )
    records, next_offset = read(data)
    assert [r.value for r in records] == [b"one", b"two"]
    assert next_offset == 2
    name = records[0].headers[1][0]
    assert name.encode("utf-8", "surrogateescape") == b"\xff\xfe"  # the sender's bytes, kept
    assert unreadable(records[0].headers) == "header name '\\\\xff\\\\xfe' is not UTF-8"
    assert unreadable(records[1].headers) is None
    assert printable(name) == "\\xff\\xfe"


def test_a_record_whose_lengths_do_not_add_up_becomes_one_stand_in_at_the_batch_end() -> None:
    data = at(
        record_batch(
            [
                RawRecord(b"one", b"k"),
                RawRecord(b"two", b"k", length_error=3),
                RawRecord(b"three", b"k"),
            ]
        ),
        40,
    )
    records, next_offset = read(data, fetch_offset=40)
    assert [r.offset for r in records] == [40, 42]
    assert records[0].value == b"one"
    stand_in = records[1]
    reason = unreadable(stand_in.headers)
    assert (reason or "").startswith("records 41..42 of this partition are unreadable (ValueError")
    assert stand_in.value == data  # the raw batch, for whoever investigates
    assert next_offset == 43


def test_a_fetch_from_inside_a_broken_batch_still_gets_the_stand_in() -> None:
    # A consumer that committed offset 40 restarts at 41: the broker sends the whole batch again.
    data = at(record_batch([RawRecord(b"one"), RawRecord(b"two", length_error=-1), RawRecord(b"three")]), 40)
    records, next_offset = read(data, fetch_offset=41)
    assert [r.offset for r in records] == [42]
    assert unreadable(records[0].headers) is not None
    assert next_offset == 43


def test_a_compressed_batch_with_a_bad_header_name_is_read_too() -> None:
    data = record_batch([RawRecord(b"one", None, [(b"\xc3(", None)]), RawRecord(b"two")], compression=GZIP)
    records, next_offset = read(data)
    assert [r.value for r in records] == [b"one", b"two"]
    assert unreadable(records[0].headers) is not None
    assert next_offset == 2


def test_an_unknown_codec_becomes_a_stand_in() -> None:
    data = bytearray(record_batch([RawRecord(b"one"), RawRecord(b"two")]))
    data[22] |= 0x07  # attributes: codec 7 does not exist
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    records, next_offset = read(bytes(data))
    assert [r.offset for r in records] == [1]
    assert "unreadable (UnsupportedCodecError" in (unreadable(records[0].headers) or "")
    assert next_offset == 2


CODECS = pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD], ids=["gzip", "snappy", "lz4", "zstd"])


@CODECS
def test_a_compressed_batch_within_the_bound_is_read_as_sent(codec: int) -> None:
    sent = [RawRecord(b'{"n": %d}' % i, b"acme-realty", [(b"content-type", b"application/json")]) for i in range(20)]
    records, next_offset = read(at(record_batch(sent, compression=codec), 7), fetch_offset=7)
    assert [(r.offset, r.key, r.value) for r in records] == [(7 + i, r.key, r.value) for i, r in enumerate(sent)]
    assert all(unreadable(r.headers) is None for r in records)
    assert next_offset == 27


@CODECS
def test_a_batch_that_would_inflate_past_the_bound_becomes_a_stand_in_holding_the_batch_as_sent(codec: int) -> None:
    """A partner's batch within the broker's 1 MiB whose one record inflates to 4 times the bound: aiokafka inflated
    a whole batch in memory (400 MB took intake past its container's 512 MiB, helper 170); it is now inflated into a
    buffer of the bound, stopping there (snappy: its blocks' declared sizes added), and never handed to aiokafka."""
    inflated = MAX_INFLATED_BYTES * 5 // 4 if codec == SNAPPY else 4 * MAX_INFLATED_BYTES  # snappy packs ~21:1
    data = at(inflating_batch(codec, inflated, key=b"acme-realty"), 12)
    assert len(data) < 1 << 20, "within the broker's message.max.bytes"
    records, next_offset = read(data, fetch_offset=12)
    assert [r.offset for r in records] == [12]
    reason = unreadable(records[0].headers) or ""
    assert reason.startswith("records 12..12 of this partition are unreadable (the batch "), reason
    assert f"{MAX_INFLATED_BYTES}" in reason
    assert records[0].value == data, "the raw batch as sent, for whoever investigates (compressed: within 1 MiB)"
    assert next_offset == 13


def test_a_batch_at_the_bound_is_read() -> None:
    limit = MAX_INFLATED_BYTES - 64  # the record's own framing around its value
    records, _ = read(inflating_batch(ZSTD, limit, key=b"k"))
    assert [len(r.value or b"") for r in records] == [limit]
    assert unreadable(records[0].headers) is None


def test_a_compressed_message_set_of_the_old_format_becomes_a_stand_in() -> None:
    # v1: offset, size, CRC, magic 1, attributes (gzip), timestamp, key, value: the wrapper of a compressed set.
    wrapper = struct.pack(">bbq", 1, GZIP, 0) + struct.pack(">i", -1) + struct.pack(">i", 4) + b"\x1f\x8b\x00\x00"
    data = struct.pack(">qiI", 3, 4 + len(wrapper), zlib.crc32(wrapper)) + wrapper
    records, next_offset = read(data, fetch_offset=3)
    assert [r.offset for r in records] == [3]
    assert "old format (magic 0/1)" in (unreadable(records[0].headers) or "")
    assert next_offset == 4


def test_a_sender_cannot_forge_the_stand_in_header() -> None:
    # The closest bytes a sender can write: the stand-in's name encoded with surrogates allowed.
    for forged in (UNREADABLE.encode("utf-8", "surrogatepass"), b"\x80unreadable", b"\xed\xa0\x80unreadable"):
        records, _ = read(record_batch([RawRecord(b"{}", None, [(forged, b"records 0..9")])]))
        assert records[0].headers[0][0] != UNREADABLE
        assert (unreadable(records[0].headers) or "").startswith("header name '\\\\x")


def test_install_replaces_the_fetchers_reader() -> None:
    # Guards the one aiokafka internal this depends on: an upgrade that renames it fails here.
    kafka_records.install()
    from aiokafka.consumer import fetcher

    assert fetcher.MemoryRecords is TolerantMemoryRecords


names = st.binary(max_size=12)
raw_records = st.builds(
    RawRecord,
    value=st.none() | st.binary(max_size=40),
    key=st.none() | st.binary(max_size=10),
    headers=st.lists(st.tuples(names, st.none() | st.binary(max_size=10)), max_size=3),
    length_error=st.sampled_from([0, 0, 0, -2, 1, 5]),
)


@given(batch=st.lists(raw_records, min_size=1, max_size=6), compressed=st.booleans())
def test_any_batch_is_read_to_its_end_with_every_readable_record_as_sent(
    batch: list[RawRecord], compressed: bool
) -> None:
    data = at(record_batch(batch, compression=GZIP if compressed else 0), 100)
    records, next_offset = read(data, fetch_offset=100)
    assert next_offset == 100 + len(batch)  # never refetched
    broken = next((i for i, r in enumerate(batch) if r.length_error), None)
    readable = batch if broken is None else batch[:broken]
    for sent, got in zip(readable, records, strict=False):
        assert (got.value, got.key) == (sent.value, sent.key)
        assert [(n.encode("utf-8", "surrogateescape"), v) for n, v in got.headers] == list(sent.headers)
        names_ok = all(_is_utf8(n) for n, _ in sent.headers)
        assert (unreadable(got.headers) is None) == names_ok
    if broken is not None:
        assert len(records) == broken + 1
        assert records[-1].offset == 100 + len(batch) - 1
        assert unreadable(records[-1].headers) is not None


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


XERIAL_HEADER = snappy_encode(b"")[:16]  # as aiokafka writes a xerial stream's header


@pytest.mark.timeout(10)  # a regression loops forever: the timeout fails it
@pytest.mark.parametrize("length", [-4, -1, 0, 1 << 30])
def test_a_xerial_block_whose_length_does_not_fit_becomes_a_stand_in(length: int) -> None:
    """Helper 173: a block length of -4 moved the guard's cursor back onto its own length field, and
    `decompress_raw_len(b"")` answers 0: one 85-byte batch froze the fetcher (the event loop's thread) for good."""
    data = at(batch_of(XERIAL_HEADER + struct.pack(">i", length) + b"\x00" * 4, SNAPPY), 5)
    records, next_offset = read(data, fetch_offset=5)
    assert [r.offset for r in records] == [5]
    assert "does not inflate within" in (unreadable(records[0].headers) or "")
    assert next_offset == 6


@pytest.mark.timeout(60)
@given(st.binary(max_size=200))
def test_any_xerial_stream_is_measured_or_refused_at_once(blocks: bytes) -> None:
    data = batch_of(XERIAL_HEADER + blocks, SNAPPY)
    records, next_offset = read(data)
    assert [r.offset for r in records if unreadable(r.headers) is not None] in ([], [0])
    assert next_offset == 1
