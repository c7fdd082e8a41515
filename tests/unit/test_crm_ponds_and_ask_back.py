"""crm-api's read side of ponds and of asking a missed offer back (issue 15, item 5): the pond a lead's offers
are in, kept on its row, cleared when the lead moves, and read from rows written before ponds; and what became of
an agent's latest ask: matched to the router's answer that names it (decision 0067), whatever the two clocks say
and in whatever order asks and answers arrive; answers written before they named their asks matched the old way,
by count, those of one router millisecond in the order the router wrote them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow_crm_api.domain.ask_back import AskBackOutcome, AskBackStatus, ask_back_outcome
from leadflow_crm_api.domain.lead_row import LeadRow, Offer, TimelineEntry
from leadflow_crm_api.domain.offices import moved_row
from leadflow_crm_api.domain.views import open_offers_after, pond_of, timeline_entry
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.activity import ActivityAction
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
    ActivityLogged,
    ActivityLoggedPayload,
    LeadOffered,
    LeadOfferedPayload,
    LeadTransferred,
    LeadTransferredPayload,
    OfferClosedPayload,
    OfferExpired,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
LEAD = uuid.uuid4()


def offered(agent: str, pond: str | None) -> LeadOffered:
    payload = LeadOfferedPayload(
        lead_id=LEAD, agent_id=agent, offer_round=1, race_size=2, deadline=T0 + timedelta(hours=1),
        explanation="a pond", contact=Contact(first_name="Jane", email="jane@example.com"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"), pond=pond,
    )  # fmt: skip
    return LeadOffered.create(account_id="acme-realty", occurred_at=T0, payload=payload)


def test_a_pond_s_offers_carry_the_pond_and_the_row_keeps_it_while_one_is_open() -> None:
    offers = open_offers_after([], offered("ana", "open-house"))
    assert offers is not None
    offers = open_offers_after(offers, offered("bo", "open-house"))
    assert offers is not None
    assert [o["pond"] for o in offers] == ["open-house", "open-house"]
    assert pond_of(offers) == "open-house"
    closed = OfferClosedPayload(lead_id=LEAD, agent_id="ana", offer_round=1)
    expired = OfferExpired.create(account_id="acme-realty", occurred_at=T0, payload=closed)
    left = open_offers_after(offers, expired)
    assert left is not None
    assert pond_of(left) == "open-house", "bo can still claim it"
    assert pond_of([]) is None, "the last pond offer gone, the lead is in no pond"
    plain = open_offers_after([], offered("ana", None))
    assert plain is not None
    assert "pond" not in plain[0], "an offer of no pond is stored as before ponds"
    assert pond_of(plain) is None

    row = LeadRow.from_doc({"_id": "l1", "open_offers": offers, "pond": pond_of(offers)})
    assert row.pond == "open-house"
    assert [o.pond for o in row.open_offers] == ["open-house", "open-house"]


def test_a_lead_moved_to_another_office_leaves_its_pond() -> None:
    offers = open_offers_after([], offered("ana", "open-house"))
    row = {"_id": str(LEAD), "open_offers": offers, "pond": pond_of(offers or [])}
    payload = LeadTransferredPayload(
        lead_id=LEAD, transfer_id=uuid.uuid4(), from_account_id="acme-realty", from_account_name="Acme",
        previous_owner_agent_id=None, to_account_id="acme-south", to_account_name="Acme South", agent_id="sol",
        by_user_id="nora", contact=Contact(first_name="Jane"),
        source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
    )  # fmt: skip
    moved = LeadTransferred.create(account_id="acme-realty", occurred_at=T0, payload=payload)
    changes = moved_row(LeadRow.from_doc(row), moved)
    assert (changes["open_offers"], changes["pond"]) == ([], None), "its offers were the first office's"
    assert LeadRow.from_doc(row | changes).pond is None


def test_a_row_written_before_ponds_reads_in_no_pond() -> None:
    old = {"_id": "l1", "open_offers": [{"agent_id": "ana", "offer_round": 1, "deadline": T0}]}
    row = LeadRow.from_doc(old)
    assert row.pond is None
    assert row.open_offers == (Offer("ana", 1, T0, epoch_ms(T0)),)
    assert LeadRow.from_doc({"_id": "l2", "pond": 7}).pond is None, "an odd value reads as none"


def entry(kind: str, at: datetime, summary: str = "", action: str | None = "ask_back", **more: Any) -> TimelineEntry:
    return TimelineEntry(str(uuid.uuid4()), "l1", "acme-realty", kind, at, epoch_ms(at), "ana", action, summary, **more)


def asked(at: datetime) -> TimelineEntry:
    return entry("LeadActivity", at, "ask back by ana")


def refused(at: datetime, why: str = "the lead is held by bo", answers: TimelineEntry | None = None) -> TimelineEntry:
    said = f"ask_back by ana claimed nothing: cannot ask it back: {why}"
    return entry("ActivityLogged", at, said, answers=answers.entry_id if answers else None)


def offer(
    at: datetime,
    why: str = "ana asked back the offer it missed: offered to it again",
    answers: TimelineEntry | None = None,
) -> TimelineEntry:
    said = f"Offered to ana (round 2), claim before {at.isoformat()}: {why}"
    return entry("LeadOffered", at, said, action=None, answers=answers.entry_id if answers else None)


def outcome(
    asks: list[TimelineEntry],
    offers: Sequence[TimelineEntry] = (),
    **row: Any,
) -> AskBackOutcome | None:
    """The outcome, which always names the latest ask (`ask_id`, then left out to compare the rest)."""
    found = ask_back_outcome(LeadRow.from_doc({"_id": "l1", **row}), offers, asks, "ana", now=T0 + timedelta(hours=1))
    if found is None:
        return None
    assert found.ask_id == [a for a in asks if a.type == "LeadActivity"][-1].entry_id
    return replace(found, ask_id=None)


def test_no_ask_has_no_outcome_and_an_unanswered_ask_is_pending() -> None:
    assert outcome([]) is None
    assert outcome([refused(T0)]) is None, "a refusal with no ask of crm-api's: nothing asked here"
    assert outcome([asked(T0)]) == AskBackOutcome(AskBackStatus.PENDING, T0)


# Answers that name their ask (decision 0067).


def test_an_ask_is_answered_by_the_answer_that_names_it_whatever_the_clocks() -> None:
    one, two = asked(T0), asked(T0 + timedelta(minutes=1))
    behind = T0 - timedelta(hours=1)  # the router's clock far behind crm-api's: its answers look older than the asks
    assert outcome([one, refused(behind, answers=one)]) == AskBackOutcome(
        AskBackStatus.REFUSED, T0, behind, reason="the lead is held by bo"
    )
    assert outcome([one, refused(behind, answers=one), two]) == AskBackOutcome(
        AskBackStatus.PENDING, two.occurred_at
    ), "the first ask's refusal is not the second's, though it is the latest answer"
    answered = outcome([one, refused(behind, answers=one), two], [offer(behind, answers=two)])
    assert answered == AskBackOutcome(AskBackStatus.OFFERED, two.occurred_at, behind)
    # Two router replicas (the partition moved between the answers), the second's clock a minute behind the first's:
    # the second ask's answer is stamped before the first's, and is still the second ask's.
    first_replica, second_replica = (
        T0 + timedelta(seconds=1),
        T0 + timedelta(minutes=1, seconds=1) - timedelta(minutes=2),
    )
    asks = [one, refused(first_replica, answers=one), two]
    assert outcome(asks, [offer(second_replica, answers=two)]) == AskBackOutcome(
        AskBackStatus.OFFERED, two.occurred_at, second_replica
    )


def test_an_ask_the_router_never_answered_leaves_the_next_one_its_own_answer() -> None:
    """The first ask was dead-lettered (no answer, ever); after the safety net the agent asked again. By count the
    second would stay pending for good (one answer, two asks); by id it has its answer."""
    lost, again = asked(T0), asked(T0 + timedelta(minutes=3))
    at = T0 + timedelta(minutes=3, seconds=1)
    assert outcome([lost, again]) == AskBackOutcome(AskBackStatus.PENDING, again.occurred_at)
    assert outcome([lost, again, refused(at, answers=again)]) == AskBackOutcome(
        AskBackStatus.REFUSED, again.occurred_at, at, reason="the lead is held by bo"
    )


def test_a_late_answer_to_an_older_ask_is_not_taken_for_the_newer_one() -> None:
    """The first ask was dead-lettered, the second refused; then an SRE replays the first from its dead-letter topic
    and the router offers the lead for it. By count (two asks, two answers) that offer, the latest answer, would be
    taken for the second ask; it is the first's."""
    old, new = asked(T0), asked(T0 + timedelta(minutes=3))
    late = offer(T0 + timedelta(minutes=4), answers=old)  # the old ask's answer, after the new ask
    assert outcome([old, new], [late]) == AskBackOutcome(AskBackStatus.PENDING, new.occurred_at)
    no = refused(T0 + timedelta(minutes=3, seconds=1), answers=new)
    assert outcome([old, new, no], [late]) == AskBackOutcome(
        AskBackStatus.REFUSED, new.occurred_at, no.occurred_at, reason="the lead is held by bo"
    )


