"""I1 and I3 on the real processes: a router SIGKILLed mid-stream and restarted loses and doubles nothing,
and offers still expire after a restart."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from leadflow_devstack.processes import ManagedProcess, free_port
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually, publish_envelopes
from leadflow_shared import topics
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged, LeadAssigned, LeadOffered, OfferExpired

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

NEW_LEADS, REPEAT_CONTACTS, RESENDS = 1900, 100, 100


def lead(account_id: str, email: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=account_id,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Load", email=email),
            source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
        ),
    )


def seed_round_robin_account(stack: Stack, tmp_path: Path, prefix: str) -> None:
    """Account `<prefix>-realty`: round robin over two agents, 10 s claim windows."""
    agents = [f"{prefix}-{name}" for name in ("one", "two")]
    config = {
        "accounts": [
            {
                "account_id": f"{prefix}-realty",
                "name": prefix.title(),
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a, "email": f"{a}@example.com"} for a in agents],
                "roster": agents,
                "default_source": {"claim_window_seconds": 10},
            }
        ]
    }
    path = tmp_path / f"{prefix}.json"
    path.write_text(json.dumps(config))
    stack.seed(path)


async def test_router_sigkilled_mid_stream_yields_exactly_one_outcome_per_lead(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    originals = [lead("acme-realty", f"load-{run}-{n}@example.com") for n in range(NEW_LEADS)]
    repeats = [lead("acme-realty", f"load-{run}-{n}@example.com") for n in range(REPEAT_CONTACTS)]  # R1
    messages = originals + repeats + originals[-RESENDS:]  # partner resends of the same event ids
    await publish_envelopes(stack.bootstrap, topics.LEADS_INTAKE, messages)

    ours = {str(m.event_id) for m in originals}
    async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as log:

        def assigned() -> set[str]:
            return {
                str(e.payload.lead_id)
                for e in map(ROUTING_EVENT.validate_json, log.raw)
                if isinstance(e, LeadAssigned) and str(e.payload.lead_id) in ours
            }

        async def some_routed() -> bool:
            await log.poll()
            return len(assigned()) >= 300

        await eventually(some_routed, timeout=120, what="the router to be mid-stream")
        stack.services["router"].kill()  # SIGKILL: no shutdown, no commit
        assert len(assigned()) < NEW_LEADS, "the router finished before it could be killed"
        stack.start_service("router")
        stack.wait_ready("router", timeout=90)

        expected_activity = {derived_event_id(r.event_id, "0") for r in repeats}

        async def all_routed() -> bool:
            await log.poll()
            activity = {e.event_id for e in map(ROUTING_EVENT.validate_json, log.raw) if isinstance(e, ActivityLogged)}
            return assigned() == ours and expected_activity <= activity

        await eventually(all_routed, timeout=240, what="an outcome for every lead")

    events = [ROUTING_EVENT.validate_json(r) for r in log.raw]
    mine = [e for e in events if isinstance(e, LeadAssigned) and str(e.payload.lead_id) in ours]
    # A copy with the same event id is one outcome (consumers drop it); a second decision would have another id.
    assert len({e.event_id for e in mine}) == NEW_LEADS, "one decision per new lead"
    repeat_ids = {str(r.event_id) for r in repeats}
    assert not [e for e in events if isinstance(e, LeadAssigned) and str(e.payload.lead_id) in repeat_ids], (
        "a known contact is not a new lead (R1)"
    )
    logged = [e for e in events if isinstance(e, ActivityLogged) and e.event_id in expected_activity]
    assert {e.event_id for e in logged} == expected_activity


async def test_offers_expire_after_a_router_restart(stack: Stack, tmp_path: Path) -> None:
    seed_round_robin_account(stack, tmp_path, "rr")
    offered = lead("rr-realty", f"rr-{uuid.uuid4().hex}@example.com")
    await publish_envelopes(stack.bootstrap, topics.LEADS_INTAKE, [offered])

    async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as log:

        def of_lead(kind: type) -> list[object]:
            return [
                e
                for e in map(ROUTING_EVENT.validate_json, log.raw)
                if isinstance(e, kind) and getattr(e.payload, "lead_id", None) == offered.event_id
            ]

        async def seen(kind: type) -> bool:
            await log.poll()
            return bool(of_lead(kind))

        await eventually(lambda: seen(LeadOffered), timeout=60, what="the first offer")
        # Killed well inside the 10 s claim window; a restart takes longer, so only the
        # restarted router, reading the deadline from MongoDB, can fire the expiry.
        stack.services["router"].kill()
        assert not of_lead(OfferExpired)
        stack.start_service("router")
        stack.wait_ready("router", timeout=90)
        await eventually(lambda: seen(OfferExpired), timeout=60, what="the expiry after the restart")

        async def offered_twice() -> bool:  # the next offer may come in a later fetch than the expiry
            await log.poll()
            return len(of_lead(LeadOffered)) >= 2

        await eventually(offered_twice, timeout=30, what="the next agent's offer after the expiry")
        assert len(of_lead(LeadOffered)) == 2, "the lead was offered more than once after the expiry"


async def test_two_router_processes_fire_each_expiry_once(stack: Stack, tmp_path: Path) -> None:
    """I3 with several replicas: a second router joins the group; both sweep the same deadlines."""
    seed_round_robin_account(stack, tmp_path, "twin")
    port = free_port()
    replica = ManagedProcess(
        "router-2",
        [str(Path(sys.executable).parent / "leadflow-router")],
        log_dir=stack.log_dir,
        env={**stack.service_env("router"), "ROUTER_HTTP__PORT": str(port)},
    )
    replica.start()
    try:
        await eventually(lambda: _ready(port), timeout=90, what="the second router")
        leads = [lead("twin-realty", f"twin-{uuid.uuid4().hex}@example.com") for _ in range(40)]
        await publish_envelopes(stack.bootstrap, topics.LEADS_INTAKE, leads)
        ids = {item.event_id for item in leads}
        async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as log:

            def expiries() -> list[OfferExpired]:
                return [
                    e
                    for e in map(ROUTING_EVENT.validate_json, log.raw)
                    if isinstance(e, OfferExpired) and e.payload.lead_id in ids and e.payload.offer_round == 1
                ]

            async def all_expired() -> bool:
                await log.poll()
                return {e.payload.lead_id for e in expiries()} == ids

            await eventually(all_expired, timeout=90, what="every first-round offer to expire")
            await log.poll()
            fired = expiries()
        # Both replicas swept (each runs a sweeper), yet each offer expired once: one event id per
        # offer, and no second copy of it published by the losing replica.
        assert len({e.event_id for e in fired}) == len(ids)
        assert len(fired) == len(ids), "an expiry was published twice"
    finally:
        replica.stop()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
