"""R10 across a daylight-saving change, through a router process on a test clock (issue 11.11).

A real clock cannot be moved to a DST change, so this module runs its own broker, database and
router, with the router's clock starting at 01:58:58 EST on 2026-03-08 and running three times real
speed (ROUTER_CLOCK_START, ROUTER_CLOCK_RATE; refused in production). New York springs forward at
02:00 EST that morning: the pause from 01:59 to 03:00 local lasts one minute of absolute time (06:59Z
to 07:00Z), not an hour and one minute. Two things must come out of it:

- a deadline that falls inside the pause moves to its end plus the whole claim window: 07:00:10Z
  (wall-clock arithmetic would give 08:00:10Z);
- an offer that falls due inside the pause (the schedule changed after the offer) expires, the
  lead waits, and it is offered on when the pause closes at 07:00Z, a minute later.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient
from seeding import seed_in_process

from leadflow_devstack.processes import free_port
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually, publish_envelopes
from leadflow_router.adapters.account_config import load_account_config
from leadflow_shared import topics
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, LeadOffered, OfferExpired, RoutingEvent

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

START = datetime(2026, 3, 8, 6, 58, 58, tzinfo=UTC)  # 01:58:58 EST, a Sunday
PAUSE_OPENS, PAUSE_CLOSES = datetime(2026, 3, 8, 6, 59, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
SUNDAY_NIGHT = {"weekdays": [6], "start": "01:59", "end": "03:00"}  # 03:00 EDT is 07:00Z
DST, WAIT = "dst-realty", "wait-realty"
RATE = 3  # the router's clock runs three times real speed


def account(account_id: str, window: int, pause: list[dict[str, Any]]) -> dict[str, Any]:
    agents = [f"{account_id}-{n}" for n in ("ann", "bo", "cy")]
    return {"account_id": account_id, "name": account_id.title(), "round_robin": True,
            "time_zone": "America/New_York", "pause": pause, "roster": agents,
            "agents": [{"agent_id": a, "name": a, "email": f"{a}@example.com"} for a in agents],
            "default_source": {"claim_window_seconds": window}}  # fmt: skip


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("r10-clock")
    accounts = work / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [account(DST, 10, [SUNDAY_NIGHT]), account(WAIT, 20, [])]}))
    system = Stack(work, accounts_file=accounts, seed_loader=seed_in_process, extra_env={"router": {
        "ROUTER_CLOCK_START": START.isoformat(),
        "ROUTER_CLOCK_RATE": str(RATE),  # the router's minute across the change takes a real 20 s
        "ROUTER_CONFIG_CACHE_SECONDS": "0",  # the schedule change reaches the next decision
    }})  # fmt: skip
    try:
        system.start_infra()
        system.ports["router"] = free_port()
        system.start_service("router")
        system.wait_ready("router", timeout=90)
        yield system
    finally:
        system.stop()


def lead(account_id: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=START,
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Dana", email=f"dana-{uuid.uuid4().hex[:8]}@example.com"),
            source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
        ),
    )


def router_status(stack: Stack, lead_id: uuid.UUID) -> str | None:
    client: MongoClient[dict[str, Any]] = MongoClient(stack.mongo_url)
    try:
        record = client["leadflow"]["router_leads"].find_one({"_id": str(lead_id)})
        return None if record is None else str(record["status"])
    finally:
        client.close()


async def test_r10_a_pause_across_the_spring_forward_change_lasts_its_real_length(clocked: Stack) -> None:
    moved, waiting = lead(DST), lead(WAIT)
    await publish_envelopes(clocked.bootstrap, topics.LEADS_INTAKE, [moved, waiting])
    async with TopicLog(clocked.bootstrap, topics.LEADS_EVENTS) as log:

        def of(lead_id: uuid.UUID, kind: type[RoutingEvent]) -> list[Any]:
            events = (ROUTING_EVENT.validate_json(raw) for raw in log.raw)
            return [e for e in events if isinstance(e, kind) and getattr(e.payload, "lead_id", None) == lead_id]

        async def seen(lead_id: uuid.UUID, kind: type[RoutingEvent], count: int = 1) -> list[Any] | None:
            await log.poll()
            found = of(lead_id, kind)
            return found if len(found) >= count else None

        [first_moved] = await eventually(lambda: seen(moved.event_id, LeadOffered), timeout=60, what="the DST offer")
        [first_waiting] = await eventually(lambda: seen(waiting.event_id, LeadOffered), what="the other offer")
        for offer in (first_moved, first_waiting):
            assert PAUSE_OPENS - timedelta(seconds=10) <= offer.occurred_at < PAUSE_OPENS + timedelta(seconds=30), (
                f"the router routed at {offer.occurred_at}: too late on its clock for this test's timing"
            )
        # The first offer is made at once; its deadline, inside the pause, moves to the pause's end in
        # absolute time (07:00Z) plus the whole 10 s window.
        assert first_moved.payload.deadline == PAUSE_CLOSES + timedelta(seconds=10)

        # The broker sets the same pause on the other account after its offer (20 s window, due inside it).
        assert first_waiting.payload.deadline < PAUSE_CLOSES, "made before the pause applied to it"
        # Written in this process: the seed command's own start-up (seconds on a loaded machine) could
        # outlast the 20 s window, which runs a real 6.7 s on this clock.
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(clocked.mongo_url)
        try:
            await load_account_config(client["leadflow"], {"accounts": [account(WAIT, 20, [SUNDAY_NIGHT])]})
        finally:
            await client.close()

        [expired] = await eventually(lambda: seen(waiting.event_id, OfferExpired), timeout=45, what="the expiry")
        assert expired.occurred_at < PAUSE_CLOSES, "due inside the pause"
        assert router_status(clocked, waiting.event_id) == "waiting", "the lead waits for the pause to close"
        offers = await eventually(lambda: seen(waiting.event_id, LeadOffered, 2), timeout=90, what="the next offer")
        reoffer = offers[1]
        assert reoffer.payload.agent_id != first_waiting.payload.agent_id, "offered on to the next agent"
        assert PAUSE_CLOSES <= reoffer.occurred_at < PAUSE_CLOSES + timedelta(seconds=5), "when the pause closed"
        assert reoffer.payload.deadline == reoffer.occurred_at + timedelta(seconds=20)

        # And the moved deadline fires when the pause is over, a real minute after it opened.
        expiries = await eventually(lambda: seen(moved.event_id, OfferExpired), timeout=30, what="the DST expiry")
        assert expiries[0].occurred_at >= PAUSE_CLOSES + timedelta(seconds=10)