def test_only_the_router_s_offers_to_an_ask_answer_it() -> None:
    ask = asked(T0)
    routine = offer(T0 + timedelta(seconds=1), why="R6: offered to ana (next in rotation)")
    assert outcome([ask], [routine]) == AskBackOutcome(AskBackStatus.PENDING, T0)
    named = offer(T0 + timedelta(seconds=1), why="R6: offered to ana (next in rotation)", answers=ask)
    assert outcome([ask], [named]) == AskBackOutcome(AskBackStatus.OFFERED, T0, named.occurred_at), "it names it"


def test_an_open_offer_of_the_lead_says_offered_even_after_a_late_refusal() -> None:
    """Two asks in a row (sent at once, before either was recorded, with distinct ids): the first brings an offer,
    the second is refused ("its offer is still open")."""
    until = T0 + timedelta(hours=2)
    open_offer = {"agent_id": "ana", "offer_round": 2, "deadline": until}
    one, two = asked(T0), asked(T0)
    asks = [one, two, refused(T0 + timedelta(seconds=2), "its offer is still open", answers=two)]
    found = outcome(asks, [offer(T0 + timedelta(seconds=1), answers=one)], open_offers=[open_offer])
    assert found is not None
    assert (found.status, found.offered_until, found.reason) == (AskBackStatus.OFFERED, until, None)
    expired = outcome([one], [offer(T0, answers=one)], open_offers=[open_offer | {"deadline": T0}])
    assert expired == AskBackOutcome(AskBackStatus.OFFERED, T0, T0), "offered; that offer ended since"


