"""Shared wire contracts: the envelope, derived event ids and dead-letter reasons."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo.errors import DuplicateKeyError

from leadflow_shared.dead_letters import _describe
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.errors import PoisonMessage
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

pytestmark = pytest.mark.unit

SECRET = "SECRET-VALUE-123"
PAYLOAD = LeadReceivedPayload(
    contact=Contact(first_name="Jane", last_name="Doe", email="jane@example.com", phone="+14155550123"),
    source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website", utm={"utm_source": "google"}),
    message="Call me",
)
NOON_UTC = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _lead(
    *,
    account_id: str = "acme-realty",
    occurred_at: datetime = NOON_UTC,
    event_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
) -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        payload=PAYLOAD,
        occurred_at=occurred_at,
        event_id=event_id,
        correlation_id=correlation_id,
    )


def test_create_defaults() -> None:
    event = _lead()
    assert isinstance(event.event_id, uuid.UUID)
    assert event.correlation_id == event.event_id
    assert event.type == "LeadReceived"
    assert event.schema_version == 1
    assert event.kafka_key() == b"acme-realty"
    assert _lead().event_id != event.event_id


def test_create_keeps_given_ids() -> None:
    event_id, correlation_id = uuid.uuid4(), uuid.uuid4()
    event = _lead(event_id=event_id, correlation_id=correlation_id)
    assert (event.event_id, event.correlation_id) == (event_id, correlation_id)


def test_occurred_at_is_converted_to_utc() -> None:
    event = _lead(occurred_at=datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2, minutes=30))))
    assert event.occurred_at == NOON_UTC
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.model_dump_json().count('"occurred_at":"2024-05-01T12:00:00Z"') == 1


def test_naive_occurred_at_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        _lead(occurred_at=datetime(2024, 5, 1, 12))  # noqa: DTZ001 (the naive datetime is the point)
    assert info.value.errors()[0]["loc"] == ("occurred_at",)


@pytest.mark.parametrize("account_id", ["", "   ", "acme realty", "acme/realty", "acme\nrealty", "é", "a" * 65])
def test_account_id_pattern_is_enforced(account_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        _lead(account_id=account_id)
    assert info.value.errors()[0]["loc"] == ("account_id",)


@pytest.mark.parametrize("account_id", ["acme-realty", "Acme_Realty.2", "a" * 64])
def test_account_id_accepts_valid_ids(account_id: str) -> None:
    assert _lead(account_id=account_id).account_id == account_id
    assert _lead(account_id=f" {account_id}\n").account_id == account_id  # surrounding whitespace is stripped


def test_lead_received_json_round_trip() -> None:
    event = _lead(correlation_id=uuid.uuid4())
    raw = event.model_dump_json()
    again = LeadReceived.model_validate_json(raw)
    assert again == event
    assert again.model_dump_json() == raw
    assert json.loads(raw)["type"] == "LeadReceived"


def test_envelope_rejects_unknown_fields_and_is_frozen() -> None:
    data = json.loads(_lead().model_dump_json()) | {"extra": 1}
    with pytest.raises(ValidationError, match="extra"):
        LeadReceived.model_validate(data)
    with pytest.raises(ValidationError):
        _lead().account_id = "other"  # type: ignore[misc]


def test_derived_event_id_is_deterministic_and_differs_per_purpose_and_source() -> None:
    source = uuid.UUID("0b8f4a0e-6a52-4a8c-9d55-2f1b7b2c9e01")
    assigned = derived_event_id(source, "assigned")
    assert assigned == derived_event_id(uuid.UUID(str(source)), "assigned")
    assert assigned.version == 5
    assert assigned not in {source, derived_event_id(source, "offered"), derived_event_id(uuid.uuid4(), "assigned")}


# -- dead-letter reasons -----------------------------------------------------------------------


def _event_json(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_lead().model_dump_json())
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = data
        for key in parents:
            target = target[key]
        target[leaf] = value
    return data


def _reason(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        LeadReceived.model_validate_json(json.dumps(data))
    return _describe(info.value)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"account_id": f"{SECRET} x"}, "account_id"),
        ({"event_id": SECRET}, "event_id"),
        ({"occurred_at": SECRET}, "occurred_at"),
        ({"schema_version": SECRET}, "schema_version"),
        ({"type": SECRET}, "type"),
        ({"payload__contact__phone": SECRET}, "payload.contact.phone"),
        ({"payload__contact__email": SECRET}, "payload.contact.email"),
        ({"payload__contact__email": f"{SECRET}@@example.com"}, "payload.contact.email"),
        ({"payload__contact__first_name": SECRET * 10}, "payload.contact.first_name"),
        ({"payload__source__channel": SECRET}, "payload.source.channel"),
        ({"payload__message": [SECRET]}, "payload.message"),
    ],
)
def test_describe_names_field_paths_without_values(changes: dict[str, Any], path: str) -> None:
    reason = _reason(_event_json(**changes))
    assert reason.startswith(f"{path}: ")
    assert SECRET.lower() not in reason.lower()


def test_describe_lists_every_invalid_field() -> None:
    reason = _reason(_event_json(account_id=f"{SECRET} x", payload__contact__phone=SECRET))
    assert reason.split("; ")[0].startswith("account_id: ")
    assert reason.split("; ")[1].startswith("payload.contact.phone: ")
    assert SECRET not in reason


def test_describe_of_invalid_json_names_no_field() -> None:
    with pytest.raises(ValidationError) as info:
        LeadReceived.model_validate_json(f'{{"{SECRET}": '.encode())
    reason = _describe(info.value)
    assert reason.startswith("<message>: Invalid JSON")
    assert SECRET not in reason


def test_describe_of_other_errors_names_the_type_and_withholds_a_message_that_may_quote_the_record() -> None:
    # decision 0091: a library's message may quote the record (MongoDB's duplicate key: the email indexed).
    duplicate = DuplicateKeyError(f'E11000 duplicate key error dup key: {{ email: "{SECRET}@example.com" }}', 11000)
    assert _describe(duplicate) == "DuplicateKeyError: a MongoDB error (code 11000); message withheld"
    assert _describe(KeyError(f"acme:email:{SECRET}")) == "KeyError: message withheld (it may quote the record)"
    assert _describe(RuntimeError(SECRET), messages=False) == "RuntimeError"
    # leadflow's own reasons and a parser's say where, not what: kept (cut at 2000 characters).
    assert _describe(PoisonMessage("unknown account acme")) == "PoisonMessage: unknown account acme"
    assert _describe(json.JSONDecodeError("Expecting value", "{", 1)).startswith("JSONDecodeError: Expecting value")
    assert len(_describe(PoisonMessage("x" * 5000))) == 2000


def test_describe_keeps_email_domains_out_of_the_reason() -> None:
    reason = _reason(_event_json(payload__contact__email=f"jane-{SECRET}-at-nowhere"))
    assert reason.startswith("payload.contact.email: ")
    assert SECRET.lower() not in reason.lower()


def test_a_log_line_names_no_member_name_the_sender_chose_and_a_dead_letter_s_reason_shortens_it() -> None:
    # helper 168: a partner's free-form map (a source's `utm`) keyed by an address; the log line is every operator's
    data = _event_json()
    data["payload"]["source"]["utm"] = {f"{SECRET}@example.com": 1, "campaign": "spring"}
    data["payload"]["contact"][f"{SECRET} Smith"] = "extra"  # an unknown member
    with pytest.raises(ValidationError) as info:
        LeadReceived.model_validate_json(json.dumps(data))
    logged = _describe(info.value, messages=False)
    assert SECRET.lower() not in logged.lower()
    assert "payload.source.utm.<key>: string_type" in logged
    assert "payload.contact.<key>: extra_forbidden" in logged
    data["payload"]["source"]["utm"] = {"x" * 500: 1}
    with pytest.raises(ValidationError) as info:
        LeadReceived.model_validate_json(json.dumps(data))
    assert f"payload.source.utm.{'x' * 63}…: " in _describe(info.value)  # the DLQ header's: for the operator
