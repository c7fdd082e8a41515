"""crm-api's read side of ponds and of asking a missed offer back (issue 15, item 5): the pond a lead's offers
are in, kept on its row, cleared when the lead moves, and read from rows written before ponds; and what became of
an agent's latest ask, matched to the router's answers by count (two clocks), not by time, answers of one router
millisecond in the order the router wrote them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadflow_crm_api.domain.ask_back import AskBackOutcome, AskBackStatus, ask_back_outcome
from leadflow_crm_api.domain.lead_row import LeadRow, Offer, TimelineEntry
from leadflow_crm_api.domain.offices import moved_row
from leadflow_crm_api.domain.views import open_offers_after, pond_of
from leadflow_shared.clock import epoch_ms
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import (
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
    changes = moved_row(row, LeadTransferred.create(account_id="acme-realty", occurred_at=T0, payload=payload))
    assert (changes["open_offers"], changes["pond"]) == ([], None), "its offers were the first office's"
    assert LeadRow.from_doc(row | changes).pond is None


def test_a_row_written_before_ponds_reads_in_no_pond() -> None:
    old = {"_id": "l1", "open_offers": [{"agent_id": "ana", "offer_round": 1, "deadline": T0}]}
    row = LeadRow.from_doc(old)
    assert row.pond is None
    assert row.open_offers == (Offer("ana", 1, T0, epoch_ms(T0)),)
    assert LeadRow.from_doc({"_id": "l2", "pond": 7}).pond is None, "an odd value reads as none"


def entry(kind: str, at: datetime, summary: str = "", action: str | None = "ask_back") -> TimelineEntry:
    return TimelineEntry(uuid.uuid4().hex, "l1", "acme-realty", kind, at, epoch_ms(at), "ana", action, summary)


def asked(at: datetime) -> TimelineEntry:
    return entry("LeadActivity", at, "ask back by ana")


def refused(at: datetime, why: str = "the lead is held by bo") -> TimelineEntry:
    return entry("ActivityLogged", at, f"ask_back by ana claimed nothing: cannot ask it back: {why}")


def offer(at: datetime, why: str = "ana asked back the offer it missed: offered to it again") -> TimelineEntry:
    return entry("LeadOffered", at, f"Offered to ana (round 2), claim before {at.isoformat()}: {why}", action=None)


def outcome(
    asks: list[TimelineEntry],
    offers: Sequence[TimelineEntry] = (),
    **row: Any,
) -> AskBackOutcome | None:
    return ask_back_outcome(LeadRow.from_doc({"_id": "l1", **row}), offers, asks, "ana", now=T0 + timedelta(hours=1))


def test_no_ask_has_no_outcome_and_an_unanswered_ask_is_pending() -> None:
    assert outcome([]) is None
    assert outcome([refused(T0)]) is None, "a refusal with no ask of crm-api's: nothing asked here"
    assert outcome([asked(T0)]) == AskBackOutcome(AskBackStatus.PENDING, T0)


def test_answers_are_matched_to_asks_by_count_whatever_the_two_clocks_say() -> None:
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


def test_only_the_router_s_offers_to_an_ask_answer_it() -> None:
    routine = offer(T0 + timedelta(seconds=1), why="R6: offered to ana (next in rotation)")
    assert outcome([asked(T0)], [routine]) == AskBackOutcome(AskBackStatus.PENDING, T0)


def test_an_open_offer_of_the_lead_says_offered_even_after_a_late_refusal() -> None:
    """Two asks in a row: the first brings an offer, the second is refused ("its offer is still open")."""
    until = T0 + timedelta(hours=2)
    open_offer = {"agent_id": "ana", "offer_round": 2, "deadline": until}
    asks = [asked(T0), asked(T0), refused(T0 + timedelta(seconds=2), "its offer is still open")]
    found = outcome(asks, [offer(T0 + timedelta(seconds=1))], open_offers=[open_offer])
    assert found is not None
    assert (found.status, found.offered_until, found.reason) == (AskBackStatus.OFFERED, until, None)
    expired = outcome(asks[:1], [offer(T0)], open_offers=[open_offer | {"deadline": T0}])
    assert expired == AskBackOutcome(AskBackStatus.OFFERED, T0, T0), "offered; that offer ended since"


def test_answers_of_one_router_millisecond_are_in_the_order_the_router_wrote_them_whatever_their_ids() -> None:
    """Two asks answered in the same millisecond of the router's clock. The answers' ids are random run to run
    (derived from the asks' ids), so they never decide which answer is the latest."""
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
