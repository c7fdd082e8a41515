"""Intake's Kafka edge (intake/entrypoints/kafka.py) on FastStream's in-memory test broker: a partner's
lead in, a LeadReceived out through the declared publisher; what cannot be accepted dead-lettered with
its reason and counted. In-memory ports (fakes_intake.py).

tests/integration/test_kafka_handlers_on_tansu.py runs the same test against the real broker.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from fakes_intake import FakeAccounts, FakeStore
from partner_messages import DEMO_PARTNER, signature
from test_consumer_edge import Edge, edge

from leadflow_intake import contract
from leadflow_intake.domain import partner_signature
from leadflow_intake.domain.partner_signature import ANY_ACCOUNT, PartnerKeys
from leadflow_intake.entrypoints import kafka
from leadflow_intake.handlers import Intake
from leadflow_intake.metrics import IntakeMetrics
from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_shared import topics
from leadflow_shared.consumers import Batch, BatchRejections
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

MAX_BYTES = 4096


def submitted(account: str, message: str = "Is it still available?", **changes: object) -> bytes:
    payload = {**contract.EXAMPLE["payload"], "message": message}
    lead = {**contract.EXAMPLE, "event_id": str(uuid.uuid4()), "account_id": account, "payload": payload, **changes}
    return json.dumps(lead).encode()


# The partners intake knows in these tests: the demo partner for every account (as in the embedded stack), and
# one that serves only OTHER_ACCOUNT.
LISTINGS_DIRECT, LISTINGS_SECRET, OTHER_ACCOUNT = "listings-direct", "listings-direct-secret", "other-office"
PARTNERS = {
    DEMO_PARTNER: PartnerKeys(secrets=(DEVELOPMENT_SECRET.encode(),), accounts=frozenset({ANY_ACCOUNT})),
    LISTINGS_DIRECT: PartnerKeys(secrets=(LISTINGS_SECRET.encode(),), accounts=frozenset({OTHER_ACCOUNT})),
}


@dataclasses.dataclass
class PartnerIntake:
    """Intake consuming the partner topic for a new account, and (key, event) of each lead it published for it."""

    edge: Edge
    account: str
    store: FakeStore
    metrics: IntakeMetrics
    published: list[tuple[bytes | None, LeadReceived]]

    @property
    def received(self) -> list[LeadReceived]:
        return [event for _, event in self.published]

    async def send(self, value: bytes, key: bytes, secret: str | None = DEVELOPMENT_SECRET) -> None:
        """Publish `value` to the partner topic as a partner would: signed with `secret` (None: unsigned)."""
        headers = None if secret is None else {partner_signature.HEADER: signature(value, key, secret)}
        await self.edge.publish(topics.LEADS_INBOUND, value, key, headers)


async def partner_intake(edge: Edge, *, accept_unsigned: bool = False) -> PartnerIntake:
    """Started: intake's partner consumer over in-memory ports, a watcher of what it publishes, dead letters kept."""
    account, store = f"edge-{uuid.uuid4().hex[:8]}", FakeStore()
    metrics = IntakeMetrics(edge.runtime.registry)
    publish = edge.runtime.publisher(topics.LEADS_INTAKE, LeadReceived, description="leads in")
    intake = Intake(accounts=FakeAccounts({account: "US"}, {account: {"blair-chen"}}), store=store, publish=publish)
    admit = kafka.signed_by_its_partner(PARTNERS, accept_unsigned=accept_unsigned, metrics=metrics)
    kafka.subscribe(edge.runtime, intake=lambda: intake, metrics=metrics, group_id=f"intake-{account}",
                    max_bytes=MAX_BYTES, admit=admit)  # fmt: skip
    found = PartnerIntake(edge, account, store, metrics, [])

    async def on_leads(leads: Batch[LeadReceived]) -> BatchRejections:
        found.published.extend((lead.message.key, lead.event) for lead in leads if lead.event.account_id == account)
        return []

    edge.runtime.subscribe(topics.LEADS_INTAKE, on_leads, group_id=f"watcher-{account}")
    edge.collect_dead_letters(topics.LEADS_INBOUND)
    await edge.start()
    return found


