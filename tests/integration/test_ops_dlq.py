"""`leadflow-ops` on a real Tansu and nx-27017 (decision 0044): `cli.run` in the test's process, and `list` and `show`
as the console script an operator runs (ops_cli.py).

Dead letters are written by the real writers (DeadLetters, the notifier's KafkaDeadLetters);
`dlq list` shows their facts without bodies, `show` the body, `replay` republishes each one once
with the original key and body, refuses a truncated one, and records what it did. `seed` loads
account configuration with the router's loader. The notifier's `DeliveryLog.reopen` puts a failed
delivery back to pending once per replayed dead letter.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from ops_cli import Result, ops_env, run_in_process, run_script
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from leadflow_devstack.raw_records import RawRecord, produce_batch, record_batch
from leadflow_devstack.servers import tansu
from leadflow_devstack.testing import records_to_end
from leadflow_notifier.adapters.dead_letters import KafkaDeadLetters
from leadflow_notifier.adapters.repository import Begin, DeliveryLog, Leases
from leadflow_notifier.domain.delivery import Delivery
from leadflow_notifier.domain.errors import PermanentDeliveryError
from leadflow_notifier.domain.messages import EmailContent
from leadflow_notifier.domain.preferences import Channel
from leadflow_ops.dead_letters import DeadLetter
from leadflow_ops.kafka_client import CHUNK_RECORDS, DeadLetterReader
from leadflow_ops.ledger import ReplayLedger
from leadflow_shared.clock import epoch_ms
from leadflow_shared.dead_letters import DLQ_MAX_VALUE_BYTES, DeadLetters
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.kafka import ensure_topics, make_broker
from leadflow_shared.metrics import ConsumerMetrics
from leadflow_shared.settings import KafkaSettings
from leadflow_shared.topics import TopicSpec, dlq

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ACCOUNT = "acct-ops-dlq"


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, servers = tansu(tmp_path_factory.mktemp("ops-tansu"))
    try:
        yield servers
    finally:
        proc.stop(timeout=5)


@dataclass(frozen=True)
class Ops:
    """`leadflow-ops` with this test's OPS_* settings (its own MongoDB database): in this process, or as the console
    script an operator runs (`script`; ops_cli.py says why not every command is)."""

    env: dict[str, str]
    database: str
    script: bool = False

    async def __call__(self, *args: str) -> Result:
        return await asyncio.to_thread(run_script if self.script else run_in_process, self.env, *args)


@pytest.fixture
def ops(bootstrap: str, mongo_url: str) -> Ops:
    database = f"ops_{uuid.uuid4().hex[:10]}"
    return Ops(ops_env(bootstrap, mongo_url, database), database)


@pytest_asyncio.fixture
async def db(ops: Ops, mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        yield client[ops.database]
    finally:
        await client.close()


def lead(email: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=ACCOUNT, occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(contact=Contact(first_name="Dee", last_name="Ell", email=email),
                                    source=LeadSource(channel=LeadChannel.PARTNER, name="Partner")),
    )  # fmt: skip


def consumed(topic: str, partition: int, offset: int, key: bytes, value: bytes,
             headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:  # fmt: skip
    """A record as a service's consumer got it, for its dead letter."""
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0, key=key,
                          value=value, checksum=None, serialized_key_size=len(key),
                          serialized_value_size=len(value), headers=headers)  # fmt: skip


@dataclass(frozen=True)
class Letters:
    """Three dead letters on `<source>.dlq`: a router's poison (0:0), a truncated one (0:1), a notifier
    delivery (0:2); `emails`: the contacts' addresses in their bodies (personal data)."""

    source: str
    poison: LeadReceived
    delivery: LeadReceived
    emails: tuple[str, str]

    @property
    def topic(self) -> str:
        return dlq(self.source)


