"""Scaling proof (issue 13.9): every Kafka-consuming service runs as two replicas, gains a third while
leads flow, then loses one (the router's by SIGKILL, the others' by SIGTERM), and nothing is lost or
doubled.

This module runs its own system (the session's `stack` stays at one replica per service). Three
accounts, one per partition of the three-partition topics, so every replica of a group has work. Each
account has one agent in its rotation, a claim window of 10 s (the shortest R8 allows) and races of
one, and nobody claims: every lead is offered once, the offer expires, and the lead falls back to the
broker (R9). A paced load of leads runs through the whole change, by intake's HTTP form (alternating
over the live intake replicas, retried on another with the same Idempotency-Key when one goes away)
and by partners on leads.inbound.v1, with some resends of both (decision 0047).

What must come out, by event ids and lead ids:
- every lead accepted is one lead: one distinct LeadReceived id, one offer, one fall-back (I1);
- every offer has exactly one closing event, and it is its expiry (I2, I3);
- every notification is delivered exactly once per (event, channel, recipient), as the SMTP server
  and the local SMS and push providers see it (N3);
- crm-api lists every lead exactly once, fallen back to its broker, with one of each event on its
  timeline.
The same event id may appear twice on a topic after the router's crash (it republishes its outbox);
the assertions are on what a person sees, and the copies are counted in the log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from partner_messages import signed
from pymongo import AsyncMongoClient, MongoClient
from seeding import seed_in_process

from leadflow_devstack.processes import ManagedProcess, free_port
from leadflow_devstack.providers import ProviderApi
from leadflow_devstack.stack import Stack
from leadflow_devstack.testing import TopicLog, eventually, publish_envelopes, records_to_end
from leadflow_notifier.adapters.smtp import MESSAGE_ID_NAMESPACE
from leadflow_notifier.domain.delivery import delivery_key
from leadflow_notifier.domain.preferences import Channel
from leadflow_shared import topics
from leadflow_shared.events.inbound import (
    InboundContact,
    InboundSource,
    LeadSubmitted,
    LeadSubmittedPayload,
    received_event_id,
)
from leadflow_shared.events.routing import (
    ROUTING_EVENT,
    LeadAssigned,
    LeadClaimed,
    LeadFellBack,
    LeadOffered,
    OfferExpired,
    OfferWithdrawn,
    RoutingEvent,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

log = logging.getLogger(__name__)

PARTITIONS = 3  # leadflow_shared.topics.all_topics' default, which Stack.start_infra creates
# Service -> (its settings' prefix, the topics it consumes).
CONSUMERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "intake": ("INTAKE_", (topics.LEADS_INBOUND,)),
    "router": ("ROUTER_", (topics.LEADS_INTAKE, topics.LEADS_ACTIVITY, topics.LEADS_COMMANDS)),
    "notifier": ("NOTIFIER_", (topics.LEADS_EVENTS,)),
    "crm-api": ("CRM_API_", (topics.LEADS_EVENTS,)),
}
KILLED = "router"  # removed by SIGKILL; the others by SIGTERM
WINDOW = 10  # seconds: the shortest claim window an account may have (R8)
PACE = 0.5  # seconds between two leads of the load
PHASE_LEADS = 3  # leads posted while the replicas stand still (one per account): before and after each change
MAX_LEADS = 200  # the load stops here whatever happens (about 80 on a quiet machine)
HTTP_ATTEMPTS = 6
BURST = 12  # partner leads on the killed router's partition just before it dies
ONE_EACH = Counter({"LeadOffered": 1, "OfferExpired": 1, "LeadFellBack": 1})  # a lead's life here, by event type
DOMAIN = "scale.example"


def _one_account_per_partition() -> tuple[str, ...]:
    """The first ids "acct-scale-<n>" whose key lands on each partition (the producers' murmur2)."""
    partition_of = DefaultPartitioner()
    found: dict[int, str] = {}
    for n in range(1000):
        account_id = f"acct-scale-{n}"
        every = list(range(PARTITIONS))
        found.setdefault(partition_of(account_id.encode(), every, every), account_id)
        if len(found) == PARTITIONS:
            return tuple(found[p] for p in range(PARTITIONS))
    raise AssertionError("no account id for some partition")


ACCOUNTS = _one_account_per_partition()


def broker_of(account_id: str) -> str:
    return f"{account_id}-broker"


def agent_of(account_id: str) -> str:
    return f"{account_id}-agent"


def address(agent_id: str) -> str:
    return f"{agent_id}@{DOMAIN}"


def phone(agent_id: str) -> str:
    every = [who for account_id in ACCOUNTS for who in (broker_of(account_id), agent_of(account_id))]
    return f"+1312555{every.index(agent_id):04d}"


def push_token(agent_id: str) -> str:
    return f"device-of-{agent_id}"


def accounts_config() -> dict[str, Any]:
    """Roster position 1 is the broker, who is not in the rotation: one agent is offered each lead."""
    return {"accounts": [{
        "account_id": a, "name": a.title(), "round_robin": True, "roster": [broker_of(a), agent_of(a)],
        "agents": [
            {"agent_id": b, "name": "Bea Broker", "email": address(b), "phone": phone(b), "round_robin": False},
            {"agent_id": g, "name": "Al Agent", "email": address(g), "phone": phone(g)},
        ],
        "default_source": {"race_count": 1, "claim_window_seconds": WINDOW},
    } for a, b, g in ((a, broker_of(a), agent_of(a)) for a in ACCOUNTS)]}  # fmt: skip


def start_replica(stack: Stack, service: str, n: int) -> str:
    """Replica `n` of `service`: the stack's settings (same consumer group, same MongoDB), its own port."""
    name, port = f"{service}-{n}", free_port()
    prefix, _ = CONSUMERS[service]
    env = stack.service_env(service) | {f"{prefix}HTTP__PORT": str(port)}
    process = ManagedProcess(name, [str(Path(sys.executable).parent / f"leadflow-{service}")],
                             log_dir=stack.log_dir, env=env)  # fmt: skip
    stack.ports[name] = port
    stack.services[name] = process  # Stack.stop stops it
    process.start()
    return name


async def send_signed(producer: AIOKafkaProducer, message: LeadSubmitted) -> None:
    """A partner's lead as a partner sends it: keyed by its account, signed (decision 0098)."""
    value, key = message.model_dump_json().encode(), message.account_id.encode()
    await producer.send_and_wait(topics.LEADS_INBOUND, value, key=key, headers=signed(value, key))


@dataclass
class Scaled:
    stack: Stack
    sms: ProviderApi
    push: ProviderApi


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """Broker, database, SMTP sink, SMS and push providers, and replicas 1 and 2 of every service."""
    work = tmp_path_factory.mktemp("scaling")
    accounts = work / "accounts.json"
    accounts.write_text(json.dumps(accounts_config()))
    sms, push = ProviderApi(lambda _request: 201), ProviderApi()
    system = Stack(work, accounts_file=accounts, seed_loader=seed_in_process, extra_env={"notifier": {
        "NOTIFIER_SMS__ENABLED": "true", "NOTIFIER_SMS__BASE_URL": sms.url,
        "NOTIFIER_PUSH__ENABLED": "true", "NOTIFIER_PUSH__BASE_URL": push.url,
    }})  # fmt: skip
    try:
        system.start_infra()
        mongo: MongoClient[dict[str, Any]] = MongoClient(system.mongo_url)
        try:  # every agent has a phone (accounts_config) and a device: each notice goes out on every channel
            mongo["leadflow"]["notifier_preferences"].insert_many(
                [{"_id": a, "account_id": account_id, "push_token": push_token(a)}
                 for account_id in ACCOUNTS for a in (broker_of(account_id), agent_of(account_id))]
            )  # fmt: skip
        finally:
            mongo.close()
        names = [start_replica(system, service, n) for n in (1, 2) for service in CONSUMERS]
        # Links in notices and crm-api's router calls go to replica 2, which stays.
        system.ports["crm-api"], system.ports["router"] = system.ports["crm-api-2"], system.ports["router-2"]
        for name in names:
            system.wait_ready(name, timeout=120)
        yield Scaled(system, sms, push)
    finally:
        for process in system.services.values():  # all at once: one by one, each would wait for a rebalance
            if process.process is not None and process.running():
                process.process.terminate()
        system.stop()
        sms.close()
        push.close()


# -- the load ----------------------------------------------------------------------------------------


@dataclass
class Lead:
    lead_id: str
    account_id: str
    way: str  # "http" or "partner"
    phase: str


@dataclass
class Load:
    """Leads at a steady pace, one account after another, by HTTP (2 of 3) and by partners (1 of 3);
    every tenth is a resend of an earlier one instead, which must be the same lead."""

    stack: Stack
    intakes: list[str]  # the live intake replicas' URLs, as a client-side balancer knows them
    phase: str = "two replicas"
    leads: list[Lead] = field(default_factory=list)
    retried: int = 0  # HTTP posts tried again on another replica (same Idempotency-Key)
    resent: Counter[str] = field(default_factory=Counter)
    _http_sent: list[tuple[dict[str, Any], str, str, str]] = field(default_factory=list)  # body, key, lead, url
    _partner_sent: list[LeadSubmitted] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._stop.set()
            await asyncio.wait_for(self._task, 60)  # surfaces the load's own failure

    async def posted(self, count: int, *, timeout: float = 60) -> None:
        """Wait until `count` more leads are in."""
        target = len(self.leads) + count

        def enough() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # the load failed: say why
                raise AssertionError(f"the load stopped at {len(self.leads)} leads, short of {target}")
            return len(self.leads) >= target

        await eventually(enough, timeout=timeout, what=f"{target} leads posted")

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.stack.bootstrap, acks="all")
        await producer.start()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                n = 0
                while not self._stop.is_set() and len(self.leads) < MAX_LEADS:
                    if n % 10 == 9:
                        await self._resend(http, producer, n)
                    elif (n // 3) % 3 == 2:
                        await self._partner(producer, n)
                    else:
                        await self._form(http, n)
                    n += 1
                    # Pacing the load, not waiting for anything: the next lead is due in PACE seconds.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), PACE)
        finally:
            await producer.stop()

    async def _form(self, http: httpx.AsyncClient, n: int) -> None:
        account_id = ACCOUNTS[n % len(ACCOUNTS)]
        body = {"account_id": account_id, "first_name": "Sam", "last_name": f"Scale{n}",
                "email": f"sam.{n}.{uuid.uuid4().hex[:6]}@example.com"}  # fmt: skip
        key = f"scale-{uuid.uuid4()}"
        lead_id, url = await self._post(http, body, key, start=n)
        self._http_sent.append((body, key, lead_id, url))
        self.leads.append(Lead(lead_id, account_id, "http", self.phase))

    async def burst(self, account_id: str, count: int) -> set[str]:
        """`count` partner leads of one account at once (its partition's router gets busy); their lead ids."""
        messages = [self._partner_lead(account_id, f"burst{n}") for n in range(count)]
        await publish_envelopes(self.stack.bootstrap, topics.LEADS_INBOUND, messages, signed)
        return {self._keep(m) for m in messages}

    async def _partner(self, producer: AIOKafkaProducer, n: int) -> None:
        account_id = ACCOUNTS[n % len(ACCOUNTS)]
        message = self._partner_lead(account_id, f"partner{n}")
        await send_signed(producer, message)
        self._keep(message)

    @staticmethod
    def _partner_lead(account_id: str, tag: str) -> LeadSubmitted:
        return LeadSubmitted.create(
            account_id=account_id,
            occurred_at=datetime.now(UTC),
            payload=LeadSubmittedPayload(
                contact=InboundContact(first_name="PAT", last_name=tag,
                                       email=f"Pat.{tag}.{uuid.uuid4().hex[:6]}@Example.com"),
                source=InboundSource(partner="homefinder", name="HomeFinder"),
            ),
        )  # fmt: skip

    def _keep(self, message: LeadSubmitted) -> str:
        lead_id = str(received_event_id(message.event_id, message.account_id))
        self._partner_sent.append(message)
        self.leads.append(Lead(lead_id, message.account_id, "partner", self.phase))
        return lead_id

    async def _resend(self, http: httpx.AsyncClient, producer: AIOKafkaProducer, n: int) -> None:
        """A partner's resend (same event id), or a site's retry (same key) to another intake replica."""
        if n % 20 == 19 and self._partner_sent:
            message = self._partner_sent[n % len(self._partner_sent)]
            await send_signed(producer, message)
            self.resent["partner"] += 1
        elif self._http_sent:
            body, key, lead_id, url = self._http_sent[n % len(self._http_sent)]
            others = [u for u in self.intakes if u != url]
            again, _ = await self._post(http, body, key, start=self.intakes.index(others[0]) if others else n)
            assert again == lead_id, "a retry with the same Idempotency-Key is the same lead"
            self.resent["http"] += 1

    async def _post(self, http: httpx.AsyncClient, body: dict[str, Any], key: str, *, start: int) -> tuple[str, str]:
        """Post to the live intakes from `start` on, as a client-side balancer: a replica that refuses
        connections is dropped; a lost answer or a 5xx is tried on the next with the same key."""
        for attempt in range(HTTP_ATTEMPTS):
            if not self.intakes:
                break
            url = self.intakes[(start + attempt) % len(self.intakes)]
            try:
                response = await http.post(f"{url}/v1/leads", json=body, headers={"Idempotency-Key": key})
            except httpx.ConnectError:
                if url in self.intakes and len(self.intakes) > 1:
                    self.intakes.remove(url)
                self.retried += 1
                continue
            except httpx.TransportError:  # the answer was lost: the lead may be in; the key makes it one
                self.retried += 1
                continue
            if response.status_code >= 500:
                self.retried += 1
                continue
            assert response.status_code == 202, response.text
            return str(response.json()["event_id"]), url
        raise AssertionError(f"no intake replica took the lead after {HTTP_ATTEMPTS} attempts")


# -- the replicas ------------------------------------------------------------------------------------

_PARTITION = re.compile(r"partition=(\d+)")


def assignments(stack: Stack, name: str) -> dict[str, frozenset[int]]:
    """Topic -> the partitions replica `name` was last assigned, from its log (one line per rebalance)."""
    latest: dict[str, frozenset[int]] = {}
    for line in stack.services[name].log_path.read_text(errors="replace").splitlines():
        if "assigned to partitions" not in line:
            continue
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            latest[entry["topic"]] = frozenset(int(p) for p in _PARTITION.findall(entry["message"]))
    return latest


def balanced(stack: Stack, replicas: tuple[int, ...]) -> bool:
    """Every consumer group's partitions are shared among exactly these live replicas: each has some,
    none twice, none left out (a new generation of every group has settled)."""
    for service, (_, consumed) in CONSUMERS.items():
        owned = [assignments(stack, f"{service}-{n}") for n in replicas]
        for topic in consumed:
            parts = [mine.get(topic, frozenset()) for mine in owned]
            shared_once = sum(map(len, parts)) == PARTITIONS and frozenset().union(*parts) == set(range(PARTITIONS))
            if not (all(parts) and shared_once):
                return False
    return True


async def ready(stack: Stack, names: list[str]) -> bool:
    async with httpx.AsyncClient(timeout=2) as http:
        for name in names:
            if not stack.services[name].running():
                raise AssertionError(f"{name} exited; see {stack.services[name].log_path}")
            try:
                if (await http.get(f"{stack.url(name)}/health/ready")).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
    return True


# -- reading the outcome -----------------------------------------------------------------------------


# What each event of a lead's life here tells its agent (N1): the offer on every channel, the expiry
# by push, the fall-back (to the broker) by email and push.
NOTICES = {"LeadOffered": tuple(Channel), "OfferExpired": (Channel.PUSH,),
           "LeadFellBack": (Channel.EMAIL, Channel.PUSH)}  # fmt: skip
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def recipient_of(event: RoutingEvent) -> str:
    return str(getattr(event.payload, "agent_id", ""))


def channel_of(key: str) -> Channel:
    return Channel(key.split(":")[1])


def recipient_of_key(key: str) -> str:
    return key.split(":", 2)[2]


def message_id(key: str) -> str:
    """The Message-ID the notifier gives the email of a delivery key (N3)."""
    return f"<{uuid.uuid5(MESSAGE_ID_NAMESPACE, key).hex}@leadflow>"


async def crm_rows(http: httpx.AsyncClient, stack: Stack, account_id: str) -> list[dict[str, Any]]:
    """Every row of the account's lead list, page after page."""
    headers = stack.auth(f"{account_id}-admin", "admin", account_id)
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        response = await http.get(f"/v1/accounts/{account_id}/leads", headers=headers, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        rows.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return rows


async def deliveries_settled(stack: Stack, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The delivery records of `keys` once every one is `sent`: after that nothing can send again."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url)
    try:
        deliveries = client["leadflow"]["notifier_deliveries"]

        async def all_sent() -> dict[str, dict[str, Any]]:
            found = {str(d["_id"]): d async for d in deliveries.find({"_id": {"$in": sorted(keys)}})}
            return found if len(found) == len(keys) and all(d["status"] == "sent" for d in found.values()) else {}

        return await eventually(all_sent, timeout=30, what="every delivery record marked sent")
    finally:
        await client.close()


def lead_of(event: RoutingEvent) -> str:
    return str(getattr(event.payload, "lead_id", ""))


def routing_events(raw: list[bytes], leads: set[str]) -> list[RoutingEvent]:
    return [e for e in map(ROUTING_EVENT.validate_json, raw) if lead_of(e) in leads]


# -- the test ----------------------------------------------------------------------------------------


async def test_replicas_added_and_removed_mid_stream_lose_and_double_nothing(scaled: Scaled) -> None:
    stack, started = scaled.stack, time.monotonic()
    load = Load(stack, intakes=[stack.url("intake-1"), stack.url("intake-2")])
    async with load.running():
        await load.posted(PHASE_LEADS)
        load.phase = "scaling up"
        await scale_up(load)
        scaled_up = time.monotonic()
        load.phase = "three replicas"
        await load.posted(PHASE_LEADS)
        load.phase = "scaling down"
        routed_before, removals = await scale_down(load)
        scaled_down = time.monotonic()
        load.phase = "two replicas again"
        await load.posted(PHASE_LEADS)
    last_posted = time.monotonic()

    by_phase = Counter(lead.phase for lead in load.leads)
    assert by_phase["scaling up"] >= 3, f"leads flowed while replicas joined: {by_phase}"
    assert by_phase["scaling down"] >= 3, f"leads flowed while replicas left: {by_phase}"
    assert removals[KILLED] == -9, "the router replica was killed"
    assert all(removals[s] in (-15, 0) for s in CONSUMERS if s != KILLED), f"graceful stops: {removals}"
    ids = [lead.lead_id for lead in load.leads]
    assert len(set(ids)) == len(ids), "intake gave two leads one id"
    leads = set(ids)
    account_of = {lead.lead_id: lead.account_id for lead in load.leads}

    raw_events = await all_fallen_back(stack, leads)
    fell_back = time.monotonic()
    received_ids = await received_once_each(stack, leads)
    events = routing_events(raw_events, leads)
    distinct = {e.event_id: e for e in events}
    check_lives(distinct, account_of)
    await check_notices(scaled, distinct, leads)
    await check_crm_lists(stack, account_of)
    await check_quiet(stack)

    log.info(
        "scaling: %d leads %s (%d HTTP, %d partner), resends %s, %d HTTP retries on another replica; "
        "%d of the burst of %d routed when the router was killed; copies of one id: %d on %s, %d on %s; "
        "scaled up after %.1f s, down %.1f s later, last lead +%.1f s, all fallen back +%.1f s; total %.1f s",
        len(leads), dict(by_phase), sum(1 for x in load.leads if x.way == "http"),
        sum(1 for x in load.leads if x.way == "partner"), dict(load.resent), load.retried, len(routed_before), BURST,
        sum(received_ids.values()) - len(received_ids), topics.LEADS_INTAKE, len(events) - len(distinct),
        topics.LEADS_EVENTS, scaled_up - started, scaled_down - scaled_up, last_posted - scaled_down,
        fell_back - last_posted, time.monotonic() - started,
    )  # fmt: skip


# -- the steps of the test ---------------------------------------------------------------------------


async def scale_up(load: Load) -> None:
    """While leads flow, a third replica of every service joins its groups."""
    stack = load.stack
    third = [start_replica(stack, service, 3) for service in CONSUMERS]
    await eventually(lambda: ready(stack, third), timeout=90, what="the third replicas ready")
    load.intakes.append(stack.url("intake-3"))
    await eventually(lambda: balanced(stack, (1, 2, 3)), timeout=60, what="every group shared among three")


async def scale_down(load: Load) -> tuple[set[str], dict[str, int | None]]:
    """While leads flow, replica 1 of every service goes, the router's by a crash while it routes a burst
    of leads on its partition (the crash may or may not cut a batch: either way, nothing may be lost or
    doubled). The leads of the burst routed before the crash, and each replica's exit status."""
    stack = load.stack
    [partition] = assignments(stack, f"{KILLED}-1")[topics.LEADS_INTAKE]
    async with TopicLog(stack.bootstrap, topics.LEADS_EVENTS) as routed:
        burst = await load.burst(ACCOUNTS[partition], BURST)

        async def burst_routing() -> bool:
            return any(lead_of(e) in burst for e in map(ROUTING_EVENT.validate_json, await routed.poll()))

        await eventually(burst_routing, timeout=30, what="the router routing the burst")
        routed_before = {lead_of(e) for e in map(ROUTING_EVENT.validate_json, routed.raw)} & burst
    replicas = {service: stack.services[f"{service}-1"].process for service in CONSUMERS}
    for service, process in replicas.items():
        assert process is not None
        if service == KILLED:
            process.kill()
        else:
            process.terminate()

    def all_gone() -> bool:
        return not any(stack.services[f"{s}-1"].running() for s in CONSUMERS)

    await eventually(all_gone, timeout=30, what="replica 1 of every service gone")
    removals = {service: process.returncode for service, process in replicas.items() if process is not None}
    await eventually(lambda: balanced(stack, (2, 3)), timeout=60, what="every group shared among the two left")
    return routed_before, removals


async def all_fallen_back(stack: Stack, leads: set[str]) -> list[bytes]:
    """Every lead offered, expired and fallen back, as the events topic has it: its records."""

    async def all_fell_back() -> list[bytes] | None:
        raw = [r.value or b"" for r in await records_to_end(stack.bootstrap, topics.LEADS_EVENTS)]
        done = {lead_of(e) for e in routing_events(raw, leads) if isinstance(e, LeadFellBack)}
        return raw if done >= leads else None

    raw_events = await eventually(all_fell_back, timeout=3 * WINDOW + 30, what="every lead fallen back to its broker")
    assert raw_events is not None
    return raw_events


async def received_once_each(stack: Stack, leads: set[str]) -> Counter[str]:
    """I1: each lead accepted is exactly one LeadReceived id on leads.intake.v1 (copies of one id allowed)."""
    received = [json.loads(r.value or b"{}") for r in await records_to_end(stack.bootstrap, topics.LEADS_INTAKE)]
    received_ids = Counter(str(e["event_id"]) for e in received)
    assert set(received_ids) == leads, (
        f"lost: {sorted(leads - set(received_ids))[:5]}, unknown: {sorted(set(received_ids) - leads)[:5]}"
    )
    return received_ids


def check_lives(distinct: dict[uuid.UUID, RoutingEvent], account_of: dict[str, str]) -> None:
    """One offer, one closing (its expiry), one fall-back (to the broker) per lead, by distinct event ids."""
    per_lead: dict[str, Counter[str]] = defaultdict(Counter)
    for event in distinct.values():
        per_lead[lead_of(event)][event.type] += 1
    unexpected = {lead_id: dict(c) for lead_id, c in per_lead.items() if c != ONE_EACH}
    some = list(unexpected.items())[:3]
    assert not unexpected, f"{len(unexpected)} leads not offered, expired and fallen back once each: {some}"
    offers = [e for e in distinct.values() if isinstance(e, LeadOffered)]
    closings: dict[tuple[str, str, int], list[RoutingEvent]] = defaultdict(list)
    for event in distinct.values():
        if isinstance(event, OfferExpired | OfferWithdrawn | LeadClaimed):
            p = event.payload
            closings[(str(p.lead_id), p.agent_id, p.offer_round)].append(event)
    for offer in offers:
        o = offer.payload
        assert (o.agent_id, o.offer_round) == (agent_of(offer.account_id), 1)
        [closing] = closings.pop((str(o.lead_id), o.agent_id, o.offer_round))
        assert isinstance(closing, OfferExpired), f"offer {offer.event_id} closed by {closing.type}"
    assert not closings, f"closings of no offer: {list(closings)[:3]}"
    assert not [e for e in distinct.values() if isinstance(e, LeadAssigned)]
    for event in distinct.values():
        if isinstance(event, LeadFellBack):
            assert event.payload.agent_id == broker_of(account_of[str(event.payload.lead_id)])


@dataclass
class Deliveries:
    """N3's delivery keys (event, channel, recipient) -> the lead, and what each channel's receiver saw."""

    scaled: Scaled
    expected: dict[str, str]
    leads: set[str]

    def __post_init__(self) -> None:
        # By delivery key, which the email's Message-ID and the push's notification_id carry (an SMS has
        # one offer's lead).
        self.email_keys = {message_id(key): key for key in self.expected if channel_of(key) is Channel.EMAIL}
        self.sms_keys = {(phone(recipient_of_key(key)), lead): key for key, lead in self.expected.items()
                         if channel_of(key) is Channel.SMS}  # fmt: skip

    def delivered(self) -> Counter[str]:
        """Delivery key -> times the SMTP server or a provider took it (anything else by what it was)."""
        return self._emails() + self._texts() + self._pushes()

    def _emails(self) -> Counter[str]:
        seen: Counter[str] = Counter()
        assert self.scaled.stack.mail is not None
        for m in self.scaled.stack.mail.received():
            key = self.email_keys.get(str(m["Message-ID"]), "")
            right = key and str(m["X-Envelope-To"]) == address(recipient_of_key(key))
            seen[key if right else f"email {m['Subject']} to {m['X-Envelope-To']}"] += 1
        return seen

    def _texts(self) -> Counter[str]:
        seen: Counter[str] = Counter()
        for body in self.scaled.sms.bodies():
            lead = next((i for i in UUID.findall(body.get("Body", "")) if i in self.leads), "")
            seen[self.sms_keys.get((body.get("To", ""), lead), f"SMS to {body.get('To')} of {lead or 'no lead'}")] += 1
        return seen

    def _pushes(self) -> Counter[str]:
        seen: Counter[str] = Counter()
        for body in self.scaled.push.bodies():
            message = body["message"]
            key = str(message["data"].get("notification_id", ""))
            right = key in self.expected and message["token"] == push_token(recipient_of_key(key))
            seen[key if right else f"push {message['notification']['title']} to {message['token']}"] += 1
        return seen


async def check_notices(scaled: Scaled, distinct: dict[uuid.UUID, RoutingEvent], leads: set[str]) -> None:
    """N3: every notice once per (event, channel, recipient), on each channel its event has."""
    expected = {delivery_key(e.event_id, c, recipient_of(e)): lead_of(e)
                for e in distinct.values() for c in NOTICES.get(e.type, ())}  # fmt: skip
    deliveries = Deliveries(scaled, expected, leads)
    await eventually(lambda: set(expected) <= set(deliveries.delivered()), timeout=30, what="every notice delivered")
    await deliveries_settled(scaled.stack, set(expected))
    seen = deliveries.delivered()
    assert sorted(set(seen) - set(expected))[:5] == [], "notices nobody expected"
    assert [key for key, n in seen.items() if n > 1] == [], "a notice delivered twice"
    by_channel = Counter(channel_of(key) for key in seen)
    assert by_channel == {Channel.EMAIL: 2 * len(leads), Channel.SMS: len(leads), Channel.PUSH: 3 * len(leads)}


async def check_crm_lists(stack: Stack, account_of: dict[str, str]) -> None:
    """crm-api (a replica started mid-stream) lists every lead once, and each timeline has each event once."""
    leads = set(account_of)
    async with httpx.AsyncClient(base_url=stack.url("crm-api-3"), timeout=30) as crm:

        async def listed() -> dict[str, list[dict[str, Any]]] | None:
            rows = {a: await crm_rows(crm, stack, a) for a in ACCOUNTS}
            settled = all(r["status"] == "fell_back" for rs in rows.values() for r in rs)
            return rows if settled and sum(map(len, rows.values())) >= len(leads) else None

        rows = await eventually(listed, timeout=30, what="crm-api listing every lead fallen back")
        for account_id, account_rows in rows.items():
            listed_ids = Counter(r["lead_id"] for r in account_rows)
            assert [i for i, n in listed_ids.items() if n > 1] == [], f"{account_id} lists a lead twice"
            assert set(listed_ids) == {i for i in leads if account_of[i] == account_id}
            assert {r["owner_agent_id"] for r in account_rows} == {broker_of(account_id)}
        limit = asyncio.Semaphore(8)

        async def timeline(lead_id: str) -> Counter[str]:
            account_id = account_of[lead_id]
            async with limit:
                response = await crm.get(f"/v1/accounts/{account_id}/leads/{lead_id}",
                                         headers=stack.auth(f"{account_id}-admin", "admin", account_id))  # fmt: skip
            assert response.status_code == 200, response.text
            return Counter(str(entry["type"]) for entry in response.json()["timeline"])

        async def fallen_back_on_every_timeline() -> dict[str, Counter[str]] | None:
            # crm-api writes an event's row change before its timeline entry (the entry goes last): the rows
            # above can say fell_back before LeadFellBack is on the timeline.
            found = await asyncio.gather(*(timeline(i) for i in sorted(leads)))
            return dict(zip(sorted(leads), found, strict=True)) if all(t["LeadFellBack"] for t in found) else None

        timelines = await eventually(fallen_back_on_every_timeline, timeout=30, what="LeadFellBack on every timeline")
        assert timelines is not None
        wrong = {i: dict(t) for i, t in timelines.items() if t != ONE_EACH}
        assert not wrong, f"timelines with an event missing or twice: {list(wrong.items())[:3]}"


async def check_quiet(stack: Stack) -> None:
    """No dead letter; no error logged: rebalances, stops and the crash are all routine (a commit a
    rebalance refused is logged as a WARNING, `_RoutineRebalance` in shared/logs.py)."""
    for topic in (topics.LEADS_INBOUND, topics.LEADS_INTAKE, topics.LEADS_EVENTS):
        assert await records_to_end(stack.bootstrap, topics.dlq(topic)) == [], f"{topics.dlq(topic)} is not empty"
    for name, replica in stack.services.items():
        errors = [line for line in replica.log_path.read_text(errors="replace").splitlines()
                  if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line or "Traceback" in line]  # fmt: skip
        assert errors == [], f"{name} logged errors: {errors[:2]}"
