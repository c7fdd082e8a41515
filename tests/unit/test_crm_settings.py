"""crm-api settings (V4): the field rules, the checks against the account's data, and that what
crm-api stores is what the router and the notifier read."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest
from pydantic import ValidationError

from leadflow_crm_api.adapters.settings import AccountSettings
from leadflow_crm_api.domain.settings import (
    Channel,
    ContactDetails,
    DigestSchedule,
    LeadGroup,
    LeadSource,
    NotificationPreferences,
    PauseSchedule,
    PauseWindow,
    RoutingSettings,
    check_groups,
    check_roster,
    check_sources,
    clock,
    groups_of,
    known_group_names,
    preferences_from,
)
from leadflow_crm_api.use_cases import settings as settings_uc
from leadflow_notifier.adapters.repository import PreferencesDoc
from leadflow_notifier.domain.preferences import QuietHours
from leadflow_router.adapters.account_config import PauseWindowConfig, SourceConfig
from leadflow_router.adapters.mongo import _snapshot

pytestmark = pytest.mark.unit


def refused(model: type[Any], **fields: Any) -> list[str]:
    """The locations pydantic names when it refuses `fields`."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(fields)
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


def test_routing_needs_a_distinct_non_empty_roster_of_ids() -> None:
    assert RoutingSettings(round_robin=True, roster=["a", "b"]).roster == ["a", "b"]
    assert refused(RoutingSettings, round_robin=True, roster=[]) == ["roster"]
    assert refused(RoutingSettings, round_robin=True, roster=["a", "b", "a"]) == ["roster"]
    assert refused(RoutingSettings, round_robin=True, roster=["a b"]) == ["roster.0"]
    assert refused(RoutingSettings, round_robin=False, roster=["a"], extra=1) == ["extra"]


def test_roster_names_only_agents_of_the_account() -> None:
    assert check_roster(["a", "b"], {"a", "b", "c"}) == []
    assert check_roster(["a", "zed", "b"], {"a", "b"}) == [(("roster", 1), "not an agent of this account")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("race_count", 0),
        ("race_count", 51),
        ("claim_window_seconds", 9),
        ("claim_window_seconds", 7 * 24 * 3600 + 1),
        ("referral_fee_percent", -0.5),
        ("referral_fee_percent", 100.5),
        ("direct_period_seconds", 9),
        ("kind", "partner"),
        ("name", ""),
    ],
)
def test_lead_source_field_ranges(field: str, value: object) -> None:
    assert refused(LeadSource, **{"name": "Zillow", field: value}) == [field]


def test_lead_source_bounds_are_accepted_and_defaults_match_the_router() -> None:
    edge = LeadSource(name="Z", race_count=50, claim_window_seconds=10, referral_fee_percent=100)
    assert edge.race_count == 50
    # What crm-api stores is a valid router seed source with the same defaults.
    stored = LeadSource(name="Z").model_dump(mode="json")
    assert SourceConfig.model_validate(stored).model_dump(mode="json") == stored


def test_sources_need_unique_names_and_known_groups() -> None:
    sources = [LeadSource(name="Zillow", lead_group="luxury"), LeadSource(name="Zillow"), LeadSource(name="Web")]
    assert check_sources(sources, ["luxury"]) == [
        (("sources", 0, "name"), "another source has this name"),
        (("sources", 1, "name"), "another source has this name"),
    ]
    assert check_sources([LeadSource(name="Web", lead_group="condos")], ["luxury"]) == [
        (("sources", 0, "lead_group"), "not a lead group of this account")
    ]


def test_groups_name_only_account_agents_and_keep_groups_sources_use() -> None:
    groups = [LeadGroup(name="luxury", agent_ids=["a", "zed"]), LeadGroup(name="luxury", agent_ids=[])]
    sources: list[dict[str, Any]] = [{"name": "Zillow", "lead_group": "condos"}, {"name": "Web", "lead_group": None}]
    assert check_groups(groups, {"a", "b"}, sources) == [
        (("groups", 0, "name"), "another group has this name"),
        (("groups", 0, "agent_ids", 1), "not an agent of this account"),
        (("groups", 1, "name"), "another group has this name"),
        (("groups",), "lead source 'Zillow' uses group 'condos'; change the source first"),
    ]
    assert check_groups([LeadGroup(name="condos", agent_ids=["b"])], {"a", "b"}, sources) == []
    assert refused(LeadGroup, name="g", agent_ids=["a", "a"]) == ["agent_ids"]


def test_group_membership_is_written_per_agent() -> None:
    groups = [LeadGroup(name="luxury", agent_ids=["a"]), LeadGroup(name="condos", agent_ids=["a", "b"])]
    assert groups_of("a", groups) == ["luxury", "condos"]
    assert groups_of("c", groups) == []


def test_known_groups_before_and_after_the_api_set_them() -> None:
    seeded = {"sources": [{"name": "Zillow", "lead_group": "luxury"}, {"name": "Web"}]}
    agents: list[dict[str, Any]] = [{"_id": "a", "lead_groups": ["condos"]}, {"_id": "b"}]
    assert known_group_names(seeded, agents) == ["condos", "luxury"]
    assert known_group_names({**seeded, "lead_group_names": ["z", "a"]}, agents) == ["z", "a"]


