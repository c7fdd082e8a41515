"""The stored account's routing fields, pause windows and notice fields, read one way (shared/account_config.py)."""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from bson.int64 import Int64
from hypothesis import given
from hypothesis import strategies as st

from leadflow_shared.account_config import ContactDetails, NoticeFields, RoutingFields, StoredPause, pause_windows
from leadflow_shared.events.commands import DepartedLeads

pytestmark = pytest.mark.unit


def test_a_bare_account_reads_as_the_documented_defaults() -> None:
    assert RoutingFields.of({"_id": "acme"}) == RoutingFields(
        roster=[], round_robin=False, departed_agent_leads=DepartedLeads.UNASSIGNED, allow_direct_to_user=True
    )
    assert pause_windows({"_id": "acme"}) == []


def test_stored_values_are_read_as_written() -> None:
    stored = {
        "roster": ["a", "b"],
        "round_robin": True,
        "departed_agent_leads": "reroute",
        "allow_direct_to_user": False,
    }
    assert RoutingFields.of(stored) == RoutingFields(["a", "b"], True, DepartedLeads.REROUTE, False)


def test_pause_times_read_with_or_without_seconds() -> None:
    account = {"pause": [{"weekdays": [5, 6], "start": "20:00:00", "end": "08:30"}]}  # seed, crm-api
    assert pause_windows(account) == [StoredPause([5, 6], time(20), time(8, 30))]


def test_notice_fields_are_read_as_written() -> None:
    stored = {"offer_contact_details": "shown", "digest_hour": 0, "time_zone": "Asia/Kolkata"}
    assert NoticeFields.of(stored) == NoticeFields(ContactDetails.SHOWN, 0, "Asia/Kolkata")
    assert NoticeFields.of({"_id": "acme"}) == NoticeFields(ContactDetails.HIDDEN_FOR_RACES, None, "UTC")
    assert NoticeFields.of({"digest_hour": Int64(23)}).digest_hour == 23  # a 64-bit BSON integer from MongoDB


@pytest.mark.parametrize(
    "stored",
    [
        {"offer_contact_details": None, "digest_hour": None, "time_zone": None},
        {"offer_contact_details": "SHOWN", "digest_hour": 24, "time_zone": "Mars/Olympus"},
        {"offer_contact_details": ["shown"], "digest_hour": True, "time_zone": "America"},  # a folder of zones
        {"offer_contact_details": {"$gt": ""}, "digest_hour": 8.5, "time_zone": "../../etc/passwd"},
        {"offer_contact_details": "", "digest_hour": "8", "time_zone": "Europe/Berlin\x00"},
    ],
)
def test_a_malformed_notice_field_falls_back_instead_of_failing(stored: dict[str, Any]) -> None:
    """The contact stays hidden in races, the digest goes at the deployment's hour, in UTC."""
    assert NoticeFields.of(stored) == NoticeFields(ContactDetails.HIDDEN_FOR_RACES, None, "UTC")


_STORED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(["shown", "hidden", "UTC"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(details=_STORED, hour=_STORED, zone=_STORED)
def test_any_stored_notice_fields_read_as_usable_values(details: object, hour: object, zone: object) -> None:
    fields = NoticeFields.of({"offer_contact_details": details, "digest_hour": hour, "time_zone": zone})
    assert fields.contact_details in ContactDetails
    assert fields.digest_hour is None or 0 <= fields.digest_hour <= 23
    assert ZoneInfo(fields.time_zone) is not None  # the notifier and crm-api can both use it