def test_the_projection_keeps_the_ask_an_answer_names_on_its_timeline_entry() -> None:
    ask = uuid.uuid4()
    back = offered("ana", None)
    back = back.model_copy(update={"payload": back.payload.model_copy(update={"answers_activity_id": ask})})
    logged = ActivityLoggedPayload(
        lead_id=LEAD, agent_id="bo", action=ActivityAction.ASK_BACK, by_agent_id="ana",
        claim_refused="cannot ask it back: the lead is held by bo", answers_activity_id=ask,
    )  # fmt: skip
    no = ActivityLogged.create(account_id="acme-realty", occurred_at=T0, payload=logged)
    for event in (back, no):
        doc = timeline_entry(event)
        assert doc["answers_activity_id"] == str(ask)
        assert TimelineEntry.from_doc(doc).answers == str(ask)
    before = timeline_entry(offered("ana", None))  # an offer that answers no ask, or one written before the field
    assert "answers_activity_id" not in before, "nothing stored for the events that answer no ask"
    assert TimelineEntry.from_doc(before).answers is None
    assert TimelineEntry.from_doc(before | {"answers_activity_id": 7}).answers is None, "an odd value reads as none"


REASONS = ["the lead is held by bo", "its offer is still open", "ana is paused", "nobody can be offered the lead now"]
ANSWER = st.one_of(st.none(), st.sampled_from(REASONS))  # None: a new offer; else a refusal's reason
SKEW = st.integers(min_value=-3_600_000, max_value=3_600_000)  # the router's clock against crm-api's, in ms


