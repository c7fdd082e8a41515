"""R1 across router crashes on the real processes (issue 10, item 8): the router is SIGKILLed again
and again while leads arrive, each followed a few messages later by a repeat inquiry from the same
contact. Every repeat must be exactly one ActivityLogged on its first lead: no second lead, none lost.

The kills aim at the window that matters: a batch's lead records stored in MongoDB, their contact
keys not yet written. The test watches the batches' outbox documents (`router_outboxes`, decision 0068)
and `router_leads`; when a stored lead record whose outbox is unflushed shows it freezes the router
(SIGSTOP), looks whether that record's keys are in `router_contacts`, and kills it if they are not
(else lets it go on). The redelivered batch then holds the stored leads
and, behind them, their repeats.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from leadflow_devstack.processes import ManagedProcess
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually
from leadflow_shared import topics
from leadflow_shared.collections import ROUTER_CONTACTS, ROUTER_LEADS, ROUTER_OUTBOXES
from leadflow_shared.envelope import derived_event_id
from leadflow_shared.events.intake import Contact, LeadChannel, LeadReceived, LeadReceivedPayload, LeadSource
from leadflow_shared.events.routing import ROUTING_EVENT, ActivityLogged, LeadAssigned, LeadOffered, RoutingEvent

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ACCOUNT = "crash-repeat-realty"
AGENTS = ["cr-one", "cr-two", "cr-three"]
KILLS = 3  # the issue saw 6-8 per run; three kills in the window keep the suite's time in bounds
RATE = 80  # messages per second while leads arrive
BURST = 16  # messages sent together: batches of several leads, some repeats in the next batch
GAP = (2, 8)  # a repeat follows its first inquiry this many new contacts later (some 4-16 messages)
ARM_DELAY = (0.0, 1.5)  # seconds of normal work after a restart before the next kill may land
HUNT_SECONDS = 60.0  # per kill, restart included: past it the router is killed anyway


def inquiry(email: str) -> LeadReceived:
    return LeadReceived.create(
        account_id=ACCOUNT,
        occurred_at=datetime.now(UTC),
        payload=LeadReceivedPayload(
            contact=Contact(first_name="Crash", email=email),
            source=LeadSource(channel=LeadChannel.PARTNER, name="Partner"),
        ),
    )


@dataclass
class Stream:
    """New contacts, each repeated GAP messages later, produced at RATE until stopped."""

    rng: random.Random
    firsts: dict[uuid.UUID, LeadReceived] = field(default_factory=dict)  # repeat id -> its first inquiry
    originals: list[LeadReceived] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def messages(self) -> list[LeadReceived]:
        """The next stretch of the stream: a new contact per step, repeats slotted in GAP later."""
        due: dict[int, list[LeadReceived]] = {}
        out: list[LeadReceived] = []
        for step in range(50):
            first = inquiry(f"crash-{uuid.uuid4().hex}@example.com")
            self.originals.append(first)
            out.append(first)
            repeat = inquiry(first.payload.contact.email or "")
            self.firsts[repeat.event_id] = first
            due.setdefault(step + self.rng.randint(*GAP), []).append(repeat)
            out.extend(due.pop(step, []))
        for step in sorted(due):
            out.extend(due[step])
        return out

    async def run(self, bootstrap: str) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await producer.start()
        try:
            while not self.stopping.is_set():
                messages = self.messages()  # a stretch always ends with its repeats
                for start in range(0, len(messages), BURST):
                    for message in messages[start : start + BURST]:
                        await producer.send(
                            topics.LEADS_INTAKE, message.model_dump_json().encode(), key=ACCOUNT.encode()
                        )
                    await asyncio.sleep(BURST / RATE)  # pacing the load, not synchronization
            await producer.flush()
        finally:
            await producer.stop()


def seed(stack: Stack, tmp_path: Path) -> None:
    """Round robin over three agents: a decision moves the rotation cursor and registers contact keys."""
    config = {
        "accounts": [
            {
                "account_id": ACCOUNT,
                "name": "Crash Repeat Realty",
                "round_robin": True,
                "agents": [{"agent_id": a, "name": a, "email": f"{a}@example.com"} for a in AGENTS],
                "roster": AGENTS,
                "default_source": {"claim_window_seconds": 3600},
            }
        ]
    }
    path = tmp_path / "crash-repeat.json"
    path.write_text(json.dumps(config))
    stack.seed(path)


async def kill_in_flight(stack: Stack, db: Any, since_ms: int, rng: random.Random) -> bool:
    """SIGKILL the router while it holds a stored lead record of ours whose contact keys are not written.

    First waits for the (re)started router to store anything after `since_ms` (it is
    consuming) and lets it work a random moment, so kills land at different points of the
    stream. Then, each time a stored, unflushed lead record shows, the router is frozen
    (SIGSTOP) and looked at: killed if the record's contact keys are missing, else let go on.
    Returns whether a kill landed so; past HUNT_SECONDS the router is killed anyway.
    """
    router = stack.services["router"]

    async def stored_unflushed(after_ms: int) -> list[dict[str, Any]]:
        # A batch's outboxes wait in its outbox documents (decision 0068): those of our leads already stored.
        waiting: list[dict[str, Any]] = []
        async for doc in db[ROUTER_OUTBOXES].find({"since_ms": {"$gt": after_ms}}):
            waiting += [item for item in doc.get("leads") or () if isinstance(item, dict)]
        query = {"_id": {"$in": [item.get("lead_id") for item in waiting]}, "account_id": ACCOUNT, "kind": "lead"}
        stored = {doc["_id"] async for doc in db[ROUTER_LEADS].find(query, {"_id": 1})}
        return [item for item in waiting if item.get("lead_id") in stored]

    async def keys_missing(after_ms: int) -> bool:
        keys = [k for doc in await stored_unflushed(after_ms) for k in (doc.get("effects") or {}).get("contacts", [])]
        return bool(keys) and await db[ROUTER_CONTACTS].count_documents({"_id": {"$in": keys}}) < len(keys)

    await eventually(lambda: stored_unflushed(since_ms), timeout=HUNT_SECONDS, what="the router to consume")
    await asyncio.sleep(rng.uniform(*ARM_DELAY))  # not synchronization: where in the stream the kill lands
    armed_ms = int(time.time() * 1000)
    deadline = time.monotonic() + HUNT_SECONDS
    landed = False
    while not landed and time.monotonic() < deadline:  # as tight as MongoDB answers: the window is short
        if await stored_unflushed(armed_ms):
            os.kill(router.pid, signal.SIGSTOP)
            # Asked twice: a write the router sent just before it froze is answered by then.
            landed = await keys_missing(armed_ms) and await keys_missing(armed_ms)
            if not landed:
                os.kill(router.pid, signal.SIGCONT)
    router.kill()
    return landed


def start_router(stack: Stack, *, sweeper: bool) -> None:
    """The stack's router again; without its sweeper, only the redelivery can finish what a crash left.

    The sweeper also flushes records left unflushed for 5 s (`republish_stale`), and now that
    it starts before the consumers join it often gets there first after a restart, hiding
    what the redelivered batch itself decides. Replicas may run without it
    (`ROUTER_SWEEPER=false`, decision 0010), so the batch pipeline has to be right alone.
    """
    env = {**stack.service_env("router"), "ROUTER_SWEEPER": str(sweeper).lower()}
    router = ManagedProcess(
        "router", [str(Path(sys.executable).parent / "leadflow-router")], log_dir=stack.log_dir, env=env
    )
    router.start()
    stack.services["router"] = router


# A deadline, not a speed target: three kills and restarts of a router over a stream of about 1,900 contacts. Alone it
# takes 40-120 s on this machine (session 32: 119.6 s on ed387a1 and 117.0 s on 31acfe9, run side by side); under the
# whole suite on a slow hour it passed the default 300 s twice.
@pytest.mark.timeout(600)
async def test_every_repeat_after_router_crashes_is_one_activity_on_its_first_lead(
    stack: Stack, tmp_path: Path
) -> None:
    seed(stack, tmp_path)
    run_seed = secrets.randbits(32)
    rng = random.Random(run_seed)  # noqa: S311 (timing and gaps of a test, not secrets)
    stream = Stream(rng)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    producing = asyncio.create_task(stream.run(stack.bootstrap))
    landed, since_ms = 0, 0
    try:
        for _ in range(KILLS):
            landed += await kill_in_flight(stack, mongo["leadflow"], since_ms, rng)
            since_ms = int(time.time() * 1000)  # records stored before this are the dead router's
            start_router(stack, sweeper=False)  # the stream keeps flowing while it restarts
    finally:
        stream.stopping.set()
        await asyncio.gather(producing, return_exceptions=True)
        await mongo.close()
    await producing  # its error, if any

    originals = {m.event_id for m in stream.originals}
    logged_ids = {derived_event_id(r, "0"): first.event_id for r, first in stream.firsts.items()}
    events: list[RoutingEvent] = []  # our account's, parsed as they arrive
    async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as log:

        async def poll() -> None:
            events.extend(e for e in map(ROUTING_EVENT.validate_json, await log.poll()) if e.account_id == ACCOUNT)

        def decided() -> set[uuid.UUID]:
            return {e.payload.lead_id for e in events if isinstance(e, LeadOffered | LeadAssigned)}

        async def settled() -> bool:
            await poll()
            logged = {e.event_id for e in events if isinstance(e, ActivityLogged)}
            seen = decided()  # a repeat that became a lead has a decision of its own instead
            return originals <= seen and all(derived_event_id(r, "0") in logged or r in seen for r in stream.firsts)

        await eventually(settled, timeout=120, what="an outcome for every first inquiry and every repeat")
        await poll()
    stack.services["router"].stop()
    start_router(stack, sweeper=True)  # the stack's router as the next tests expect it
    await asyncio.to_thread(stack.wait_ready, "router", timeout=90)

    second_leads = {r for r in stream.firsts if r in decided()}
    print(  # noqa: T201 (the measure the issue asks for, shown with -s)
        f"\nseed {run_seed}: {KILLS} kills ({landed} with a stored lead's contact keys unwritten), "
        f"{len(stream.originals)} contacts: {len(second_leads)} repeats became leads"
    )
    assert not second_leads, f"{len(second_leads)} of {len(stream.firsts)} repeats became second leads (R1, I1)"
    activities = [e for e in events if isinstance(e, ActivityLogged) and e.event_id in logged_ids]
    assert {e.event_id for e in activities} == logged_ids.keys(), "a repeat was lost"
    for activity in activities:  # copies share an id; every copy names the first lead
        assert activity.payload.lead_id == logged_ids[activity.event_id], "logged on another lead"
    decisions: dict[uuid.UUID, set[uuid.UUID]] = {}
    for event in events:
        if isinstance(event, LeadOffered | LeadAssigned) and event.payload.lead_id in originals:
            decisions.setdefault(event.payload.lead_id, set()).add(event.event_id)
    assert all(ids == {derived_event_id(lead, "0")} for lead, ids in decisions.items()), "one decision per lead"
    assert landed >= KILLS // 2, f"only {landed} of {KILLS} kills landed between storing a lead and its contact keys"
