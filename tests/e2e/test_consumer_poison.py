"""I4 for every consumer of every topic: bytes FastStream cannot decode never stall a partition.

Each poison goes to `<topic>.dlq` with the reason, named by the consuming service, and a
sentinel sent behind them on the same partition (same key) is dead-lettered too: the
consumer went past every poison. On a partner topic a valid lead behind them is accepted.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from partner_messages import signed

from leadflow_devstack.raw_records import GZIP, RawRecord, inflating_batch, produce_batch, record_batch
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import records_until
from leadflow_shared import topics
from leadflow_shared.events.inbound import InboundContact, InboundSource, LeadSubmitted, LeadSubmittedPayload
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

JSON = [("content-type", b"application/json")]

# (name, body, headers): what a careless partner or a broken producer can put on a topic.
POISONS: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = [
    ("deep-nesting", b'{"event_id": ' + b"[" * 20000 + b"]" * 20000 + b"}", JSON),
    ("cut-off-json", b'{"event_id": "5f0c3f4e-', JSON),
    ("not-utf8-header", b"{}", [("content-type", b"\xff\xfe"), ("x-trace", b"\xc3\x28")]),
    ("not-utf8-text", b"\xff\xfe\xfd", [("content-type", b"text/plain")]),
    ("nan-json", b'{"event_id": NaN}', JSON),
    ("tombstone", None, []),
    ("reply-to-not-a-topic", b"{}", [("reply_to", b"\xff\xfe")]),
    ("reply-to", b"{}", []),  # names a topic of this run: nothing may be published there
    ("forged-dlq-headers", b"{x", [("dlq-truncated-from-bytes", b"7"), ("dlq-service", b"forged")]),
    ("huge-headers", None, [("x-big", b"\xff" * 400_000)]),  # 1.2 MB once made UTF-8: over the request limit
    ("oversize", b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}', JSON),  # over the producer's 1 MiB request limit
]

BIG = 4 * 1024 * 1024

# (topic, the services that consume it)
CONSUMERS = [
    (topics.LEADS_INBOUND, ["intake"]),
    (topics.LEADS_INTAKE, ["router"]),
    (topics.LEADS_ACTIVITY, ["router"]),
    (topics.LEADS_COMMANDS, ["router"]),
    (topics.LEADS_EVENTS, ["notifier", "crm-api"]),
]


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    value: bytes = dict(record.headers).get(name, b"")
    return value.decode()


def ours(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    """leadflow's dead-letter header `name`: after the original's headers, which `dlq-original-headers` counts
    (decision 0091), so a sender's header of the same name is never read as leadflow's."""
    split = int(header(record, "dlq-original-headers"))
    value: bytes = dict(record.headers[split:]).get(name, b"")
    return value.decode()


def service_of(record: ConsumerRecord[bytes, bytes]) -> str:
    return ours(record, "dlq-service")


def marker_of(record: ConsumerRecord[bytes, bytes]) -> str:
    """The run and poison name: in a header, or in the body where the headers were too big to keep."""
    if found := header(record, "x-poison-run"):
        return found
    value = record.value or b""
    return value.removeprefix(b"x-poison-run=").decode() if value.startswith(b"x-poison-run=") else ""


@pytest.mark.parametrize(("topic", "services"), CONSUMERS, ids=[t for t, _ in CONSUMERS])
async def test_undecodable_messages_are_dead_lettered_and_the_partition_moves_on(
    poisoned_stack: Stack, topic: str, services: list[str]
) -> None:
    run = uuid.uuid4().hex
    key = b"acme-realty"
    reply_topic = f"poison-reply-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=poisoned_stack.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(reply_topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=poisoned_stack.bootstrap, acks="all", max_request_size=BIG)
    await producer.start()
    try:
        for name, body, headers in POISONS:
            marked = [*headers, ("x-poison-run", f"{run}:{name}".encode())]
            if name == "reply-to":
                marked.append(("reply_to", reply_topic.encode()))
            if name == "huge-headers":
                body = f"x-poison-run={run}:{name}".encode()
            await producer.send_and_wait(topic, body, key=key, headers=marked)
        sentinel = [("x-poison-run", f"{run}:sentinel".encode())]
        await producer.send_and_wait(topic, b"{sentinel", key=key, headers=sentinel)
    finally:
        await producer.stop()

    expected = {(service, f"{run}:{name}") for service in services for name in [*(p[0] for p in POISONS), "sentinel"]}

    def dead_lettered(seen: list[ConsumerRecord[bytes, bytes]]) -> set[tuple[str, str]]:
        return {(service_of(r), marker_of(r)) for r in seen if marker_of(r).startswith(run)}

    seen: list[ConsumerRecord[bytes, bytes]] = []

    def all_there(record: ConsumerRecord[bytes, bytes]) -> bool:
        seen.append(record)
        return expected <= dead_lettered(seen)

    records = await records_until(poisoned_stack.bootstrap, topics.dlq(topic), all_there, timeout=90)
    letters = [r for r in records if marker_of(r).startswith(run)]
    for record in letters:
        assert ours(record, "dlq-reason"), f"{marker_of(record)} was dead-lettered without a reason"
    # Once each: a poison is dead-lettered by each consuming service exactly once, not once per redelivery.
    assert len(letters) == len(expected)
    assert all(ours(r, "dlq-truncated-from-bytes") != "7" for r in letters), "a sender's dlq- header read as ours"
    forged = [r for r in letters if marker_of(r).endswith(":forged-dlq-headers")]
    assert forged
    kept = [r.headers[: int(header(r, "dlq-original-headers"))] for r in forged]
    assert all(("dlq-service", b"forged") in original for original in kept), "the sender's own headers are not kept"
    huge = [r for r in letters if marker_of(r).endswith(":huge-headers")]
    assert all(ours(r, "dlq-headers-dropped") for r in huge), "the sender's oversized headers were not dropped"
    reader = AIOKafkaConsumer(bootstrap_servers=poisoned_stack.bootstrap)
    await reader.start()
    try:
        partition = TopicPartition(reply_topic, 0)
        assert (await reader.end_offsets([partition]))[partition] == 0, "a consumer replied to a sender's reply_to"
    finally:
        await reader.stop()


def partner_lead(first_name: str) -> LeadSubmitted:
    """A partner's valid lead for acme-realty, a new contact each time."""
    return LeadSubmitted.create(
        account_id="acme-realty",
        occurred_at=datetime.now(UTC),
        payload=LeadSubmittedPayload(
            contact=InboundContact(first_name=first_name, email=f"{first_name.lower()}-{uuid.uuid4().hex}@example.com"),
            source=InboundSource(partner="homefinder", name="Partner"),
        ),
    )


