"""Adversarial review of intake (helper 68): each test here showed a defect found by attacking intake's ways in
(now fixed), or pins what was decided instead (a retry racing its first request).

Each test asserts what the rules (docs/rules.md) say should happen; it fails while the defect is there.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from fakes_intake import FakeAccounts, FakeStore, Published
from test_consumer_edge import Edge, edge
from test_intake_kafka_handlers import partner_intake, submitted

from leadflow_intake.domain import keys
from leadflow_intake.domain.forms import WebsiteLeadIn
from leadflow_intake.domain.signature import SignedRequest, sign, signed_text, webhook_path
from leadflow_intake.handlers import Accepted, Intake, Webhook, accept_form, accept_webhook
from leadflow_shared import topics

pytestmark = pytest.mark.unit

__all__ = ["edge"]  # the in-memory broker's fixture (test_consumer_edge.py)

NOW = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
PATH = webhook_path("acme-realty", "homefinder")
SECRET = b"review-secret-of-32-characters!!"


# --- S2: the signed text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "shifted"),
    [
        (SignedRequest("POST", PATH, "lead-8841\n", b"{}"), SignedRequest("POST", PATH, "lead-8841", b"\n{}")),
        (SignedRequest("POST", PATH + "\n", None, b"{}"), SignedRequest("POST", PATH, None, b"\n{}")),
    ],
    ids=["key", "path"],
)
def test_a_signed_field_ending_in_a_newline_is_refused(sent: SignedRequest, shifted: SignedRequest) -> None:
    """signature.py promises "ValueError if a field could smuggle in a newline", and its module docstring that
    the signed text "splits back into exactly one set of fields". `_FIELD.match` with `$` lets a field end in
    "\\n" (`$` also matches before a final newline), so the key "lead-8841\\n" with body "{}" signs the same
    bytes as the key "lead-8841" with body "\\n{}": one signature, two requests. Not reachable over HTTP today
    (h11 refuses a newline in a header; FastAPI's patterns use `$` of Rust's regex, which is the end), so the
    check that is meant to hold on its own does not."""
    try:
        same = signed_text(1772460300, sent) == signed_text(1772460300, shifted)
    except ValueError:
        return  # refused, as promised
    pytest.fail(f"a field ending in a newline was signed (and signs as another request: {same})")


def test_a_stored_key_refuses_an_account_id_ending_in_a_newline() -> None:
    """keys.py: "neither the space nor the account id can hold a '/'"; `_ACCOUNT.match` with `$` lets an account
    id end in a newline, so the stored key is not the `<space>/<account>/<key>` of an account id. Latent, like the
    signature's: the edges' patterns refuse such an id first."""
    with pytest.raises(ValueError, match="account ids"):
        keys.stored_key(keys.WEBSITE, "acme-realty\n", "k")


# --- I4: a partner record the contract refuses is dead-lettered at once -------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("occurred_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_partner_lead_whose_time_has_no_utc_value_is_dead_lettered_at_once_as_invalid(
    edge: Edge, occurred_at: str
) -> None:
    """A careless partner's `occurred_at` that parses as an aware datetime but cannot be told in UTC (year 1 at
    +01:00, year 9999 at -01:00): `Envelope._to_utc` raises OverflowError, which pydantic does not wrap, so it is
    no ValidationError and not poison (POISON_ERRORS). The edge retries the same bytes `handler_attempts` times
    with backoff (holding up the partition, by default 3-4 s per such record), then dead-letters it as a
    `failed` OverflowError, never counted as a partner lead rejected. I4: errors the same bytes raise again go
    to the dead-letter topic at once; S3: dead-letter reasons name field paths."""
    intake = await partner_intake(edge)
    account = intake.account
    key = account.encode()
    await intake.send(submitted(account, message="bad time", occurred_at=occurred_at), key)
    await intake.send(submitted(account, message="the next lead"), key)

    await edge.settle(lambda: len(intake.received) == 1 and len(edge.dead_of(key)) == 1)
    retries = edge.runtime.registry.get_sample_value("edge_test_handler_retries_total", {"topic": topics.LEADS_INBOUND})
    dead = edge.dead_of(key)[0]
    rejected = edge.runtime.registry.get_sample_value(
        "intake_leads_rejected_total", {"source": "partner", "reason": "invalid"}
    )
    assert (dead["dlq-error-type"], retries or 0.0, rejected) == ("ValidationError", 0.0, 1.0), dead["dlq-reason"]
    assert dead["dlq-reason"].startswith("occurred_at"), dead["dlq-reason"]


# --- I1: a retry racing the first request ------------------------------------------------------------------------


class GatedPublish(Published):
    """A publisher whose first call waits until `release` is set: the first request is still publishing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.first_started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, account_id: str, event_json: bytes) -> None:
        self.calls += 1
        if self.calls == 1:
            self.first_started.set()
            await self.release.wait()
        await super().__call__(account_id, event_json)


