"""Every HTTP way a lead comes in, end to end through the real broker: forms, listing inquiries, webhooks.

A second intake process runs here beside the stack's (same Kafka and MongoDB), configured with
webhook providers whose secrets this module generates; it does not consume leads.inbound.v1.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import schemathesis
import yaml
from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from leadflow_devstack.processes import ManagedProcess
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import WaitForRecord, metric, records_until
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.domain import keys as key_spaces
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.domain.lead import Submission, normalize_submission
from leadflow_intake.domain.providers import GenericLeadIn
from leadflow_intake.domain.signature import SignedRequest, sign, webhook_path
from leadflow_intake.handlers import Claim, form_hash, webhook_hash
from leadflow_intake.settings import DEVELOPMENT_SECRET
from leadflow_shared import topics
from leadflow_shared.events.intake import LeadReceived

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "acme-realty"
WEBHOOK = "/v1/accounts/{account_id}/webhooks/{provider}"


@dataclass
class Intake:
    url: str
    secrets: dict[str, bytes]
    process: ManagedProcess

    def signed(
        self,
        provider: str,
        body: bytes,
        *,
        at: int | None = None,
        secret: bytes | None = None,
        account: str = ACCOUNT,
        key: str | None = None,
    ) -> dict[str, str]:
        """Signature headers (scheme v2) for `body` posted for `account` to `provider`, with `key` if given."""
        ts = int(time.time()) if at is None else at
        request = SignedRequest("POST", webhook_path(account, provider), key, body)
        signature = sign(secret if secret is not None else self.secrets[provider], ts, request)
        headers = {
            "X-Leadflow-Timestamp": str(ts),
            "X-Leadflow-Signature": signature,
            "content-type": "application/json",
        }
        return headers | ({"Idempotency-Key": key} if key is not None else {})


@pytest.fixture(scope="module")
def intake(stack: Stack) -> Iterator[Intake]:
    keys = {name: secrets.token_urlsafe(32) for name in ("homefinder", "idx-site", "portal")}
    providers = {
        "homefinder": {"format": "generic", "secrets": [keys["homefinder"]], "source_name": "HomeFinder"},
        "idx-site": {"format": "fub-events", "secrets": [keys["idx-site"]]},
        "portal": {"format": "portal-push", "secrets": [keys["portal"]], "accounts": [ACCOUNT]},
    }
    with stack.extra_intake("intake-under-test", providers) as url:
        yield Intake(url, {k: v.encode() for k, v in keys.items()}, stack.services["intake-under-test"])


@pytest_asyncio.fixture
async def client(intake: Intake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=intake.url, timeout=10) as http:
        yield http


def marker() -> str:
    """Unique text that is a valid name part: it holds a letter (hex digits alone may not)."""
    return f"m{uuid.uuid4().hex[:10]}"


@dataclass
class WayIn:
    """One way in: where to post, the body, and what the LeadReceived must say."""

    name: str
    path: str
    body: Callable[[str], dict[str, Any]]
    expected_source: dict[str, Any]
    provider: str | None = None
    expected_contact: dict[str, Any] = field(default_factory=dict)
    expected_criteria: dict[str, Any] | None = None  # what routing rules match on (issue 15), normalized


PATHS = [
    WayIn(
        "brokerage-site",
        "/v1/leads",
        lambda m: {
            "account_id": ACCOUNT,
            "first_name": "ROBIN",
            "last_name": f"o'neil-{m}",
            "email": f"Robin.{m}@Example.com",
            "phone": "(415) 555-0123",
            "site_host": "WWW.Acme-Realty.example",
            "utm": {"utm_source": "google"},
            "message": "3-bed near schools?\r\n",
            "criteria": {
                "intent": "buy",
                "property_type": "condo",
                "price": {"min": 400_000, "max": 550_000},
                "place": {"city": "Austin", "postal_code": " 78701 ", "state": "tx"},
                "tags": ["First-Time Buyer", "first-time buyer", "VIP"],
            },
        },
        {
            "channel": "brokerage_site",
            "name": "Website",
            "site_host": "www.acme-realty.example",
            "utm": {"utm_source": "google"},
        },
        expected_contact={"first_name": "Robin", "phone": "+14155550123"},
        expected_criteria={
            "intent": "buy",
            "property_type": "condo",
            "price": {"min": 400_000, "max": 550_000},
            "place": {"city": "Austin", "postal_code": "78701", "county": None, "state": "TX"},
            "tags": ["first-time buyer", "vip"],
            "mls_number": None,
        },
    ),
    WayIn(
        "agent-subdomain",
        "/v1/leads",
        lambda m: {
            "account_id": ACCOUNT,
            "first_name": "Sam",
            "last_name": m,
            "email": f"sam.{m}@example.com",
            "site_kind": "agent",
            "site_host": "https://Alex.Acme-Realty.example/contact",
        },
        {"channel": "agent_site", "site_host": "alex.acme-realty.example"},
    ),
    WayIn(
        "listing-inquiry",
        "/v1/listing-inquiries",
        lambda m: {
            "account_id": ACCOUNT,
            "first_name": "lee",
            "last_name": m,
            "phone": "212.555.0199",
            "listing_id": "MLS-4471",
            "listing_agent_id": "blair-chen",
            "message": "Open house times?",
            "criteria": {"intent": "rent", "mls_number": "TX-4471", "price": {}, "place": {}},
        },
        {
            "channel": "listing_inquiry",
            "name": "Listing inquiry",
            "listing_id": "MLS-4471",
            "listing_agent_id": "blair-chen",
        },
        expected_contact={"first_name": "Lee", "phone": "+12125550199"},
        expected_criteria={  # empty price and place: left out
            "intent": "rent",
            "property_type": None,
            "price": None,
            "place": None,
            "tags": [],
            "mls_number": "TX-4471",
        },
    ),
    WayIn(
        "webhook-generic",
        f"/v1/accounts/{ACCOUNT}/webhooks/homefinder",
        lambda m: {
            "first_name": "Kim",
            "last_name": m,
            "email": f"Kim.{m}@Example.org",
            "assigned_agent_id": "casey-okafor",
            "utm": {"utm_campaign": "spring"},
        },
        {"channel": "lead_gen", "provider": "homefinder", "name": "HomeFinder", "assigned_agent_id": "casey-okafor"},
        provider="homefinder",
        expected_contact={"first_name": "Kim"},
    ),
    WayIn(
        "webhook-fub-events",
        f"/v1/accounts/{ACCOUNT}/webhooks/idx-site",
        lambda m: {
            "source": "acme-idx.example",
            "system": "IDXBuilder",
            "type": "Registration",
            "person": {
                "firstName": "PAT",
                "lastName": m,
                "emails": [{"value": f"pat.{m}@example.com"}],
                "phones": [{"value": "646-555-0144"}],
                "assignedTo": "blair-chen",
                "tags": ["Investor", {"not": "a tag"}],
            },
            "property": {
                "street": "12 Elm St",
                "city": "Brooklyn",
                "state": "ny",
                "code": "11201",
                "mlsNumber": "MLS-12",
                "type": "Townhome",
                "price": "$1,250,000",
                "bedrooms": 3,
            },
            "campaign": {"source": "fb"},
        },
        {
            "channel": "lead_gen",
            "provider": "idx-site",
            "name": "idx-site",
            "assigned_agent_id": "blair-chen",
            "listing_id": "MLS-12",
            "utm": {"utm_source": "fb"},
        },
        provider="idx-site",
        expected_contact={"first_name": "Pat", "phone": "+16465550144"},
        expected_criteria={  # a registration about a listing: a buyer (decision 0057)
            "intent": "buy",
            "property_type": "townhouse",
            "price": {"min": 1_250_000, "max": 1_250_000},
            "place": {"city": "Brooklyn", "postal_code": "11201", "county": None, "state": "NY"},
            "tags": ["investor"],
            "mls_number": "MLS-12",
        },
    ),
    WayIn(
        "webhook-portal-push",
        f"/v1/accounts/{ACCOUNT}/webhooks/portal",
        lambda m: {
            "lead_id": f"PL-{m}",
            "lead_source": "streeteasy",
            "lead_type": "Rental",
            "people": [{"first_name": "Ana", "last_name": m, "email": f"ana.{m}@example.com"}],
            "listings": [
                {
                    "listing_id": "SE-1",
                    "property_address": "123 First St",
                    "city": "New York",
                    "state": "NY",
                    "zip": "10009",
                    "property_type": "Apartment",
                    "price": 3400,
                }
            ],
            "messages": [{"message": "Hi!"}],
            "agents": [{"agent_id": "casey-okafor"}],
        },
        {"channel": "lead_gen", "provider": "portal", "assigned_agent_id": "casey-okafor", "listing_id": "SE-1"},
        provider="portal",
        expected_criteria={
            "intent": "rent",
            "property_type": "condo",  # an apartment: one unit of a building
            "price": {"min": 3400, "max": 3400},
            "place": {"city": "New York", "postal_code": "10009", "county": None, "state": "NY"},
            "tags": [],
            "mls_number": None,
        },
    ),
]


async def post(
    client: httpx.AsyncClient, intake: Intake, way: WayIn, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    raw = json.dumps(body).encode()
    if way.provider:
        return await client.post(way.path, content=raw, headers=intake.signed(way.provider, raw, key=key))
    headers = {"content-type": "application/json"} | ({"Idempotency-Key": key} if key is not None else {})
    return await client.post(way.path, content=raw, headers=headers)


def with_event_id(event_id: str) -> Callable[[ConsumerRecord[bytes, bytes]], bool]:
    needle = f'"event_id":"{event_id}"'.encode()
    return lambda record: needle in (record.value or b"")


@pytest.mark.asyncio
@pytest.mark.parametrize("way", PATHS, ids=[p.name for p in PATHS])
async def test_each_way_in_publishes_a_normalized_lead(
    intake: Intake, client: httpx.AsyncClient, wait_for_record: WaitForRecord, way: WayIn
) -> None:
    m = marker()
    response = await post(client, intake, way, way.body(m))
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]

    record = await wait_for_record(topics.LEADS_INTAKE, with_event_id(event_id))
    assert record.key == ACCOUNT.encode()
    event = json.loads(record.value or b"")
    assert event["type"] == "LeadReceived"
    source, contact = event["payload"]["source"], event["payload"]["contact"]
    assert {k: source[k] for k in way.expected_source} == way.expected_source
    assert {k: contact[k] for k in way.expected_contact} == way.expected_contact
    assert event["payload"].get("criteria") == way.expected_criteria
    assert m.lower() in contact["last_name"].lower()
    assert contact["email"] is None or contact["email"] == contact["email"].lower()


# Without a key a form is a new lead each time; a webhook without one is keyed on its body's hash.
RETRIES = [(way, True) for way in PATHS] + [(way, False) for way in PATHS if way.provider]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("way", "keyed"), RETRIES, ids=[f"{w.name}-{'key' if keyed else 'body-hash'}" for w, keyed in RETRIES]
)
async def test_a_retry_answers_the_same_event_id_and_publishes_nothing_new(
    stack: Stack, intake: Intake, client: httpx.AsyncClient, way: WayIn, keyed: bool
) -> None:
    body, key = way.body(marker()), (str(uuid.uuid4()) if keyed else None)
    first = await post(client, intake, way, body, key)
    again = await post(client, intake, way, body, key)  # webhooks: signed again, with a new timestamp
    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    event_id = first.json()["event_id"]
    assert again.json()["event_id"] == event_id

    # A later lead on the same account (same partition) closes the window: a second copy would come before it.
    later = await post(client, intake, PATHS[0], PATHS[0].body(marker()))
    records = await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(later.json()["event_id"]))
    assert sum(with_event_id(event_id)(r) for r in records) == 1


@pytest.mark.asyncio
async def test_same_key_for_a_different_request_is_409(intake: Intake, client: httpx.AsyncClient) -> None:
    way, key = PATHS[2], str(uuid.uuid4())
    body = way.body(marker())
    assert (await post(client, intake, way, body, key)).status_code == 202
    changed = await post(client, intake, way, {**body, "message": "something else"}, key)
    assert changed.status_code == 409
    assert "Idempotency-Key" in changed.json()["detail"]


LONDON_PHONE = "020 7946 0958"  # +442079460958 read in GB; not a valid number in acme-realty's region (US)


def accepted_then(way: WayIn, body: dict[str, Any], raw: bytes, key: str) -> tuple[str, Claim]:
    """The stored key and the claim an intake left that accepted this request while the account's region was
    GB and stopped before publishing: its stored event, and the hash it recognizes the request by."""
    sub: Submission
    if way.provider:
        sub = GenericLeadIn.model_validate(body).to_submission(
            account_id=ACCOUNT, provider=way.provider, source_name="HomeFinder"
        )
        space, received = key_spaces.webhook(way.provider), webhook_hash(raw)
    else:
        sub = WebsiteLeadIn.model_validate(body).to_submission()
        space, received = key_spaces.WEBSITE, form_hash(raw)
    payload = normalize_submission(sub, default_region="GB")
    event = LeadReceived.create(account_id=ACCOUNT, payload=payload, occurred_at=datetime.now(UTC))
    claim = Claim(event.event_id, "normalized-then", event.model_dump_json(), False, received)
    return key_spaces.stored_key(space, ACCOUNT, key), claim


async def retried_after_a_crash(
    stack: Stack, stored_key: str, claim: Claim, key: str, send: Callable[[str], Awaitable[httpx.Response]]
) -> None:
    """`claim` stored as an intake left it that stopped before publishing; then the request `send` makes under a
    new key is refused (422), and under `key` answered as then (202, the claim's event) and its claim published."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        assert await MongoIdempotencyStore(mongo["leadflow"]).claim(stored_key, claim) == (claim, True)
        new = await send(str(uuid.uuid4()))
        assert new.status_code == 422, new.text
        retry = await send(key)
        assert retry.status_code == 202, retry.text
        assert retry.json()["event_id"] == str(claim.event_id)
        stored = await MongoIdempotencyStore(mongo["leadflow"]).find(stored_key)
        assert stored is not None
        assert stored.published
    finally:
        await mongo.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("way", [PATHS[0], PATHS[3]], ids=[PATHS[0].name, PATHS[3].name])
async def test_a_retry_of_a_lead_claimed_before_a_crash_is_published_once_after_the_region_changed(
    stack: Stack, intake: Intake, client: httpx.AsyncClient, way: WayIn
) -> None:
    """Accepted while the account's region was GB, claimed, and intake stopped before publishing (the claim
    is written here with intake's own store, as it left it); the region is the US now, where the phone is
    not valid. Before decision 0081 the retry was 422 and the lead accepted then was never published."""
    body, key = way.body(marker()) | {"phone": LONDON_PHONE}, str(uuid.uuid4())
    stored_key, claim = accepted_then(way, body, json.dumps(body).encode(), key)
    # The same lead as a new request is refused in the US; its retry is answered as then.
    await retried_after_a_crash(stack, stored_key, claim, key, lambda k: post(client, intake, way, body, k))

    later = await post(client, intake, PATHS[0], PATHS[0].body(marker()))
    records = await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(later.json()["event_id"]))
    published = [json.loads(r.value or b"") for r in records if with_event_id(str(claim.event_id))(r)]
    assert [e["payload"]["contact"]["phone"] for e in published] == ["+442079460958"]