@pytest_asyncio.fixture
async def letters(bootstrap: str) -> Letters:
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(source, 3), TopicSpec(dlq(source), 1)])
    emails = (f"dee-{uuid.uuid4().hex[:8]}@example.com", f"eve-{uuid.uuid4().hex[:8]}@example.com")
    poison, delivery = lead(emails[0]), lead(emails[1])
    settings = KafkaSettings(bootstrap_servers=bootstrap, producer_idempotence=False)
    broker = make_broker(settings, client_id="ops-test", registry=CollectorRegistry())
    await broker.connect()
    try:
        dead_letters = DeadLetters(broker, ConsumerMetrics(CollectorRegistry(), "ops_test"), service="router")
        sender_headers = [("content-type", b"application/json"), ("traceparent", b"00-abc-def-01")]
        body = poison.model_dump_json().encode()
        await dead_letters.publish(consumed(source, 2, 41, ACCOUNT.encode(), body, sender_headers),
                                PoisonMessage(f"unknown account {ACCOUNT}"))  # fmt: skip
        huge = b"x" * (DLQ_MAX_VALUE_BYTES + 1000)
        await dead_letters.publish(consumed(source, 1, 7, ACCOUNT.encode(), huge, []), PoisonMessage("too large"))
        await KafkaDeadLetters(broker, source).publish(
            delivery.model_dump_json().encode(),
            account_id=ACCOUNT,
            channel="email",
            agent_id="ops-ana",
            error=PermanentDeliveryError("rejected", "SMTP [554]"),
        )
    finally:
        await broker.stop()
    return Letters(source, poison, delivery, emails)


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    values = [v for n, v in record.headers if n == name]
    return values[-1].decode() if values else None


