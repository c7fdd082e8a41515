"""CRM read model: keyset cursors and the list row a LeadAssigned sets."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_crm_api.domain.views import decode_cursor, encode_cursor, epoch_ms, lead_row_from_assigned
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import AssignmentReason, LeadAssigned, LeadAssignedPayload

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None)
_ms = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@PROPERTY
@given(_ms, st.text())
def test_cursor_round_trips(created_ms: int, lead_id: str) -> None:
    cursor = encode_cursor(created_ms, lead_id)
    assert "=" not in cursor
    assert decode_cursor(cursor) == (created_ms, lead_id)


def test_cursor_of_a_real_row() -> None:
    lead_id = str(uuid.uuid4())
    assert decode_cursor(encode_cursor(1714564800000, lead_id)) == (1714564800000, lead_id)


@PROPERTY
@given(st.text())
def test_decode_cursor_rejects_garbage_with_value_error_only(garbage: str) -> None:
    try:
        created_ms, lead_id = decode_cursor(garbage)
    except ValueError:
        return
    # The rare string that happens to decode must decode to a well-formed key.
    assert type(created_ms) is int
    assert isinstance(lead_id, str)


_wrong_shapes = [
    b"",
    b"not json",
    b"null",
    b"42",
    b'"ab"',
    b"{}",
    b'{"a": 1, "b": "x"}',
    b"[]",
    b"[1]",
    b'[1, "x", 2]',
    b'["1", "x"]',
    b"[1.5, \"x\"]",
    b"[NaN, \"x\"]",
    b"[1, 2]",
    b"[1, null]",
    b'[1, ["x"]]',
    b"\xff\xfe\x00",
    b"[" + b"9" * 5000 + b', "x"]',  # beyond int() digit limits
]


@pytest.mark.parametrize("raw", _wrong_shapes)
def test_decode_cursor_rejects_valid_base64_of_wrong_shapes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(_b64(raw))


@pytest.mark.parametrize("cursor", ["a", "!!!!", "é", "abc=def", "\x00", " "])
def test_decode_cursor_rejects_bad_base64(cursor: str) -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_decode_cursor_rejects_a_boolean_sort_key() -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(_b64(b'[true, "x"]'))


def test_decode_cursor_rejects_deeply_nested_json() -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(_b64(b"[" * 100_000))


def _assigned(occurred_at: datetime, **contact: str | None) -> LeadAssigned:
    return LeadAssigned.create(
        account_id="acme-realty",
        occurred_at=occurred_at,
        payload=LeadAssignedPayload(
            lead_id=uuid.uuid4(),
            agent_id="agent-1",
            reason=AssignmentReason.ROSTER_POSITION_1,
            explanation="Round robin is off.",
            contact=Contact.model_validate({"first_name": "Jane", "last_name": "Doe"} | contact),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )


def test_lead_row_from_assigned() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    event = _assigned(moment, email="jane@example.com", phone="+14155550123")

    row = lead_row_from_assigned(event)

    utc = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert row == {
        "account_id": "acme-realty",
        "name": "Jane Doe",
        "email": "jane@example.com",
        "phone": "+14155550123",
        "source": "Website",
        "channel": "brokerage_site",
        "status": "assigned",
        "owner_agent_id": "agent-1",
        "assignment_reason": "roster_position_1",
        "transferred_to": None,
        "created_at": utc,
        "created_ms": 1714564800250,
        "last_activity_at": utc,
        "last_event_id": str(event.event_id),
    }
    assert row["created_at"].tzinfo == UTC


def test_lead_row_without_last_name_email_or_phone() -> None:
    row = lead_row_from_assigned(_assigned(datetime(2024, 5, 1, tzinfo=UTC), last_name="", phone="+14155550123"))
    assert row["name"] == "Jane"
    assert row["email"] is None


# epoch_ms truncates a float, which is exact from late 2004 to 2038 only (1972-03-01T00:00:00.005Z gives ...004).
@PROPERTY
@given(st.datetimes(datetime(2005, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)))  # noqa: DTZ001 (naive bounds)
def test_epoch_ms_counts_whole_milliseconds(moment: datetime) -> None:
    assert epoch_ms(moment) == (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
