"""Intake's use cases over in-memory ports: accounts, idempotency, publishing, webhook authentication."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow_intake.domain.errors import (
    IdempotencyConflict,
    InvalidBody,
    InvalidLead,
    Unauthorized,
    UnknownAccount,
)
from leadflow_intake.domain.lead import Submission
from leadflow_intake.domain.signature import sign
from leadflow_intake.handlers import (
    AccountInfo,
    Claim,
    Intake,
    Webhook,
    accept_lead,
    accept_partner_lead,
    accept_webhook,
)
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadChannel, LeadReceived

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)


class FakeAccounts:
    def __init__(self, regions: dict[str, str]) -> None:
        self.regions = regions

    async def find(self, account_id: str) -> AccountInfo | None:
        region = self.regions.get(account_id)
        return AccountInfo(region) if region else None


class FakeStore:
    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}

    async def claim(self, account_id: str, key: str, claim: Claim) -> tuple[Claim, bool]:
        stored = self.claims.setdefault(f"{account_id}:{key}", claim)
        return stored, stored is claim

    async def mark_published(self, account_id: str, key: str) -> None:
        doc_id = f"{account_id}:{key}"
        old = self.claims[doc_id]
        self.claims[doc_id] = Claim(old.event_id, old.request_hash, old.event_json, published=True)


class Published(list[LeadReceived]):
    async def __call__(self, account_id: str, event_json: bytes) -> None:
        event = LeadReceived.model_validate_json(event_json)
        assert event.account_id == account_id
        self.append(event)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def intake(published: Published) -> Intake:
    return Intake(accounts=FakeAccounts({"acme-realty": "US", "london-homes": "GB"}), store=FakeStore(),
                  publish=published)


def submission(**overrides: Any) -> Submission:
    fields: dict[str, Any] = {"account_id": "acme-realty", "channel": LeadChannel.BROKERAGE_SITE,
                              "source_name": "Website", "first_name": "jane", "last_name": "DOE",
                              "email": "Jane@Example.com", "phone": "(415) 555-0123"}
    return Submission(**(fields | overrides))


async def test_accepted_lead_is_published_normalized(intake: Intake, published: Published) -> None:
    result = await accept_lead(submission(), intake=intake, idempotency_key=None, now=NOW)
    assert [e.event_id for e in published] == [result.event_id]
    contact = published[0].payload.contact
    assert (contact.first_name, contact.last_name, contact.email, contact.phone) == (
        "Jane", "Doe", "jane@example.com", "+14155550123"
    )
    assert published[0].occurred_at == NOW
    assert not result.duplicate


async def test_phone_without_country_code_is_read_in_the_accounts_region(intake: Intake, published: Published) -> None:
    await accept_lead(submission(account_id="london-homes", phone="020 7946 0958"), intake=intake,
                      idempotency_key=None, now=NOW)
    assert published[0].payload.contact.phone == "+442079460958"


async def test_same_key_same_request_returns_same_event_and_publishes_once(
    intake: Intake, published: Published
) -> None:
    first = await accept_lead(submission(), intake=intake, idempotency_key="k1", now=NOW)
    again = await accept_lead(submission(), intake=intake, idempotency_key="k1", now=NOW + timedelta(seconds=5))
    assert again.event_id == first.event_id
    assert (first.duplicate, again.duplicate) == (False, True)
    assert len(published) == 1


async def test_same_key_different_request_is_a_conflict(intake: Intake, published: Published) -> None:
    await accept_lead(submission(), intake=intake, idempotency_key="k1", now=NOW)
    with pytest.raises(IdempotencyConflict):
        await accept_lead(submission(message="other"), intake=intake, idempotency_key="k1", now=NOW)
    assert len(published) == 1


async def test_claimed_but_unpublished_key_is_published_on_retry_with_the_same_id(
    intake: Intake, published: Published
) -> None:
    class FailingOnce:
        calls = 0

        async def __call__(self, account_id: str, event_json: bytes) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("Kafka down")
            await published(account_id, event_json)

    flaky = Intake(accounts=intake.accounts, store=intake.store, publish=FailingOnce())
    with pytest.raises(ConnectionError):
        await accept_lead(submission(), intake=flaky, idempotency_key="k1", now=NOW)
    retry = await accept_lead(submission(), intake=flaky, idempotency_key="k1", now=NOW)
    assert [e.event_id for e in published] == [retry.event_id]


async def test_unknown_account_is_refused(intake: Intake, published: Published) -> None:
    with pytest.raises(UnknownAccount):
        await accept_lead(submission(account_id="nobody"), intake=intake, idempotency_key=None, now=NOW)
    assert not published


async def test_every_bad_field_is_named(intake: Intake) -> None:
    with pytest.raises(InvalidLead) as info:
        await accept_lead(submission(email="nope", phone="12", site_host="not a host"), intake=intake,
                          idempotency_key=None, now=NOW)
    assert {e.field for e in info.value.errors} == {"email", "phone", "site_host"}


# -- partners ----------------------------------------------------------------------------------


def partner_lead(event_id: uuid.UUID | None = None, **contact: str) -> LeadSubmitted:
    event_id = event_id or uuid.uuid4()
    return LeadSubmitted.model_validate({
        "event_id": str(event_id), "type": "LeadSubmitted", "account_id": "acme-realty",
        "occurred_at": "2026-03-02T09:05:00-05:00", "correlation_id": str(event_id),
        "payload": {"contact": {"first_name": "JANE", "email": "Jane@Example.com"} | contact,
                    "source": {"partner": "homefinder", "name": "HomeFinder", "assigned_agent_id": "blair-chen",
                               "site_host": "Alex.Acme-Realty.com"}},
    })  # fmt: skip


async def test_partner_lead_gets_an_id_derived_from_its_event_id(intake: Intake, published: Published) -> None:
    event = partner_lead()
    result = await accept_partner_lead(event, intake=intake)
    assert result.event_id == derived_event_id(event.event_id, "received")
    received = published[0]
    assert received.correlation_id == event.event_id
    assert received.occurred_at == NOW
    assert received.payload.source.channel is LeadChannel.PARTNER
    assert received.payload.source.provider == "homefinder"
    assert received.payload.source.assigned_agent_id == "blair-chen"
    assert received.payload.source.site_host == "alex.acme-realty.com"


async def test_partner_resend_is_one_lead(intake: Intake, published: Published) -> None:
    event = partner_lead()
    await accept_partner_lead(event, intake=intake)
    again = await accept_partner_lead(event, intake=intake)
    assert again.duplicate
    assert len(published) == 1


async def test_partner_event_id_reused_for_another_lead_is_a_conflict(intake: Intake) -> None:
    event_id = uuid.uuid4()
    await accept_partner_lead(partner_lead(event_id), intake=intake)
    with pytest.raises(IdempotencyConflict):
        await accept_partner_lead(partner_lead(event_id, last_name="Other"), intake=intake)


async def test_partner_field_errors_name_the_path_in_the_message(intake: Intake) -> None:
    with pytest.raises(InvalidLead) as info:
        await accept_partner_lead(partner_lead(phone="12", email="nope"), intake=intake)
    assert {e.field for e in info.value.errors} == {"payload.contact.phone", "payload.contact.email"}


# -- webhooks ----------------------------------------------------------------------------------


@pytest.fixture
def webhook() -> Webhook:
    return Webhook(name="homefinder", format="generic", secrets=[secrets.token_bytes(32)], source_name="HomeFinder",
                   accounts=frozenset())


def generic_body(**overrides: Any) -> bytes:
    return json.dumps({"first_name": "Jane", "email": "jane@example.com", "assigned_agent_id": "casey-okafor"}
                      | overrides).encode()


async def call_webhook(webhook: Webhook | None, intake: Intake, body: bytes, *, secret: bytes | None = None,
                       ts: int | None = None, account_id: str = "acme-realty", key: str | None = None) -> Any:
    ts = int(NOW.timestamp()) if ts is None else ts
    signature = sign(secret or (webhook.secrets[0] if webhook else b"x"), ts, body)
    return await accept_webhook(webhook, account_id=account_id, body=body, timestamp=str(ts), signature=signature,
                                idempotency_key=key, intake=intake, now=NOW, tolerance_seconds=300)


async def test_signed_webhook_is_a_lead_gen_lead(webhook: Webhook, intake: Intake, published: Published) -> None:
    await call_webhook(webhook, intake, generic_body())
    source = published[0].payload.source
    assert (source.channel, source.provider, source.name, source.assigned_agent_id) == (
        LeadChannel.LEAD_GEN, "homefinder", "HomeFinder", "casey-okafor"
    )


async def test_webhook_redelivery_of_the_same_body_is_one_lead(
    webhook: Webhook, intake: Intake, published: Published
) -> None:
    first = await call_webhook(webhook, intake, generic_body())
    again = await call_webhook(webhook, intake, generic_body(), ts=int(NOW.timestamp()) - 60)
    other = await call_webhook(webhook, intake, generic_body(message="a second inquiry"))
    assert again.event_id == first.event_id
    assert other.event_id != first.event_id
    assert len(published) == 2


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"secret": b"another secret"}, "mismatch"),
        ({"ts": int(NOW.timestamp()) - 301}, "stale"),
        ({"ts": int(NOW.timestamp()) + 301}, "stale"),
        ({"unknown_provider": True}, "provider"),
    ],
)
async def test_webhook_authentication_failures(
    webhook: Webhook, intake: Intake, published: Published, change: dict[str, Any], why: str
) -> None:
    target = None if change.pop("unknown_provider", False) else webhook
    with pytest.raises(Unauthorized) as info:
        await call_webhook(target, intake, generic_body(), **change)
    assert info.value.why == why
    assert not published


async def test_webhook_may_be_limited_to_accounts(webhook: Webhook, intake: Intake) -> None:
    limited = Webhook(webhook.name, webhook.format, webhook.secrets, webhook.source_name, frozenset({"london-homes"}))
    with pytest.raises(Unauthorized):
        await call_webhook(limited, intake, generic_body())


async def test_webhook_body_is_checked_only_after_the_signature(webhook: Webhook, intake: Intake) -> None:
    with pytest.raises(Unauthorized):
        await call_webhook(webhook, intake, b"{not json", secret=b"wrong")
    with pytest.raises(InvalidBody) as info:
        await call_webhook(webhook, intake, b"{not json")
    assert info.value.errors[0]["type"] == "json_invalid"