@settings(max_examples=300, deadline=None)
@given(
    gap=st.integers(min_value=1, max_value=600_000),
    skews=st.tuples(SKEW, SKEW),
    kinds=st.tuples(ANSWER, ANSWER),
    arrived=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    history=st.lists(st.booleans(), max_size=3),
    same_ms=st.booleans(),
)
def test_two_asks_in_a_row_each_resolve_to_their_own_answer_whatever_the_skews_and_interleavings(
    gap: int,
    skews: tuple[int, int],
    kinds: tuple[str | None, str | None],
    arrived: tuple[bool, bool, bool],
    history: list[bool],
    same_ms: bool,
) -> None:
    """Asks at crm-api's times, answers at the router's (skewed either way, up to an hour, independently; maybe in
    one millisecond), the second ask sent or not, each answer arrived or not (dead-lettered, or on its way, so the
    second ask may precede the first's answer), after older asks whose answers named none (answered or lost)."""
    second_sent, first_answered, second_answered = arrived
    old = [asked(T0 - timedelta(hours=3, minutes=-i)) for i in range(len(history))]
    old_answers = [refused(T0 - timedelta(hours=3, minutes=-i)) for i, ok in enumerate(history) if ok]
    one, two = asked(T0), asked(T0 + timedelta(milliseconds=gap))
    at_one = T0 + timedelta(milliseconds=skews[0])
    at_two = at_one if same_ms else two.occurred_at + timedelta(milliseconds=skews[1])

    def answer(at: datetime, kind: str | None, ask: TimelineEntry) -> TimelineEntry:
        return offer(at, answers=ask) if kind is None else refused(at, kind, answers=ask)

    answers = [answer(at_one, kinds[0], one)] if first_answered else []
    if second_sent and second_answered:
        answers.append(answer(at_two, kinds[1], two))
    entries = sorted([*old, *old_answers, one, *([two] if second_sent else []), *answers], key=_stored_order)
    asks = [e for e in entries if e.type != "LeadOffered"]
    offers = [e for e in entries if e.type == "LeadOffered"]

    found = outcome(asks, offers)
    latest, kind, at, has = (
        (two, kinds[1], at_two, second_answered) if second_sent else (one, kinds[0], at_one, first_answered)
    )
    if not has:
        expected = AskBackOutcome(AskBackStatus.PENDING, latest.occurred_at)
    elif kind is None:
        expected = AskBackOutcome(AskBackStatus.OFFERED, latest.occurred_at, at)
    else:
        expected = AskBackOutcome(AskBackStatus.REFUSED, latest.occurred_at, at, reason=kind)
    assert found == expected


def _stored_order(e: TimelineEntry) -> tuple[int, str]:
    return e.occurred_ms, e.entry_id  # as `adapters.leads` reads the timeline


# Answers written before they named their ask: matched by count, as before (decision 0067 keeps it for them).


def test_answers_naming_no_ask_are_matched_to_asks_by_count_whatever_the_two_clocks_say() -> None:
    behind = T0 - timedelta(seconds=5)  # the router's clock a little behind crm-api's
    first = outcome([asked(T0), refused(behind)])
    assert first == AskBackOutcome(AskBackStatus.REFUSED, T0, behind, reason="the lead is held by bo")
    later = T0 + timedelta(minutes=1)
    again = outcome([asked(T0), refused(behind), asked(later)])
    assert again is not None
    assert (again.status, again.asked_at) == (AskBackStatus.PENDING, later), "the first refusal answered the first ask"
    ahead = T0 + timedelta(minutes=10)  # or far ahead: the latest answer is still the latest ask's
    answered = outcome([asked(T0), refused(behind), asked(later)], [offer(ahead)])
    assert answered == AskBackOutcome(AskBackStatus.OFFERED, later, ahead)


def test_history_without_ids_then_an_answer_naming_its_ask() -> None:
    """Old asks answered before answers named asks (one of them lost), then an ask answered the new way."""
    lost, old, new = asked(T0), asked(T0 + timedelta(minutes=3)), asked(T0 + timedelta(minutes=9))
    history = [lost, old, refused(T0 + timedelta(minutes=4))]
    assert outcome(history) == AskBackOutcome(AskBackStatus.PENDING, old.occurred_at), "by count, as before"
    assert outcome([*history, new]) == AskBackOutcome(AskBackStatus.PENDING, new.occurred_at)
    at = T0 - timedelta(minutes=30)  # the router's clock half an hour behind
    assert outcome([*history, new], [offer(at, answers=new)]) == AskBackOutcome(
        AskBackStatus.OFFERED, new.occurred_at, at
    )


def test_answers_of_one_router_millisecond_are_in_the_order_the_router_wrote_them_whatever_their_ids() -> None:
    """Two asks answered in the same millisecond of the router's clock, by answers naming no ask. The answers' ids
    are random run to run (derived from the asks' ids), so they never decide which answer is the latest."""
    at = T0 + timedelta(seconds=1)
    asks = [asked(T0), asked(T0)]
    for low, high in (("0" * 32, "f" * 32), ("f" * 32, "0" * 32)):
        back = replace(offer(at), entry_id=low)
        # The offer, then a refusal while it was open: the latest ask was refused (that offer has ended since).
        still_open = replace(refused(at, "its offer is still open"), entry_id=high)
        assert outcome([*asks, still_open], [back]) == AskBackOutcome(
            AskBackStatus.REFUSED, T0, at, reason="its offer is still open"
        )
        # A refusal for any other reason, then the offer (an offer first would have made it "still open").
        held = replace(refused(at), entry_id=high)
        assert outcome([*asks, held], [back]) == AskBackOutcome(AskBackStatus.OFFERED, T0, at)
