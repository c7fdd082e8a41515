"""A retry of an accepted lead is answered as it was then (decision 0081), over intake's in-memory ports.

A lead whose key was claimed but whose event was never published (intake stopped in between: here a
publisher that fails once) is published by its retry, once, whatever the account's region, a newer
normalization or a newer rule says by then; a different request under the key still conflicts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import phonenumbers
import pytest
from fakes_intake import FailingOnce, FakeAccounts, FakeStore, Published
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_intake import handlers
from leadflow_intake.domain import keys
from leadflow_intake.domain.errors import FieldError, IdempotencyConflict, InvalidBody, InvalidLead
from leadflow_intake.domain.forms import NORMALIZED
from leadflow_intake.domain.lead import Submission, submission_hash
from leadflow_intake.domain.signature import SignedRequest, sign, webhook_path
from leadflow_intake.handlers import (
    Accepted,
    Intake,
    Webhook,
    accept_lead,
    accept_partner_lead,
    accept_webhook,
    webhook_hash,
)
from leadflow_shared.events.criteria import LeadCriteria, LeadIntent
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadChannel, LeadReceived

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
PROPERTY = settings(database=None, deadline=None, max_examples=60)
LONDON_PHONE = "020 7946 0958"  # a London number without its country code: +442079460958 read in GB


@dataclasses.dataclass
class World:
    accounts: FakeAccounts
    store: FakeStore
    published: Published
    publish: FailingOnce

    @classmethod
    def new(cls, region: str = "GB") -> World:
        published = Published()
        return cls(FakeAccounts({"acme-realty": region}), FakeStore(), published, FailingOnce(published))

    @property
    def intake(self) -> Intake:
        return Intake(accounts=self.accounts, store=self.store, publish=self.publish)

    async def crash_on_first_publish(self, sub: Submission, key: str = "k1", **kwargs: Any) -> handlers.Claim:
        """The first attempt claims the key and stops before its event is published: the claim it left."""
        with pytest.raises(ConnectionError):
            await accept_lead(sub, intake=self.intake, space=keys.WEBSITE, idempotency_key=key, now=NOW, **kwargs)
        assert not self.published
        (claim,) = self.store.claims.values()
        assert not claim.published
        return claim

    async def retry(self, sub: Submission, key: str = "k1") -> Accepted:
        return await accept_lead(sub, intake=self.intake, space=keys.WEBSITE, idempotency_key=key, now=NOW)

    def published_once(self, claim: handlers.Claim) -> None:
        assert [e.event_id for e in self.published] == [claim.event_id]
        assert self.published[0].model_dump_json() == claim.event_json  # the event as accepted then
        assert all(c.published for c in self.store.claims.values())


def lead(**overrides: Any) -> Submission:
    fields: dict[str, Any] = {
        "account_id": "acme-realty", "channel": LeadChannel.BROKERAGE_SITE, "source_name": "Website",
        "first_name": "jane", "last_name": "DOE", "email": "Jane@Example.com", "phone": LONDON_PHONE,
    }  # fmt: skip
    return Submission(**(fields | overrides))


def refuse_everything(*_: Any, **__: Any) -> Any:
    """A newer intake's normalization with a rule that refuses this lead (any lead, here)."""
    raise InvalidLead([FieldError("first_name", "refused by a newer rule")])


_names = st.from_regex(r"[A-Za-z][A-Za-z' -]{0,20}", fullmatch=True)
_emails = st.builds(
    "{}@{}".format, st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True), st.sampled_from(["example.com", "Acme.io"])
)
_leads = st.builds(
    lead,
    first_name=_names,
    last_name=_names | st.just(""),
    email=_emails | st.none(),
    message=st.text(max_size=200),
    utm=st.dictionaries(st.sampled_from(["utm_source", "UTM_Medium", " utm_campaign "]), st.text(max_size=20)),
    criteria=st.none() | st.builds(LeadCriteria, intent=st.sampled_from(LeadIntent), tags=st.lists(_names, max_size=3)),
)


# -- the account's region changed between the crash and the retry ------------------------------


@PROPERTY
@given(sub=_leads, region_now=st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
def test_a_lead_claimed_before_a_crash_is_published_by_its_retry_whatever_the_region_is_now(
    sub: Submission, region_now: str
) -> None:
    """Read in another region, the phone is invalid (US) or another number: before 0081 the retry was 422 or
    409, and the lead accepted before was never published."""

    async def scenario() -> None:
        world = World.new(region="GB")
        claim = await world.crash_on_first_publish(sub)
        world.accounts.regions["acme-realty"] = region_now
        retry = await world.retry(sub)
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)
        assert world.published[0].payload.contact.phone == "+442079460958"  # as normalized then, in GB
        assert await world.retry(sub) == retry  # and again: nothing more is published
        assert len(world.published) == 1

    asyncio.run(scenario())


