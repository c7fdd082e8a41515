"""CRM read model: keyset cursors, list rows, open offers, timeline entries and search patterns."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_crm_api.domain.views import (
    MAX_CURSOR_LENGTH,
    MAX_SORT_KEY,
    MIN_SORT_KEY,
    LeadSort,
    decode_cursor,
    encode_cursor,
    lead_row_changes,
    lead_row_from_assigned,
    lead_row_from_held,
    may_name_a_rival,
    open_offers_after,
    records_in_timeline,
    rivals,
    search_patterns,
    shown_to_realtor,
    timeline_entry,
    visible_timeline,
)
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    AssignmentReason,
    LeadAssigned,
    LeadAssignedPayload,
    LeadClaimed,
    LeadClaimedPayload,
    LeadHeld,
    LeadHeldPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadReleased,
    LeadReleasedPayload,
    OfferClosedPayload,
    OfferExpired,
    OfferWithdrawn,
)
from leadflow_shared.offer_links import link_id_of

pytestmark = pytest.mark.unit

PROPERTY = settings(database=None, deadline=None)
_ms = st.integers(min_value=MIN_SORT_KEY, max_value=MAX_SORT_KEY)
_lead_ids = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@PROPERTY
@given(_ms, _lead_ids, st.sampled_from(LeadSort))
def test_cursor_round_trips(created_ms: int, lead_id: str, sort: LeadSort) -> None:
    cursor = encode_cursor(created_ms, lead_id, sort=sort)
    assert "=" not in cursor
    assert len(cursor) <= MAX_CURSOR_LENGTH
    assert decode_cursor(cursor, sort=sort) == (created_ms, lead_id)


def test_the_sort_keys_span_every_datetime() -> None:
    assert epoch_ms(datetime.min.replace(tzinfo=UTC)) == MIN_SORT_KEY
    assert epoch_ms(datetime.max.replace(tzinfo=UTC)) == MAX_SORT_KEY
    longest = encode_cursor(MIN_SORT_KEY, "x" * 64, sort=LeadSort.ACTIVITY_DESC)
    assert len(longest) <= MAX_CURSOR_LENGTH


@pytest.mark.parametrize(
    "fields",
    [
        [10**30, "x"],  # issue 10: BSON cannot hold it, the query raised OverflowError (500)
        [-(10**30), "x"],
        [2**63, "x"],
        [MAX_SORT_KEY + 1, "x"],
        [MIN_SORT_KEY - 1, "x"],
        [1, "\ud800"],  # a lone surrogate cannot be encoded as BSON either
        [1, ""],
        [1, "x" * 65],
        [1, "a b"],
        [1, "$gt"],
    ],
)
def test_decode_cursor_refuses_keys_and_ids_out_of_range(fields: list[object]) -> None:
    cursor = _b64(json.dumps(fields).encode())
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)


def test_decode_cursor_refuses_long_cursors_before_decoding() -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor("A" * (MAX_CURSOR_LENGTH + 1))


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
    assert MIN_SORT_KEY <= created_ms <= MAX_SORT_KEY
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
    b'[1.5, "x"]',
    b'[NaN, "x"]',
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
        "search_name": "jane doe",
        "search_email": "jane@example.com",
        "search_phone": "14155550123",
        "open_offers": [],
        "offered_to": [],
        "created_at": utc,
        "created_ms": 1714564800250,
        "last_activity_at": utc,
        "last_activity_ms": 1714564800250,
        "last_event_id": str(event.event_id),
        "last_activity_kind": "LeadAssigned",
        "last_activity_by": "agent-1",
        "crm_status": "new",
        # What the lead said and where from (issue 11.8).
        "message": "",
        "site_host": None,
        "listing_id": None,
        "provider": None,
        "utm": {},
        "referral_fee_percent": 0.0,
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


@pytest.mark.parametrize("sort", [s for s in LeadSort if s is not LeadSort.CREATED_DESC])
def test_cursor_of_one_order_is_refused_by_another(sort: LeadSort) -> None:
    cursor = encode_cursor(5, "x", sort=sort)
    assert decode_cursor(cursor, sort=sort) == (5, "x")
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(cursor)
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor(encode_cursor(5, "x"), sort=sort)


LEAD = uuid.uuid4()
T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)
CONTACT = Contact(first_name="Jane", last_name="Doe")
SOURCE = LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")


def _offered(agent: str, offer_round: int = 1) -> LeadOffered:
    return LeadOffered.create(
        account_id="acme-realty",
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=LEAD,
            agent_id=agent,
            offer_round=offer_round,
            race_size=2,
            deadline=T0 + timedelta(minutes=15),
            explanation="R6",
            contact=CONTACT,
            source=SOURCE,
        ),
    )


def _closed(kind: type[OfferExpired] | type[OfferWithdrawn], agent: str) -> OfferExpired | OfferWithdrawn:
    payload = OfferClosedPayload(lead_id=LEAD, agent_id=agent, offer_round=1)
    return kind.create(account_id="acme-realty", occurred_at=T0, payload=payload)


def test_open_offers_follow_offers_expiries_withdrawals_and_claims() -> None:
    first = _offered("ana")
    offers = open_offers_after([], first)
    assert offers is not None
    bens = _offered("ben")
    offers = open_offers_after(offers, bens)
    assert offers is not None
    deadline_ms = epoch_ms(T0) + 900_000
    assert [(o["agent_id"], o["deadline_ms"]) for o in offers] == [("ana", deadline_ms), ("ben", deadline_ms)]
    assert open_offers_after(offers, bens) == offers, "a replayed offer is not added twice"
    asked_back = _offered("ben")  # a new offer of the same round (asked back while the race went on)
    again = open_offers_after(offers, asked_back)
    assert again is not None
    assert [(o["agent_id"], o["link_id"]) for o in again] == [
        ("ana", link_id_of(first.event_id)),
        ("ben", link_id_of(asked_back.event_id)),
    ], "one open offer per agent and round, the newest's link"
    assert [o["agent_id"] for o in open_offers_after(offers, _closed(OfferExpired, "ana")) or []] == ["ben"]
    assert [o["agent_id"] for o in open_offers_after(offers, _closed(OfferWithdrawn, "ben")) or []] == ["ana"]
    claim = LeadClaimed.create(
        account_id="acme-realty",
        occurred_at=T0,
        payload=LeadClaimedPayload(lead_id=LEAD, agent_id="ana", action=ActivityAction.CALL, offer_round=1),
    )
    assert open_offers_after(offers, claim) == []
    assert open_offers_after(offers, _activity(by="ana")) is None


def _activity(*, by: str | None) -> ActivityLogged:
    payload = ActivityLoggedPayload(
        lead_id=LEAD,
        agent_id="ana",
        action=ActivityAction.INQUIRY if by is None else ActivityAction.NOTE,
        by_agent_id=by,
    )
    return ActivityLogged.create(account_id="acme-realty", occurred_at=T0, payload=payload)


def test_timeline_entry_is_keyed_by_event_id_and_names_no_contact() -> None:
    event = _offered("ana")
    entry = timeline_entry(event)
    assert entry["_id"] == str(event.event_id)
    assert (entry["lead_id"], entry["account_id"], entry["type"]) == (str(LEAD), "acme-realty", "LeadOffered")
    assert entry["occurred_ms"] == epoch_ms(T0)
    assert "ana" in entry["summary"]
    assert "2024-05-01T12:15:00+00:00" in entry["summary"]
    assert "Jane" not in entry["summary"]


def test_agents_own_activity_echo_is_not_recorded_twice() -> None:
    assert records_in_timeline(_activity(by=None)), "a returning contact (R1) is on the timeline"
    assert not records_in_timeline(_activity(by="ana")), "crm-api recorded the agent's action when it took it"
    assert records_in_timeline(_offered("ana"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jane", ("jane", None)),
        ("  a.b+c@Ex.com ", (r"a\.b\+c@ex\.com", None)),
        ("(415) 555", (r"\(415\)\ 555", "415555")),
        ("$where", (r"\$where", None)),
        ("jane 1", (r"jane\ 1", None)),
        ("lead5123@", ("lead5123@", None)),  # an email search, though half of it is digits
        ("+1 415-555.0101", (r"\+1\ 415\-555\.0101", "14155550101")),
        ("12", ("12", None)),  # too few digits for a phone search
    ],
)
def test_search_patterns_escape_and_find_phone_digits(text: str, expected: tuple[str, str | None]) -> None:
    assert search_patterns(text) == expected


def test_merge_conditions_flattens_distinct_keys_and_keeps_clashes_in_and() -> None:
    from leadflow_crm_api.adapters.leads import merge_conditions

    assert merge_conditions([{"account_id": "a"}, {"status": "offered"}]) == {"account_id": "a", "status": "offered"}
    cursor_or = {"$or": [{"created_ms": {"$lt": 5}}]}
    scope_or = {"$or": [{"owner_agent_id": "r"}, {"transferred_to": "r"}]}
    merged = merge_conditions([{"account_id": "a"}, scope_or, {"status": "x"}, cursor_or, {"status": "y"}])
    assert merged == {"account_id": "a", "$or": scope_or["$or"], "status": "x", "$and": [cursor_or, {"status": "y"}]}


def test_a_realtor_sees_its_own_offers_on_the_timeline_but_not_other_agents() -> None:
    from leadflow_crm_api.domain.lead_row import TimelineEntry
    from leadflow_crm_api.domain.views import visible_timeline

    docs = [
        {"type": "LeadOffered", "agent_id": "ana"},
        {"type": "LeadOffered", "agent_id": "ben"},
        {"type": "OfferWithdrawn", "agent_id": "ben"},
        {"type": "LeadClaimed", "agent_id": "ana"},
        {"type": "LeadActivity", "agent_id": "ana"},
    ]
    entries = [TimelineEntry.from_doc({"_id": str(i), **doc}) for i, doc in enumerate(docs)]
    assert visible_timeline(entries, realtor_id=None) == entries, "the brokerage sees everything"
    assert [e.agent_id for e in visible_timeline(entries, realtor_id="ana")] == ["ana", "ana", "ana"]
    assert [e.type for e in visible_timeline(entries, realtor_id="ben")] == [
        "LeadOffered",
        "OfferWithdrawn",
        "LeadClaimed",
        "LeadActivity",
    ]


def _racing_row(**fields: object) -> LeadRow:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    doc = {"_id": "l", "account_id": "a", "status": "offered", "created_at": at, "last_activity_at": at}
    return LeadRow.from_doc(doc | fields)


def test_a_realtor_is_told_nothing_of_an_agent_who_only_races_with_it() -> None:
    # Decision 0076: Ana and Ben race; Ben viewed, declined, and his offer was withdrawn. Carl held the lead
    # before (claimed it, then was released): a holder is known, as is a user the holder assigned.
    docs: list[dict[str, str | None]] = [
        {"type": "LeadOffered", "agent_id": "carl"},
        {"type": "LeadClaimed", "agent_id": "carl", "action": "accept"},
        {"type": "LeadActivity", "agent_id": "carl", "action": "note"},
        {"type": "LeadOffered", "agent_id": "ana"},
        {"type": "LeadOffered", "agent_id": "ben"},
        {"type": "LeadOffered", "agent_id": "dee"},
        {"type": "LeadActivity", "agent_id": "ben", "action": "view"},
        {"type": "LeadActivity", "agent_id": "ben", "action": "decline"},
        {"type": "OfferWithdrawn", "agent_id": "ben"},
        {"type": "LeadActivity", "agent_id": "nora", "action": "note"},  # a broker's
        {"type": "ActivityLogged", "agent_id": None, "action": "inquiry"},  # the contact's
    ]
    entries = [TimelineEntry.from_doc({"_id": str(i), **doc}) for i, doc in enumerate(docs)]
    row = _racing_row(last_activity_by="ben", last_activity_kind="OfferWithdrawn", assigned_users=["dee"])
    assert may_name_a_rival(row, "ana")
    hidden = rivals(row, entries, realtor_id="ana")
    assert hidden == {"ben"}, "Carl held it, Dee was assigned to it: only Ben raced and nothing else"
    shown = visible_timeline(entries, realtor_id="ana", hidden=hidden)
    assert [(e.agent_id, e.action) for e in shown if e.type != "LeadOffered"] == [
        ("carl", "accept"), ("carl", "note"), ("nora", "note"), (None, "inquiry"),
    ]  # fmt: skip
    assert [e.agent_id for e in shown if e.type == "LeadOffered"] == ["ana"]
    seen = shown_to_realtor(row, "ana", hidden)
    assert (seen.last_activity_by, seen.last_activity_kind) == (None, "OfferWithdrawn")
    assert rivals(row, entries, realtor_id="ben") == {"ana"}, "and Ben is told nothing of Ana"
    assert visible_timeline(entries, realtor_id=None, hidden=hidden) == entries, "the brokerage sees everything"
    assert not may_name_a_rival(replace(row, last_activity_by="ana"), "ana")


def test_a_realtor_reads_its_offer_and_assignment_without_the_routing_explanation() -> None:
    # The explanation names who else was eligible and why others were passed by (paused, at a cap): routing info,
    # which is the brokerage's (403 to a realtor, decision 0076). The realtor sees what happened to it.
    lead, why = uuid.uuid4(), "R6 round robin: eligible: ana, carl; skipped ben: paused; dee: at its daily cap"
    contact, source = Contact(first_name="Jane"), LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")
    offered = LeadOffered.create(
        account_id="acme",
        occurred_at=T0,
        payload=LeadOfferedPayload(
            lead_id=lead, agent_id="ana", offer_round=1, race_size=1, deadline=T0 + timedelta(minutes=15),
            explanation=why, contact=contact, source=source,
        ),
    )  # fmt: skip
    assigned = LeadAssigned.create(
        account_id="acme",
        occurred_at=T0,
        payload=LeadAssignedPayload(
            lead_id=lead, agent_id="ana", reason=AssignmentReason.ROSTER_POSITION_1, explanation=why,
            contact=contact, source=source,
        ),
    )  # fmt: skip
    entries = [TimelineEntry.from_doc(timeline_entry(event)) for event in (offered, assigned)]
    seen = [e.summary for e in visible_timeline(entries, realtor_id="ana")]
    assert seen == [
        f"Offered to ana (round 1), claim before {(T0 + timedelta(minutes=15)).isoformat()}",
        "Assigned to ana (roster_position_1)",
    ]
    assert all(why in e.summary for e in visible_timeline(entries, realtor_id=None)), "the brokerage reads why"


_AGENTS = st.sampled_from(["ana", "ben", "carl", "dee", None])
_ENTRY_TYPES = st.sampled_from(
    ["LeadOffered", "OfferExpired", "OfferWithdrawn", "LeadClaimed", "LeadAssigned", "LeadActivity", "ActivityLogged"]
)


@given(
    st.lists(st.tuples(_ENTRY_TYPES, _AGENTS), max_size=12),
    _AGENTS,
    st.lists(st.sampled_from(["ana", "ben", "carl", "dee"]), max_size=2),
    _AGENTS,
)
def test_what_a_realtor_sees_never_names_one_who_only_raced(
    docs: list[tuple[str, str | None]], holder: str | None, assigned: list[str], last_by: str | None
) -> None:
    entries = [TimelineEntry.from_doc({"_id": str(i), "type": t, "agent_id": a}) for i, (t, a) in enumerate(docs)]
    row = _racing_row(owner_agent_id=holder, assigned_users=assigned, last_activity_by=last_by)
    hidden = rivals(row, entries, realtor_id="ana")
    raced = {a for t, a in docs if t in {"LeadOffered", "OfferExpired", "OfferWithdrawn"}}
    held = {a for t, a in docs if t in {"LeadClaimed", "LeadAssigned"}}
    assert hidden == {a for a in raced - held - {"ana", holder, *assigned} if a is not None}
    shown = visible_timeline(entries, realtor_id="ana", hidden=hidden)
    assert all(e.agent_id not in hidden for e in shown)
    assert [e for e in entries if e not in shown] == [
        e for e in entries if e.agent_id in hidden or (e.type in {"LeadOffered", "OfferExpired", "OfferWithdrawn"}
                                                       and e.agent_id != "ana")
    ]  # fmt: skip
    seen = shown_to_realtor(row, "ana", hidden)
    assert seen.last_activity_by == (None if last_by in hidden else last_by)
    if not may_name_a_rival(row, "ana"):
        assert seen.last_activity_by not in hidden, "the list asks for no timeline when the row names nobody unknown"


def test_a_shared_lead_is_held_by_the_realtor_with_no_open_offers() -> None:
    from leadflow_crm_api.domain.views import lead_row_changes, open_offers_after
    from leadflow_shared.events.routing import LeadShared, LeadSharedPayload

    shared = LeadShared.create(
        account_id="acme",
        occurred_at=T0,
        payload=LeadSharedPayload(
            lead_id=uuid.uuid4(),
            share_id=uuid.uuid4(),
            agent_id="riley",
            realtor_name="Riley",
            assigned_by="Acme",
            previous_owner_agent_id="ana",
            by_user_id="bea",
        ),
    )
    changes = lead_row_changes(shared)
    assert (changes["owner_agent_id"], changes["status"], changes["assignment_reason"]) == (
        "riley",
        "assigned",
        "lead_sharing",
    )
    assert open_offers_after([{"agent_id": "ana", "offer_round": 1}], shared) == []
    assert not records_in_timeline(shared), "crm-api recorded the share when it took it"


def test_a_later_offer_sets_the_leads_fee_and_its_line_says_why_that_agent() -> None:
    # R3 then R6: the direct period's offer carries no fee, the general offer after it the source's (R11).
    from leadflow_crm_api.domain.views import lead_row_changes

    direct = _offered("sue")
    general = LeadOffered.create(
        account_id="acme-realty", occurred_at=T0 + timedelta(minutes=15),
        payload=direct.payload.model_copy(update={
            "agent_id": "nora", "offer_round": 2, "referral_fee_percent": 30.0,
            "explanation": "R6: offered to nora (next in rotation); skipped: ned: invitation not accepted."}),
    )  # fmt: skip
    assert lead_row_changes(direct)["referral_fee_percent"] == 0.0
    assert lead_row_changes(general)["referral_fee_percent"] == 30.0
    summary = timeline_entry(general)["summary"]
    assert summary.startswith("Offered to nora (round 2), claim before ")
    assert summary.endswith(": R6: offered to nora (next in rotation); skipped: ned: invitation not accepted.")


def test_a_held_lead_is_listed_held_until_its_rule_opens_and_its_offer_ends_the_hold() -> None:
    until = T0 + timedelta(hours=14)
    held = LeadHeld.create(
        account_id="acme-realty",
        occurred_at=T0,
        payload=LeadHeldPayload(
            lead_id=LEAD, rule_id="office", until=until, explanation="Rule: 'Office' is closed", contact=CONTACT,
            source=SOURCE,
        ),
    )  # fmt: skip
    row = lead_row_from_held(held)
    assert (row["status"], row["held_until"], row["owner_agent_id"], row["open_offers"]) == ("held", until, None, [])
    assert row["name"] == "Jane Doe"
    assert open_offers_after([], held) is None
    entry = timeline_entry(held)
    assert entry["agent_id"] is None
    assert entry["summary"].startswith(f"Held until {until.isoformat()}: Rule: 'Office' is closed")
    offered = lead_row_changes(_offered("ana"))
    assert (offered["status"], offered["held_until"]) == ("offered", None), "its offer ends the hold"
    assert lead_row_changes(held)["status"] == "held"


@pytest.mark.parametrize(
    ("reason", "head"),
    [("agent_left", "Unassigned"), ("idle", "Taken from an idle agent"), ("returned", "Given back, unassigned")],
)
def test_a_released_lead_s_timeline_entry_says_why_nobody_holds_it(reason: str, head: str) -> None:
    event = LeadReleased.create(
        account_id="acme",
        occurred_at=datetime(2026, 5, 4, 12, tzinfo=UTC),
        payload=LeadReleasedPayload(
            lead_id=uuid.uuid4(),
            agent_id="ana",
            broker_agent_id="ana",
            explanation="why",
            reason=reason,
        ),
    )
    assert timeline_entry(event)["summary"] == f"{head}: why"