@pytest.mark.asyncio
async def test_a_retry_while_the_first_request_is_still_publishing_answers_the_same_lead() -> None:
    """I1, as decided: a client's retry (a timeout, a double submit) that arrives while the first request is between
    its claim and its publish cannot tell it from a claim a crash left (no lease), so it publishes the same event
    again rather than risk losing the lead: both answers name one event id, and every copy on leads.intake.v1 is
    that event, which every consumer keeps once (docs/rules.md I1)."""
    publish = GatedPublish()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=publish)
    body = json.dumps({"account_id": "acme-realty", "first_name": "Jane", "email": "jane@example.com"}).encode()

    async def post() -> Accepted:
        return await accept_form(
            WebsiteLeadIn, body, space=keys.WEBSITE, idempotency_key="form-1", intake=intake, now=NOW
        )

    first = asyncio.create_task(post())
    await asyncio.wait_for(publish.first_started.wait(), timeout=5)
    retry = await post()
    publish.release.set()
    answered = await asyncio.wait_for(first, timeout=5)

    assert answered.event_id == retry.event_id
    assert {e.event_id for e in publish} == {answered.event_id}, "one lead, however many copies"
    assert len(list(publish)) <= 2


# --- A provider's null read as left out -------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "person",
    [
        {"firstName": "Jane", "emails": [{"value": None}], "phones": [{"value": "(415) 555-0123"}]},
        {"firstName": "Jane", "emails": [{"value": "jane@example.com"}], "phones": [{"value": None}]},
    ],
    ids=["email-null", "phone-null"],
)
async def test_a_fub_event_whose_email_or_phone_value_is_null_keeps_the_lead(person: dict[str, object]) -> None:
    """providers.py: a provider format reads "a null as a field left out (providers send null for what they do
    not have) ... so a lead is never refused for it". An email or phone entry whose `value` is null (an IDX site's
    empty field) is refused instead (422 `person.emails.0.value: Field required`), though the lead has the other
    way to reach it, and though the same entry with `""` is read as left out and the lead kept."""
    published = Published()
    intake = Intake(accounts=FakeAccounts({"acme-realty": "US"}), store=FakeStore(), publish=published)
    hook = Webhook("homefinder", "fub-events", [SECRET], "HomeFinder", frozenset())
    body = json.dumps({"type": "General Inquiry", "person": person}).encode()
    ts = int(NOW.timestamp())
    signature = sign(SECRET, ts, SignedRequest("POST", PATH, None, body))
    await accept_webhook(
        hook, provider="homefinder", account_id="acme-realty", body=body, timestamp=str(ts), signature=signature,
        idempotency_key=None, intake=intake, now=NOW, tolerance_seconds=300,
    )  # fmt: skip
    assert [(lead.payload.contact.email, lead.payload.contact.phone) for lead in published] in (
        [(None, "+14155550123")],
        [("jane@example.com", None)],
    )
