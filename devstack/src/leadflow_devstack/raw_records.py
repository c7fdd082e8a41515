"""Record batches as a broken or hostile producer could write them, for tests.

aiokafka's producer only writes what a well-behaved client would (header names are `str`,
lengths add up). The Kafka protocol carries bytes, so this builds v2 record batches by hand
(header names of any bytes, a record's lengths made not to add up) and produces them
with a plain Produce request: what leadflow's consumers must survive (I4).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cramjam
from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.codec import gzip_encode, lz4_encode, snappy_encode, zstd_encode
from aiokafka.errors import for_code
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c, encode_varint

from leadflow_shared.clock import now_ms

NO_COMPRESSION, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
_ENCODE = {GZIP: gzip_encode, SNAPPY: snappy_encode, LZ4: lz4_encode, ZSTD: zstd_encode}  # as aiokafka sends them


@dataclass(frozen=True)
class RawRecord:
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[bytes, bytes | None]] = field(default_factory=tuple)
    # Declared length minus actual: anything but 0 makes the record unreadable.
    length_error: int = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


def _sized(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def _record(offset_delta: int, record: RawRecord) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += _varint(0) + _varint(offset_delta)  # timestamp delta, offset delta
    body += _sized(record.key) + _sized(record.value) + _varint(len(record.headers))
    for name, value in record.headers:
        body += _varint(len(name)) + name + _sized(value)
    return _varint(len(body) + record.length_error) + bytes(body)


def record_batch(records: Sequence[RawRecord], *, compression: int = NO_COMPRESSION) -> bytes:
    """One v2 record batch (base offset 0: the broker assigns the real ones) with a valid CRC."""
    body = b"".join(_record(i, r) for i, r in enumerate(records))
    if compression in _ENCODE:
        body = _ENCODE[compression](body)
    return batch_of(body, compression, len(records))


def batch_of(body: bytes, compression: int, count: int = 1) -> bytes:
    """A v2 batch of `count` records whose records section is `body` as given (compressed or not, valid or not)."""
    now = now_ms()
    # Attributes, last offset delta, first/max timestamp, producer id/epoch, base sequence, count.
    after_crc = struct.pack(">hiqqqhii", compression, count - 1, now, now, -1, -1, -1, count) + body
    crc = calc_crc32c(after_crc)
    # Base offset, length (from the leader epoch on), partition leader epoch, magic, CRC.
    return struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc) + after_crc


def inflating_batch(compression: int, inflated: int, *, key: bytes | None = None, chunk: int = 1 << 20) -> bytes:
    """A hostile producer's batch: one record whose value is `inflated` spaces, compressed in `compression` as
    Kafka frames it, built a chunk at a time (the test never holds the inflated bytes)."""
    head = b"\x00" + _varint(0) + _varint(0) + _sized(key) + _varint(inflated)
    tail = _varint(0)  # no headers
    spaces = [b" " * chunk] * (inflated // chunk) + [b" " * (inflated % chunk)]
    parts = [_varint(len(head) + inflated + len(tail)) + head, *spaces, tail]
    if compression == GZIP:
        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
        body = b"".join(gz.compress(p) for p in parts) + gz.flush()
    elif compression == SNAPPY:  # xerial's blocks, as aiokafka writes them
        body = snappy_encode(b"")[:16] + b"".join(
            struct.pack(">i", len(block)) + block for block in (bytes(cramjam.snappy.compress_raw(p)) for p in parts)
        )
    else:
        module = {LZ4: cramjam.lz4, ZSTD: cramjam.zstd}[compression]
        compressor = module.Compressor()
        for part in parts:
            compressor.compress(part)
        body = bytes(compressor.finish())
    return batch_of(body, compression, 1)


async def partition_for(client: AIOKafkaClient, topic: str, key: bytes) -> int:
    """The partition aiokafka's producer sends `key` to, so raw and normal sends can share one."""
    await client.force_metadata_update()
    partitions = sorted(client.cluster.partitions_for_topic(topic) or ())
    return int(DefaultPartitioner()(key, partitions, partitions))


async def produce_batch(bootstrap: str, topic: str, key: bytes, batch: bytes) -> tuple[TopicPartition, int]:
    """Produce one hand-built batch to `key`'s partition with acks=all: (the partition, its first offset)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        partition = await partition_for(client, topic, key)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
        request = ProduceRequest(
            transactional_id=None, required_acks=-1, timeout=30_000, topics=[(topic, [(partition, batch)])]
        )
        response = await client.send(leader, request)
        _, error_code, base_offset, *_ = response.topics[0][1][0]
        if error_code:
            raise for_code(error_code)(f"producing a raw batch to {topic}[{partition}]")
        return TopicPartition(topic, partition), int(base_offset)
    finally:
        await client.close()