def test_pause_windows_weekdays_times_and_zone() -> None:
    window = PauseWindow(weekdays=[0, 6], start="20:00", end="08:00")
    assert PauseSchedule(time_zone="America/New_York", windows=[window]).time_zone == "America/New_York"
    assert refused(PauseWindow, weekdays=[7], start="20:00", end="08:00") == ["weekdays.0"]
    assert refused(PauseWindow, weekdays=[-1], start="20:00", end="08:00") == ["weekdays.0"]
    assert refused(PauseWindow, weekdays=[], start="20:00", end="08:00") == ["weekdays"]
    assert refused(PauseWindow, weekdays=[1, 1], start="20:00", end="08:00") == ["weekdays"]
    for bad in ("24:00", "8:00", "20:60", "20:00:00", "noon"):
        assert refused(PauseWindow, weekdays=[1], start=bad, end="08:00") == ["start"]
    assert refused(PauseSchedule, time_zone="Mars/Olympus_Mons", windows=[]) == ["time_zone"]
    assert refused(PauseSchedule, time_zone="", windows=[]) == ["time_zone"]


def test_stored_pause_and_sources_are_what_the_router_reads() -> None:
    window = PauseWindow(weekdays=[4], start="22:30", end="06:00").model_dump()
    PauseWindowConfig.model_validate(window)
    account = {
        "_id": "acc",
        "name": "Acc",
        "round_robin": True,
        "time_zone": "Europe/Berlin",
        "pause": [window],
        "sources": [LeadSource(name="Web", race_count=3, claim_window_seconds=60).model_dump(mode="json")],
    }
    snapshot = _snapshot(account, [])
    assert snapshot.pause[0].weekdays == frozenset({4})
    assert (snapshot.pause[0].start.hour, snapshot.pause[0].start.minute) == (22, 30)
    assert snapshot.sources["Web"].race_count == 3
    assert snapshot.sources["Web"].claim_window.total_seconds() == 60


def test_clock_reads_the_seed_format_too() -> None:
    assert clock("20:00:00") == "20:00"
    assert clock("07:05") == "07:05"


def test_notification_preferences_rules() -> None:
    assert refused(NotificationPreferences, channels=["email", "email"]) == ["channels"]
    assert refused(NotificationPreferences, channels=["fax"]) == ["channels.0"]
    assert refused(NotificationPreferences, channels=[], quiet_hours={"start": "25:00", "end": "07:00"}) == [
        "quiet_hours.start"
    ]
    assert NotificationPreferences(channels=[]).digest is False  # email off too is a valid choice


def test_stored_preferences_are_what_the_notifier_reads() -> None:
    body = NotificationPreferences(
        channels=[Channel.EMAIL, Channel.SMS], quiet_hours={"start": "22:00", "end": "07:00"}, digest=True
    )
    doc = {"account_id": "acc", "push_token": "tok", **body.model_dump(mode="json")}
    prefs = PreferencesDoc.model_validate(doc).preferences()
    assert {c.value for c in prefs.channels} == {"email", "sms"}
    assert prefs.quiet_hours == QuietHours(time(22, 0), time(7, 0))
    assert prefs.digest is True
    assert preferences_from(doc) == body
    # No document: the notifier's defaults (every channel, no quiet hours, no digest).
    default = preferences_from(None)
    assert set(default.channels) == set(Channel)
    assert default.quiet_hours is None
    assert not default.digest
    # Documents the notifier itself wrote ("HH:MM:SS") read back as "HH:MM".
    written = PreferencesDoc(channels=["push"], quiet_hours={"start": "21:15", "end": "06:00"}).model_dump(mode="json")
    assert preferences_from(written).quiet_hours is not None
    assert preferences_from(written).model_dump()["quiet_hours"] == {"start": "21:15", "end": "06:00"}


class _StoredAccount(AccountSettings):
    """An account document as stored, without a database."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.account_id, self._doc = str(doc["_id"]), doc

    async def account(self) -> dict[str, Any] | None:
        return self._doc


@pytest.mark.asyncio
async def test_the_digest_hour_of_an_account_that_set_none_is_the_deployments_default() -> None:
    unset = _StoredAccount({"_id": "north", "time_zone": "America/Denver"})
    assert await settings_uc.get_digest(unset, 5) == DigestSchedule(hour=5, time_zone="America/Denver")
    chosen = _StoredAccount({"_id": "north", "time_zone": "America/Denver", "digest_hour": 9})
    assert (await settings_uc.get_digest(chosen, 5)).hour == 9


@pytest.mark.asyncio
async def test_a_malformed_stored_notice_setting_shows_what_the_notifier_applies() -> None:
    """Hand-written or older account documents: the settings page shows the notifier's fallback, not a 500."""
    stored = _StoredAccount(
        {"_id": "north", "digest_hour": "8", "time_zone": "Mars/Olympus", "offer_contact_details": "SHOWN"}
    )
    assert await settings_uc.get_digest(stored, 5) == DigestSchedule(hour=5, time_zone="UTC")
    assert (await settings_uc.get_offer_notices(stored)).contact_details is ContactDetails.HIDDEN_FOR_RACES
    nulls = _StoredAccount({"_id": "north", "digest_hour": None, "time_zone": None, "offer_contact_details": None})
    assert await settings_uc.get_digest(nulls, 5) == DigestSchedule(hour=5, time_zone="UTC")
    assert (await settings_uc.get_offer_notices(nulls)).contact_details is ContactDetails.HIDDEN_FOR_RACES
