"""What a done erasure keeps of the person, on nx-27017 (decision 0106; helper 173's review, failed before).

Decision 0106 keeps the SHA-256 of each of the erased contact's keys (`erased:<hex>` of `<account>:phone:<e164>`,
`<account>:email:<address>`) in the contact index for 31 days (a TTL index: a suppression list), and also in the
erasure's audit record, `router_erasures.contact_ids`, which has no TTL and is never cleared when the erasure is
done. An unsalted hash of a phone number is no anonymisation: the number space is small (a country's numbers, the
account id known), so the phone is read back from the audit record by enumeration, forever. docs/rules.md says
"After it, no MongoDB collection holds the person"; `Erasures` says its record "holds no personal data; the email and
phone it was asked for are not kept". The hashes are needed only until the erasure is done (a redelivery re-marks
the index from them); `Erasures.finish` now unsets them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from router_harness import Router, router_on

from leadflow_router.adapters.mongo import Erasures
from leadflow_shared.collections import ROUTER_CONTACTS, ROUTER_ERASURES
from leadflow_shared.events.commands import EraseContact, EraseContactPayload
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

T0 = datetime(2026, 4, 6, 10, tzinfo=UTC)


def _account(account_id: str, agents: list[str]) -> dict[str, Any]:
    return {
        "account_id": account_id, "name": "Acme Realty", "round_robin": True,
        "agents": [{"agent_id": a, "name": f"Agent {a}", "email": f"{a}@{account_id}.example"} for a in agents],
        "roster": agents, "default_source": {"race_count": 1, "claim_window_seconds": 600},
    }  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session")
async def router(mongo_url: str) -> AsyncIterator[Router]:
    async with router_on(mongo_url, {"accounts": [_account("acme", ["acme-broker", "ana"])]}, now=T0) as built:
        built.service.erasures = Erasures(built.db)
        yield built


def _phone_from_hash(digest: str, account_id: str, prefix: str, around: int) -> str | None:
    """What anyone reading `router_erasures` does: hash candidate numbers until one matches (a window here; the
    whole +1415 range is 10^7 candidates, seconds of CPU)."""
    for n in range(around - 50_000, around + 50_000):
        phone = f"{prefix}{n}"
        if "erased:" + hashlib.sha256(f"{account_id}:phone:{phone}".encode()).hexdigest() == digest:
            return phone
    return None


async def test_a_done_erasure_s_audit_record_keeps_no_reversible_hash_of_the_contact(router: Router) -> None:
    number = uuid.uuid4().int % 9_000_000 + 1_000_000
    contact = Contact(first_name="Kim", email=f"kim.{uuid.uuid4().hex[:8]}@example.com", phone=f"+1415{number}")
    lead = LeadReceived.create(account_id="acme", occurred_at=T0, payload=LeadReceivedPayload(
        contact=contact, source=LeadSource(channel=LeadChannel.BROKERAGE_SITE, name="Website")))  # fmt: skip
    await router.service.on_lead_received(lead)
    command = EraseContact.create(
        account_id="acme", occurred_at=T0,
        payload=EraseContactPayload(by_user_id="acme-broker", reason="ticket 42", email=contact.email),
    )  # fmt: skip
    await router.service.on_command(command)

    audit = await router.db[ROUTER_ERASURES].find_one({"_id": str(command.event_id)})
    assert audit is not None
    assert audit["status"] == "done"
    # 31 days on, the TTL index has dropped the index's marks: only the audit record is left.
    await router.db[ROUTER_CONTACTS].delete_many({"_id": {"$regex": "^erased:"}})

    recovered = [p for i in audit.get("contact_ids") or [] if (p := _phone_from_hash(i, "acme", "+1415", number))]
    assert recovered == [], (
        f"the erased person's phone {recovered} is read back from the done erasure's audit record (no TTL), by "
        "hashing candidate numbers: `router_erasures.contact_ids` keeps the contact after the erasure"
    )