async def test_a_partner_lead_becomes_one_lead_received_and_what_cannot_be_accepted_is_dead_lettered(
    edge: Edge,
) -> None:
    intake = await partner_intake(edge)
    account = intake.account
    key = account.encode()
    good = submitted(account, message="the first lead")
    await intake.send(good, key)
    await intake.send(good, key)  # a partner's resend: one lead
    await intake.send(submitted(account, message="x" * MAX_BYTES), key)
    await intake.send(submitted(account, account_id=7), key)
    await intake.send(submitted(f"{account}-unknown"), key)
    last = submitted(account, message="the last lead")  # same key, same partition: handled after all the others
    await intake.send(last, key)

    await edge.settle(lambda: len(intake.received) == 2 and len(edge.dead_of(key)) == 3)
    assert [lead.payload.message for lead in intake.received] == ["the first lead", "the last lead"]
    assert sorted(d["dlq-error-type"] for d in edge.dead_of(key)) == ["PoisonMessage", "TooLarge", "ValidationError"]
    assert {d["dlq-service"] for d in edge.dead_of(key)} == {"edge-test"}

    def count(name: str, **labels: str) -> float:
        return edge.runtime.registry.get_sample_value(name, {"source": "partner", **labels}) or 0.0

    assert count("intake_leads_received_total") == 6
    assert count("intake_leads_rejected_total", reason="too_large") == 1
    assert count("intake_leads_rejected_total", reason="invalid") == 1
    assert count("intake_leads_duplicate_total") == 1
    assert count("intake_leads_rejected_total", reason="unknown_account") == 1


async def test_a_partner_lead_no_store_can_hold_is_dead_lettered_naming_the_field_and_claims_nothing(
    edge: Edge,
) -> None:
    """A NUL in a campaign field's name: intake used to claim and publish the lead, and the router then failed to
    store it at every retry and dead-lettered it (BSON ends a key at NUL): a lead lost after it was accepted.
    Refused at the edge now, naming the field (decision 0083); the partition goes on to the next lead."""
    intake = await partner_intake(edge)
    account, store = intake.account, intake.store
    key = account.encode()
    refused = json.loads(submitted(account, message="refused"))
    refused["payload"]["source"]["utm"] = {"utm_source": "x", "utm\u0000medium": "y"}
    await intake.send(json.dumps(refused).encode(), key)
    await intake.send(submitted(account, message="the next lead"), key)

    await edge.settle(lambda: len(intake.received) == 1 and len(edge.dead_of(key)) == 1)
    assert [lead.payload.message for lead in intake.received] == ["the next lead"]
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
        ("NotStrictRecord", "NotStrictRecord: payload.source.utm: a member name holds a NUL character (\\u0000), "
         "which no stored document can hold")
    ]  # fmt: skip
    assert len(store.claims) == 1, "the refused lead claimed its event id"
    rejected = {"source": "partner", "reason": "invalid"}
    assert edge.runtime.registry.get_sample_value("intake_leads_rejected_total", rejected) == 1


async def test_a_partner_lead_whose_phone_lead_received_cannot_carry_is_dead_lettered_naming_the_contracts_field(
    edge: Edge,
) -> None:
    """phonenumbers calls "+49 1641" valid, and LeadReceived cannot carry its 6 digits: the ValidationError of
    building the event was dead-lettered as `contact.phone: String should match pattern ...` (LeadReceived's path,
    not the contract's) and not counted as a rejected lead. Refused by the normalizer now, like any bad field."""
    intake = await partner_intake(edge)
    account = intake.account
    key = account.encode()
    refused = json.loads(submitted(account, message="refused"))
    refused["payload"]["contact"]["phone"] = "+49 1641"
    await intake.send(json.dumps(refused).encode(), key)
    await intake.send(submitted(account, message="the next lead"), key)

    await edge.settle(lambda: len(intake.received) == 1 and len(edge.dead_of(key)) == 1)
    assert [lead.payload.message for lead in intake.received] == ["the next lead"]
    assert [(d["dlq-error-type"], d["dlq-reason"]) for d in edge.dead_of(key)] == [
        (
            "PoisonMessage",
            "PoisonMessage: payload.contact.phone: not a phone number a lead can carry: E.164 has 7 to 15 digits",
        )
    ]
    rejected = {"source": "partner", "reason": "invalid"}
    assert edge.runtime.registry.get_sample_value("intake_leads_rejected_total", rejected) == 1


async def test_a_partner_lead_replayed_under_other_keys_is_one_lead_keyed_by_its_account(edge: Edge) -> None:
    """A partner replays a lead under another record key (another partition, maybe another consumer), even under
    another account's name: the event id is the idempotency key, the account the one the event names. One lead,
    published once, keyed by its account; the same event id with another lead is dead-lettered (I1)."""
    intake = await partner_intake(edge)
    account, received = intake.account, intake.published
    lead = submitted(account, message="once")
    for key in (account.encode(), b"another-account", b"\xff\x00", account.encode()):
        await intake.send(lead, key)
    # Partitions are consumed in no set order: the other lead under its event id goes once the lead was taken.
    await edge.settle(lambda: any(event.payload.message == "once" for _, event in received))
    changed = json.loads(lead)
    changed["payload"]["message"] = "another lead under the same event id"
    await intake.send(json.dumps(changed).encode(), b"re-keyed")
    await intake.send(submitted(account, message="the next lead"), b"re-keyed")

    def messages() -> set[str]:
        return {event.payload.message for _, event in received}

    await edge.settle(lambda: messages() == {"once", "the next lead"} and len(edge.dead_of(b"re-keyed")) == 1)
    # Copies of one event id may reach the topic when two partitions race (I1: consumers drop them); one lead each.
    assert {(key, event.payload.message) for key, event in received} == {
        (account.encode(), "once"),
        (account.encode(), "the next lead"),
    }
    assert len({event.event_id for _, event in received}) == 2
    assert edge.dead_of(b"re-keyed")[0]["dlq-reason"] == "PoisonMessage: event_id: already used for a different lead"


