"""Intake use cases: check the account, recognize a retry, normalize, claim the idempotency key, publish LeadReceived.

Every input path (website forms, listing inquiries, webhooks, partners on Kafka) ends in
`accept_lead`; refusals are the exceptions of domain/errors.py, translated at the edges.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import ValidationError

from leadflow_intake.domain import keys, partner
from leadflow_intake.domain.body import parse_json, parse_model, validate_model
from leadflow_intake.domain.errors import FieldError, IdempotencyConflict, InvalidLead, Unauthorized, UnknownAccount
from leadflow_intake.domain.fields import ACCOUNT_ID
from leadflow_intake.domain.forms import ListingInquiryIn, WebsiteLeadIn
from leadflow_intake.domain.keys import KeySpace
from leadflow_intake.domain.lead import Submission, normalize_submission, refusals, submission_hash
from leadflow_intake.domain.providers import FORMATS
from leadflow_intake.domain.signature import SignedRequest, verify, webhook_path
from leadflow_shared.events.inbound import LeadSubmitted, received_event_id
from leadflow_shared.events.intake import LeadReceived, LeadReceivedPayload
from leadflow_shared.kafka import PublishRaw

NOT_AN_AGENT = "not an agent of this account"  # one reason for unknown and other accounts' agents


@dataclass(frozen=True, slots=True)
class AccountInfo:
    default_region: str


@dataclass(frozen=True, slots=True)
class Claim:
    """What an idempotency key holds: the event it made, and how to recognize a retry (decision 0081)."""

    event_id: uuid.UUID
    request_hash: str  # the normalized payload's hash: the same lead, however written
    event_json: str  # until published
    published: bool
    received_hash: str | None = None  # the request as received (None: stored before decision 0081)


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
    keyed: KeyedRequest | None = None,
) -> Accepted:
    """Publish the lead once per idempotency key in the way in's key `space`; returns its event id.

    A retry is recognized as received, before normalizing (decision 0081); `keyed` is the request's key
    looked up already (a webhook's, by its body, before reading it), else `space` and `idempotency_key` are.
    """
    account = await _account(intake, sub.account_id)
    request = keyed or await look_up(intake, space, sub.account_id, idempotency_key, lambda: submission_hash(sub))
    if request is not None and (before := request.before_as_received) is not None:
        return await _answer_again(intake, request.stored_key, sub.account_id, before)
    payload, payload_hash = await _normalized(sub, account, request, intake, paths or {})
    try:
        event = LeadReceived.create(
            account_id=sub.account_id, payload=payload, occurred_at=now, event_id=event_id,
            correlation_id=correlation_id,
        )  # fmt: skip
    except ValidationError as exc:  # never a 500; `from None`: its text holds the values
        raise InvalidLead(refusals(exc, paths or {})) from None
    event_json = event.model_dump_json()
    if request is None:
        await intake.publish(sub.account_id, event_json.encode())
        return Accepted(event.event_id, duplicate=False)
    mine = Claim(event.event_id, payload_hash, event_json, published=False, received_hash=request.received_hash)
    claim, created = await intake.store.claim(request.stored_key, mine)
    if not request.made(claim, payload_hash):
        raise IdempotencyConflict("the idempotency key was already used with a different request")
    if not claim.published:
        await intake.publish(sub.account_id, claim.event_json.encode())
        await intake.store.mark_published(request.stored_key)
    return Accepted(claim.event_id, duplicate=not created)


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A keyed request as intake received it: its stored key, the hash of the request as received (the
    submission before normalization, or a webhook's body) and the claim stored under the key before."""

    stored_key: str
    received_hash: str
    before: Claim | None

    @property
    def before_as_received(self) -> Claim | None:
        """The claim of the same request accepted before, the same in what identifies it (decision 0081)."""
        before = self.before
        return before if before is not None and before.received_hash == self.received_hash else None

    def made(self, claim: Claim, payload_hash: str) -> bool:
        """Whether `claim` is this request's: the same as received, or the same lead once normalized (the
        same request written differently, e.g. an email's case; and every claim stored before 0081)."""
        return claim.received_hash == self.received_hash or claim.request_hash == payload_hash


async def look_up(
    intake: Intake, space: KeySpace, account_id: str, idempotency_key: str | None, received_hash: Callable[[], str]
) -> KeyedRequest | None:
    """The keyed request and the claim stored under its key; None without a key (each request is new)."""
    if not idempotency_key:
        return None
    stored_key = keys.stored_key(space, account_id, idempotency_key)
    return KeyedRequest(stored_key, received_hash(), await intake.store.find(stored_key))


async def _account(intake: Intake, account_id: str) -> AccountInfo:
    account = await intake.accounts.find(account_id)
    if account is None:
        raise UnknownAccount
    return account


async def _answer_again(intake: Intake, stored_key: str, account_id: str, before: Claim) -> Accepted:
    """A retry answers as the request did then, whatever changed since (the account's region, an agent
    removed, a normalization or a rule of a newer intake): the sender must not hear "refused" for a lead
    that is in leadflow, nor lose one whose first attempt stopped between the claim and the publish."""
    if not before.published:
        await intake.publish(account_id, before.event_json.encode())
        await intake.store.mark_published(stored_key)
    return Accepted(before.event_id, duplicate=True)


async def _normalized(
    sub: Submission, account: AccountInfo, request: KeyedRequest | None, intake: Intake, paths: Mapping[str, str]
) -> tuple[LeadReceivedPayload, str]:
    """A request not recognized as received before, normalized and checked: the payload and its hash."""
    try:
        payload = normalize_submission(sub, default_region=account.default_region, paths=paths)
    except InvalidLead as exc:
        raise InvalidLead([*exc.errors, *await _check_agents(sub, intake.accounts, paths)]) from None
    # Without a key nothing is compared with the payload: no hash.
    payload_hash = hashlib.sha256(payload.model_dump_json().encode()).hexdigest() if request is not None else ""
    # The same lead written differently answers as it did then too (an agent removed since).
    retry = request is not None and request.before is not None and request.made(request.before, payload_hash)
    if not retry and (agent_errors := await _check_agents(sub, intake.accounts, paths)):
        raise InvalidLead(agent_errors)
    return payload, payload_hash


async def _check_agents(sub: Submission, accounts: Accounts, paths: Mapping[str, str]) -> list[FieldError]:
    """R4's pre-assigned agent must be one the router routes to in this account: refused here, where the sender hears
    of it. Not R3's listing agent: an inquiry on another brokerage's listing (IDX) names that brokerage's agent, and one
    on the listing of an agent who left names them still; the router routes both as general leads (session 30)."""
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
    Idempotency-Key the body's hash is the key: a provider's redelivery repeats the body. A retry is
    recognized by its body, before the body is read, so it is answered as before (decision 0081).
    """
    request = SignedRequest("POST", webhook_path(account_id, provider), idempotency_key, body)
    verify(
        secrets=webhook.secrets if webhook else None, timestamp=timestamp, signature=signature, request=request,
        now=now.timestamp(), tolerance_seconds=tolerance_seconds,
    )  # fmt: skip
    assert webhook is not None  # noqa: S101 (verify refuses an unknown provider)
    if webhook.accounts and account_id not in webhook.accounts:
        raise Unauthorized("account")
    key = idempotency_key or hashlib.sha256(body).hexdigest()
    keyed = await look_up(intake, keys.webhook(webhook.name), account_id, key, lambda: webhook_hash(body))
    assert keyed is not None  # noqa: S101 (keyed: by the header or the body)
    if (before := keyed.before_as_received) is not None:  # before the body is read: see decision 0081
        await _account(intake, account_id)
        return await _answer_again(intake, keyed.stored_key, account_id, before)
    lead = parse_model(FORMATS[webhook.format], body)
    sub = lead.to_submission(account_id=account_id, provider=webhook.name, source_name=webhook.source_name)
    return await accept_lead(
        sub, intake=intake, space=keys.webhook(webhook.name), idempotency_key=key, now=now, paths=lead.paths(),
        keyed=keyed,
    )  # fmt: skip


async def accept_form(
    form: type[WebsiteLeadIn] | type[ListingInquiryIn],
    body: bytes,
    *,
    space: KeySpace,
    idempotency_key: str | None,
    intake: Intake,
    now: datetime,
) -> Accepted:
    """A website form or a listing inquiry (a JSON body). With an Idempotency-Key, a retry is recognized by its
    body before the form's field rules read it, so a rule made stricter since never refuses a lead accepted
    before (decision 0081); a new request is read by the form and accepted as any lead."""
    value = parse_json(body)
    sent = value.get("account_id") if isinstance(value, dict) else None
    keyed = None
    if idempotency_key and isinstance(sent, str) and ACCOUNT_ID.fullmatch(sent):
        keyed = await look_up(intake, space, sent, idempotency_key, lambda: form_hash(body))
        if keyed is not None and (before := keyed.before_as_received) is not None:
            await _account(intake, sent)
            return await _answer_again(intake, keyed.stored_key, sent, before)
    sub = validate_model(form, value).to_submission()
    return await accept_lead(
        sub, intake=intake, space=space, idempotency_key=idempotency_key, now=now,
        keyed=keyed if sub.account_id == sent else None,
    )  # fmt: skip


def form_hash(body: bytes) -> str:
    """A form's hash as received: its body (its key space names the form, its stored key the account)."""
    return hashlib.sha256(b"form-body/1\n" + body).hexdigest()


def webhook_hash(body: bytes) -> str:
    """A webhook's hash as received: its body (its key space names the provider, its stored key the account)."""
    return hashlib.sha256(b"webhook-body/1\n" + body).hexdigest()
