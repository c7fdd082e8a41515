"""A due record the sweeper cannot decide, or decides but cannot store because a claim changed its lead meanwhile,
leaves the pass's shared state as it found it (decision 0077): the rotation's turn and the caps it would have
taken are not counted for the pass's later deadlines; a record this version cannot read is set aside by the read
(decision 0091). On the router's in-memory stores; the pass itself on
nx-27017: integration/test_router_state.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fakes_router import ClaimRacingSweep, FakeRecords, FakeRotations, Published, router_on_fakes, website_lead

from leadflow_router.adapters.codec import decode_record
from leadflow_router.domain.availability import CountedLeads
from leadflow_router.domain.model import AccountSnapshot, Agent
from leadflow_router.sweeper import Alarm, sweep
from leadflow_shared.events.activity import ActivityAction, LeadActivity, LeadActivityPayload
from leadflow_shared.events.routing import LeadClaimed, LeadOffered, OfferExpired
from leadflow_shared.logs import configure_logging

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]

NOW = datetime(2026, 5, 4, 15, 0, tzinfo=UTC)
ACCOUNT = AccountSnapshot(
    account_id="acme", name="Acme", roster=(Agent("a", "A"), Agent("b", "B"), Agent("c", "C")), round_robin=True
)


async def test_a_record_that_fails_to_be_decided_takes_no_turn_from_the_rotation() -> None:
    records = FakeRecords()
    service = router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records)
    lead = website_lead("acme", NOW)
    assert not await service.on_leads_received([lead])
    record = decode_record(records.docs[str(lead.event_id)])
    due = NOW + timedelta(hours=1)  # past its claim window

    untouched = await service._fired(record, due, {}, {})  # what deciding it from the stored state makes

    cursors: dict[str, int] = {}
    usage: dict[str, CountedLeads] = {}

    def fails(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("a fault in this record alone")

    decide = service._next_record
    service._next_record = fails  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="this record alone"):
        await service._fired(record, due, cursors, usage)
    service._next_record = decide  # type: ignore[method-assign]
    again = await service._fired(record, due, cursors, usage)
    assert again.state == untouched.state, "the failed attempt moved the rotation the next decision sees"


async def _second_lead_after_expiry(*, claim_races_the_sweep: bool) -> tuple[str, dict[str, int]]:
    """Two leads offered to a and b; at the deadline, a claims the first, just before the pass (no race) or
    between the pass's read and its compare-and-set (race). Who the second goes to, and the stored cursors."""
    now = [NOW]
    records, rotations, out = ClaimRacingSweep(), FakeRotations(), Published()
    router = router_on_fakes(ACCOUNT, clock=lambda: now[0], records=records, rotations=rotations, publish=out)
    records.service = router
    first, second = website_lead("acme", NOW, "pat1@example.com"), website_lead("acme", NOW, "pat2@example.com")
    assert not await router.on_leads_received([first, second])
    offers = {e.payload.lead_id: e.payload.agent_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert (offers[first.event_id], offers[second.event_id]) == ("a", "b")
    deadline = max(e.payload.deadline for e in out.lead_events() if isinstance(e, LeadOffered))
    claim = LeadActivity.create(
        account_id="acme",
        occurred_at=deadline - timedelta(seconds=1),  # made in time (decision 0087)
        payload=LeadActivityPayload(lead_id=first.event_id, agent_id="a", action=ActivityAction.ACCEPT),
    )
    if claim_races_the_sweep:
        records.claim = claim
    else:
        await router.on_activity(claim)
    now[0] = deadline + timedelta(seconds=1)
    for _ in range(3):  # as the sweeper goes round while deadlines are due
        await router.sweep_once()
    assert [e for e in out.lead_events() if isinstance(e, LeadClaimed)], "a claimed the first lead"
    again = [e for e in out.lead_events() if isinstance(e, LeadOffered) and e.payload.lead_id == second.event_id]
    return again[-1].payload.agent_id, dict(rotations.positions)


async def test_an_expiry_that_loses_its_compare_and_set_to_a_claim_takes_no_turn_from_the_rotation() -> None:
    # The pass decided both leads (the first's expiry took c's turn, the second's then a's) and a claim won the
    # first: the second, decided after a turn that did not happen, is decided again, and goes to c as it would
    # have without the race (helper 63's review).
    alone_agent, alone_cursors = await _second_lead_after_expiry(claim_races_the_sweep=False)
    raced_agent, raced_cursors = await _second_lead_after_expiry(claim_races_the_sweep=True)
    assert raced_agent == alone_agent == "c"
    assert raced_cursors == alone_cursors


# A record this router version cannot read (a newer version added a contact field) met by the sweeper's loop:
# set aside by the read (decision 0091), the other deadlines still fire, and no log line holds the contact.
EMAIL_NEWER = "newer-doc-7c1e@example.com"
EMAIL_OTHER = "other-lead-3f9a@example.com"
SECOND_PHONE = "+1 555 0100 4242"


class Watched(Published):
    """What the router published; `expired` is set once an offer expiry is published."""

    def __init__(self) -> None:
        super().__init__()
        self.expired = asyncio.Event()

    async def __call__(self, key: str, body: bytes) -> None:
        await super().__call__(key, body)
        if b'"OfferExpired"' in body:
            self.expired.set()


async def test_a_record_this_version_cannot_read_stalls_no_other_deadline_and_logs_no_contact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [NOW]
    records, out = FakeRecords(), Watched()
    router = router_on_fakes(ACCOUNT, clock=lambda: now[0], records=records, publish=out)
    newer, other = website_lead("acme", NOW, EMAIL_NEWER), website_lead("acme", NOW, EMAIL_OTHER)
    assert not await router.on_leads_received([newer, other])
    offered = {e.payload.lead_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert offered == {newer.event_id, other.event_id}
    deadline = max(e.payload.deadline for e in out.lead_events() if isinstance(e, LeadOffered))

    # A newer router stored the first lead with a contact field this version does not know (an additive change).
    doc = records.docs[str(newer.event_id)]
    doc["summary"]["contact"] = doc["summary"]["contact"] | {"second_phone": SECOND_PHONE}
    doc["next_deadline_ms"] -= 1  # the most overdue: it heads every pass
    now[0] = deadline + timedelta(seconds=1)

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = root.handlers[:], root.level
    configure_logging("router", "INFO", "json")
    stopping = asyncio.Event()
    sweeper = asyncio.create_task(sweep(router, stopping, alarm=Alarm(), idle_seconds=0.02))

    def other_expired() -> bool:
        return any(isinstance(e, OfferExpired) and e.payload.lead_id == other.event_id for e in out.lead_events())

    try:
        with contextlib.suppress(TimeoutError):  # the deadline of the wait: 3 s, over a hundred passes
            await asyncio.wait_for(out.expired.wait(), 3.0)
    finally:
        stopping.set()
        await asyncio.wait_for(sweeper, 5)
        root.handlers[:], level = before
        root.setLevel(level)
    lines: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
    logged = json.dumps(lines)
    errors = sorted({line["message"] for line in lines if line["level"] in ("ERROR", "CRITICAL")})

    problems = []
    if SECOND_PHONE in logged or EMAIL_NEWER in logged:
        problems.append(f"the sweeper logged the unreadable lead's contact ({len(lines)} lines: {errors})")
    if not other_expired():
        problems.append("the other lead's offer never expired: one unreadable record stalled every deadline")
    assert not problems, problems
    set_aside = [line for line in lines if line.get("lead_id") == str(newer.event_id)]
    assert set_aside, "the unreadable record is logged by its lead id"
    assert {(line["error_type"], line["read"]) for line in set_aside} == {("ValidationError", "due")}


@pytest.mark.asyncio
async def test_an_unreadable_old_lead_of_a_known_contact_counts_as_unknown_and_dead_letters_no_new_lead(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Helper 88: the contact's earlier lead, stored by a newer version in a shape this one cannot read, made
    `on_leads_received` raise on every delivery of the contact's new leads (each dead-lettered). It counts as unknown
    for R1 (`readable_many`): the new lead is routed as a new lead, and the old one is logged by id alone."""
    records, out = FakeRecords(), Published()
    router = router_on_fakes(ACCOUNT, clock=lambda: NOW, records=records, publish=out)
    old = website_lead("acme", NOW, EMAIL_NEWER)
    assert not await router.on_leads_received([old])
    doc = records.docs[str(old.event_id)]
    doc["summary"]["contact"] = doc["summary"]["contact"] | {"second_phone": SECOND_PHONE}
    out.clear()
    new = website_lead("acme", NOW, EMAIL_NEWER)
    with caplog.at_level(logging.ERROR):
        rejected = await router.on_leads_received([new])
    assert rejected == [], f"the new lead was refused: {rejected}"
    offered = {e.payload.lead_id for e in out.lead_events() if isinstance(e, LeadOffered)}
    assert offered == {new.event_id}, "the new lead is routed as a new lead (R1 cannot read the old one)"
    logged = [r for r in caplog.records if getattr(r, "lead_id", None) == str(old.event_id)]
    assert [(getattr(r, "read", None), getattr(r, "error_type", None)) for r in logged] == [
        ("contacts", "ValidationError")
    ]
    assert SECOND_PHONE not in caplog.text
    assert EMAIL_NEWER not in caplog.text