async def send_signed(bootstrap: str, submitted: LeadSubmitted, compression: str | None = None) -> None:
    """`submitted` on leads.inbound.v1, signed by its partner, as its producer sends it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=compression)
    await producer.start()
    try:
        value = submitted.model_dump_json().encode()
        await producer.send_and_wait(
            topics.LEADS_INBOUND, value, key=b"acme-realty", headers=signed(value, b"acme-realty")
        )
    finally:
        await producer.stop()


async def taken(bootstrap: str, submitted: LeadSubmitted) -> LeadReceived:
    """The LeadReceived intake made of `submitted` (other tests put poison and leads on the topic too)."""

    def is_ours(record: ConsumerRecord[bytes, bytes]) -> bool:
        return str(submitted.correlation_id).encode() in (record.value or b"")

    records = await records_until(bootstrap, topics.LEADS_INTAKE, is_ours, timeout=60)
    return LeadReceived.model_validate_json(next(r.value or b"" for r in records if is_ours(r)))


async def test_partner_lead_behind_undecodable_messages_is_accepted(poisoned_stack: Stack) -> None:
    submitted = partner_lead("Pat")
    producer = AIOKafkaProducer(bootstrap_servers=poisoned_stack.bootstrap, acks="all", max_request_size=BIG)
    await producer.start()
    try:
        for _, body, headers in POISONS:
            await producer.send_and_wait(topics.LEADS_INBOUND, body, key=b"acme-realty", headers=headers)
    finally:
        await producer.stop()
    await send_signed(poisoned_stack.bootstrap, submitted)  # behind them, on the same partition
    assert (await taken(poisoned_stack.bootstrap, submitted)).payload.contact.first_name == "Pat"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_partner_lead_sent_compressed_is_accepted(poisoned_stack: Stack, codec: str) -> None:
    # A codec the consumer cannot decode raises in aiokafka's fetcher, before any handler or
    # dead letter: the partition would refetch the same batch forever.
    submitted = partner_lead(f"Pat-{codec}")
    await send_signed(poisoned_stack.bootstrap, submitted, compression=codec)
    assert (await taken(poisoned_stack.bootstrap, submitted)).payload.contact.first_name == f"Pat-{codec}"


@pytest.mark.parametrize(("topic", "services"), CONSUMERS, ids=[t for t, _ in CONSUMERS])
async def test_records_the_fetcher_cannot_read_are_dead_lettered_and_the_partition_moves_on(
    poisoned_stack: Stack, topic: str, services: list[str]
) -> None:
    # aiokafka reads these inside its fetcher, before any handler: a header name that is not
    # UTF-8, a record whose lengths do not add up. Each used to refetch the same batch forever.
    run = uuid.uuid4().hex
    key = b"acme-realty"

    def marked(name: str, *headers: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return [*headers, (b"x-poison-run", f"{run}:{name}".encode())]

    await produce_batch(
        poisoned_stack.bootstrap,
        topic,
        key,
        record_batch(
            [
                RawRecord(b"{}", key, marked("header-name-not-utf8", (b"\xff\xfe", b"x"))),
                RawRecord(b"{x", key, marked("behind-in-batch")),
            ]
        ),
    )
    await produce_batch(
        poisoned_stack.bootstrap,
        topic,
        key,
        record_batch(
            [
                RawRecord(b"{x", key, marked("gzip-header-name-not-utf8", (b"\xc3(", b"x"))),
            ],
            compression=GZIP,
        ),
    )
    partition, first = await produce_batch(
        poisoned_stack.bootstrap,
        topic,
        key,
        record_batch(
            [
                RawRecord(b"{x", key, marked("before-broken")),
                RawRecord(b"{x", key, marked("broken"), length_error=2),
                RawRecord(b"{x", key, marked("lost-behind-broken")),
            ]
        ),
    )
    producer = AIOKafkaProducer(bootstrap_servers=poisoned_stack.bootstrap, acks="all")
    await producer.start()
    try:
        sentinel = [("x-poison-run", f"{run}:sentinel".encode())]
        await producer.send_and_wait(topic, b"{sentinel", key=key, headers=sentinel)
    finally:
        await producer.stop()

    stand_in = f"{run}:stand-in"

    def name_of(record: ConsumerRecord[bytes, bytes]) -> str:
        if ours(record, "dlq-error-type") == "UnreadableRecord" and not marker_of(record):
            at = (ours(record, "dlq-source-partition"), ours(record, "dlq-source-offset"))
            return stand_in if at == (str(partition.partition), str(first + 2)) else ""
        return marker_of(record)

    names = ["header-name-not-utf8", "behind-in-batch", "gzip-header-name-not-utf8", "before-broken", "sentinel"]
    expected = {(s, f"{run}:{n}") for s in services for n in names} | {(s, stand_in) for s in services}
    found: set[tuple[str, str]] = set()

    def all_there(record: ConsumerRecord[bytes, bytes]) -> bool:
        found.add((service_of(record), name_of(record)))
        return expected <= found

    records = await records_until(poisoned_stack.bootstrap, topics.dlq(topic), all_there, timeout=90)
    seen = [r for r in records if name_of(r).startswith(run)]
    assert len(seen) == len(expected), "a record was dead-lettered more than once"
    reasons = {name_of(r): ours(r, "dlq-reason") for r in seen}
    assert reasons[f"{run}:header-name-not-utf8"] == "UnreadableRecord: header name '\\\\xff\\\\xfe' is not UTF-8"
    # The sender's other headers travel along, the bad name shown escaped.
    bad_name = next(r for r in seen if name_of(r) == f"{run}:header-name-not-utf8")
    assert header(bad_name, "\\xff\\xfe") == "x"
    assert reasons[stand_in].startswith(f"UnreadableRecord: records {first + 1}..{first + 2} of this partition")
    raw = next(r for r in seen if name_of(r) == stand_in).value or b""
    assert f"{run}:lost-behind-broken".encode() in raw, "the stand-in does not carry the raw batch"


def peak_rss(pid: int) -> int:
    """A process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_a_small_batch_inflating_to_400_mb_is_dead_lettered_within_intakes_memory(poisoned_stack: Stack) -> None:
    """Helper 170: a partner's gzip batch of 398 KiB (within the broker's 1 MiB) whose one record inflates to 400 MB
    of spaces. aiokafka inflated it whole before any size check: intake peaked at 897 MiB, over its container's
    512 MiB (deploy/k8s/intake.yaml), where it is killed, then fetches the same batch at every restart. Now it is
    dead-lettered unread (`kafka_records.MAX_INFLATED_BYTES`), and the partner's lead behind it is taken."""
    intake = poisoned_stack.services["intake"]
    before = peak_rss(intake.pid)
    batch = inflating_batch(GZIP, 400 * 1024 * 1024, key=b"acme-realty")
    assert len(batch) < 1024 * 1024, "within the broker's message.max.bytes"
    partition, offset = await produce_batch(poisoned_stack.bootstrap, topics.LEADS_INBOUND, b"acme-realty", batch)
    submitted = partner_lead("Bo")  # a partner's valid lead behind it, on the same partition
    await send_signed(poisoned_stack.bootstrap, submitted)

    def the_batch(record: ConsumerRecord[bytes, bytes]) -> bool:
        return ours(record, "dlq-source-partition") == str(partition.partition) and ours(
            record, "dlq-source-offset"
        ) == str(offset)

    await taken(poisoned_stack.bootstrap, submitted)
    letters = await records_until(poisoned_stack.bootstrap, topics.dlq(topics.LEADS_INBOUND), the_batch, timeout=30)
    letter = next(r for r in letters if the_batch(r))
    assert "inflate" in ours(letter, "dlq-reason"), ours(letter, "dlq-reason")
    assert (letter.value or b"")[61:] == batch[61:], "the raw batch as sent (its compressed records), for whoever looks"
    grew = peak_rss(intake.pid) - before
    assert grew < 64 * 1024 * 1024, f"intake's memory peak grew by {grew / 2**20:.0f} MiB reading the batch"
