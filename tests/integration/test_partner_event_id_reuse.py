"""A partner's event id reused for another lead once intake's idempotency record is forgotten (INTAKE_IDEMPOTENCY_DAYS,
the TTL of `intake_requests`), with intake's and the router's real MongoDB adapters (nx-27017, or MongoDB with
MONGODB_URL). Helper 147's review (session 32).

The partner contract (docs/partner-contract/README.md, "Sending a lead") says: "Do not reuse an `event_id` for another
lead: that message is dead-lettered." Decision 0049 says "An Idempotency-Key reused after the window makes a new lead".
But a partner lead's `LeadReceived` id is derived from its event id and account alone (`received_event_id`), so once
the claim `partner/<account>/<event_id>` has expired, intake accepts the other lead (no conflict: nothing is stored
under the key) and publishes it under the first lead's id; the router's record id is that id, and a LeadReceived whose
id it has stored is a redelivery (rules.md I1): the second person's lead is dropped, never routed, never
dead-lettered, while intake counted it accepted. The router now keeps a digest of the lead a record was made from
(`RoutingRecord.received`) and dead-letters a delivery under a stored id with another lead in it, with the reason.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from router_harness import router_on

from leadflow_intake.adapters.accounts import MongoAccounts
from leadflow_intake.adapters.idempotency import MongoIdempotencyStore
from leadflow_intake.domain import keys
from leadflow_intake.domain.errors import IntakeError
from leadflow_intake.handlers import Intake, accept_partner_lead
from leadflow_router.domain.model import RoutingRejected
from leadflow_shared.collections import INTAKE_REQUESTS, ROUTER_LEADS
from leadflow_shared.events.inbound import LeadSubmitted
from leadflow_shared.events.intake import LeadReceived

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ACCOUNT = "acme"
AGENTS = ["broker", "a", "b"]
CONFIG = {
    "accounts": [
        {
            "account_id": ACCOUNT,
            "name": "Acme",
            "time_zone": "America/New_York",
            "round_robin": True,
            "agents": [{"agent_id": a, "name": a.title(), "email": f"{a}@acme.example"} for a in AGENTS],
            "roster": AGENTS,
            "default_source": {"claim_window_seconds": 600},
        }
    ]
}


class Published(list[LeadReceived]):
    async def __call__(self, account_id: str, event_json: bytes) -> None:
        event = LeadReceived.model_validate_json(event_json)
        assert event.account_id == account_id  # keyed by its account
        self.append(event)


def submitted(event_id: str, first_name: str, email: str) -> LeadSubmitted:
    return LeadSubmitted.model_validate({
        "event_id": event_id, "correlation_id": event_id, "type": "LeadSubmitted", "account_id": ACCOUNT,
        "occurred_at": "2026-03-02T09:05:00-05:00",
        "payload": {"contact": {"first_name": first_name, "email": email},
                    "source": {"partner": "homefinder", "name": "HomeFinder"}},
    })  # fmt: skip


async def test_a_partner_event_id_reused_for_another_lead_after_the_window_is_dead_lettered_not_dropped(
    mongo_url: str,
) -> None:
    async with router_on(mongo_url, CONFIG, now=datetime(2026, 3, 2, 14, 5, tzinfo=UTC)) as router:
        published = Published()
        intake = Intake(
            accounts=MongoAccounts(router.db, fallback_region="US"),
            store=MongoIdempotencyStore(router.db),
            publish=published,
        )
        event_id = str(uuid.uuid4())
        await accept_partner_lead(submitted(event_id, "Jane", "jane@example.com"), intake=intake)
        assert not await router.service.on_leads_received(list(published))
        assert not await router.service.on_leads_received(list(published)), "a redelivery is no reuse"
        jane: list[dict[str, Any]] = await router.db[ROUTER_LEADS].find({}).to_list()
        assert len(jane) == 1
        assert "jane@example.com" in repr(jane[0])  # a routed lead's record holds its contact

        # INTAKE_IDEMPOTENCY_DAYS later the TTL index has removed the claim (what it does, done at once here).
        removed = await router.db[INTAKE_REQUESTS].delete_one({"_id": keys.stored_key(keys.PARTNER, ACCOUNT, event_id)})
        assert removed.deleted_count == 1
        # The same lead sent again (a partner's resend after the window) is the same lead: a redelivery.
        await accept_partner_lead(submitted(event_id, "Jane", "jane@example.com"), intake=intake)
        assert published[1] == published[0].model_copy(update={"occurred_at": published[1].occurred_at})
        assert not await router.service.on_leads_received(published[1:2])
        await router.db[INTAKE_REQUESTS].delete_one({"_id": keys.stored_key(keys.PARTNER, ACCOUNT, event_id)})

        # The partner (a bug on its side, or another partner of the account) sends another person's lead under it.
        try:
            second = await accept_partner_lead(submitted(event_id, "Bob", "bob@example.com"), intake=intake)
        except IntakeError:
            return  # refused: the consumer dead-letters it with the reason, as the contract says (nothing lost)
        assert not second.duplicate
        [(index, reason)] = await router.service.on_leads_received(published[2:])
        assert index == 0
        assert isinstance(reason, RoutingRejected)
        assert str(reason) == f"event id {event_id_of(published[2])} was used before for another lead"
        assert "bob" not in str(reason).lower(), "a dead letter's reason names no personal data"
        docs: list[dict[str, Any]] = await router.db[ROUTER_LEADS].find({}).to_list()
        assert docs == jane, "Jane's record is left as it was"


async def test_two_leads_under_one_id_in_one_batch_route_the_first_and_dead_letter_the_second(mongo_url: str) -> None:
    async with router_on(mongo_url, CONFIG, now=datetime(2026, 3, 2, 14, 5, tzinfo=UTC)) as router:
        published = Published()
        intake = Intake(accounts=MongoAccounts(router.db, fallback_region="US"), store=MongoIdempotencyStore(router.db),
                        publish=published)  # fmt: skip
        event_id = str(uuid.uuid4())
        await accept_partner_lead(submitted(event_id, "Jane", "jane@example.com"), intake=intake)
        await router.db[INTAKE_REQUESTS].delete_many({})
        await accept_partner_lead(submitted(event_id, "Bob", "bob@example.com"), intake=intake)
        batch = [published[0], published[0], published[1]]  # a redelivery in the batch, then the reuse
        rejections = await router.service.on_leads_received(batch)
        assert [index for index, _ in rejections] == [2]
        docs: list[dict[str, Any]] = await router.db[ROUTER_LEADS].find({}).to_list()
        assert len(docs) == 1
        assert "jane@example.com" in repr(docs[0])
        assert "bob@example.com" not in repr(docs[0])


def event_id_of(event: LeadReceived) -> str:
    return str(event.event_id)
