"""R8 as crm-api tells it: what an action will do about claiming, and why it claims nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from leadflow_crm_api.domain.claims import ClaimOutlook, claim_answer
from leadflow_crm_api.domain.lead_row import LeadRow, TimelineEntry
from leadflow_crm_api.domain.views import open_offers_after
from leadflow_shared.events.intake import Contact, LeadChannel, LeadSource
from leadflow_shared.events.routing import LeadOffered, LeadOfferedPayload

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)


def row(holder: str | None = None, offers: list[tuple[str, datetime]] | None = None) -> LeadRow:
    offered = [{"agent_id": a, "offer_round": 1, "deadline": d} for a, d in offers or []]
    return LeadRow.from_doc({"_id": "lead-1", "owner_agent_id": holder, "open_offers": offered})


def entry(kind: str, agent: str, at: datetime) -> TimelineEntry:
    return TimelineEntry.from_doc({"_id": f"{kind}-{agent}", "type": kind, "agent_id": agent, "occurred_at": at})


def answer(
    lead: LeadRow,
    timeline: list[TimelineEntry] | None = None,
    *,
    claims: bool = True,
    names: dict[str, str] | None = None,
) -> tuple[ClaimOutlook, str | None]:
    found = claim_answer(lead, timeline or [], caller="ana", claims=claims, now=NOW, names=names or {})
    return found.outlook, found.detail


def test_a_view_is_not_a_claim() -> None:
    assert answer(row(), claims=False) == (ClaimOutlook.NOT_A_CLAIM, None)


def test_the_holder_works_its_lead() -> None:
    assert answer(row(holder="ana")) == (ClaimOutlook.HOLDER, None)


def test_an_open_offer_requests_the_claim_and_names_its_deadline() -> None:
    lead = row(offers=[("ana", NOW + timedelta(minutes=5)), ("ben", NOW + timedelta(minutes=5))])
    assert answer(lead) == (ClaimOutlook.REQUESTED, "Your offer is open until 2026-11-24 14:35 UTC.")


def test_an_offer_past_its_deadline_claims_nothing_even_before_the_sweeper_expires_it() -> None:
    lead = row(offers=[("ana", NOW - timedelta(seconds=1))])
    assert answer(lead) == (ClaimOutlook.NONE, "Your offer ended at 2026-11-24 14:29 UTC; nobody holds the lead now.")


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("OfferExpired", "Your offer expired at 2026-11-24 14:10 UTC"),
        ("OfferWithdrawn", "Your offer was withdrawn at 2026-11-24 14:10 UTC"),
        ("LeadClaimed", "You claimed this lead before and no longer hold it"),
    ],
)
def test_how_the_callers_offer_ended_and_who_holds_the_lead_by_name(kind: str, said: str) -> None:
    at = NOW - timedelta(minutes=20)
    timeline = [entry("LeadOffered", "ana", at - timedelta(minutes=5)), entry(kind, "ana", at),
                entry("LeadClaimed", "ben", at)]  # fmt: skip
    found = answer(row(holder="ben"), timeline, names={"ben": "Ben Ode"})
    assert found == (ClaimOutlook.NONE, f"{said}; the lead is held by Ben Ode.")


def test_someone_never_offered_the_lead_is_told_so_and_the_holder_by_id_without_a_name() -> None:
    found = answer(row(holder="ben"), [entry("LeadOffered", "cy", NOW)])
    assert found == (ClaimOutlook.NONE, "You were not offered this lead; the lead is held by ben.")


@pytest.mark.parametrize("fraction_us", [1, 85, 999])
def test_an_offer_stated_with_a_fraction_of_a_millisecond_is_claimable_to_its_stated_deadline(fraction_us: int) -> None:
    # The stored BSON datetime loses the fraction downwards; the stored milliseconds are rounded up (R8).
    deadline = NOW + timedelta(minutes=5, microseconds=fraction_us)
    event = LeadOffered.create(
        account_id="acme",
        occurred_at=NOW,
        payload=LeadOfferedPayload(
            lead_id=uuid.uuid4(), agent_id="ana", offer_round=1, race_size=1, deadline=deadline, explanation="R6",
            contact=Contact(first_name="Jordan", email="jordan@example.com"),
            source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website"),
        ),
    )  # fmt: skip
    offers = open_offers_after([], event)
    assert offers is not None
    stored = [
        o | {"deadline": o["deadline"].replace(microsecond=o["deadline"].microsecond // 1000 * 1000)} for o in offers
    ]
    lead = LeadRow.from_doc({"_id": "lead-1", "owner_agent_id": None, "open_offers": stored})
    just_before = claim_answer(lead, [], caller="ana", claims=True, now=deadline - timedelta(microseconds=1), names={})
    assert just_before.outlook is ClaimOutlook.REQUESTED
    at_it = claim_answer(lead, [], caller="ana", claims=True, now=deadline + timedelta(milliseconds=1), names={})
    assert at_it.outlook is ClaimOutlook.NONE


def test_the_answer_names_the_round_of_the_open_offer_the_caller_acts_on() -> None:
    # The round goes on the LeadActivity: the router claims that offer only (decision 0087).
    doc = {"agent_id": "ana", "offer_round": 3, "deadline": NOW + timedelta(minutes=5)}
    lead = LeadRow.from_doc({"_id": "lead-1", "open_offers": [doc]})
    found = claim_answer(lead, [], caller="ana", claims=True, now=NOW, names={})
    assert (found.outlook, found.offer_round) == (ClaimOutlook.REQUESTED, 3)
    ended = claim_answer(lead, [], caller="ana", claims=True, now=NOW + timedelta(minutes=5), names={})
    assert (ended.outlook, ended.offer_round) == (ClaimOutlook.NONE, None), "no open offer: no round"
    held = claim_answer(row(holder="ana"), [], caller="ana", claims=True, now=NOW, names={})
    assert held.offer_round is None
