"""`leadflow-ops dlq` without servers: a dead letter's identity whatever its header names, `--json` output that UTF-8
can hold, and `DeadLetterReader.at` over a partition whose first offsets retention removed (helper 133's review).

The commands themselves run on Tansu and nx-27017 in tests/integration/test_ops_dlq.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from leadflow_ops import kafka_client
from leadflow_ops.dead_letters import Coordinates, DeadLetter
from leadflow_ops.kafka_client import DeadLetterReader
from leadflow_ops.output import json_text
from leadflow_shared.kafka_records import UNREADABLE
from leadflow_shared.settings import KafkaSettings

pytestmark = pytest.mark.unit

TOPIC = "leads.intake.v1.dlq"


def test_a_dead_letter_with_a_header_name_that_is_not_utf8_has_an_identity_and_is_refused_not_a_crash() -> None:
    """The tolerant reader keeps a header name that is not UTF-8 as surrogates, and names a stand-in for what it
    cannot read UNREADABLE ("\\ud800unreadable"). The fingerprint encoded names strictly: UnicodeEncodeError from
    `ReplayLedger.replayed`, so `dlq list` and `dlq replay --all` failed for the whole topic."""
    stand_in = DeadLetter(TOPIC, 0, 7, 0, None, b"raw batch", ((UNREADABLE, b"records 5..7"),))
    odd_name = DeadLetter(TOPIC, 0, 8, 0, b"acme", b"{}", (("\udcff\udcfe", b"1"),))
    other_bytes = DeadLetter(TOPIC, 0, 8, 0, b"acme", b"{}", (("\udcfe\udcff", b"1"),))
    for letter in (stand_in, odd_name):
        assert letter.ident.startswith(f"{letter.ref}#")
        assert letter.refusal() is not None  # neither is a leadflow dead letter
    assert odd_name.fingerprint != other_bytes.fingerprint


def test_the_fingerprint_of_utf8_header_names_is_unchanged_so_the_ledger_s_ids_stay() -> None:
    """Decision 0091: the ledger's `_id` holds the fingerprint; encoding names leniently must not change it."""
    letter = DeadLetter(TOPIC, 1, 2, 0, b"acme", b'{"a": 1}', (("content-type", b"json"), ("naïve", None)))
    digest = hashlib.sha256()
    for part in (b"kacme", b'{"a": 1}', b"content-type", b"json", "naïve".encode(), b""):
        digest.update(len(part).to_bytes(8, "big") + part)
    assert letter.fingerprint == digest.hexdigest()[:32]


def test_json_output_escapes_a_lone_surrogate_and_reads_back_the_same() -> None:
    """`dlq show --json` of a dead letter whose header name is not UTF-8 (or whose body holds `\\udcff`) wrote a
    lone surrogate: stdout's UTF-8 refused it, a traceback instead of the document."""
    letter = DeadLetter(TOPIC, 0, 8, 0, b"acme", b'{"n": "\\udcff", "t": "Zo\\u00eb"}', (("\udcff\udcfe", b"1"),))
    text = json_text(letter.details())
    text.encode("utf-8")  # strict: no lone surrogate left
    assert "Zoë" in text  # other text stays as it is
    read = json.loads(text)
    assert read["headers"][0][0] == "\udcff\udcfe"
    assert read["body"]["n"] == "\udcff"


class RetainedLog:
    """aiokafka's consumer over one partition of `TOPIC` whose first offsets retention removes while the reader
    reads: `beginning_offsets` says 3, by the fetch the log starts at 5. A position out of range is reset as
    aiokafka does, by `auto_offset_reset` ("latest", aiokafka's default: to the end)."""

    END = 10

    def __init__(self, **options: Any) -> None:
        self.reset = options.get("auto_offset_reset", "latest")
        self.first = 3
        self.position_of: dict[TopicPartition, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return {0}

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        answer = dict.fromkeys(partitions, self.first)
        self.first = 5  # retention ran since
        return answer

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, self.END)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.position_of = dict.fromkeys(partitions, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_of[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.position_of[tp]

    def pause(self, tp: TopicPartition) -> None: ...

    def highwater(self, _tp: TopicPartition) -> int:
        return self.END

    async def getmany(
        self,
        *partitions: TopicPartition,
        timeout_ms: int,  # noqa: ARG002
        max_records: int | None = None,  # noqa: ARG002
    ) -> dict[TopicPartition, list[Any]]:
        found = {}
        for tp in partitions:
            at = self.position_of[tp]
            if not self.first <= at <= self.END:  # OffsetOutOfRange: aiokafka resets the position
                at = self.first if self.reset == "earliest" else self.END
            found[tp] = [self.record(offset) for offset in range(at, self.END)]
            self.position_of[tp] = self.END
        return found

    @staticmethod
    def record(offset: int) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(topic=TOPIC, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k",
                              value=b"{}", checksum=None, serialized_key_size=1, serialized_value_size=2,
                              headers=[])  # fmt: skip


@pytest.mark.asyncio
async def test_reading_dead_letters_by_offset_finds_those_still_there_when_retention_removed_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dlq show` / `replay --offset` read from the lowest offset asked for. Below the log's start (retention),
    aiokafka's default reset jumped to the end: every offset asked for was reported missing, those still there
    too. (Tansu closes the connection on DeleteRecords, so no broker test: a consumer with aiokafka's resets.)"""
    monkeypatch.setattr(kafka_client, "AIOKafkaConsumer", RetainedLog)
    wanted = [Coordinates(0, 1), Coordinates(0, 4), Coordinates(0, 6), Coordinates(0, 8), Coordinates(0, 12)]
    async with DeadLetterReader(KafkaSettings(bootstrap_servers="kafka.example.test:9093")) as reader:
        found = await reader.at(TOPIC, wanted)
    assert set(found) == {Coordinates(0, 6), Coordinates(0, 8)}