def test_the_example_of_the_review_fails_without_recognizing_the_request_as_received() -> None:
    """The case as the review found it, written out: GB -> US makes the London number invalid."""

    async def scenario() -> None:
        world = World.new(region="GB")
        claim = await world.crash_on_first_publish(lead())
        world.accounts.regions["acme-realty"] = "US"
        with pytest.raises(InvalidLead):  # a new request with this phone is refused in the US now...
            await world.retry(lead(), key="k2")
        retry = await world.retry(lead())  # ...but the retry of the one accepted then is not
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


# -- a newer rule refuses what was accepted then ------------------------------------------------


@PROPERTY
@given(sub=_leads, crashed=st.booleans())
def test_a_retry_of_a_lead_a_newer_rule_refuses_is_a_duplicate(sub: Submission, crashed: bool) -> None:
    """The retry reaches an intake whose normalization refuses the lead: it is not normalized again."""

    async def scenario() -> None:
        world = World.new()
        if crashed:
            claim = await world.crash_on_first_publish(sub)
        else:
            world.publish.calls = 1  # the first attempt publishes
            first = await world.retry(sub)
            claim = world.store.claims[keys.stored_key(keys.WEBSITE, "acme-realty", "k1")]
            assert claim.event_id == first.event_id
        with mock.patch.object(handlers, "normalize_submission", refuse_everything):
            retry = await world.retry(sub)
            with pytest.raises(InvalidLead):  # a new request is normalized, and refused
                await world.retry(sub, key="k2")
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


def test_a_partners_resend_a_newer_rule_refuses_is_not_dead_lettered() -> None:
    """A partner's event on leads.inbound.v1: refused, it would be a dead letter whose replay is refused again."""

    async def scenario() -> None:
        world = World.new(region="US")
        world.accounts.agents["acme-realty"] = {"blair-chen"}
        event_id = str(uuid.uuid4())
        event = LeadSubmitted.model_validate({
            "event_id": event_id, "correlation_id": event_id, "type": "LeadSubmitted", "account_id": "acme-realty",
            "occurred_at": "2026-03-02T09:05:00-05:00",
            "payload": {"contact": {"first_name": "JANE", "email": "Jane@Example.com"},
                        "source": {"partner": "homefinder", "name": "HomeFinder", "assigned_agent_id": "blair-chen"}},
        })  # fmt: skip
        with pytest.raises(ConnectionError):
            await accept_partner_lead(event, intake=world.intake)
        (claim,) = world.store.claims.values()
        world.accounts.agents["acme-realty"] = set()  # the pre-assigned agent left, too
        with mock.patch.object(handlers, "normalize_submission", refuse_everything):
            retry = await accept_partner_lead(event, intake=world.intake)
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


# -- what is still the same request, and what is not ---------------------------------------------


def _respelled(sub: Submission, data: st.DataObject) -> Submission:
    """`sub` written differently in what normalization erases: the email's case, spaces around fields."""
    pad = data.draw(st.sampled_from(["", " ", "  \t"]))
    email = sub.email and data.draw(st.sampled_from([sub.email.upper(), sub.email.lower(), f" {sub.email} "]))
    return dataclasses.replace(sub, email=email, first_name=pad + sub.first_name, message=sub.message + pad)


@PROPERTY
@given(sub=_leads, data=st.data())
def test_a_retry_written_differently_in_what_normalization_erases_is_the_same_request(
    sub: Submission, data: st.DataObject
) -> None:
    async def scenario() -> None:
        world = World.new()
        claim = await world.crash_on_first_publish(sub)
        retry = await world.retry(_respelled(sub, data))
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


@PROPERTY
@given(sub=_leads, other=st.text(min_size=1, max_size=50).filter(str.strip))
def test_a_different_request_under_the_key_still_conflicts_and_the_retry_still_publishes(
    sub: Submission, other: str
) -> None:
    async def scenario() -> None:
        world = World.new()
        claim = await world.crash_on_first_publish(sub)
        different = dataclasses.replace(sub, message=f"{sub.message} {other}x")
        with pytest.raises(IdempotencyConflict):
            await world.retry(different)
        with mock.patch.object(handlers, "normalize_submission", refuse_everything), pytest.raises(InvalidLead):
            await world.retry(different)  # not recognized: normalized (refused here) like any new request
        assert not world.published
        retry = await world.retry(sub)
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


def test_a_claim_stored_before_0081_is_still_recognized_by_its_normalized_payload() -> None:
    """Claims stored by the code before decision 0081 hold only the normalized payload's hash (for
    INTAKE_IDEMPOTENCY_DAYS after the deploy): their retries are duplicates, a different request conflicts."""

    async def scenario() -> None:
        world = World.new()
        claim = await world.crash_on_first_publish(lead())
        key = keys.stored_key(keys.WEBSITE, "acme-realty", "k1")
        world.store.claims[key] = old = dataclasses.replace(claim, received_hash=None)
        with pytest.raises(IdempotencyConflict):
            await world.retry(lead(message="another lead"))
        retry = await world.retry(lead(email="JANE@example.com"))
        assert (retry.event_id, retry.duplicate) == (old.event_id, True)
        world.published_once(old)

    asyncio.run(scenario())


