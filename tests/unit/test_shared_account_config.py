"""The stored account's routing fields and pause windows, read one way (shared/account_config.py)."""

from __future__ import annotations

from datetime import time

import pytest

from leadflow_shared.account_config import RoutingFields, StoredPause, pause_windows
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