@pytest.mark.asyncio
async def test_a_forms_retry_is_answered_though_its_field_rules_now_refuse_it(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    """A form accepted and claimed by an intake that stopped before publishing, whose field rules then allowed a
    name that today's refuse (a bidirectional control): its retry is recognized by its body before the form's
    rules read it, and the lead accepted then is published once (decision 0081)."""
    way, key = PATHS[0], str(uuid.uuid4())
    body = way.body(marker())
    raw = json.dumps(body | {"last_name": "Lopez\u202e"}).encode()
    then = WebsiteLeadIn.model_validate(body).to_submission()  # what the older rules made of it
    event = LeadReceived.create(
        account_id=ACCOUNT, payload=normalize_submission(then, default_region="US"), occurred_at=datetime.now(UTC)
    )
    claim = Claim(event.event_id, "normalized-then", event.model_dump_json(), False, form_hash(raw))
    stored_key = key_spaces.stored_key(key_spaces.WEBSITE, ACCOUNT, key)
    headers = {"content-type": "application/json"}

    def send(k: str) -> Awaitable[httpx.Response]:
        return client.post(way.path, content=raw, headers=headers | {"Idempotency-Key": k})

    # The same body as a new request is refused by today's rules; its retry is answered as then.
    await retried_after_a_crash(stack, stored_key, claim, key, send)
    await records_until(stack.bootstrap, topics.LEADS_INTAKE, with_event_id(str(claim.event_id)))


# -- webhook authentication --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_webhook_authentication_failures_are_401_alike_and_publish_nothing(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    body = json.dumps({"first_name": "Eve", "email": "eve@example.com"}).encode()
    now = int(time.time())
    good = intake.signed("homefinder", body)
    attempts = {
        "no headers": ("homefinder", {"content-type": "application/json"}),
        "no signature": ("homefinder", {k: v for k, v in good.items() if k != "X-Leadflow-Signature"}),
        "wrong secret": ("homefinder", intake.signed("homefinder", body, secret=secrets.token_bytes(32))),
        "another provider's secret": ("homefinder", intake.signed("portal", body)),
        "stale": ("homefinder", intake.signed("homefinder", body, at=now - 301)),
        "from the future": ("homefinder", intake.signed("homefinder", body, at=now + 400)),  # margin for a slow run
        "unknown provider": ("nobody", intake.signed("homefinder", body)),
        "account not allowed": ("portal", intake.signed("portal", body, account="other-realty")),
        "tampered body": ("homefinder", good),
    }
    before = (await client.get("/metrics")).text
    answers = set()
    for why, (provider, headers) in attempts.items():
        account = "other-realty" if why == "account not allowed" else ACCOUNT
        sent = body + b" " if why == "tampered body" else body
        response = await client.post(f"/v1/accounts/{account}/webhooks/{provider}", content=sent, headers=headers)
        assert response.status_code == 401, (why, response.text)
        answers.add((response.text, response.headers.get("content-type"), response.headers.get("content-length")))
    assert len(answers) == 1, f"401 answers differ, so they leak which check failed: {answers}"
    after = (await client.get("/metrics")).text
    labels = {"source": "webhook", "reason": "unauthorized"}
    assert metric(after, "intake_leads_rejected_total", **labels) - metric(
        before, "intake_leads_rejected_total", **labels
    ) == len(attempts)
    assert metric(after, "intake_leads_accepted_total", source="webhook") == metric(
        before, "intake_leads_accepted_total", source="webhook"
    )
    assert "eve@example.com" not in intake.process.log_path.read_text()


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_oversized_bodies_get_413_with_or_without_content_length(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    big = json.dumps(PATHS[0].body(marker()) | {"message": "x" * 70_000}).encode()
    declared = await client.post("/v1/leads", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413
    assert "larger than 65536 bytes" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    for path, headers in [("/v1/leads", {}), (PATHS[3].path, intake.signed("homefinder", big))]:
        streamed = await client.post(path, content=chunks(), headers={**headers, "content-type": "application/json"})
        assert streamed.status_code == 413, (path, streamed.text)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("way", "change", "loc"),
    [
        (0, {"first_name": "x" * 101}, ["body", "first_name"]),
        (0, {"message": "x" * 5001}, ["body", "message"]),
        (0, {"utm": {str(i): "v" for i in range(11)}}, ["body", "utm"]),
        (0, {"account_id": "no-such-account"}, ["body", "account_id"]),
        (0, {"phone": "12", "email": None}, ["body", "phone"]),
        (2, {"listing_id": "x" * 65}, ["body", "listing_id"]),
        (4, {"person": {"emails": [{"value": "a@example.com"}] * 11}}, ["body", "person", "emails"]),
        (5, {"people": [{"first_name": "A", "email": "a@example.com"}] * 11}, ["body", "people"]),
        (3, {"email": "not an email"}, ["body", "email"]),
    ],
    ids=[
        "name",
        "message",
        "utm",
        "unknown-account",
        "phone",
        "listing-id",
        "fub-emails",
        "portal-people",
        "webhook-email",
    ],
)
async def test_invalid_input_gets_422_naming_the_field(
    intake: Intake, client: httpx.AsyncClient, way: int, change: dict[str, Any], loc: list[str]
) -> None:
    response = await post(client, intake, PATHS[way], PATHS[way].body(marker()) | change)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()


@pytest.mark.asyncio
async def test_unknown_account_in_a_webhook_url_is_422(intake: Intake, client: httpx.AsyncClient) -> None:
    raw = json.dumps(PATHS[3].body(marker())).encode()
    response = await client.post(
        "/v1/accounts/no-such-account/webhooks/homefinder",
        content=raw,
        headers=intake.signed("homefinder", raw, account="no-such-account"),
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "account_id"]


@pytest.mark.asyncio
async def test_idempotency_key_is_bounded(intake: Intake, client: httpx.AsyncClient) -> None:
    response = await post(client, intake, PATHS[0], PATHS[0].body(marker()), key="k" * 201)
    assert response.status_code == 422


# -- metrics, contract, development defaults ---------------------------------------------------


@pytest.mark.asyncio
async def test_metrics_count_received_accepted_rejected_and_time_the_requests(
    intake: Intake, client: httpx.AsyncClient
) -> None:
    before = (await client.get("/metrics")).text
    assert (await post(client, intake, PATHS[2], PATHS[2].body(marker()))).status_code == 202
    assert (await post(client, intake, PATHS[2], {"account_id": ACCOUNT})).status_code == 422
    unknown = PATHS[2].body(marker()) | {"account_id": "no-such-account"}
    assert (await post(client, intake, PATHS[2], unknown)).status_code == 422
    after = (await client.get("/metrics")).text

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("intake_leads_received_total", source="listing_inquiry") == 3
    assert delta("intake_leads_accepted_total", source="listing_inquiry") == 1
    assert delta("intake_leads_rejected_total", source="listing_inquiry", reason="invalid") == 1
    assert delta("intake_leads_rejected_total", source="listing_inquiry", reason="unknown_account") == 1
    assert delta("intake_request_seconds_count", source="listing_inquiry") == 3
    assert metric(after, "intake_leads_received_total", source="partner") == 0  # exported before any lead


@pytest.mark.asyncio
async def test_service_serves_the_committed_asyncapi_document(client: httpx.AsyncClient) -> None:
    committed = (ROOT / "docs" / "partner-contract" / "asyncapi.yaml").read_text()
    as_yaml = await client.get("/asyncapi.yaml")
    assert as_yaml.text == committed
    assert (await client.get("/asyncapi.json")).json() == yaml.safe_load(committed)


@pytest.mark.asyncio
async def test_embedded_stack_accepts_the_demo_providers_in_development(
    stack: Stack, wait_for_record: WaitForRecord
) -> None:
    raw = json.dumps({"first_name": "Demo", "last_name": marker(), "email": "demo@example.com"}).encode()
    ts = int(time.time())
    request = SignedRequest("POST", webhook_path(ACCOUNT, "demo-generic"), None, raw)
    headers = {"X-Leadflow-Timestamp": str(ts), "X-Leadflow-Signature": sign(DEVELOPMENT_SECRET.encode(), ts, request)}
    async with httpx.AsyncClient(base_url=stack.url("intake"), timeout=30) as http:
        response = await http.post(f"/v1/accounts/{ACCOUNT}/webhooks/demo-generic", content=raw, headers=headers)
    assert response.status_code == 202, response.text
    await wait_for_record(topics.LEADS_INTAKE, with_event_id(response.json()["event_id"]))


# -- fuzzing the HTTP API from its OpenAPI document ------------------------------------------

FUZZ = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
# The signed webhooks must show the accept path is reached (a 202): their generation is seeded, so whether
# some generated lead is accepted does not change from run to run (random, a run could draw none).
SIGNED_FUZZ = settings(FUZZ, derandomize=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_fuzzed_requests_never_get_a_server_error(intake: Intake) -> None:
    """Valid and invalid requests generated from the OpenAPI document, unsigned and then signed."""
    schema = schemathesis.openapi.from_url(f"{intake.url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the OpenAPI document has operations schemathesis cannot read"
    assert {op.path for op in operations} >= {"/v1/leads", "/v1/listing-inquiries", WEBHOOK}

    for operation in operations:
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        cases = st.one_of(*(operation.as_strategy(mode) for mode in modes))

        @FUZZ
        @given(case=cases)
        def unsigned(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(base_url=intake.url, checks=CHECKS, timeout=10)

        unsigned()

    # Signed webhooks get past authentication, so the provider formats' validation and the accept path are
    # fuzzed too: one operation per provider, its body narrowed from the oneOf to the provider's format.
    document = httpx.get(f"{intake.url}/openapi.json").json()
    signed_schema = schemathesis.openapi.from_dict(per_provider_webhooks(document))
    statuses: list[int] = []
    with httpx.Client(base_url=intake.url, timeout=10) as http:
        for result in signed_schema.get_all_operations():
            assert isinstance(result, Ok)
            operation = result.ok()

            @SIGNED_FUZZ
            @given(case=operation.as_strategy(GenerationMode.POSITIVE))
            def signed(case: schemathesis.Case[Any]) -> None:
                raw = json.dumps(case.body).encode()
                response = http.post(case.path, content=raw, headers=intake.signed(case.path.rsplit("/", 1)[1], raw))
                assert response.status_code in {202, 409, 422}, response.text
                statuses.append(response.status_code)

            signed()
    assert 202 in statuses, f"no generated webhook lead was accepted: {sorted(set(statuses))}"


FORMAT_OF = {"homefinder": "GenericLeadIn", "idx-site": "FubEventIn", "portal": "PortalLeadIn"}


def per_provider_webhooks(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with only the webhook route, once per provider, with that provider's body format."""
    template = document["paths"][WEBHOOK]["post"]
    paths = {}
    for provider, model in FORMAT_OF.items():
        operation = json.loads(json.dumps(template))
        operation["parameters"] = [
            p for p in operation["parameters"] if p["in"] != "path" and not p["name"].startswith("X-Leadflow")
        ]
        operation["requestBody"]["content"]["application/json"]["schema"] = {"$ref": f"#/components/schemas/{model}"}
        paths[WEBHOOK.format(account_id=ACCOUNT, provider=provider)] = {"post": operation}
    return {**document, "paths": paths}
