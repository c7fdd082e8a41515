"""Partners on Kafka, through the stack's intake: leads.inbound.v1 -> leads.intake.v1, poison -> the DLQ (I4)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord
from partner_messages import signed
from pymongo import AsyncMongoClient

from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord, eventually, metric, records_until
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.domain import keys, partner
from leadflow_intake.domain.lead import normalize_submission, submission_hash
from leadflow_intake.handlers import Claim
from leadflow_shared import topics
from leadflow_shared.events.inbound import LeadSubmitted, received_event_id
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "acme-realty"


def lead(event_id: uuid.UUID | None = None, **contact: Any) -> dict[str, Any]:
    event_id = event_id or uuid.uuid4()
    return {
        "event_id": str(event_id), "type": "LeadSubmitted", "schema_version": 1, "account_id": ACCOUNT,
        "occurred_at": "2026-03-02T09:05:00-05:00", "correlation_id": str(event_id),
        "payload": {
            "contact": {"first_name": "MARIA", "last_name": f"lopez-{uuid.uuid4().hex[:6]}",
                        "email": "Maria.Lopez@Example.com", "phone": "(415) 555-0123"} | contact,
            "source": {"partner": "homefinder", "name": "HomeFinder", "assigned_agent_id": "blair-chen",
                       "site_host": "Blair.Acme-Realty.example", "utm": {"UTM_Source": "homefinder"}},
            "message": "Interested in a condo.\r\n",
        },
    }  # fmt: skip


def encoded(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def received_id(message: dict[str, Any]) -> str:
    return str(received_event_id(uuid.UUID(message["event_id"]), message["account_id"]))


def with_event_id(event_id: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    needle = f'"event_id":"{event_id}"'.encode()
    return lambda record: needle in (record.value or b"")


@pytest_asyncio.fixture
async def produce(stack: Stack) -> AsyncIterator[Callable[[bytes], Any]]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    await producer.start()

    async def send(value: bytes) -> None:
        # Same key for every message: one partition, so a later message waits behind an earlier one.
        await producer.send_and_wait(
            topics.LEADS_INBOUND, value, key=ACCOUNT.encode(), headers=signed(value, ACCOUNT.encode())
        )

    try:
        yield send
    finally:
        await producer.stop()


async def test_partner_lead_is_normalized_onto_the_intake_topic(
    produce: Callable[[bytes], Any], wait_for_record: WaitForRecord
) -> None:
    message = lead()
    await produce(encoded(message))

    record = await wait_for_record(topics.LEADS_INTAKE, with_event_id(received_id(message)))
    assert record.key == ACCOUNT.encode()
    event = json.loads(record.value or b"")
    assert event["correlation_id"] == message["event_id"]
    assert event["occurred_at"] == "2026-03-02T14:05:00Z"
    contact, source = event["payload"]["contact"], event["payload"]["source"]
    assert (contact["first_name"], contact["email"], contact["phone"]) == (
        "Maria",
        "maria.lopez@example.com",
        "+14155550123",
    )
    assert contact["last_name"] == message["payload"]["contact"]["last_name"].title()
    assert source == {
        "channel": "partner", "name": "HomeFinder", "site_host": "blair.acme-realty.example", "listing_id": None,
        "listing_agent_id": None, "assigned_agent_id": "blair-chen", "provider": "homefinder",
        "utm": {"utm_source": "homefinder"},
    }  # fmt: skip
    assert event["payload"]["message"] == "Interested in a condo."


POISON: list[tuple[str, Callable[[], bytes], str]] = [
    ("not-json", lambda: b"{not json", "Invalid JSON"),
    ("not-utf8", lambda: b"\xff\xfe\x00", "<message>"),
    ("no-contact", lambda: encoded({**lead(), "payload": {"source": lead()["payload"]["source"]}}),
     "payload.contact: Field required"),
    ("unknown-field", lambda: encoded(lead(nickname="Mo")), "payload.contact.nickname: Extra inputs"),
    ("name-too-long", lambda: encoded(lead(first_name="x" * 101)), "payload.contact.first_name"),
    ("bad-phone", lambda: encoded(lead(phone="12")), "payload.contact.phone: not a valid phone number"),
    ("bad-email", lambda: encoded(lead(email="nope")), "payload.contact.email"),
    ("unknown-account", lambda: encoded({**lead(), "account_id": "no-such-account"}), "unknown account"),
    ("emoji-name", lambda: encoded(lead(first_name="😀🏠")), "payload.contact.first_name: must contain letters"),
    ("bidi-name", lambda: encoded(lead(last_name="Lopez\u202e")),
     "payload.contact.last_name: must not contain bidirectional control characters"),
    ("too-large", lambda: encoded(lead(padding="x" * 70_000)), "larger than 65536 bytes"),
]  # fmt: skip


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    value: bytes = dict(record.headers)[name]
    return value.decode()


@pytest.mark.parametrize(("make", "reason"), [(m, r) for _, m, r in POISON], ids=[n for n, _, _ in POISON])
async def test_poison_goes_to_the_dlq_with_reason_and_original_bytes_and_the_next_lead_goes_through(
    produce: Callable[[bytes], Any], wait_for_record: WaitForRecord, make: Callable[[], bytes], reason: str
) -> None:
    poison, valid = make(), lead()
    await produce(poison)
    await produce(encoded(valid))

    dead = await wait_for_record(topics.dlq(topics.LEADS_INBOUND), lambda r: r.value == poison)
    assert reason in header(dead, "dlq-reason")
    assert header(dead, "dlq-source-topic") == topics.LEADS_INBOUND
    assert header(dead, "dlq-service") == "intake"
    assert dead.key == ACCOUNT.encode()
    assert "Maria.Lopez" not in header(dead, "dlq-reason")  # reasons name fields, never values

    await wait_for_record(topics.LEADS_INTAKE, with_event_id(received_id(valid)))


async def test_a_resent_event_is_one_lead_and_a_reused_event_id_is_dead_lettered(
    stack: Stack, produce: Callable[[bytes], Any], wait_for_record: WaitForRecord
) -> None:
    message = lead()
    reused = lead(uuid.UUID(message["event_id"]), first_name="Other")
    closing = lead()
    for value in (encoded(message), encoded(message), encoded(reused), encoded(closing)):
        await produce(value)

    records = await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(received_id(closing)))
    assert sum(with_event_id(received_id(message))(r) for r in records) == 1
    dead = await wait_for_record(topics.dlq(topics.LEADS_INBOUND), lambda r: r.value == encoded(reused))
    assert header(dead, "dlq-reason") == "PoisonMessage: event_id: already used for a different lead"


async def test_partner_outcomes_are_counted(
    stack: Stack, produce: Callable[[bytes], Any], wait_for_record: WaitForRecord
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as http:
        before = (await http.get("/metrics")).text
        good, bad = lead(), lead(phone="12")
        await produce(encoded(bad))
        await produce(encoded(good))
        await wait_for_record(topics.LEADS_INTAKE, with_event_id(received_id(good)))

        # The record can be read a moment before intake, its publish acknowledged, counts it.
        async def counted() -> dict[str, float] | None:
            after = (await http.get("/metrics")).text
            deltas = {
                "received": metric(after, "intake_leads_received_total", source="partner")
                - metric(before, "intake_leads_received_total", source="partner"),
                "accepted": metric(after, "intake_leads_accepted_total", source="partner")
                - metric(before, "intake_leads_accepted_total", source="partner"),
                "rejected": metric(after, "intake_leads_rejected_total", source="partner", reason="invalid")
                - metric(before, "intake_leads_rejected_total", source="partner", reason="invalid"),
                "dead-lettered": metric(after, "intake_dead_lettered_messages_total", topic=topics.LEADS_INBOUND)
                - metric(before, "intake_dead_lettered_messages_total", topic=topics.LEADS_INBOUND),
            }
            return deltas if deltas["accepted"] >= 1 and deltas["dead-lettered"] >= 1 else None

        deltas = await eventually(counted, what="intake's counters of the partner leads")
        assert deltas is not None

    assert deltas["received"] >= 2
    assert deltas["accepted"] >= 1
    assert deltas["rejected"] >= 1
    assert deltas["dead-lettered"] >= 1


async def test_a_resend_of_a_lead_claimed_before_a_crash_is_published_once_though_a_newer_rule_refuses_it(
    stack: Stack, produce: Callable[[bytes], Any]
) -> None:
    """An older intake accepted this lead, claimed its event id and stopped before publishing (the claim
    is written here with intake's own store, as it left it); the rules now refuse its name. Refused, the
    resend would be dead-lettered and its replay refused again: the lead never published (decision 0081)."""
    message = lead(last_name="Lopez\u202e")  # a bidirectional control: refused since
    submitted = LeadSubmitted.model_validate(message)
    sub = partner.submission(submitted)
    then = normalize_submission(dataclasses.replace(sub, last_name="Lopez"), default_region="US")  # as accepted
    event = LeadReceived.create(
        account_id=ACCOUNT, payload=then, occurred_at=submitted.occurred_at,
        event_id=received_event_id(submitted.event_id, ACCOUNT), correlation_id=submitted.correlation_id,
    )  # fmt: skip
    stored_key = keys.stored_key(keys.PARTNER, ACCOUNT, message["event_id"])
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        store = MongoIdempotencyStore(client["leadflow"])
        claim = Claim(event.event_id, "normalized-then", event.model_dump_json(), False, submission_hash(sub))
        assert await store.claim(stored_key, claim) == (claim, True)

        closing = lead()
        await produce(encoded(message))
        await produce(encoded(closing))
        records = await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(received_id(closing)))
        published = [json.loads(r.value or b"") for r in records if with_event_id(received_id(message))(r)]
        assert [(e["event_id"], e["payload"]["contact"]["last_name"]) for e in published] == [
            (received_id(message), "Lopez")
        ]

        async def marked() -> bool:
            stored = await store.find(stored_key)
            return stored is not None and bool(stored.published)

        await eventually(marked, what="the claim marked published")
    finally:
        await client.close()


async def test_a_configured_partner_s_leads_are_taken_only_signed_by_it_and_for_its_accounts(
    stack: Stack, wait_for_record: WaitForRecord
) -> None:
    """Intake restarted with two partners configured (INTAKE_PARTNERS__PRODUCERS, decision 0098): homefinder serves
    this account only, listings-direct another one. Through the real process: homefinder's signed lead becomes a
    lead; its lead signed with the old demo secret, unsigned, re-keyed after signing, and listings-direct's lead for
    this account are dead-lettered with the reason and counted as unauthorized; the lead after them goes through."""
    homefinder, listings = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    partners = {"homefinder": {"secrets": [homefinder], "accounts": [ACCOUNT]},
                "listings-direct": {"secrets": [listings], "accounts": ["beta-homes"]}}  # fmt: skip
    key = ACCOUNT.encode()
    good, closing, old_secret, unsigned, rekeyed, other = (lead() for _ in range(6))
    other["payload"]["source"]["partner"] = "listings-direct"
    sends = [
        (good, key, signed(encoded(good), key, homefinder)),
        (old_secret, key, signed(encoded(old_secret), key)),  # the demo secret, no longer this partner's
        (unsigned, key, []),
        (rekeyed, b"beta-homes", signed(encoded(rekeyed), key, homefinder)),
        (other, key, signed(encoded(other), key, listings)),
        (closing, key, signed(encoded(closing), key, homefinder)),
    ]
    why = {"old_secret": "leadflow-signature: does not match", "unsigned": "leadflow-signature: missing",
           "rekeyed": "leadflow-signature: does not match",
           "other": "account_id: the partner may not publish leads for this account"}  # fmt: skip
    refused = {"old_secret": old_secret, "unsigned": unsigned, "rekeyed": rekeyed, "other": other}
    with intake_configured(stack, {"INTAKE_PARTNERS__PRODUCERS": json.dumps(partners)}):
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
        await producer.start()
        try:
            for message, record_key, headers in sends:
                await producer.send_and_wait(topics.LEADS_INBOUND, encoded(message), key=record_key, headers=headers)
        finally:
            await producer.stop()
        records = await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(received_id(closing)))
        assert any(with_event_id(received_id(good))(r) for r in records)
        for name, message in refused.items():
            dead = await wait_for_record(topics.dlq(topics.LEADS_INBOUND), is_value(encoded(message)))
            assert header(dead, "dlq-error-type") == "PartnerRefused", name
            assert header(dead, "dlq-reason").startswith(f"PartnerRefused: {why[name]}"), name
            assert not any(with_event_id(received_id(message))(r) for r in records), name
        async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as http:
            text = (await http.get("/metrics")).text
        assert metric(text, "intake_leads_rejected_total", source="partner", reason="unauthorized") == 4


def is_value(value: bytes) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    return lambda record: record.value == value


@contextlib.contextmanager
def intake_configured(stack: Stack, env: dict[str, str]) -> Iterator[None]:
    """The stack's intake restarted with `env` added, and restarted as it was afterwards."""

    def restart() -> None:
        stack.services["intake"].stop()
        stack.start_service("intake")
        stack.wait_ready("intake", timeout=90)

    stack.extra_env["intake"] = stack.extra_env.get("intake", {}) | env
    try:
        restart()
        yield
    finally:
        for name in env:
            stack.extra_env["intake"].pop(name, None)
        restart()
