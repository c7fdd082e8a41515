"""Tracing across the four services (issue 13.4, decision 0046).

One stack of this module's own runs with tracing on in every service, exporting to the
stack's OTLP/HTTP receiver (`TraceSink`). A website lead posted to intake with a caller's
`traceparent` must come out as one trace: intake's request, the router's consume and
publish, the notifier's consume and SMTP send, crm-api's consume (projection), with MongoDB
spans, each consumer's parent the producer span of the hop before. Leads the router reads
in one batch each keep their own trace. The session's normal stack runs with tracing off
(the default) and must not even connect to its receiver.

A separate stack costs its start-up (about ten seconds) but leaves the session's stack, that
every other e2e test uses, exactly as production runs by default: tracing off.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from seeding import seed_in_process

from leadflow_devstack.stack import SERVICES, Stack
from leadflow_devstack.testing import eventually, records_to_end
from leadflow_devstack.tokens import bearer
from leadflow_devstack.traces import ReceivedSpan
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

NAMES = {service: f"leadflow-{service}" for service, _, _ in SERVICES}
# (service, span) of a website lead's path; a span's MongoDB children end, and are exported, before it.
PATH = {("intake", "POST /v1/leads"), ("intake", "leads.intake.v1 create"), ("router", "leads.intake.v1 process"),
        ("router", "leads.events.v1 create"), ("notifier", "leads.events.v1 process"), ("notifier", "smtp send"),
        ("crm-api", "leads.events.v1 process")}  # fmt: skip


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    on = {service: {f"{prefix}TRACING__ENABLED": "true"} for service, prefix, _ in SERVICES}
    system = Stack(tmp_path_factory.mktemp("traced"), seed_loader=seed_in_process, extra_env=on)
    try:
        system.start_infra()
        system.start_services()
        yield system
    finally:
        system.stop()


def website_lead() -> dict[str, str]:
    marker = uuid.uuid4().hex[:8]
    return {"account_id": "acme-realty", "first_name": "Robin", "last_name": f"trace-{marker}",
            "email": f"robin.{marker}@example.com", "message": "Interested in 12 Elm St."}  # fmt: skip


def mails_for(stack: Stack, lead_id: str) -> list[EmailMessage]:
    assert stack.mail is not None
    return [m for m in stack.mail.received() if m["X-Leadflow-Lead-Id"] == lead_id]


async def projected(client: httpx.AsyncClient, stack: Stack, lead_id: str) -> bool:
    """crm-api has the lead in its views (its projection ran)."""
    broker = bearer(stack.token("acme-broker", "broker", "acme-realty"))
    url = f"{stack.url('crm-api')}/v1/accounts/acme-realty/leads/{lead_id}"
    return (await client.get(url, headers=broker)).status_code == 200


def spans_of(stack: Stack, trace_id: str) -> list[ReceivedSpan]:
    assert stack.traces is not None
    return [s for s in stack.traces.spans() if s.trace_id == trace_id]


def one(spans: list[ReceivedSpan], service: str, name: str, kind: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == NAMES[service] and s.name == name and s.kind == kind]
    assert found, f"no {kind} span {name!r} of {service} in the trace: {sorted((s.service, s.name) for s in spans)}"
    return found[0]


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    by_id = {s.span_id: s for s in spans}
    chain: list[ReceivedSpan] = []
    while (parent := by_id.get(span.parent_span_id)) is not None:
        chain.append(parent)
        span = parent
    return chain


async def test_one_trace_runs_from_the_intake_request_to_the_email_and_the_projection(traced: Stack) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{traced.url('intake')}/v1/leads", json=website_lead(),
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        lead_id = response.json()["event_id"]
        await eventually(lambda: mails_for(traced, lead_id), what="the offer email")
        await eventually(lambda: projected(client, traced, lead_id), what="the lead in crm-api")

    def complete() -> list[ReceivedSpan]:
        """The trace once every span asserted on below has arrived (each process exports on its own)."""
        spans = spans_of(traced, trace_id)
        return spans if {(s.service.removeprefix("leadflow-"), s.name) for s in spans} >= PATH else []

    spans = await eventually(complete, timeout=15, what="the trace's spans at the receiver")

    assert {s.service for s in spans} == set(NAMES.values()), "spans of the four services, in one trace"
    request = one(spans, "intake", "POST /v1/leads", "SERVER")
    assert request.parent_span_id == caller_span, "intake continues the caller's trace"
    assert request.attributes.get("http.target") == "/v1/leads"
    intake_publish = one(spans, "intake", "leads.intake.v1 create", "PRODUCER")
    assert request in ancestors(intake_publish, spans)

    router_consume = one(spans, "router", "leads.intake.v1 process", "CONSUMER")
    assert router_consume.parent_span_id == intake_publish.span_id, "the router continues intake's record"
    router_publish = one(spans, "router", "leads.events.v1 create", "PRODUCER")
    assert router_consume in ancestors(router_publish, spans), "the router publishes inside its consume span"

    for service in ("notifier", "crm-api"):
        consume = one(spans, service, "leads.events.v1 process", "CONSUMER")
        parent = next(s for s in spans if s.span_id == consume.parent_span_id)
        assert (parent.service, parent.kind) == (NAMES["router"], "PRODUCER"), f"{service} continues the router's"
        assert parent.name == "leads.events.v1 create"
    delivery = one(spans, "notifier", "smtp send", "CLIENT")
    assert one(spans, "notifier", "leads.events.v1 process", "CONSUMER") in ancestors(delivery, spans)
    assert delivery.attributes.get("server.address") == "127.0.0.1"

    mongo = [s for s in spans if s.attributes.get("db.system") == "mongodb"]
    assert {s.service for s in mongo} >= {NAMES["intake"], NAMES["router"], NAMES["crm-api"]}, "MongoDB spans"
    assert all(s.kind == "CLIENT" and s.parent_span_id for s in mongo)
    assert not any(str(s.attributes.get("db.statement", "")).count("@") for s in mongo), "no documents in spans"

    # crm-api's own requests (the test's reads): the path's ids are not recorded, only the route.
    def reads() -> list[ReceivedSpan]:
        assert traced.traces is not None
        return [s for s in traced.traces.spans() if s.service == NAMES["crm-api"] and s.kind == "SERVER"]

    await eventually(reads, timeout=15, what="crm-api's server spans")
    assert {s.name for s in reads()} == {"GET /v1/accounts/{account_id}/leads/{lead_id}"}
    assert {s.attributes["http.target"] for s in reads()} == {"/v1/accounts/{account_id}/leads/{lead_id}"}
    assert not [s for s in reads() if any(lead_id in str(v) for v in s.attributes.values())], "a lead id in a span"
    for process in traced.services.values():
        assert "tracing on" in process.log_path.read_text()
    # Log lines written inside a span carry its ids (leadflow_shared.logs): the notifier's "sent".
    text = traced.services["notifier"].log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("trace_id") == trace_id and line["message"].endswith("sent") for line in lines)


async def test_leads_routed_in_one_batch_each_publish_in_their_own_trace(traced: Stack) -> None:
    leads = [
        LeadReceived.create(
            account_id="acme-realty",
            occurred_at=datetime.now(UTC),
            payload=LeadReceivedPayload(
                contact=Contact(first_name="Kim", email=f"kim.{uuid.uuid4().hex[:8]}@example.com"),
                source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
            ),
        )
        for _ in range(4)
    ]
    traces = {str(lead.event_id): secrets.token_hex(16) for lead in leads}
    # One produce request, one partition (one account): the router fetches them as one batch.
    producer = AIOKafkaProducer(bootstrap_servers=traced.bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        sent = []
        for lead in leads:
            parent = f"00-{traces[str(lead.event_id)]}-{secrets.token_hex(8)}-01"
            value = lead.model_dump_json().encode()
            headers = [("traceparent", parent.encode())]
            sent.append(await producer.send(topics.LEADS_INTAKE, value, key=b"acme-realty", headers=headers))
        for future in sent:
            await future
    finally:
        await producer.stop()

    async def published() -> dict[str, set[str]]:
        """Lead id -> trace ids in the headers of the router's events about it."""
        found: dict[str, set[str]] = {}
        for record in await records_to_end(traced.bootstrap, topics.LEADS_EVENTS):
            lead_id = json.loads(record.value or b"{}").get("payload", {}).get("lead_id")
            if lead_id in traces:
                parent = dict(record.headers).get("traceparent", b"").decode()
                found.setdefault(lead_id, set()).add(parent.split("-")[1] if parent.count("-") == 3 else "")
        return found if found.keys() == traces.keys() else {}

    found = await eventually(published, what="the router's events about the four leads")
    assert found == {lead_id: {trace_id} for lead_id, trace_id in traces.items()}

    def batch_spans() -> list[ReceivedSpan]:
        assert traced.traces is not None
        ours = [s for s in traced.traces.spans() if s.trace_id in traces.values()]
        return [s for s in ours if s.name == "leads.intake.v1 process"
                and s.attributes["messaging.batch.message_count"] == len(leads)]  # fmt: skip

    [batch] = await eventually(batch_spans, timeout=15, what="one router span for the batch of four")
    # Its parent is the first record's context, its links the three others'.
    assert {trace for trace, _ in batch.links} | {batch.trace_id} == set(traces.values())


async def test_tracing_is_off_by_default_and_nothing_is_exported(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{stack.url('intake')}/v1/leads",
            json=website_lead(),
            headers={"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
        )
        assert response.status_code == 202, response.text
        lead_id = response.json()["event_id"]
        # Every service has handled it by now; with tracing on, spans leave 0.1 s after they end.
        await eventually(lambda: mails_for(stack, lead_id), what="the offer email")
        await eventually(lambda: projected(client, stack, lead_id), what="the lead in crm-api")
    assert stack.traces is not None
    assert stack.traces.connections == 0, "a service connected to the OTLP endpoint with tracing off"
    for service, process in stack.services.items():
        assert "tracing on" not in process.log_path.read_text(), f"{service} installed tracing"