async def test_a_partner_lead_not_signed_by_its_partner_for_its_account_is_dead_lettered_with_the_reason(
    edge: Edge,
) -> None:
    """Kafka's ACLs let a partner write the topic, not choose whose leads it sends (decision 0098): a message is
    taken only signed by the partner its payload names, over its topic, key and value, for an account that partner
    serves. Everything else goes to the dead-letter topic with the reason, counted as unauthorized; nothing is
    claimed or published, and the next lead goes on."""
    intake = await partner_intake(edge)
    account, key = intake.account, intake.account.encode()
    as_listings = json.loads(submitted(account, message="as listings-direct"))
    as_listings["payload"]["source"]["partner"] = LISTINGS_DIRECT
    signed_value = submitted(account, message="signed, then changed")
    refused: list[tuple[bytes, bytes, str | None, str]] = [
        (submitted(account, message="unsigned"), key, None, "leadflow-signature: missing"),
        (submitted(account, message="wrong secret"), key, LISTINGS_SECRET, "leadflow-signature: does not match"),
        # The listings partner's own valid signature, for an account it does not serve.
        (json.dumps(as_listings).encode(), key, LISTINGS_SECRET, "account_id: the partner may not publish"),
        # A partner naming itself as one intake does not know.
        (submitted(account, message="stranger").replace(b'"homefinder"', b'"stranger"'), key, DEVELOPMENT_SECRET,
         "payload.source.partner: not a partner configured"),
    ]  # fmt: skip
    for value, record_key, secret, _ in refused:
        await intake.send(value, record_key, secret)
    # A signed record changed on the way: another value, another key.
    headers = {partner_signature.HEADER: signature(signed_value, key)}
    await edge.publish(topics.LEADS_INBOUND, signed_value.replace(b"then changed", b"then CHANGED"), key, headers)
    await edge.publish(topics.LEADS_INBOUND, signed_value, b"re-keyed-" + key, headers)
    await intake.send(submitted(account, message="the next lead"), key)

    await edge.settle(lambda: len(intake.received) == 1 and len(edge.dead_of(key)) == 5)
    assert [lead.payload.message for lead in intake.received] == ["the next lead"]
    reasons = [d["dlq-reason"] for d in edge.dead_of(key)] + [d["dlq-reason"] for d in edge.dead_of(b"re-keyed-" + key)]
    expected = [why for *_, why in refused] + ["leadflow-signature: does not match"] * 2
    assert len(reasons) == len(expected) == 6
    for reason, why in zip(reasons, expected, strict=True):
        assert reason.startswith(f"PartnerRefused: {why}"), reason
    assert {d["dlq-error-type"] for d in edge.dead_of(key)} == {"PartnerRefused"}
    assert len(intake.store.claims) == 1, "a refused message claimed its event id"
    rejected = {"source": "partner", "reason": "unauthorized"}
    assert edge.runtime.registry.get_sample_value("intake_leads_rejected_total", rejected) == 6


async def test_with_unsigned_accepted_an_unsigned_lead_is_taken_and_a_bad_signature_is_still_refused(
    edge: Edge,
) -> None:
    """INTAKE_PARTNERS__UNSIGNED=accept (a partner moving to signing): a message without a signature is taken as
    before decision 0098; one that carries a signature is still checked."""
    intake = await partner_intake(edge, accept_unsigned=True)
    account, key = intake.account, intake.account.encode()
    await intake.send(submitted(account, message="unsigned"), key, None)
    await intake.send(submitted(account, message="badly signed"), key, LISTINGS_SECRET)
    await intake.send(submitted(account, message="signed"), key)

    await edge.settle(lambda: len(intake.received) == 2 and len(edge.dead_of(key)) == 1)
    assert [lead.payload.message for lead in intake.received] == ["unsigned", "signed"]
    assert edge.dead_of(key)[0]["dlq-reason"].startswith("PartnerRefused: leadflow-signature: does not match")
    assert edge.runtime.registry.get_sample_value("intake_partner_unsigned_accepted_total") == 1