def test_a_new_claim_holds_both_hashes() -> None:
    async def scenario() -> None:
        world = World.new()
        claim = await world.crash_on_first_publish(lead())
        assert claim.received_hash == submission_hash(lead())
        assert claim.request_hash != claim.received_hash
        payload = LeadReceived.model_validate_json(claim.event_json).payload.model_dump_json()
        assert claim.request_hash == hashlib.sha256(payload.encode()).hexdigest()

    asyncio.run(scenario())


# -- webhooks: recognized by their body, before it is read ---------------------------------------

HOOK = Webhook("homefinder", "generic", [secrets.token_bytes(32)], "HomeFinder", frozenset())


async def post_webhook(world: World, body: bytes, key: str | None) -> Accepted:
    ts = int(NOW.timestamp())
    signature = sign(HOOK.secrets[0], ts, SignedRequest("POST", webhook_path("acme-realty", HOOK.name), key, body))
    return await accept_webhook(
        HOOK, provider=HOOK.name, account_id="acme-realty", body=body, timestamp=str(ts), signature=signature,
        idempotency_key=key, intake=world.intake, now=NOW, tolerance_seconds=300,
    )  # fmt: skip


def refuse_the_body(*_: Any) -> Any:
    """A newer intake whose provider format refuses this body (a stricter field rule)."""
    raise InvalidBody([{"type": "value_error", "loc": ["first_name"], "msg": "refused by a newer rule"}])


@pytest.mark.parametrize("key", ["k1", None], ids=["key", "body-hash"])
def test_a_webhook_retry_a_newer_format_rule_refuses_is_published_once(key: str | None) -> None:
    async def scenario() -> None:
        world = World.new(region="GB")
        body = json.dumps({"first_name": "Kim", "email": "kim@example.com", "phone": LONDON_PHONE}).encode()
        with pytest.raises(ConnectionError):
            await post_webhook(world, body, key)
        (claim,) = world.store.claims.values()
        assert claim.received_hash == webhook_hash(body)
        world.accounts.regions["acme-realty"] = "US"
        with mock.patch.object(handlers, "parse_model", refuse_the_body):
            retry = await post_webhook(world, body, key)
            with pytest.raises(InvalidBody):  # another body is read, and refused
                await post_webhook(world, body + b" ", key)
        assert (retry.event_id, retry.duplicate) == (claim.event_id, True)
        world.published_once(claim)

    asyncio.run(scenario())


# -- the hash of a request as received ------------------------------------------------------------


@PROPERTY
@given(a=_leads, b=_leads)
def test_submissions_hash_alike_exactly_when_they_are_equal(a: Submission, b: Submission) -> None:
    assert (submission_hash(a) == submission_hash(b)) == (a == b)


@PROPERTY
@given(sub=_leads, data=st.data())
def test_a_submissions_hash_ignores_the_order_of_its_campaign_fields_and_names_every_field(
    sub: Submission, data: st.DataObject
) -> None:
    reordered = dataclasses.replace(sub, utm=dict(reversed(sub.utm.items())))
    assert submission_hash(reordered) == submission_hash(sub)
    name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(Submission) if f.name != "normalized"]))
    others: dict[str, Any] = {
        "account_id": "other-realty", "channel": LeadChannel.PARTNER, "utm": {**sub.utm, "x": "y"},
        "criteria": LeadCriteria(tags=["other"]) if sub.criteria is None else None,
    }  # fmt: skip
    changed: Any = others[name] if name in others else (getattr(sub, name) or "") + "\u202e"
    assert submission_hash(dataclasses.replace(sub, **{name: changed})) != submission_hash(sub)


@PROPERTY
@given(sub=_leads)
def test_a_submissions_hash_is_of_what_was_sent_not_of_which_fields_a_form_normalized(sub: Submission) -> None:
    assert submission_hash(dataclasses.replace(sub, normalized=NORMALIZED)) == submission_hash(sub)


def test_a_submissions_hash_is_its_canonical_json_as_documented() -> None:
    """Stored for INTAKE_IDEMPOTENCY_DAYS and compared by every replica: a change of this form makes a stored
    claim's retry fall back to the normalized payload's hash. Change the prefix ("submission/1") with it."""
    sub = Submission(
        account_id="acme-realty", channel=LeadChannel.BROKERAGE_SITE, source_name="Website", first_name="jane",
        email="Jane@Example.com", message="Zo\u00eb \ud800", utm={"b": "2", "a": "1"},
        criteria=LeadCriteria(intent=LeadIntent.BUY),
    )  # fmt: skip
    canonical = (  # the fields at their default (last_name "", phone None, ...) left out
        r'{"account_id":"acme-realty","channel":"brokerage_site","criteria":{"intent":"buy","mls_number":null,'
        r'"place":null,"price":null,"property_type":null,"tags":[]},"email":"Jane@Example.com","first_name":"jane",'
        r'"message":"Zo\u00eb \ud800","source_name":"Website","utm":{"a":"1","b":"2"}}'
    )
    assert submission_hash(sub) == hashlib.sha256(b"submission/1\n" + canonical.encode()).hexdigest()
