"""A repeat (R1) merged into Pat's lead is stored, but its batch's other lead is not (the writer died between them), so
the batch's outbox document stays open. The erasure of Pat finishes the repeat's outbox before forgetting the keys,
scrubs the lead, detaches the repeat's record from the document and publishes ContactErased. A sweeper finishing
that document afterwards applies nothing of the repeat again: no ActivityLogged with Pat's email after
ContactErased, no key naming the erased lead (a review, session 27; decision 0050's session 27 amendment)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fakes_router import FakeRecords
from test_router_erasure import KEY, Router, erasure, lead, published_after_erasure

from leadflow_router.adapters.codec import encode_outbox, encode_record
from leadflow_router.adapters.ports import Check
from leadflow_router.domain.record import Outbox, RoutingRecord
from leadflow_router.handlers import STALE_BATCH_SECONDS

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


class DiesAfterFirstRecord(FakeRecords):
    """A writer that dies after its batch's outbox document and its first record, before the others."""

    async def insert_batch(
        self, records: list[RoutingRecord], *, batch_id: str, now_ms: int, before_records: Check | None = None
    ) -> tuple[list[RoutingRecord], list[str]]:
        doc_id = f"{batch_id}/0"
        leads = [{"lead_id": r.lead_id, **encode_outbox(r.outbox)} for r in records]
        self.outboxes[doc_id] = {"_id": doc_id, "since_ms": now_ms, "leads": leads}
        first = records[0]
        self.docs[first.lead_id] = encode_record(replace(first, outbox=Outbox(batch=doc_id)))
        del before_records  # dies after its first record, as if the check had passed
        raise ConnectionError("the writer died after its first record")


async def erased_with_the_repeats_document_open() -> tuple[Router, str]:
    """Pat's lead, a repeat of Pat stored in a batch whose other lead is not, Pat erased (the document stale), then
    another replica's sweeper finishing the document; the erased lead's id."""
    records = DiesAfterFirstRecord()
    router = Router(records=records)
    first, repeat, other = lead(1), lead(1), lead(2)
    plain = FakeRecords()
    plain.docs, plain.outboxes = records.docs, records.outboxes
    router.service.records = plain
    assert not await router.service.on_leads_received([first])  # Pat's lead, routed, its key registered
    router.service.records = records
    with pytest.raises(ConnectionError):
        await router.service.on_leads_received([repeat, other])  # the repeat stored, the other lead not
    assert str(repeat.event_id) in records.docs
    assert str(other.event_id) not in records.docs
    (doc,) = records.outboxes.values()
    doc["since_ms"] -= 2 * STALE_BATCH_SECONDS * 1000

    router.service.records = plain
    await router.service.on_command(erasure(email="pat1@example.com"))
    assert KEY not in router.contacts.leads
    await router.service.republish_stale()  # another replica's sweeper, before the batch is redelivered
    return router, str(first.event_id)


async def test_a_sweep_after_the_erasure_publishes_nothing_of_the_erased_contact() -> None:
    router, _ = await erased_with_the_repeats_document_open()
    after = published_after_erasure(router.out)
    assert not [b for b in after if b"pat1@example.com" in b], "the repeat's event carried Pat after ContactErased"


async def test_a_sweep_after_the_erasure_leaves_no_key_naming_the_erased_lead() -> None:
    router, erased = await erased_with_the_repeats_document_open()
    assert router.contacts.leads.get(KEY) != erased, "Pat's key names the erased lead again"
    again = lead(1)
    assert not await router.service.on_leads_received([again]), "Pat's next inquiry is refused"