async def test_list_shows_each_dead_letter_without_its_body_and_show_prints_it(ops: Ops, letters: Letters) -> None:
    ops = replace(ops, script=True)  # as the operator runs it: exit statuses, what reaches stdout and stderr
    listed = await ops("dlq", "list", letters.topic, "--json")
    assert listed.code == 0, listed.err
    rows = listed.json()["dead_letters"]
    assert [(r["partition"], r["offset"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    poison, truncated, delivery = rows
    assert poison | {"time": None, "bytes": None} == {
        "partition": 0, "offset": 0, "time": None, "key": ACCOUNT, "source_topic": letters.source,
        "source_partition": 2, "source_offset": 41, "service": "router", "reason": f"PoisonMessage: unknown account "
        f"{ACCOUNT}", "error_type": "PoisonMessage", "channel": None, "recipient": None,
        "event_id": str(letters.poison.event_id), "event_type": "LeadReceived", "bytes": None,
        "truncated_from_bytes": None, "value_dropped": None, "replay_of": None, "replayed": None,
    }  # fmt: skip
    assert truncated["truncated_from_bytes"] == DLQ_MAX_VALUE_BYTES + 1000
    assert truncated["bytes"] == DLQ_MAX_VALUE_BYTES
    assert (delivery["service"], delivery["channel"], delivery["recipient"]) == ("notifier", "email", "ops-ana")
    assert (delivery["event_id"], delivery["error_type"]) == (str(letters.delivery.event_id), "PermanentDeliveryError")

    lines = await ops("dlq", "list", letters.topic, "--limit", "2")
    assert lines.code == 0, lines.err
    shown = lines.out.splitlines()
    assert [s.split()[0] for s in shown] == ["0:1", "0:2"], "the most recent two, oldest first"
    assert "TRUNCATED" in shown[0]
    assert "channel=email recipient=ops-ana" in shown[1]
    assert f"event={letters.delivery.event_id} type=LeadReceived" in shown[1]
    assert "3 dead letter(s), 2 shown" in lines.err
    for text in (listed.out, lines.out):  # bodies hold personal data
        assert not any(email in text for email in letters.emails)

    show = await ops("dlq", "show", letters.topic, "0:0")
    assert show.code == 0, show.err
    assert letters.emails[0] in show.out
    assert "dlq-source-topic: " + letters.source in show.out
    missing = await ops("dlq", "show", letters.topic, "0:9")
    assert (missing.code, missing.out) == (2, "")
    assert "no record at 0:9" in missing.err


async def test_replay_republishes_each_dead_letter_once_and_refuses_a_truncated_one(
    ops: Ops, letters: Letters, bootstrap: str, db: AsyncDatabase[dict[str, Any]]
) -> None:
    dry = await ops("dlq", "replay", letters.topic, "--all", "--dry-run", "--json")
    assert dry.code == 1, "a refused dead letter needs the operator"
    assert [o["status"] for o in dry.json()["outcomes"]] == ["would-replay", "refused", "would-replay"]
    assert await records_to_end(bootstrap, letters.source) == [], "a dry run publishes nothing"

    first = await ops("dlq", "replay", letters.topic, "--all", "--json")
    assert first.code == 1, first.err
    outcomes = first.json()["outcomes"]
    assert [o["status"] for o in outcomes] == ["replayed", "refused", "replayed"]
    assert "cut to" in outcomes[1]["detail"]
    assert f"{letters.source}[1]@7" in outcomes[1]["detail"]

    replayed = await records_to_end(bootstrap, letters.source)
    assert len(replayed) == 2
    # The marker names the dead letter by its coordinates and a hash of its content (decision 0091).
    by_marker = {(header(r, "leadflow-replay") or "").partition("#")[0]: r for r in replayed}
    poison, delivery = by_marker[f"{letters.topic}/0:0"], by_marker[f"{letters.topic}/0:2"]
    assert all(len((header(r, "leadflow-replay") or "").partition("#")[2]) == 32 for r in replayed)
    assert (poison.key, poison.value) == (ACCOUNT.encode(), letters.poison.model_dump_json().encode())
    assert (delivery.key, delivery.value) == (ACCOUNT.encode(), letters.delivery.model_dump_json().encode())
    assert not [n for r in replayed for n, _ in r.headers if n.startswith("dlq-")]
    assert (header(poison, "content-type"), header(poison, "traceparent")) == ("application/json", "00-abc-def-01")
    assert header(poison, "leadflow-replay-service") == "router"
    assert header(poison, "leadflow-replay-channel") is None
    assert [header(delivery, f"leadflow-replay-{h}") for h in ("service", "channel", "recipient")] == [
        "notifier", "email", "ops-ana"]  # fmt: skip
    assert {o["replayed_to"] for o in outcomes if o["replayed_to"]} == {
        f"{letters.source}[{r.partition}]@{r.offset}" for r in replayed}  # fmt: skip

    ledger = {d["dead_letter"]: d async for d in db["ops_replays"].find()}
    assert set(ledger) == {f"{letters.topic}/0:0", f"{letters.topic}/0:2"}
    assert ledger[f"{letters.topic}/0:2"]["event_id"] == str(letters.delivery.event_id)
    assert {d["_id"] for d in ledger.values()} == {header(r, "leadflow-replay") for r in replayed}

    again = await ops("dlq", "replay", letters.topic, "--all")
    assert again.code == 1
    assert [line.split()[0] for line in again.out.splitlines()] == ["already-replayed", "refused", "already-replayed"]
    assert len(await records_to_end(bootstrap, letters.source)) == 2, "nothing published twice"

    picked = await ops("dlq", "replay", letters.topic, "--offset", "0:2", "--offset", "0:9", "--json")
    assert picked.code == 1
    assert {o["dead_letter"]: o["status"] for o in picked.json()["outcomes"]} == {
        f"{letters.topic}/0:2": "already-replayed", f"{letters.topic}/0:9": "missing"}  # fmt: skip

    listed = (await ops("dlq", "list", letters.topic, "--json")).json()["dead_letters"]
    assert [r["replayed"] is not None for r in listed] == [True, False, True]


async def test_a_ledger_entry_written_before_0091_still_names_the_dead_letter_it_replayed(
    ops: Ops, letters: Letters, bootstrap: str, db: AsyncDatabase[dict[str, Any]]
) -> None:
    # Before decision 0091 an entry's `_id` was the coordinates alone. 0:0's names the dead letter there (same
    # event, replayed after it was written); 0:2's was another message's, dead-lettered there before a purge.
    later = datetime.now(UTC) + timedelta(minutes=1)
    legacy = {"replayed_at": later, "replayed_ms": epoch_ms(later), "by": "sre@old-host", "replayed_to": "x[0]@1"}
    await db["ops_replays"].insert_many([
        legacy | {"_id": f"{letters.topic}/0:0", "event_id": str(letters.poison.event_id)},
        legacy | {"_id": f"{letters.topic}/0:2", "event_id": str(uuid.uuid4())},
    ])  # fmt: skip
    listed = (await ops("dlq", "list", letters.topic, "--json")).json()["dead_letters"]
    assert [r["replayed"] is not None for r in listed] == [True, False, False]

    run = await ops("dlq", "replay", letters.topic, "--all", "--json")
    assert [o["status"] for o in run.json()["outcomes"]] == ["already-replayed", "refused", "replayed"], run.err
    [replayed] = await records_to_end(bootstrap, letters.source)
    assert replayed.value == letters.delivery.model_dump_json().encode()


async def dead_letter(bootstrap: str, source: str, offset: int, event: LeadReceived) -> None:
    """`event`, failed in the router at `source`[0]@`offset`, dead-lettered by the services' own writer."""
    broker = make_broker(KafkaSettings(bootstrap_servers=bootstrap, producer_idempotence=False),
                         client_id="ops-test", registry=CollectorRegistry())  # fmt: skip
    await broker.connect()
    try:
        letters = DeadLetters(broker, ConsumerMetrics(CollectorRegistry(), "ops_test"), service="router")
        body = event.model_dump_json().encode()
        await letters.publish(consumed(source, 0, offset, ACCOUNT.encode(), body, []), PoisonMessage("unknown"))
    finally:
        await broker.stop()


async def recreate(bootstrap: str, topic: str) -> None:
    """Empty `topic` the way Kafka allows: delete it, wait until it is gone, create it again."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while topic in set(await admin.list_topics()):
            assert time.monotonic() < deadline, f"{topic} was not deleted"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await ensure_topics(bootstrap, [TopicSpec(topic, 1)])


async def test_a_dead_letter_at_a_reused_offset_is_replayed_not_taken_for_the_one_before(
    ops: Ops, bootstrap: str
) -> None:
    # Kafka has no purge: an operator empties a `.dlq` topic by recreating it, and its offsets start again at 0.
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(source, 1), TopicSpec(dlq(source), 1)])
    first, second = lead("rae@example.com"), lead("rae@example.com")
    await dead_letter(bootstrap, source, 3, first)
    done = await ops("dlq", "replay", dlq(source), "--all", "--json")
    assert done.code == 0, done.err
    assert [(o["dead_letter"], o["status"]) for o in done.json()["outcomes"]] == [(f"{dlq(source)}/0:0", "replayed")]

    await recreate(bootstrap, dlq(source))
    await dead_letter(bootstrap, source, 9, second)
    listed = (await ops("dlq", "list", dlq(source), "--json")).json()["dead_letters"]
    assert [(r["event_id"], r["replayed"]) for r in listed] == [(str(second.event_id), None)]

    run = await ops("dlq", "replay", dlq(source), "--all", "--json")
    assert (run.code, [(o["event_id"], o["status"]) for o in run.json()["outcomes"]]) == (
        0, [(str(second.event_id), "replayed")]), run.err  # fmt: skip
    again = await ops("dlq", "replay", dlq(source), "--all", "--json")
    assert [o["status"] for o in again.json()["outcomes"]] == ["already-replayed"], "the same one never twice"
    published = [json.loads(r.value or b"")["event_id"] for r in await records_to_end(bootstrap, source)]
    assert published == [str(first.event_id), str(second.event_id)]


async def test_a_dead_letter_topic_holding_a_record_with_a_header_name_not_utf8_is_listed_shown_and_replayed(
    ops: Ops, bootstrap: str
) -> None:
    """`leadflow-ops` reads DLQ topics tolerantly (`kafka_records.install`): a header name that is not UTF-8 keeps its
    bytes as surrogates. `DeadLetter.fingerprint` encoded names strictly, so `dlq list` and `dlq replay --all` raised
    UnicodeEncodeError for the whole topic, and `dlq show --json` wrote a lone surrogate (helper 133)."""
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(source, 1), TopicSpec(dlq(source), 1)])
    await dead_letter(bootstrap, source, 3, lead("odd@example.com"))
    odd = record_batch([RawRecord(b"stray", b"acme", [(b"\xff\xfe", b"1")])])
    await produce_batch(bootstrap, dlq(source), b"acme", odd)

    listed = await ops("dlq", "list", dlq(source), "--json")
    assert listed.code == 0, listed.err[-600:]
    assert len(listed.json()["dead_letters"]) == 2
    shown = await ops("dlq", "show", dlq(source), "0:1", "--json")
    assert shown.code == 0, shown.err[-600:]
    assert shown.json()["headers"][0] == ["\udcff\udcfe", "1"]  # escaped in the JSON, read back as it was
    replayed = await ops("dlq", "replay", dlq(source), "--all", "--json")
    assert "Traceback" not in replayed.err, replayed.err[-600:]
    statuses = [o["status"] for o in replayed.json()["outcomes"]]
    assert statuses == ["replayed", "refused"]  # the stray record is no leadflow dead letter


async def test_a_whole_topic_is_read_and_replayed_a_chunk_at_a_time_every_letter_once_in_order(
    ops: Ops, bootstrap: str
) -> None:
    """`dlq replay --all` read every dead letter of the topic into memory before replaying the first (bodies up to
    1 MiB each: a topic a bad deploy filled for an hour would not fit). It reads and replays them `CHUNK_RECORDS` at a
    time (`DeadLetterReader.chunks`), partition by partition in offset order: each letter once, none left out at a
    chunk's edge."""
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(source, 1), TopicSpec(dlq(source), 2)])
    placed: dict[int, int] = {}
    for key, count in ((b"acme", 7), (b"zeta", 4), (b"omni", 5)):
        records = [RawRecord(f"stray {key.decode()} {n}".encode(), key, []) for n in range(count)]
        tp, _ = await produce_batch(bootstrap, dlq(source), key, record_batch(records))
        placed[tp.partition] = placed.get(tp.partition, 0) + count
    async with DeadLetterReader(KafkaSettings(bootstrap_servers=bootstrap)) as reader:
        chunks = [chunk async for chunk in reader.chunks(dlq(source), size=3)]
    assert max(len(c) for c in chunks) == 3
    read = [(d.partition, d.offset) for c in chunks for d in c]
    assert read == sorted(read), "not partition by partition in offset order"
    assert len(set(read)) == len(read) == 16, "a letter left out or read twice"
    assert {p: sum(1 for q, _ in read if q == p) for p in placed} == placed

    many = [RawRecord(f"stray {n}".encode(), b"acme", []) for n in range(CHUNK_RECORDS + 2)]
    await produce_batch(bootstrap, dlq(source), b"acme", record_batch(many))
    run = await ops("dlq", "replay", dlq(source), "--all", "--dry-run", "--json")
    outcomes = run.json()["outcomes"]
    refs = [o["dead_letter"] for o in outcomes]
    assert len(refs) == len(set(refs)) == 16 + CHUNK_RECORDS + 2, "every letter once, across the chunks"
    assert {o["status"] for o in outcomes} == {"refused"}  # none is a leadflow dead letter


async def test_a_listing_of_the_whole_topic_keeps_no_bodies(ops: Ops, bootstrap: str) -> None:
    """`dlq list --limit 0` held every dead letter's body until it had printed the list (bodies up to 1 MiB each: a
    topic a bad deploy filled would not fit). What it lists is read a chunk at a time and kept without the body
    (`DeadLetter.listed`): after reading 48 letters of 256 KiB (12 MiB), the reader holds under 3 MiB (its client's
    buffers included)."""
    source = f"ops-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(source, 1), TopicSpec(dlq(source), 1)])
    body = b"x" * (256 * 1024)
    for start in range(0, 48, 4):
        records = [RawRecord(body + str(n).encode(), b"acme", []) for n in range(start, start + 4)]
        await produce_batch(bootstrap, dlq(source), b"acme", record_batch(records))
    tracemalloc.start()
    try:
        async with DeadLetterReader(KafkaSettings(bootstrap_servers=bootstrap)) as reader:
            before = tracemalloc.get_traced_memory()[0]
            listed, total = await reader.latest(dlq(source), None)
            held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert total == len(listed) == 48
    assert held < 3 * 1024 * 1024, f"the listing holds {held} bytes of 12 MiB of bodies"
    assert [letter.summary["offset"] for letter in listed] == list(range(48))
    run = await ops("dlq", "list", dlq(source), "--limit", "0", "--json")
    assert run.code == 0, run.err[-600:]
    assert [row["bytes"] for row in run.json()["dead_letters"]] == [len(body) + len(str(n)) for n in range(48)]


async def test_the_replay_ledger_answers_for_a_large_dead_letter_topic(db: AsyncDatabase[dict[str, Any]]) -> None:
    """`dlq replay --all` and `dlq list --limit 0` ask the ledger about every dead letter. In one `$in` (2 ids each)
    that was over MongoDB's 16 MiB past ~148,000 dead letters (a bad deploy dead-lettering a busy topic for a few
    hours): DocumentTooLarge, a traceback (helper 133). It asks in chunks (`LOOKUP_CHUNK`)."""
    letters = [DeadLetter("leads.events.v1.dlq", 0, offset, 0, b"acme", b"{}", (("dlq-original-headers", b"0"),))
               for offset in range(160_000)]  # fmt: skip
    ledger = ReplayLedger(db)
    at = datetime.now(UTC)
    for letter in (letters[0], letters[-1]):
        assert await ledger.record(letter, to="leads.events.v1[0]@1", at=at, by="test")
    done = await ledger.replayed(letters)
    assert set(done) == {letters[0].ref, letters[-1].ref}


async def test_seed_loads_account_configuration_and_refuses_an_invalid_file(
    ops: Ops, db: AsyncDatabase[dict[str, Any]], tmp_path: Path
) -> None:
    account = f"acct-ops-seed-{uuid.uuid4().hex[:6]}"
    config = {"accounts": [{"account_id": account, "name": "Ops Seed Realty",
                            "agents": [{"agent_id": f"{account}-ana", "name": "Ana", "email": "ana@ops.example"}],
                            "roster": [f"{account}-ana"]}]}  # fmt: skip
    good = tmp_path / "accounts.json"
    good.write_text(json.dumps(config))
    seeded = await ops("seed", str(good), "--json")
    assert seeded.code == 0, seeded.err
    assert seeded.json() == {"file": str(good), "database": ops.database, "accounts": 1}
    assert (await db["accounts"].find_one({"_id": account}) or {}).get("name") == "Ops Seed Realty"
    assert (await db["agents"].find_one({"_id": f"{account}-ana"}) or {}).get("account_id") == account

    config["accounts"][0] |= {"account_id": f"{account}-bad", "colour": "red"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    refused = await ops("seed", str(bad))
    assert refused.code == 2
    assert "not valid account configuration (nothing written)" in refused.err
    assert await db["accounts"].find_one({"_id": f"{account}-bad"}) is None


async def test_reopen_puts_a_failed_delivery_back_once_per_replayed_dead_letter(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    leases = Leases(lease_ms=10_000)
    deliveries = DeliveryLog(db, leases=leases)
    content = EmailContent(to="ana@ops.example", subject="Lead offer: Dee", text="...", lead_id="lead-1")
    delivery = Delivery(key=f"{uuid.uuid4()}:email:ana", channel=Channel.EMAIL, agent_id="ana", account_id=ACCOUNT,
                        event_type="LeadOffered", content=content, event=b"{}")  # fmt: skip
    records = db["notifier_deliveries"]

    assert await deliveries.begin(delivery, now_ms=1_000) is Begin.SEND
    assert not await deliveries.reopen(delivery, marker="t.dlq/0:1", now_ms=1_500), "pending: its owner is on it"
    await deliveries.failed(delivery.key, reason="rejected", now_ms=2_000)
    leases.held.clear()

    assert await deliveries.reopen(delivery, marker="t.dlq/0:1", now_ms=3_000)
    doc = await records.find_one({"_id": delivery.key}) or {}
    assert {k: doc.get(k) for k in ("status", "replay", "replays", "drives", "owner", "lease_until_ms", "reason")} == {
        "status": "pending", "replay": "t.dlq/0:1", "replays": 1, "drives": 1, "owner": leases.owner,
        "lease_until_ms": 13_000, "reason": None}  # fmt: skip
    assert doc["content"]["to"] == "ana@ops.example", "pending again with its message, for the re-driver"
    assert delivery.key in leases.held

    await deliveries.failed(delivery.key, reason="rejected", now_ms=4_000)
    assert not await deliveries.reopen(delivery, marker="t.dlq/0:1", now_ms=5_000), "a redelivered replay"
    assert await deliveries.reopen(delivery, marker="t.dlq/0:7", now_ms=5_000), "the next dead letter's replay"
    await deliveries.sent(delivery.key, now_ms=6_000)
    assert not await deliveries.reopen(delivery, marker="t.dlq/0:9", now_ms=7_000), "sent is never sent again"
    doc = await records.find_one({"_id": delivery.key}) or {}
    assert (doc["status"], doc["replays"], "content" in doc) == ("sent", 2, False)
