"""Intake use cases: check the account, normalize, de-duplicate by idempotency key, publish LeadReceived.

Every input path (website forms, listing inquiries, webhooks, partners on Kafka) ends in
`accept_lead`; refusals are the exceptions of domain/errors.py, translated at the edges.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from leadflow_intake.domain import keys, partner
from leadflow_intake.domain.body import parse_model
from leadflow_intake.domain.errors import FieldError, IdempotencyConflict, InvalidLead, Unauthorized, UnknownAccount
from leadflow_intake.domain.keys import KeySpace
from leadflow_intake.domain.lead import Submission, normalize_submission
from leadflow_intake.domain.providers import FORMATS
from leadflow_intake.domain.signature import SignedRequest, verify, webhook_path
from leadflow_shared.events.inbound import LeadSubmitted, received_event_id
from leadflow_shared.events.intake import LeadReceived
from leadflow_shared.kafka import PublishRaw

NOT_AN_AGENT = "not an agent of this account"  # one reason for unknown and other accounts' agents


@dataclass(frozen=True, slots=True)
class AccountInfo:
    default_region: str


@dataclass(frozen=True, slots=True)
class Claim:
    event_id: uuid.UUID
    request_hash: str
    event_json: str
    published: bool


class Accounts(Protocol):
    async def find(self, account_id: str) -> AccountInfo | None: ...

    async def has_agent(self, account_id: str, agent_id: str) -> bool:
        """Whether the router would route to `agent_id` in the account: on its roster, and its agent."""
        ...


class IdempotencyStore(Protocol):
    async def find(self, stored_key: str) -> Claim | None: ...
    async def claim(self, stored_key: str, claim: Claim) -> tuple[Claim, bool]: ...
    async def mark_published(self, stored_key: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Intake:
    """The ports every use case needs."""

    accounts: Accounts
    store: IdempotencyStore
    publish: PublishRaw


@dataclass(frozen=True, slots=True)
class Accepted:
    event_id: uuid.UUID
    duplicate: bool  # the idempotency key was seen before: nothing new was published


@dataclass(frozen=True, slots=True)
class Webhook:
    """A configured lead-generation provider, as the use case sees it."""

    name: str
    format: str
    secrets: Sequence[bytes]
    source_name: str
    accounts: frozenset[str]  # empty: any account


async def accept_lead(
    sub: Submission,
    *,
    intake: Intake,
    space: KeySpace,
    idempotency_key: str | None,
    now: datetime,
    event_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    paths: Mapping[str, str] | None = None,
) -> Accepted:
    """Publish the lead once per idempotency key in the way in's key `space`; returns its event id."""
    account = await intake.accounts.find(sub.account_id)
    if account is None:
        raise UnknownAccount
    try:
        payload = normalize_submission(sub, default_region=account.default_region, paths=paths)
    except InvalidLead as exc:
        raise InvalidLead([*exc.errors, *await _check_assigned_agent(sub, intake.accounts, paths or {})]) from None
    request_hash = hashlib.sha256(payload.model_dump_json().encode()).hexdigest()
    stored_key = keys.stored_key(space, sub.account_id, idempotency_key) if idempotency_key else None
    # A retry of a request accepted before answers as it did then, whatever changed since (an
    # agent removed): the sender must not hear "refused" for a lead that is in leadflow.
    before = await intake.store.find(stored_key) if stored_key else None
    retry = before is not None and before.request_hash == request_hash
    if not retry and (agent_errors := await _check_assigned_agent(sub, intake.accounts, paths or {})):
        raise InvalidLead(agent_errors)
    event = LeadReceived.create(
        account_id=sub.account_id, payload=payload, occurred_at=now, event_id=event_id, correlation_id=correlation_id
    )
    if stored_key is None:
        await intake.publish(sub.account_id, event.model_dump_json().encode())
        return Accepted(event.event_id, duplicate=False)
    claim, created = await intake.store.claim(
        stored_key, Claim(event.event_id, request_hash, event.model_dump_json(), published=False)
    )
    if claim.request_hash != request_hash:
        raise IdempotencyConflict("the idempotency key was already used with a different request")
    if not claim.published:
        await intake.publish(sub.account_id, claim.event_json.encode())
        await intake.store.mark_published(stored_key)
    return Accepted(claim.event_id, duplicate=not created)


async def _check_assigned_agent(sub: Submission, accounts: Accounts, paths: Mapping[str, str]) -> list[FieldError]:
    """R4's agent must be one the router routes to in this account: refused here, where the sender hears of it."""
    if not sub.assigned_agent_id or await accounts.has_agent(sub.account_id, sub.assigned_agent_id):
        return []
    return [FieldError(paths.get("assigned_agent_id", "assigned_agent_id"), NOT_AN_AGENT)]


async def accept_partner_lead(event: LeadSubmitted, *, intake: Intake) -> Accepted:
    """A partner's lead: its LeadReceived id derives from the partner's event id, so a resend is the same lead."""
    return await accept_lead(
        partner.submission(event),
        intake=intake,
        space=keys.PARTNER,
        idempotency_key=str(event.event_id),
        now=event.occurred_at,
        event_id=received_event_id(event.event_id, event.account_id),
        correlation_id=event.correlation_id,
        paths=partner.PATHS,
    )


async def accept_webhook(
    webhook: Webhook | None,
    *,
    provider: str,
    account_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    idempotency_key: str | None,
    intake: Intake,
    now: datetime,
    tolerance_seconds: int,
) -> Accepted:
    """Authenticate a provider's webhook, read its format, accept the lead; None is an unknown `provider`.

    The signature covers the account, the provider, the Idempotency-Key (or its absence) and the body,
    so a captured request can only be replayed as itself: the same key, the same event id. Without an
    Idempotency-Key the body's hash is the key: a provider's redelivery repeats the body.
    """
    request = SignedRequest("POST", webhook_path(account_id, provider), idempotency_key, body)
    verify(
        secrets=webhook.secrets if webhook else None, timestamp=timestamp, signature=signature, request=request,
        now=now.timestamp(), tolerance_seconds=tolerance_seconds,
    )  # fmt: skip
    assert webhook is not None  # noqa: S101 (verify refuses an unknown provider)
    if webhook.accounts and account_id not in webhook.accounts:
        raise Unauthorized("account")
    lead = parse_model(FORMATS[webhook.format], body)
    sub = lead.to_submission(account_id=account_id, provider=webhook.name, source_name=webhook.source_name)
    key = idempotency_key or hashlib.sha256(body).hexdigest()
    return await accept_lead(
        sub, intake=intake, space=keys.webhook(webhook.name), idempotency_key=key, now=now, paths=lead.paths()
    )
